"""Plots off the critical path: a worker process forked before the simulation renders the PNGs of the report.

Importing matplotlib costs about as much as simulating a whole model, and drawing costs more, so the main command
starts a :class:`Renderer` first thing: its worker imports matplotlib and the plot modules (and draws a throw-away
figure to load fonts) on the other core while the simulation runs. When the result is ready,
:func:`archsim.report.write_all` hands it over (column-encoded, see :mod:`archsim.report.store`) with the list of
PNGs to draw; the worker draws them, each in its own forked process so they run side by side, while the main
process writes the JSON, CSV, trace and markdown files; ``join`` waits for them before the folder is swapped in.

Where ``fork`` does not exist (Windows), or the worker died, the same jobs run inline in ``join``. A job is the
name of a function of :mod:`archsim.report` (looked up at run time, so a test may replace it) called as
``fn(result, path, **kwargs)``.
"""
from __future__ import annotations

import gc
import os
import pickle
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Mapping, Sequence

from archsim.errors import ArchsimError

if TYPE_CHECKING:  # kept out of the import: start_renderer runs before anything heavy is loaded
    from archsim.result import Result

#: Modules the worker imports while the simulation runs.
PRELOAD: tuple[str, ...] = ("matplotlib.figure", "matplotlib.backends.backend_agg", "archsim.report.timeline",
                            "archsim.report.energy_plot")


@dataclass(frozen=True)
class Job:
    """One file to draw: ``getattr(archsim.report, function)(result, path, **kwargs)``."""

    function: str
    path: Path
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def run_job(result: Result, job: Job) -> None:
    """Draw one file in this process."""
    import archsim.report

    getattr(archsim.report, job.function)(result, job.path, **dict(job.kwargs))


def can_fork() -> bool:
    """Whether this platform has ``os.fork`` (POSIX)."""
    return hasattr(os, "fork") and sys.platform != "win32"


class RenderError(ArchsimError):
    """A plot failed in the worker in a way that could not be sent back as its own exception."""


class Renderer:
    """A worker process that imports the plotting stack now and draws later; see the module docstring.

    Use as a context manager (or call :meth:`close`): leaving it stops a worker that is still running, e.g. when
    the simulation failed. ``submit`` then ``join`` once; a Renderer serves one report.
    """

    def __init__(self, preload: Sequence[str] = PRELOAD, fork: bool | None = None) -> None:
        self._pid = 0
        self._to_worker: BinaryIO | None = None
        self._from_worker: BinaryIO | None = None
        self._pending: tuple[Result, list[Job]] | None = None
        self._sender: threading.Thread | None = None
        self._send_failed = False
        if fork if fork is not None else can_fork():
            self._start(tuple(preload))

    @property
    def forked(self) -> bool:
        """True while a worker process serves this renderer (False: jobs run inline in :meth:`join`)."""
        return self._pid != 0

    def _start(self, preload: tuple[str, ...]) -> None:
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            os.close(down_w)
            os.close(up_r)
            _worker(down_r, up_w, preload)
        os.close(down_r)
        os.close(up_w)
        try:
            os.setpgid(pid, pid)  # as the worker does itself: whichever runs first, killpg finds the group
        except OSError:
            pass
        self._pid = pid
        self._to_worker = os.fdopen(down_w, "wb")
        self._from_worker = os.fdopen(up_r, "rb")

    def submit(self, result: Result, jobs: Sequence[Job], data: Mapping[str, Any] | None = None) -> None:
        """Start drawing ``jobs`` for ``result``; ``data`` is ``store.result_to_data(result)`` if the caller has
        it already (it is what the worker receives). Returns at once: a thread feeds the pipe, so a worker still
        importing matplotlib never holds up the main process."""
        jobs = list(jobs)
        self._pending = (result, jobs)
        if self.forked and jobs:
            from archsim.report.store import result_to_data

            payload = pickle.dumps((data if data is not None else result_to_data(result), jobs),
                                   protocol=pickle.HIGHEST_PROTOCOL)
            self._sender = threading.Thread(target=self._send, args=(payload,), name="archsim-plot-feed",
                                            daemon=True)
            self._sender.start()

    def _send(self, payload: bytes) -> None:
        stream = self._to_worker
        try:
            assert stream is not None
            stream.write(payload)
            stream.flush()
        except (OSError, ValueError):  # the worker is gone (killed, or failed to start): join draws inline
            self._send_failed = True
        finally:
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def join(self) -> None:
        """Wait until every submitted file is written; re-raise the first failure of a job as it was raised."""
        if self._pending is None:
            return
        result, jobs = self._pending
        self._pending = None
        if self.forked and jobs:
            if self._sender is not None:
                self._sender.join()
                self._sender = None
            if not self._send_failed:
                outcome = self._receive()
                if outcome is None:
                    return
                if isinstance(outcome, BaseException):
                    raise outcome
                raise RenderError(outcome)
            self._reap(kill=True)
        for job in jobs:
            run_job(result, job)

    def _receive(self) -> BaseException | str | None:
        """The worker's answer (None when every job succeeded); falls back to drawing inline if it died."""
        assert self._from_worker is not None
        try:
            answer: Any = pickle.load(self._from_worker)
        except (EOFError, OSError, pickle.UnpicklingError):
            answer = "the plot worker stopped without an answer"
        self._reap(kill=False)
        if isinstance(answer, tuple) and answer and answer[0] == "ok":
            return None
        if isinstance(answer, tuple) and len(answer) == 2 and answer[0] == "error":
            return answer[1]
        return str(answer)

    def _reap(self, kill: bool) -> None:
        """Close the pipes and wait for the worker (its whole process group, after SIGTERM when ``kill``)."""
        if self._sender is not None and kill:
            self._to_worker = None  # the feeding thread owns the stream; killing the worker ends its write
        for stream in (self._to_worker, self._from_worker):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        self._to_worker = self._from_worker = None
        if self._pid:  # SIGTERM to its group: the worker unwinds, killing and reaping its own children first
            _end_child(self._pid, lambda pid: os.killpg(pid, signal.SIGTERM) if kill else None)
            self._pid = 0
        if self._sender is not None:
            self._sender.join()
            self._sender = None

    def close(self) -> None:
        """Stop the worker if it still runs; idempotent."""
        self._pending = None
        self._reap(kill=True)

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_renderer(preload: Sequence[str] = PRELOAD) -> Renderer:
    """A Renderer whose worker starts importing the plotting stack now: call it before simulating."""
    return Renderer(preload)


# ---- the worker side ------------------------------------------------------------------------------------------------


def _worker(down: int, up: int, preload: tuple[str, ...]) -> None:
    """Body of the forked worker: preload, wait for the jobs, draw them, answer, exit (never returns)."""
    code = 0
    try:
        os.setpgid(0, 0)  # its own process group: a Ctrl-C reaches the main process only, which stops the group
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, _stop)  # unwinds _draw, which kills and reaps its own children first
        with os.fdopen(up, "wb") as answer:
            _preload(preload)
            # a short-lived process that builds ~100k objects at once: cyclic GC only costs time here
            gc.freeze()
            gc.disable()
            with os.fdopen(down, "rb") as request:
                try:
                    data, jobs = pickle.load(request)
                except EOFError:  # the main process closed without submitting (e.g. the run failed)
                    os._exit(0)
            _answer(answer, _draw(data, jobs))
    except BaseException:  # noqa: BLE001 - nothing may escape a forked child
        code = 1
    os._exit(code)


def _preload(modules: tuple[str, ...]) -> None:
    """Import ``modules`` and, when matplotlib is among them, draw and encode a tiny figure (fonts, Agg, PNG)."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a failed preload only costs time; the job reports the real error
            continue
    if "matplotlib.figure" in sys.modules:
        try:
            import io

            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure

            fig = Figure(figsize=(1, 1), dpi=20)
            FigureCanvasAgg(fig)
            fig.add_subplot().text(0.5, 0.5, "x")
            fig.savefig(io.BytesIO(), format="png")
        except Exception:  # noqa: BLE001
            pass


def _draw(data: Mapping[str, Any], jobs: list[Job]) -> tuple[str, Any]:
    """Run the jobs, the first here and each other one in a forked child; ("ok", None) or ("error", exception)."""
    from archsim.report.store import result_from_data

    try:
        result = result_from_data(data)
    except BaseException as exc:  # noqa: BLE001
        return ("error", _picklable(exc))
    children: list[Background] = []
    try:
        for job in jobs[1:]:
            children.append(Background(run_job, result, job))
        outcomes = [_run(result, jobs[0])] if jobs else []
        outcomes += [child.outcome() for child in children]
    finally:  # stopped (SIGTERM) or failed: no child may outlive the worker and write into a discarded folder
        for child in children:
            child.close()
    return next((outcome for outcome in outcomes if outcome[0] != "ok"), ("ok", None))


def _stop(signum: int, frame: object) -> None:
    """The worker's SIGTERM handler: unwind (see _draw) instead of dying with children still drawing."""
    raise SystemExit(128 + signum)


class Background:
    """``fn(*args)`` in a forked child (copy-on-write: no data is sent), or inline where there is no fork.

    :meth:`join` waits and re-raises the child's exception as it was raised; :meth:`close` kills a child still
    running. Used for the plots beyond the first in the worker, and for trace.json beside the main writers."""

    def __init__(self, fn: Callable[..., Any], *args: Any, fork: bool | None = None) -> None:
        self._pid = 0
        self._read = -1
        self._inline: tuple[Callable[..., Any], tuple[Any, ...]] | None = None
        if not (fork if fork is not None else can_fork()):
            self._inline = (fn, args)
            return
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read)
            code = 0
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it (close) on Ctrl-C
                with os.fdopen(write, "wb") as answer:
                    try:
                        fn(*args)
                        outcome: tuple[str, Any] = ("ok", None)
                    except BaseException as exc:  # noqa: BLE001 - sent back and re-raised in the parent
                        outcome = ("error", _picklable(exc))
                    _answer(answer, outcome)
            except BaseException:  # noqa: BLE001 - nothing may escape a forked child
                code = 1
            os._exit(code)
        os.close(write)
        self._pid, self._read = pid, read

    def outcome(self) -> tuple[str, Any]:
        """Wait for the call: ("ok", None) or ("error", exception or its text)."""
        if self._inline is not None:
            fn, args = self._inline
            self._inline = None
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - returned like a child's
                return ("error", exc)
            return ("ok", None)
        if not self._pid:
            return ("ok", None)
        fd, self._read = self._read, -1  # the stream owns the descriptor now, even if interrupted while reading
        with os.fdopen(fd, "rb") as stream:
            try:
                answer: tuple[str, Any] = pickle.load(stream)
            except (EOFError, OSError, pickle.UnpicklingError):
                answer = ("error", "a background writer stopped without an answer")
        self._reap(kill=False)
        return answer

    def join(self) -> None:
        """Wait for the call; re-raise its exception."""
        status, error = self.outcome()
        if status != "ok":
            raise error if isinstance(error, BaseException) else RenderError(str(error))

    def close(self) -> None:
        """Kill the child if it still runs and reap it; idempotent."""
        self._inline = None
        fd, self._read = self._read, -1
        try:
            if fd >= 0:
                os.close(fd)
        except OSError:
            pass
        finally:
            self._reap(kill=True)

    def _reap(self, kill: bool) -> None:
        if self._pid:
            _end_child(self._pid, lambda pid: os.kill(pid, signal.SIGKILL) if kill else None)
            self._pid = 0


def _end_child(pid: int, stop: Callable[[int], None]) -> None:
    """Call ``stop(pid)`` (it signals the child, or does nothing) and wait for the child to exit; a child that is
    already gone is no error."""
    try:
        stop(pid)
    except OSError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _run(result: Result, job: Job) -> tuple[str, Any]:
    try:
        run_job(result, job)
    except BaseException as exc:  # noqa: BLE001 - sent back and re-raised in the main process
        return ("error", _picklable(exc))
    return ("ok", None)


def _picklable(exc: BaseException) -> BaseException | str:
    """The exception itself if it survives pickling, else its one-line text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return exc


def _answer(stream: BinaryIO, outcome: tuple[str, Any]) -> None:
    pickle.dump(outcome, stream, protocol=pickle.HIGHEST_PROTOCOL)
    stream.flush()
