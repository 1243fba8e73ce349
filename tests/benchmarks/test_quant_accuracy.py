"""The accuracy benchmark keeps running (a quick smoke run trains, quantizes and prints accuracies) and its figures do
not depend on the kernels the caller's environment would pick (it pins them before torch loads)."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from helpers import ROOT

SCRIPT = ROOT / "benchmarks" / "quant_accuracy.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quant_accuracy_bench", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up here
    spec.loader.exec_module(mod)
    return mod


def _run(args: list[str], cache: Path, **env: str) -> str:
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, env={**os.environ, "ARCHSIM_CACHE_DIR": str(cache), **env})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_pinned_env_overrides_the_callers_kernels_and_keeps_the_rest() -> None:
    mod = _module()
    env = mod._pinned({"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AUTO", "HOME": "/h",
                       "GLIBC_TUNABLES": "glibc.malloc.check=3"})
    assert {k: env[k] for k in mod.PINNED_ENV if k != "GLIBC_TUNABLES"} == \
        {k: v for k, v in mod.PINNED_ENV.items() if k != "GLIBC_TUNABLES"}
    assert env["HOME"] == "/h"
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.check=3:{mod.PINNED_ENV['GLIBC_TUNABLES']}"
    assert mod._pinned(env) == env  # already pinned: the script does not restart itself again


@pytest.mark.slow
def test_quick_benchmark_prints_accuracies(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    out = _run(["--quick"], tmp_path)
    assert re.search(r"^kernels: ATen DEFAULT, MKL_CBWR=COMPATIBLE, .*oneDNN and NNPACK off, 1 thread", out, re.M), out
    assert len(re.findall(r"weights [0-9a-f]{12}, .*float top-1 \d+\.\d\d%", out)) == 2
    for label in ("FQ-ViT W8A8", "P2-ViT W8A8", "P2-ViT mixed", "PackQViT W4A4 (QAT)", "Trio-ViT W8A8"):
        assert re.search(rf"{re.escape(label)}\s+top-1\s+\d+\.\d\d%", out), out


@pytest.mark.slow
def test_figures_do_not_depend_on_the_callers_kernel_settings(tmp_path: Path) -> None:
    """Settings that, unpinned, change the trained weights on an AVX-512 CPU give the same weights and rows."""
    pytest.importorskip("sklearn")
    args = ["--quick", "--model", "tiny_deit", "--rows", "^FQ-ViT W8A8$"]
    tables = []
    for i, env in enumerate([{}, {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                                  "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OMP_NUM_THREADS": "2"}]):
        out = _run(args, tmp_path / str(i), **env)  # a cache each: both runs train
        tables.append(re.sub(r"(ready in|\[)\s*\d+\.\d s", "", out))
    assert re.search(r"weights [0-9a-f]{12}", tables[0]) and "FQ-ViT W8A8" in tables[0], tables[0]
    assert tables[0] == tables[1]
