"""The plot worker and the background writer: files drawn in a forked process land where asked, a failure comes back
as the exception it was (KeyboardInterrupt included), a closed renderer leaves no process behind, and without fork
the same jobs run inline. Plot functions are replaced by cheap fakes (the PNGs themselves are tested in
test_plots.py), and the worker preloads nothing, so these tests never import matplotlib."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import archsim.report
from archsim.report.render import Background, Job, Renderer, RenderError, can_fork
from archsim.result import Result

needs_fork = pytest.mark.skipif(not can_fork(), reason="no os.fork on this platform")


def fake_png(result: Result, path: Path, **kwargs: object) -> None:
    """A stand-in plot that records who drew it and with what."""
    Path(path).write_text(f"{result.model} {len(result.spans)} {sorted(kwargs.items())} pid={os.getpid()}\n")


def broken(result: Result, path: Path) -> None:
    raise ValueError("no such block: stages.9")


def interrupted(result: Result, path: Path) -> None:
    raise KeyboardInterrupt


@pytest.fixture(autouse=True)
def fake_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("write_timeline_png", "write_energy_png"):
        monkeypatch.setattr(archsim.report, name, fake_png)
    monkeypatch.setattr(archsim.report, "broken_png", broken, raising=False)
    monkeypatch.setattr(archsim.report, "interrupted_png", interrupted, raising=False)


def jobs(folder: Path) -> list[Job]:
    return [Job("write_timeline_png", folder / "t.png"), Job("write_energy_png", folder / "e.png"),
            Job("write_timeline_png", folder / "z.png", {"zoom": "blocks.0"})]


@needs_fork
def test_a_forked_worker_draws_every_job_in_other_processes(result: Result, tmp_path: Path) -> None:
    with Renderer(preload=()) as renderer:
        assert renderer.forked
        renderer.submit(result, jobs(tmp_path))
        renderer.join()
    texts = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert sorted(texts) == ["e.png", "t.png", "z.png"]
    assert all(text.startswith(f"tiny_vit {len(result.spans)} ") for text in texts.values())  # the whole result
    assert "('zoom', 'blocks.0')" in texts["z.png"]
    pids = {text.rsplit("pid=", 1)[1] for text in texts.values()}
    assert str(os.getpid()) not in pids and len(pids) == 3  # side by side, none in this process


@pytest.mark.parametrize("fork", [pytest.param(True, marks=needs_fork), False], ids=["forked", "inline"])
@pytest.mark.parametrize("function, error", [("broken_png", ValueError), ("interrupted_png", KeyboardInterrupt)])
def test_a_failing_job_raises_its_own_exception(result: Result, tmp_path: Path, fork: bool, function: str,
                                                 error: type[BaseException]) -> None:
    with Renderer(preload=(), fork=fork) as renderer:
        renderer.submit(result, [Job("write_energy_png", tmp_path / "e.png"), Job(function, tmp_path / "x.png")])
        with pytest.raises(error):
            renderer.join()


def test_without_fork_jobs_run_inline_at_join(result: Result, tmp_path: Path) -> None:
    renderer = Renderer(fork=False)
    assert not renderer.forked
    renderer.submit(result, jobs(tmp_path))
    assert list(tmp_path.iterdir()) == []  # nothing before join
    renderer.join()
    assert all(f"pid={os.getpid()}" in p.read_text() for p in tmp_path.iterdir())


@needs_fork
def test_closing_an_unused_renderer_stops_its_worker(tmp_path: Path) -> None:
    renderer = Renderer(preload=())
    pid = renderer._pid
    renderer.close()
    renderer.close()  # idempotent
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped: no zombie left


@needs_fork
def test_a_worker_that_died_before_the_jobs_makes_them_run_inline(result: Result, tmp_path: Path) -> None:
    renderer = Renderer(preload=())
    os.killpg(renderer._pid, 9)
    os.waitpid(renderer._pid, 0)  # dead before anything was sent: the pipe is broken
    renderer.submit(result, jobs(tmp_path)[:1])
    renderer.join()
    assert (tmp_path / "t.png").exists()


@pytest.mark.parametrize("fork", [pytest.param(True, marks=needs_fork), False], ids=["forked", "inline"])
def test_background_call_writes_and_reraises(result: Result, tmp_path: Path, fork: bool) -> None:
    Background(fake_png, result, tmp_path / "ok.png", fork=fork).join()
    assert (tmp_path / "ok.png").read_text().startswith("tiny_vit")
    failing = Background(broken, result, tmp_path / "x.png", fork=fork)
    with pytest.raises(ValueError, match="stages.9"):
        failing.join()
    failing.close()


@needs_fork
def test_an_unpicklable_error_comes_back_as_its_text(result: Result, tmp_path: Path) -> None:
    class Local(Exception):  # defined in a function: pickle cannot find it by name
        pass

    def fails(result: Result, path: Path) -> None:
        raise Local("odd")

    with pytest.raises(RenderError, match="Local: odd"):
        Background(fails, result, tmp_path / "x", fork=True).join()


def _sleep_then_write(path: Path) -> None:
    import time

    time.sleep(5)
    path.write_text("late")


@pytest.mark.skipif(not can_fork(), reason="needs fork")
def test_an_interrupt_while_waiting_for_a_background_writer_kills_it(tmp_path: Path) -> None:
    """Ctrl-C while joining a forked writer: close() neither fails (the interrupted read owned the pipe) nor
    leaves the child running to write into a folder that is being discarded."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    target = tmp_path / "late.txt"
    background = Background(_sleep_then_write, target, fork=True)
    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        with pytest.raises(KeyboardInterrupt):
            background.join()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    background.close()  # must not raise, and reaps the child
    assert not target.exists()
