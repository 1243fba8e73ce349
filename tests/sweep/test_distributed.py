"""The same sweep on a Dask cluster (a LocalCluster on loopback, started here) gives the same table as locally; a
sweep killed with SIGKILL and rerun gives the table of an uninterrupted one. Both start processes: slow."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from archsim.sweep.run import run_sweep
from archsim.sweep.spec import load_sweep
from archsim.sweep.store import POINTS
from archsim.sweep.table import read_table
from helpers import GENERIC, MLP_YAML, ROOT

GRID_27 = {"name": "t27", "config": str(GENERIC), "workload": {"workload": str(MLP_YAML)},
           "axes": {"engines.pe.rows": [4, 8, 16], "buffers.act_buf.capacity_kib": [128, 256, 384],
                    "dram.bandwidth_gbps": [6.4, 12.8, 25.6]}}


@pytest.mark.slow
def test_a_dask_cluster_gives_the_same_table_as_local_workers(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(GRID_27, sort_keys=False))
    spec = load_sweep(path)
    run_sweep(spec, tmp_path / "local", workers=2, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        out = run_sweep(spec, tmp_path / "dask", dask=cluster.scheduler_address, progress=False)
    assert out.ran == 27 and out.failed == 0
    assert read_table(tmp_path / "dask") == read_table(tmp_path / "local")
    assert (tmp_path / "dask" / "results.csv").read_text() == (tmp_path / "local" / "results.csv").read_text()


@pytest.mark.slow
def test_a_killed_sweep_resumes_where_it_stopped(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(GRID_27, sort_keys=False))
    cmd = [sys.executable, "-m", "archsim", "sweep", str(path), "--workers", "1", "--quiet"]
    proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "cut")], cwd=ROOT, start_new_session=True)
    log = tmp_path / "cut" / POINTS
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 5:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    done = len(log.read_text().splitlines())
    assert proc.returncode == -signal.SIGKILL and 5 <= done < 27, (proc.returncode, done)
    assert not (tmp_path / "cut" / "results.parquet").exists()
    subprocess.run([*cmd, "--out", str(tmp_path / "cut")], cwd=ROOT, check=True, timeout=300)
    subprocess.run([*cmd, "--out", str(tmp_path / "whole")], cwd=ROOT, check=True, timeout=300)
    assert read_table(tmp_path / "cut") == read_table(tmp_path / "whole")
    assert len(log.read_text().splitlines()) == 27
