"""compare.csv and compare.md: the table of ``archsim compare``, one row per variant."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from archsim.compare import CompareRow
from archsim.outputs import staged_folder

COLUMNS = ["variant", "config", "latency_cycles", "clock_mhz", "latency_ms", "fps", "energy_uj", "mac_utilization",
           "dram_mb", "speedup", "energy_ratio"]

#: The files ``archsim compare`` writes into its output folder.
COMPARE_FILES = ("compare.csv", "compare.md")


def format_markdown(table: Sequence[CompareRow], model: str) -> str:
    """A Markdown table; speed-up and energy ratio are relative to the first row."""
    lines = [
        f"# archsim compare: {model}",
        "",
        "| variant | latency (ms) | cycles | FPS | energy (uJ) | MAC util. | DRAM (MB) | speed-up | energy ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        lines.append(f"| {r.label} | {r.latency_ms:.3f} | {r.latency_cycles:,} | {r.fps:.1f} | {r.energy_uj:.1f} | "
                     f"{100 * r.mac_utilization:.1f}% | {r.dram_mb:.2f} | {r.speedup:.3f}x | {r.energy_ratio:.3f}x |")
    lines += ["", "speed-up = first latency / this latency; energy ratio = this energy / first energy."]
    return "\n".join(lines) + "\n"


def write_compare(table: Sequence[CompareRow], model: str, out: Path) -> tuple[Path, Path]:
    """Write compare.csv and compare.md into ``out``, replacing the folder whole (see
    :func:`archsim.outputs.staged_folder`); returns their paths."""
    with staged_folder(out, owned=COMPARE_FILES) as staged:
        with (staged / "compare.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for r in table:
                w.writerow([r.label, r.config, r.latency_cycles, f"{r.clock_mhz:g}", f"{r.latency_ms:.6f}",
                            f"{r.fps:.3f}", f"{r.energy_uj:.3f}", f"{r.mac_utilization:.6f}", f"{r.dram_mb:.6f}",
                            f"{r.speedup:.6f}", f"{r.energy_ratio:.6f}"])
        (staged / "compare.md").write_text(format_markdown(table, model))
    return out / "compare.csv", out / "compare.md"
