"""Report writers: turn one simulation :class:`~archsim.result.Result` into files a hardware architect reads.

:func:`write_all` writes summary.json, layers.csv, trace.json, result.json.gz, timeline.png, energy.png, report.md
and report.html into one folder, built whole in a hidden folder beside it and swapped in only once every file is
written (see :func:`archsim.outputs.staged_folder`), so a crash or Ctrl-C never leaves a half-written or mixed
folder. The PNGs are drawn by a :class:`~archsim.report.render.Renderer` (a worker process started before the
simulation, see :func:`start_renderer`) while this process writes the rest; without one they are drawn inline.
:func:`redraw` draws the plots and report.html again from a finished run folder's result.json.gz, without
simulating.

The plot modules (and matplotlib, numpy) load only when a plot is drawn: ``import archsim.report`` stays cheap.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # every writer loads on first use (see __getattr__), so ``import archsim.report`` costs nothing
    from archsim.report.chrome_trace import build_chrome_trace, write_chrome_trace
    from archsim.report.console import format_summary
    from archsim.report.energy_plot import render_energy, write_energy_png
    from archsim.report.html import render_report_html, write_report_html
    from archsim.report.layers import LAYER_COLUMNS, write_layers_csv
    from archsim.report.markdown import render_report_md, write_report_md
    from archsim.report.render import Background, Job, Renderer, start_renderer
    from archsim.report.store import load_result, save_result
    from archsim.report.summary import build_summary, host_info, write_summary
    from archsim.report.timeline import render_timeline, write_timeline_png
    from archsim.result import Result

#: File name of each output kind inside the report folder, in writing order (the reports last: they link the rest).
OUTPUT_FILES: dict[str, str] = {
    "summary": "summary.json",
    "layers": "layers.csv",
    "trace": "trace.json",
    "result": "result.json.gz",
    "timeline": "timeline.png",
    "energy": "energy.png",
    "report": "report.md",
    "html": "report.html",
}
#: The plots: output kind -> function of this package drawing it as ``fn(result, path, **kwargs)``.
PLOTS: dict[str, str] = {"timeline": "write_timeline_png", "energy": "write_energy_png"}
#: The timeline zoomed on one block (``zoom=``), written only when asked for.
ZOOM_FILE = "timeline_zoom.png"
#: Every name a report folder may hold: what a command replacing the folder whole may delete.
OWNED_FILES: tuple[str, ...] = (*OUTPUT_FILES.values(), ZOOM_FILE)

#: Where each public name lives: ``archsim.report.<name>`` imports its module on first use (PEP 562). The main
#: command forks its plot worker (:func:`start_renderer`) before anything heavy is imported, and the plot modules
#: (numpy, matplotlib) load only where a plot is drawn.
_LAZY: dict[str, str] = {
    **dict.fromkeys(("build_chrome_trace", "write_chrome_trace"), "chrome_trace"),
    "format_summary": "console",
    **dict.fromkeys(("render_energy", "write_energy_png"), "energy_plot"),
    **dict.fromkeys(("render_report_html", "write_report_html"), "html"),
    **dict.fromkeys(("LAYER_COLUMNS", "write_layers_csv"), "layers"),
    **dict.fromkeys(("render_report_md", "write_report_md"), "markdown"),
    **dict.fromkeys(("Background", "Job", "Renderer", "start_renderer"), "render"),
    **dict.fromkeys(("load_result", "save_result"), "store"),
    **dict.fromkeys(("build_summary", "host_info", "write_summary"), "summary"),
    **dict.fromkeys(("render_timeline", "write_timeline_png"), "timeline"),
}


def __getattr__(name: str) -> Any:
    """A public name, imported on first use and then kept as an attribute of this package (so a test may replace
    it, and the writers below look it up here)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def _get(name: str) -> Any:
    """``archsim.report.<name>``, loading it if needed."""
    return globals()[name] if name in globals() else __getattr__(name)


def _plot_jobs(folder: Path, zoom: str | None) -> list[Job]:
    Job = _get("Job")
    jobs = [Job(function, folder / OUTPUT_FILES[kind]) for kind, function in PLOTS.items()]
    if zoom is not None:
        jobs.append(Job(PLOTS["timeline"], folder / ZOOM_FILE, {"zoom": zoom}))
    return jobs


def _images(folder: Path, zoom: str | None) -> dict[str, bytes]:
    """The PNGs just drawn into ``folder``, by kind, for report.html."""
    images = {kind: (folder / OUTPUT_FILES[kind]).read_bytes() for kind in PLOTS}
    if zoom is not None:
        images["zoom"] = (folder / ZOOM_FILE).read_bytes()
    return images


def write_all(
    result: Result,
    out_dir: str | os.PathLike[str],
    host: Mapping[str, Any] | None = None,
    *,
    plots: bool = True,
    renderer: Renderer | None = None,
    command: str | None = None,
    zoom: str | None = None,
    parallel: bool | None = None,
    run: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write every report file into ``out_dir`` (created if needed); return their paths by kind.

    The folder is replaced whole, or not at all if a writer fails; an existing ``out_dir`` holding files other
    than :data:`OWNED_FILES` is refused (UsageError) rather than deleted. ``host`` (see :func:`host_info`) goes into
    summary.json only; without it the folder's content depends on the result alone (and ``command``, shown in
    report.html). ``plots=False`` draws no PNG (report.html then has none). ``renderer``: a started
    :class:`Renderer` draws the PNGs while this process writes the rest (it is used up); None draws them here.
    ``zoom`` also draws the timeline of that block into ``timeline_zoom.png``. ``parallel`` (default: True when a
    ``renderer`` is given) writes trace.json in a forked process beside this one where the OS can fork.
    """
    from archsim.kernel.kernel import gc_paused

    with gc_paused():
        return _write_all(result, Path(out_dir), host, plots, renderer, command, zoom, parallel, run)


def _write_all(result: Result, folder: Path, host: Mapping[str, Any] | None, plots: bool, renderer: Renderer | None,
               command: str | None, zoom: str | None, parallel: bool | None, run: Mapping[str, Any] | None
               ) -> dict[str, Path]:
    from archsim.outputs import staged_folder
    from archsim.report.chrome_trace import write_chrome_trace
    from archsim.report.html import write_report_html
    from archsim.report.layers import write_layers_csv
    from archsim.report.markdown import write_report_md
    from archsim.report.render import Background, Renderer
    from archsim.report.store import result_to_data, save_result
    from archsim.report.summary import write_summary

    kinds = [kind for kind in OUTPUT_FILES if plots or kind not in PLOTS]
    drawer = renderer if renderer is not None else Renderer(fork=False)
    if command is None and run is not None and isinstance(run.get("command"), str):
        command = run["command"]
    beside = parallel if parallel is not None else renderer is not None
    with staged_folder(folder, owned=OWNED_FILES) as staged:
        trace: Background | None = None
        try:
            paths = {kind: staged / OUTPUT_FILES[kind] for kind in kinds}
            # trace.json is the biggest writer: forked first (before the renderer's feeding thread starts)
            trace = Background(write_chrome_trace, result, paths["trace"], fork=None if beside else False)
            data = result_to_data(result)
            if plots:
                drawer.submit(result, _plot_jobs(staged, zoom), data)
            write_summary(result, paths["summary"], host=host, run=run)
            write_layers_csv(result, paths["layers"])
            save_result(result, paths["result"], data)
            links = {kind: OUTPUT_FILES[kind] for kind in kinds if kind not in ("report", "html")}
            write_report_md(result, paths["report"], {**links, "html": OUTPUT_FILES["html"]}, run)
            trace.join()
            drawer.join()
            images = _images(staged, zoom) if plots else {}
            write_report_html(result, paths["html"], images, command,
                              {**links, "report": OUTPUT_FILES["report"]})
        finally:
            # before the swap or the discard: no other process may still write into the folder
            if trace is not None:
                trace.close()
            drawer.close()
    written = {kind: folder / OUTPUT_FILES[kind] for kind in kinds}
    if plots and zoom is not None:
        written["zoom"] = folder / ZOOM_FILE
    return written


def recorded_command(run_dir: str | os.PathLike[str]) -> str | None:
    """The command a run folder's summary.json records (``run.command``, or a top-level ``command``), if any."""
    try:
        summary = json.loads((Path(run_dir) / OUTPUT_FILES["summary"]).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict):
        return None
    run = summary.get("run")
    command = run.get("command") if isinstance(run, dict) else summary.get("command")
    return command if isinstance(command, str) else None


def redraw(run_dir: str | os.PathLike[str], zoom: str | None = None, command: str | None = None,
           renderer: Renderer | None = None) -> dict[str, Path]:
    """Draw every plot and report.html of a finished run folder again from its result.json.gz, without
    simulating; return the paths of the files drawn. The folder is replaced whole (the other files carried over
    unchanged), so a failure leaves it as it was. ``command`` for report.html defaults to the one summary.json
    records. A UsageError names the folder or file at fault."""
    from archsim.errors import UsageError
    from archsim.outputs import staged_folder
    from archsim.report.html import write_report_html
    from archsim.report.render import Renderer
    from archsim.report.store import load_result

    folder = Path(run_dir)
    if not folder.is_dir():
        raise UsageError("not a run folder (give the folder `archsim run` wrote)", source=str(folder))
    result = load_result(folder / OUTPUT_FILES["result"])
    shown = command if command is not None else recorded_command(folder)
    drawer = renderer if renderer is not None else Renderer()
    drawn = {kind: OUTPUT_FILES[kind] for kind in (*PLOTS, "html")}
    if zoom is not None:
        drawn["zoom"] = ZOOM_FILE
    try:
        with staged_folder(folder, owned=OWNED_FILES) as staged:
            try:
                drawer.submit(result, _plot_jobs(staged, zoom))
                for name in sorted(os.listdir(folder)):
                    if name not in drawn.values() and (folder / name).is_file():
                        _carry(folder / name, staged / name)
                drawer.join()
                present = {kind: name for kind, name in OUTPUT_FILES.items()
                           if kind != "html" and (staged / name).exists()}
                write_report_html(result, staged / OUTPUT_FILES["html"], _images(staged, zoom), shown, present)
            finally:
                drawer.close()
    finally:
        drawer.close()
    return {kind: folder / name for kind, name in drawn.items()}


def _carry(source: Path, target: Path) -> None:
    """A file of the old folder into the new one: a hard link where the file system allows, else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


__all__ = [
    "LAYER_COLUMNS",
    "OUTPUT_FILES",
    "OWNED_FILES",
    "PLOTS",
    "ZOOM_FILE",
    "Job",
    "Renderer",
    "build_chrome_trace",
    "build_summary",
    "format_summary",
    "host_info",
    "load_result",
    "recorded_command",
    "redraw",
    "render_energy",
    "render_report_html",
    "render_report_md",
    "render_timeline",
    "save_result",
    "start_renderer",
    "write_all",
    "write_chrome_trace",
    "write_energy_png",
    "write_layers_csv",
    "write_report_html",
    "write_report_md",
    "write_summary",
    "write_timeline_png",
]
