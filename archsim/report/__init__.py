"""Report writers: turn one simulation :class:`~archsim.result.Result` into files a hardware architect reads.

:func:`write_all` writes summary.json, layers.csv, trace.json, timeline.png, energy.png and report.md into one
folder, built whole in a hidden folder beside it and swapped in only once every file is written (see
:func:`archsim.outputs.staged_folder`), so a crash or Ctrl-C never leaves a half-written or mixed folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from archsim.outputs import staged_folder
from archsim.report.chrome_trace import build_chrome_trace, write_chrome_trace
from archsim.report.console import format_summary
from archsim.report.energy_plot import render_energy, write_energy_png
from archsim.report.layers import LAYER_COLUMNS, write_layers_csv
from archsim.report.markdown import render_report_md, write_report_md
from archsim.report.summary import build_summary, host_info, write_summary
from archsim.report.timeline import render_timeline, write_timeline_png
from archsim.result import Result

#: File name of each output kind inside the report folder, in writing order (report.md last: it links the rest).
OUTPUT_FILES: dict[str, str] = {
    "summary": "summary.json",
    "layers": "layers.csv",
    "trace": "trace.json",
    "timeline": "timeline.png",
    "energy": "energy.png",
    "report": "report.md",
}


def write_all(
    result: Result, out_dir: str | os.PathLike[str], host: Mapping[str, Any] | None = None
) -> dict[str, Path]:
    """Write every report file into ``out_dir`` (created if needed); return their paths by kind.

    The folder is replaced whole, or not at all if a writer fails; an existing ``out_dir`` holding files other
    than these is refused (UsageError) rather than deleted. ``host`` (see :func:`host_info`) goes into summary.json
    only; without it the folder's content depends on the result alone.
    """
    folder = Path(out_dir)
    with staged_folder(folder, owned=OUTPUT_FILES.values()) as staged:
        paths = {kind: staged / name for kind, name in OUTPUT_FILES.items()}
        write_summary(result, paths["summary"], host=host)
        write_layers_csv(result, paths["layers"])
        write_chrome_trace(result, paths["trace"])
        write_timeline_png(result, paths["timeline"])
        write_energy_png(result, paths["energy"])
        links = {kind: name for kind, name in OUTPUT_FILES.items() if kind != "report"}
        write_report_md(result, paths["report"], links)
    return {kind: folder / name for kind, name in OUTPUT_FILES.items()}


__all__ = [
    "LAYER_COLUMNS",
    "OUTPUT_FILES",
    "build_chrome_trace",
    "build_summary",
    "format_summary",
    "host_info",
    "render_energy",
    "render_report_md",
    "render_timeline",
    "write_all",
    "write_chrome_trace",
    "write_energy_png",
    "write_layers_csv",
    "write_report_md",
    "write_summary",
    "write_timeline_png",
]
