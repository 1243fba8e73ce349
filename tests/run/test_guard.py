"""The size guard: estimates close to the events a run takes, refusals that name the estimate and the flag."""
from __future__ import annotations

from pathlib import Path

import pytest

from archsim.api import run_stages
from archsim.cli import main
from archsim.config import load_config
from archsim.errors import UsageError
from archsim.mapping.schedule import build_taskgraph
from archsim.run import execute
from archsim.run.guard import Limits, check, estimate
from archsim.workloads.yaml_format import load_yaml_workload
from helpers import MLP_YAML, ROOT

CONFIGS = sorted((ROOT / "arch_configs").glob("*.yaml"))


def _big_workload(tmp_path: Path, tokens: int) -> Path:
    path = tmp_path / f"big{tokens}.yaml"
    path.write_text(f"""name: big
inputs:
  x: [1, {tokens}, 4096]
ops:
  - {{name: fc1, kind: linear, in: [x], weights: {{fc1.weight: [4096, 4096]}}, out: [1, {tokens}, 4096]}}
  - {{name: act, kind: activation, fn: gelu, in: [fc1], out: [1, {tokens}, 4096]}}
""")
    return path


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_estimate_is_close_to_the_events_run(config: Path) -> None:
    """Never far below what the run takes (the guard's job), and at most a few times above it."""
    cfg = load_config(config)
    workload = load_yaml_workload(MLP_YAML)
    graph = build_taskgraph(workload, cfg)
    est = estimate(cfg, graph)
    events = execute(cfg, workload, graph).events
    assert 0.5 * events <= est.events <= 3 * events
    assert est.memory_bytes > 0 and est.seconds > 0


def test_estimate_grows_with_the_tiles_of_a_large_op(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "arch_configs" / "trio.yaml")
    small = estimate(cfg, build_taskgraph(load_yaml_workload(_big_workload(tmp_path, 100)), cfg))
    large = estimate(cfg, build_taskgraph(load_yaml_workload(_big_workload(tmp_path, 100_000)), cfg))
    assert large.events > 100 * small.events


def test_a_run_over_the_limit_is_refused_before_it_starts() -> None:
    cfg = load_config(ROOT / "arch_configs" / "trio.yaml")
    workload = load_yaml_workload(MLP_YAML)
    with pytest.raises(UsageError, match=r"--max-events \d+ \(or 0 for no limit\)"):
        run_stages(cfg, workload, limits=Limits(max_events=100))
    with pytest.raises(UsageError, match=r"--max-memory \d+"):
        check(cfg, build_taskgraph(workload, cfg), Limits(max_events=None, max_memory_bytes=1))
    assert run_stages(cfg, workload, limits=Limits.none()).latency_cycles > 0


def test_cli_refuses_with_one_line_and_runs_when_lifted(tmp_path: Path, capsys) -> None:
    args = ["run", str(ROOT / "arch_configs" / "trio.yaml"), "--workload", str(MLP_YAML), "--quiet", "--no-plots"]
    assert main([*args, "--max-events", "1000", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--max-events" in err and "events" in err
    assert err.startswith(f"archsim: error: {MLP_YAML}: this run would simulate")  # names the workload
    assert not (tmp_path / "a").exists()
    assert main([*args, "--max-events", "0", "--max-memory", "0", "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "summary.json").is_file()


@pytest.mark.parametrize("flag,value", [("--max-events", "-1"), ("--max-memory", "-2"), ("--max-memory", "nan"),
                                        ("--max-memory", "inf")])
def test_bad_limits_are_usage_errors(flag: str, value: str, capsys) -> None:
    code = main(["run", str(ROOT / "arch_configs" / "trio.yaml"), "--workload", str(MLP_YAML), flag, value])
    assert code == 2
    assert flag in capsys.readouterr().err
