"""archsim's ``systolic`` engine kind against SCALE-Sim: compute cycles of DeiT-S and EfficientViT-B1 GEMMs on a
32x32 array in each dataflow.

    python benchmarks/systolic_parity.py --setup     # once: SCALE-Sim in its own venv (it needs numpy < 2)
    python benchmarks/systolic_parity.py             # prints the parity table
    python benchmarks/systolic_parity.py --record    # ... and rewrites tests/data/scalesim/reference.json

SCALE-Sim (``pip install scalesim``) lives in ``~/.cache/archsim/scalesim-venv`` (``--venv`` to change it), created
by ``--setup`` or by hand::

    python -m venv ~/.cache/archsim/scalesim-venv
    ~/.cache/archsim/scalesim-venv/bin/pip install scalesim "numpy<2"

The layers are taken from archsim's own traces (``--model deit_small`` and ``efficientvit_b1``, random weights,
cached like ``archsim run``): DeiT-S block 0's qkv, proj, fc1, fc2 and one head of its attention matmuls (197
tokens), and six 1x1 convs of EfficientViT-B1 as GEMMs (M = output pixels, K = input channels, N = output
channels). They are written as a SCALE-Sim GEMM topology and run once per dataflow with
``python -m scalesim.scale -c CFG -t TOPO -l LAYOUT -p OUTDIR -i gemm -s N`` (``-l``: an empty layout file, which
SCALE-Sim requires; ``-s N``: no trace files) in ``CALC`` bandwidth mode, where SCALE-Sim assumes the bandwidth that
never stalls the array, so its "Total Cycles" are compute cycles. archsim prices the same GEMMs with
``SystolicKind.cost``. SCALE-Sim reports the 0-based index of a layer's last cycle; archsim counts cycles, one more.
The table's last row gives both wall times for all layers and dataflows: SCALE-Sim's three runs (started at once,
one per dataflow) and archsim's cost calls (the traces are loaded before either clock starts).
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archsim.hardware.kind import kind_of  # noqa: E402
from archsim.hardware.systolic import SystolicDataflow, SystolicEngine, counts  # noqa: E402
from archsim.workloads.geometry import Gemm, geometry  # noqa: E402
from archsim.workloads.ir import Op, Tensor  # noqa: E402

VENV = Path.home() / ".cache" / "archsim" / "scalesim-venv"
REFERENCE = ROOT / "tests" / "data" / "scalesim" / "reference.json"
DATAFLOWS: tuple[SystolicDataflow, ...] = ("os", "ws", "is")
ROWS = COLS = 32
TOLERANCE = 0.02  # archsim within 2 % of SCALE-Sim's compute cycles

#: (label, model, op name): DeiT-S block 0 and 1x1 convs of EfficientViT-B1 from each stage and the head
LAYERS: tuple[tuple[str, str, str], ...] = (
    ("deit_s.qkv", "deit_small", "blocks.0.attn.qkv.addmm"),
    ("deit_s.attn_qk", "deit_small", "blocks.0.attn.sdpa_qk"),
    ("deit_s.attn_av", "deit_small", "blocks.0.attn.sdpa_av"),
    ("deit_s.proj", "deit_small", "blocks.0.attn.proj.addmm"),
    ("deit_s.fc1", "deit_small", "blocks.0.mlp.fc1.addmm"),
    ("deit_s.fc2", "deit_small", "blocks.0.mlp.fc2.addmm"),
    ("effvit_b1.s0b1_expand", "efficientvit_b1", "stages.0.blocks.1.main.inverted_conv.conv.convolution"),
    ("effvit_b1.s1b1_project", "efficientvit_b1", "stages.1.blocks.1.main.point_conv.conv.convolution"),
    ("effvit_b1.s2b1_qkv", "efficientvit_b1", "stages.2.blocks.1.context_module.main.qkv.conv.convolution"),
    ("effvit_b1.s2b1_expand", "efficientvit_b1",
     "stages.2.blocks.1.local_module.main.inverted_conv.conv.convolution"),
    ("effvit_b1.s3b1_project", "efficientvit_b1", "stages.3.blocks.1.local_module.main.point_conv.conv.convolution"),
    ("effvit_b1.head", "efficientvit_b1", "head.in_conv.conv.convolution"),
)

#: SCALE-Sim's config: the example configs/scale.cfg (32x32, 64 kB SRAMs) in CALC bandwidth mode, no custom
#: layout, no sparsity (every key its version 3 parser reads)
SCALESIM_CFG = """[general]
run_name = archsim_parity_{df}

[architecture_presets]
ArrayHeight:    {rows}
ArrayWidth:     {cols}
IfmapSramSzkB:   64
FilterSramSzkB:  64
OfmapSramSzkB:   64
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Bandwidth : 10
Dataflow : {df}
MemoryBanks:   1
ReadRequestBuffer: 512
WriteRequestBuffer: 512

[layout]
IfmapCustomLayout: False
FilterCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


@dataclass(frozen=True)
class Layer:
    """One GEMM of the topology: (m x k) @ (k x n), and the traced op it is (one head of a matmul)."""

    label: str
    model: str
    op: str
    m: int
    n: int
    k: int


@dataclass(frozen=True)
class ScaleSimRow:
    """What SCALE-Sim reports for one layer in one dataflow."""

    cycles: int  # COMPUTE_REPORT "Total Cycles": the 0-based index of the layer's last compute cycle
    stall_cycles: int
    ifmap_reads: int  # DETAILED_ACCESS_REPORT "SRAM IFMAP Reads"
    filter_reads: int
    ofmap_writes: int


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def setup(venv: Path) -> None:
    """Create the venv and install SCALE-Sim with the numpy it needs."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "scalesim", "numpy<2"], check=True)


def scalesim_version(venv: Path) -> str:
    out = subprocess.run([str(venv_python(venv)), "-c",
                          "import importlib.metadata as m; print(m.version('scalesim'), m.version('numpy'))"],
                         check=True, capture_output=True, text=True).stdout.split()
    return f"scalesim {out[0]} (numpy {out[1]})"


def trace_layers() -> list[Layer]:
    """The GEMMs of :data:`LAYERS` from archsim's traces (one head of a multi-head matmul)."""
    from archsim.workloads.zoo import trace_model

    out: list[Layer] = []
    workloads = {model: trace_model(model) for model in dict.fromkeys(m for _, m, _ in LAYERS)}
    for label, model, name in LAYERS:
        w = workloads[model]
        op = next(o for o in w.ops if o.name == name)
        g = geometry(op, w.tensors)
        assert isinstance(g, Gemm) and g.taps == 1, (name, g)
        out.append(Layer(label, model, name, g.m, g.n, g.k))
    return out


def gemm_op(layer: Layer) -> tuple[Op, dict[str, Tensor]]:
    """A stand-alone 8-bit linear op of the layer's GEMM shape (what archsim's cost model sees of it)."""
    ts = {t.name: t for t in (Tensor("x", (layer.m, layer.k)), Tensor("w", (layer.n, layer.k), is_weight=True),
                              Tensor("y", (layer.m, layer.n)))}
    return Op(layer.label, "linear", ("x",), "y", ("w",), macs=layer.m * layer.k * layer.n), ts


def archsim_cycles(layers: Sequence[Layer], rows: int = ROWS, cols: int = COLS) -> dict[tuple[str, str], int]:
    """archsim's cycles of every layer in every dataflow, through the registered kind's cost model."""
    out: dict[tuple[str, str], int] = {}
    for df in DATAFLOWS:
        cfg = SystolicEngine(rows=rows, cols=cols, dataflow=df)
        kind = kind_of(cfg)
        for layer in layers:
            op, ts = gemm_op(layer)
            out[layer.label, df] = kind.cost(cfg, op, ts, op.kind).cycles
    return out


def write_inputs(layers: Sequence[Layer], work: Path) -> None:
    """SCALE-Sim's GEMM topology (Layer, M, N, K), an empty layout file and one config per dataflow."""
    rows = ["Layer, M, N, K,"] + [f"{x.label}, {x.m}, {x.n}, {x.k}," for x in layers]
    (work / "topology.csv").write_text("\n".join(rows) + "\n")
    (work / "layout.csv").write_text("Layer,\n")
    for df in DATAFLOWS:
        (work / f"scale_{df}.cfg").write_text(SCALESIM_CFG.format(df=df, rows=ROWS, cols=COLS))


def scalesim_command(venv: Path, work: Path, df: str) -> list[str]:
    return [str(venv_python(venv)), "-m", "scalesim.scale", "-c", str(work / f"scale_{df}.cfg"),
            "-t", str(work / "topology.csv"), "-l", str(work / "layout.csv"), "-p", str(work / "out"),
            "-i", "gemm", "-s", "N"]


def _report(path: Path) -> list[list[str]]:
    with path.open() as f:
        return [[cell.strip() for cell in row] for row in csv.reader(f)][1:]


def run_scalesim(venv: Path, layers: Sequence[Layer], work: Path) -> dict[tuple[str, str], ScaleSimRow]:
    """Run SCALE-Sim once per dataflow, the three runs at once, and read its compute and access reports."""
    write_inputs(layers, work)
    logs = {df: work / f"scalesim_{df}.log" for df in DATAFLOWS}  # its progress bars and messages
    runs = {}
    for df in DATAFLOWS:
        with logs[df].open("w") as log:
            runs[df] = subprocess.Popen(scalesim_command(venv, work, df), stdout=log, stderr=subprocess.STDOUT)
    out: dict[tuple[str, str], ScaleSimRow] = {}
    for df in DATAFLOWS:
        if runs[df].wait():
            last = (logs[df].read_text().strip().splitlines() or ["no message"])[-1]
            raise SystemExit(f"systolic_parity: SCALE-Sim failed ({df}): {last}")
        report = work / "out" / f"archsim_parity_{df}"
        compute, access = _report(report / "COMPUTE_REPORT.csv"), _report(report / "DETAILED_ACCESS_REPORT.csv")
        for layer, c, a in zip(layers, compute, access):
            out[layer.label, df] = ScaleSimRow(cycles=int(c[2]), stall_cycles=int(c[3]), ifmap_reads=int(a[3]),
                                               filter_reads=int(a[6]), ofmap_writes=int(a[9]))
    return out


def access_mismatches(layers: Sequence[Layer], ref: Mapping[tuple[str, str], ScaleSimRow]) -> list[str]:
    """Layers whose SRAM element accesses differ from SCALE-Sim's. SCALE-Sim's OS ofmap count adds rows + cols
    per fold on top of the outputs (compute/systolic_compute_os.py, create_ofmap_demand_mat); that is taken off."""
    bad = []
    for df in DATAFLOWS:
        cfg = SystolicEngine(rows=ROWS, cols=COLS, dataflow=df)
        for layer in layers:
            c = counts(cfg, Gemm(1, layer.m, layer.k, layer.n))
            r = ref[layer.label, df]
            extra = c.folds * (ROWS + COLS) if df == "os" else 0
            ours = (c.ifmap_reads, c.filter_reads, c.output_writes + c.psum_writes + extra)
            if ours != (r.ifmap_reads, r.filter_reads, r.ofmap_writes):
                bad.append(f"{layer.label}/{df}: archsim {ours}, SCALE-Sim "
                           f"{(r.ifmap_reads, r.filter_reads, r.ofmap_writes)}")
    return bad


def table(layers: Sequence[Layer], ref: Mapping[tuple[str, str], ScaleSimRow], ours: Mapping[tuple[str, str], int],
          scalesim_s: float, archsim_s: float) -> tuple[str, float]:
    """The Markdown parity table and the largest relative deviation."""
    lines = ["| layer | M | N | K | dataflow | SCALE-Sim compute cycles | archsim cycles | ratio |",
             "|---|---:|---:|---:|---|---:|---:|---:|"]
    worst = 0.0
    for layer in layers:
        for df in DATAFLOWS:
            s, a = ref[layer.label, df].cycles, ours[layer.label, df]
            worst = max(worst, abs(a / s - 1))
            lines.append(f"| {layer.label} | {layer.m} | {layer.n} | {layer.k} | {df} | {s:,} | {a:,} | {a / s:.5f} |")
    lines.append(f"| wall time, all layers and dataflows | | | | | {scalesim_s:.1f} s | {archsim_s * 1e3:.2f} ms | |")
    return "\n".join(lines), worst


def record(path: Path, layers: Sequence[Layer], ref: Mapping[tuple[str, str], ScaleSimRow], version: str) -> None:
    """Write SCALE-Sim's figures with what produced them, for tests that run without SCALE-Sim."""
    data = {
        "scalesim": version,
        "source": "SCALE-Sim from PyPI (pip install scalesim), github.com/scalesim-project/scale-sim-v3; Samajdar "
                  "et al., ISPASS 2020",
        "command": "python benchmarks/systolic_parity.py --record, which runs for each dataflow DF in os, ws, is: "
                   "VENV/bin/python -m scalesim.scale -c TMP/scale_DF.cfg -t TMP/topology.csv -l TMP/layout.csv "
                   "-p TMP/out -i gemm -s N",
        "array": {"rows": ROWS, "cols": COLS},
        "config": SCALESIM_CFG.format(df="{os,ws,is}", rows=ROWS, cols=COLS),
        "cycles_are": "COMPUTE_REPORT.csv 'Total Cycles' (CALC bandwidth mode, no stalls): the 0-based index of "
                      "the last compute cycle",
        "layers": [{"label": x.label, "model": x.model, "op": x.op, "m": x.m, "n": x.n, "k": x.k,
                    **{df: vars(ref[x.label, df]) for df in DATAFLOWS}} for x in layers],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, default=VENV, help=f"SCALE-Sim's venv (default {VENV})")
    parser.add_argument("--setup", action="store_true", help="create the venv and install SCALE-Sim into it first")
    parser.add_argument("--record", nargs="?", type=Path, const=REFERENCE, default=None, metavar="JSON",
                        help=f"write SCALE-Sim's figures to JSON (default {REFERENCE.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    if args.setup:
        setup(args.venv)
    if not venv_python(args.venv).exists():
        print(f"systolic_parity: no SCALE-Sim venv at {args.venv}; create it with "
              f"`python benchmarks/systolic_parity.py --setup`", file=sys.stderr)
        return 2
    version = scalesim_version(args.venv)
    layers = trace_layers()
    with tempfile.TemporaryDirectory(prefix="scalesim-") as tmp:
        start = time.perf_counter()
        ref = run_scalesim(args.venv, layers, Path(tmp))
        scalesim_s = time.perf_counter() - start
    start = time.perf_counter()
    ours = archsim_cycles(layers)
    archsim_s = time.perf_counter() - start
    text, worst = table(layers, ref, ours, scalesim_s, archsim_s)
    stalls = sum(r.stall_cycles for r in ref.values())
    bad = access_mismatches(layers, ref)
    print(f"{version}, {ROWS}x{COLS} array; archsim's largest deviation {worst:.4%} (target {TOLERANCE:.0%}); "
          f"SCALE-Sim stall cycles {stalls}; SRAM accesses equal SCALE-Sim's in "
          f"{len(ref) - len(bad)} of {len(ref)} layer-dataflows\n")
    print(text)
    for line in bad:
        print("access mismatch:", line)
    if args.record is not None:
        record(args.record, layers, ref, version)
        print(f"\nrecorded {args.record}")
    return 0 if worst <= TOLERANCE and not bad and not stalls else 1


if __name__ == "__main__":
    raise SystemExit(main())
