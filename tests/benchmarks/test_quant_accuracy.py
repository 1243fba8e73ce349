"""The accuracy benchmark keeps running: a quick smoke run trains, quantizes and prints accuracies."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT


@pytest.mark.slow
def test_quick_benchmark_prints_accuracies(tmp_path) -> None:
    pytest.importorskip("sklearn")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "quant_accuracy.py"), "--quick"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "ARCHSIM_CACHE_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert len(re.findall(r"float top-1 \d+\.\d\d%", proc.stdout)) == 2
    for label in ("FQ-ViT W8A8", "P2-ViT W8A8", "P2-ViT mixed", "PackQViT W4A4 (QAT)", "Trio-ViT W8A8"):
        assert re.search(rf"{re.escape(label)}\s+top-1\s+\d+\.\d\d%", proc.stdout), proc.stdout
