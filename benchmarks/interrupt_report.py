"""Ctrl-C while a report is being written: the previous report folder must stay exactly as it was.

    python benchmarks/interrupt_report.py              # efficientvit_b1 on trio.yaml, 6 interrupts
    python benchmarks/interrupt_report.py --tries 20

Writes a first report with ``archsim run`` into a temporary folder and records a digest of every file. Then, for each
try, starts the same command with a different ``--set`` (so its report would differ), waits until the first of its
files appears in the hidden staging folder beside ``--out`` (report writing has begun), waits a little longer (a
different delay each try, to land at different points of the writing) and sends SIGINT to the whole process group,
as a terminal's Ctrl-C does. It prints, per try: the exit status, stderr, whether the folder still holds the first
report bit for bit, and whether anything was left beside it. A try whose command finished before the signal landed
is reported as such and becomes the new baseline.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in sorted(folder.iterdir()) if p.is_file()}


def command(out: Path, bandwidth: float) -> list[str]:
    return [sys.executable, "-m", "archsim", "run", str(ROOT / "arch_configs" / "trio.yaml"), "--model",
            "efficientvit_b1", "--out", str(out), "--quiet", "--set", f"dram.bandwidth_gbps={bandwidth}"]


def staging_started(out: Path) -> bool:
    """A file exists in a hidden staging folder beside ``out`` (archsim.outputs.staged_folder)."""
    for scratch in out.parent.glob(f".{out.name}.*.tmp"):
        new = scratch / "new"
        if new.is_dir() and any(new.iterdir()):
            return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tries", type=int, default=6, help="interrupted runs (default: 6)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report"
        subprocess.run(command(out, 12.8), check=True)  # also traces and caches the model
        before = digest(out)
        print(f"first report: {out.name}/ with {len(before)} files: {', '.join(before)}")
        print(f"{'try':>3} {'delay ms':>8} {'exit':>4}  {'stderr':<24} {'folder as before':<17} {'left beside':<11}")
        intact = interrupted = 0
        tracebacks: list[str] = []
        for i in range(args.tries):
            delay = 0.05 * i
            proc = subprocess.Popen(command(out, 6.4 + i), stderr=subprocess.PIPE, text=True, start_new_session=True)
            while proc.poll() is None and not staging_started(out):
                time.sleep(0.005)
            time.sleep(delay)
            finished_first = proc.poll() is not None
            if not finished_first:
                os.killpg(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=120)
            leftovers = [p.name for p in out.parent.iterdir() if p.name != out.name]
            now = digest(out)
            if finished_first or proc.returncode == 0:
                print(f"{i:>3} {delay * 1e3:>8.0f} {proc.returncode:>4}  {'(finished before SIGINT)':<24} "
                      f"{'replaced whole' if now != before else 'same':<17} {', '.join(leftovers) or 'nothing':<11}")
                before = now
                continue
            interrupted += 1
            if "Traceback" in err:
                tracebacks.append(err)
            same = now == before
            intact += same and not leftovers
            print(f"{i:>3} {delay * 1e3:>8.0f} {proc.returncode:>4}  {err.strip()[:24]:<24} "
                  f"{'yes' if same else 'NO':<17} {', '.join(leftovers) or 'nothing':<11}")
        print(f"\n{interrupted} runs interrupted while writing their report; the previous folder intact and nothing "
              f"left beside it after {intact} of them; {len(tracebacks)} tracebacks")
        for text in tracebacks:
            print("\n" + text)


if __name__ == "__main__":
    main()
