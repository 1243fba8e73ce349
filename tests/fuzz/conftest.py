"""Hypothesis profiles of the fuzz suite: ``fuzz-ci`` (the fast loop: a bounded number of cases per target, a few
seconds each) and ``fuzz-deep`` (the ``slow`` tests, which CI also runs: a few hundred per target). Both are
derandomized (the same cases on every run, from a seed fixed by the test's name), write no example database
(nothing is written into the repository) and leave timing to the harness's own deadline (a case past it is a hang,
reported with its reproducer), so a busy machine cannot make them flaky."""
from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings

#: Cases per target in the fast loop, and in the slow tests.
CI_EXAMPLES = 50
DEEP_EXAMPLES = 300

_COMMON = dict(derandomize=True, database=None, deadline=None, print_blob=False,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
# no shrinking in the fast loop: a failure reports the case as generated, with its reproducer
settings.register_profile("fuzz-ci", max_examples=CI_EXAMPLES,
                          phases=[Phase.explicit, Phase.generate], **_COMMON)  # type: ignore[arg-type]
settings.register_profile("fuzz-deep", max_examples=DEEP_EXAMPLES, **_COMMON)  # type: ignore[arg-type]
