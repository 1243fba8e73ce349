"""Run one fuzz case through the real ``archsim`` command in this process and say what happened.

A case is a mutated input file (a config, a YAML workload or a trace) and the command that reads it. The promise
checked (issue 14): the command either exits 0 with a result whose invariants hold, or exits 2 with exactly one line
on stderr that names the file; never a traceback, never longer than a deadline (a case that trips it is a hang).
Shared by the tests in this folder and ``benchmarks/fuzz.py``.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import signal
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[2]
GENERIC = ROOT / "arch_configs" / "generic16.yaml"
MLP_YAML = ROOT / "examples" / "workloads" / "mlp_block.yaml"
#: Every shipped architecture config (each runs either workload below in well under a second of simulation).
CONFIGS = tuple(sorted((ROOT / "arch_configs").glob("*.yaml")))
#: The workloads mutated and run: the shipped MLP block, and a conv + attention block with every MAC kind.
WORKLOADS = (MLP_YAML, Path(__file__).with_name("conv_attention.yaml"))

#: What a case can end as. ``ok`` and ``clean`` keep the promise; the others are bugs.
OUTCOMES = ("ok", "clean", "traceback", "hang", "unclean", "wrong", "invariant", "exit")
BUGS = frozenset(OUTCOMES) - {"ok", "clean"}


@dataclass(frozen=True)
class Case:
    """One input file and the command that reads it.

    ``target`` is what was mutated (``config``, ``workload``, ``trace``), ``command`` the archsim command
    (``validate``, ``run``, ``trace``), ``base`` the shipped file it was mutated from, ``mutations`` what was done
    to it, and ``must_refuse`` why exit 0 would be a wrong acceptance ('' when either outcome may be right).
    ``partner`` is the other file a run reads: the workload a config runs, the config a workload or trace runs on."""

    target: str
    command: str
    base: str
    data: bytes
    mutations: tuple[str, ...]
    must_refuse: str = ""
    partner: Path = GENERIC

    @property
    def suffix(self) -> str:
        return ".json" if self.target == "trace" else ".yaml"

    def argv(self, path: Path, out: Path, plots: bool = True) -> list[str]:
        """The command line, reading the case's file at ``path`` and writing into ``out``; a run without ``plots``
        writes no PNGs (they take about a second a run; every other output is written)."""
        other = {"config": ["--workload", str(self.partner)], "workload": ["--workload", str(path)],
                 "trace": ["--trace", str(path)]}[self.target]
        if self.command == "validate":
            return ["validate", str(path)]
        if self.command == "trace":
            return ["trace", *other, "--out", str(out.with_suffix(".json"))]
        config = str(path) if self.target == "config" else str(self.partner)
        return ["run", config, *other, "--out", str(out), *([] if plots else ["--no-plots"])]

    def reproducer(self) -> str:
        """Shell lines that recreate the file and rerun the command."""
        name = f"fuzz_case{self.suffix}"
        argv = self.argv(Path(name), Path("fuzz_out"))
        write = f"open({name!r}, 'wb').write({self.data!r})"
        return f"python -c {_shell_quote(write)}\narchsim {' '.join(_shell_quote(a) for a in argv)}"


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


@dataclass
class Outcome:
    """What one case did: ``kind`` (one of OUTCOMES), the exit status, stderr, a detail and the wall time."""

    kind: str
    status: int | None
    stderr: str
    detail: str
    seconds: float
    case: Case | None = field(default=None, repr=False)

    def report(self) -> str:
        """A failure message with the reproducer."""
        assert self.case is not None
        c = self.case
        return (f"{self.kind}: {c.command} on a mutated {c.base} ({'; '.join(c.mutations)}): {self.detail}\n"
                f"exit {self.status}, stderr {self.stderr[:2000]!r}\nreproduce with:\n{c.reproducer()}")


class _Hang(BaseException):
    """Raised by the alarm: a BaseException, so no ``except Exception`` in the code under test swallows it."""


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    def fire(signum: int, frame: FrameType | None) -> None:
        raise _Hang()

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _recording_runs(runs: list[tuple[Any, Any]]) -> Iterator[None]:
    """``archsim.api.run_stages`` wrapped to keep each (config, Result) it returns, for the invariants."""
    import archsim.api as api

    original: Callable[..., Any] = api.run_stages

    def recorded(cfg: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(cfg, *args, **kwargs)
        runs.append((cfg, result))
        return result

    api.run_stages = recorded  # type: ignore[assignment]
    try:
        yield
    finally:
        api.run_stages = original  # type: ignore[assignment]


def run_case(case: Case, deadline: float = 10.0, plots: bool = False) -> Outcome:
    """Write the case's file to a temporary folder, run its command through ``archsim.cli.main`` with stdout and
    stderr captured, and classify the outcome. ``plots``: a run draws its PNGs (about a second) or not."""
    from archsim.cli import main

    with tempfile.TemporaryDirectory(prefix="archsim-fuzz-") as tmp:
        path = Path(tmp) / f"case{case.suffix}"
        path.write_bytes(case.data)
        out = Path(tmp) / "out"
        argv = case.argv(path, out, plots)
        stdout, stderr = io.StringIO(), io.StringIO()
        runs: list[tuple[Any, Any]] = []
        status: int | None = None
        failure = ""
        t0 = time.perf_counter()
        with _recording_runs(runs):
            try:
                with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), _deadline(deadline):
                    status = main(argv)
            except _Hang:
                failure = "hang"
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - a traceback is exactly what this looks for
                failure = traceback.format_exc(limit=-6)
        seconds = time.perf_counter() - t0
        err = stderr.getvalue()

        def outcome(kind: str, detail: str = "") -> Outcome:
            return Outcome(kind, status, err, detail, seconds, case)

        if failure == "hang":
            return outcome("hang", f"still running after {deadline:g} s")
        if failure:
            return outcome("traceback", failure.strip().splitlines()[-1] + "\n" + failure)
        if status == 2:
            lines = err.splitlines()
            if len(lines) != 1 or not err.endswith("\n"):
                return outcome("unclean", f"{len(lines)} lines on stderr")
            # the case's own file, or the config it runs on when that is what cannot take the workload (a buffer too
            # small for one tile of a grown op names the config's buffer key)
            named = [str(path)] + ([str(case.partner)] if case.target != "config" and case.partner else [])
            if not any(lines[0].startswith(f"archsim: error: {name}: ") for name in named):
                return outcome("unclean", "the error does not start with the file's name")
            return outcome("clean")
        if status != 0:
            return outcome("exit", f"exit status {status}")
        if case.must_refuse:
            return outcome("wrong", f"accepted, but {case.must_refuse}")
        problems = _success_problems(case, argv, path, out, stdout.getvalue(), runs)
        return outcome("invariant", "; ".join(problems)) if problems else outcome("ok")


def _success_problems(case: Case, argv: list[str], path: Path, out: Path, stdout: str,
                      runs: list[tuple[Any, Any]]) -> list[str]:
    """What is wrong with a command that exited 0: the output it promised is missing, or a run's Result breaks an
    invariant."""
    if case.command == "validate":
        return [] if stdout.startswith(f"{path}: valid") else [f"validate printed {stdout[:200]!r}"]
    if case.command == "trace":
        from archsim.workloads.ir import Workload

        written = Workload.load(out.with_suffix(".json"))
        return [] if written.ops else ["the written trace has no ops"]
    problems: list[str] = []
    if len(runs) != 1:
        return [f"{len(runs)} simulations ran"]
    if not (out / "summary.json").is_file():
        problems.append("no summary.json")
    else:
        json.loads((out / "summary.json").read_text())
    cfg, result = runs[0]
    return problems + result_problems(cfg, result)


def result_problems(cfg: Any, r: Any) -> list[str]:
    """The invariants every run keeps, as the list of those broken: utilization in [0, 1]; latency at least the
    compute bound (MACs over the design's peak) and the DRAM bound (bytes over the channels' bandwidth), per op and
    overall; energy finite, non-negative and the same total by component and by op kind; DRAM bytes conserved (the
    ops' sum is the run's total, the channels move at least that)."""
    p: list[str] = []
    eps = 1e-9
    if r.latency_cycles <= 0:
        p.append(f"latency {r.latency_cycles} cycles")
    if r.batch < 1 or not (math.isfinite(r.fps) and r.fps >= 0):
        p.append(f"batch {r.batch}, fps {r.fps}")
    for name, e in r.engines.items():
        if not 0.0 <= e.utilization <= 1.0 + eps:
            p.append(f"engine {name} utilization {e.utilization}")
    if not 0.0 <= r.mac_utilization <= 1.0 + eps:
        p.append(f"MAC utilization {r.mac_utilization}")
    peak = sum(e.peak_macs_per_cycle for e in r.engines.values())
    if peak and r.latency_cycles < math.ceil(r.total_macs / peak):
        p.append(f"latency {r.latency_cycles} below the compute bound {math.ceil(r.total_macs / peak)}")
    bytes_per_cycle = cfg.dram.channels * cfg.dram.bandwidth_gbps * 1e3 / cfg.clock_mhz
    dram_bound = (r.dram_read_bytes + r.dram_write_bytes) / bytes_per_cycle
    if r.latency_cycles < math.floor(dram_bound * (1 - eps)):
        p.append(f"latency {r.latency_cycles} below the DRAM bound {dram_bound:.1f}")
    for rec in r.ops:
        if rec.status == "simulated" and rec.cycles < max(rec.compute_bound_cycles, rec.memory_bound_cycles):
            p.append(f"op {rec.op}: {rec.cycles} cycles below its bounds ({rec.compute_bound_cycles}, "
                     f"{rec.memory_bound_cycles})")
        if not (math.isfinite(rec.energy_pj) and rec.energy_pj >= 0):
            p.append(f"op {rec.op}: energy {rec.energy_pj}")
    parts = list(r.energy_pj_by_component.values())
    if not all(math.isfinite(v) and v >= 0 for v in parts):
        p.append("an energy by component is negative or not finite")
    by_kind = sum(r.energy_pj_by_op_kind.values())
    if not math.isclose(sum(parts), by_kind, rel_tol=1e-9, abs_tol=1e-6):
        p.append(f"energy by component {sum(parts)} != by op kind {by_kind}")
    if sum(rec.dram_read_bytes for rec in r.ops) != r.dram_read_bytes:
        p.append("DRAM read bytes of the ops do not add up to the run's")
    if sum(rec.dram_write_bytes for rec in r.ops) != r.dram_write_bytes:
        p.append("DRAM write bytes of the ops do not add up to the run's")
    channel_read = sum(c.read_bytes for n, c in r.components.items() if n.startswith("dram"))
    if channel_read < r.dram_read_bytes:
        p.append(f"DRAM channels read {channel_read} bytes, fewer than the ops' {r.dram_read_bytes}")
    return p
