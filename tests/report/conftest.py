"""A small hand-built Result for the report tests: 3 engines (one without MACs), SRAM, DRAM and a NoC, 11 ops
(one folded, one unmodelled, two overlapping in a fusion group) and a few dozen spans, some overlapping on DRAM."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import pytest

from archsim.result import ComponentStat, EngineStat, OpRecord, Result, Span

CLOCK_MHZ = 500.0
LATENCY = 1000
BATCH = 2
PEAKS = {"mac0": 64, "mac1": 32, "nl0": 0}
TYPES = {"mac0": "mat", "mac1": "rmac", "nl0": "nonlinear"}


def _op(name: str, kind: str, engine: str, start: int, end: int, macs: int, energy: float, **extra: object) -> OpRecord:
    """An op whose traffic follows from its MACs / duration, so every field differs between ops."""
    fields: dict[str, object] = {
        "elements": max(end - start, 0) * 4,
        "dram_read_bytes": 16 * max(end - start, 0),
        "dram_write_bytes": 4 * max(end - start, 0),
        "tiles": 2 if end > start else 0,
        "scope": f"model.{name}",
        "compute_bound_cycles": (end - start) if macs else 0,
        "memory_bound_cycles": (end - start) // 2 if macs else (end - start),
    }
    fields.update(extra)
    return OpRecord(op=name, kind=kind, engine=engine, start_cycle=start, end_cycle=end, macs=macs,
                    energy_pj=energy, **fields)  # type: ignore[arg-type]


OPS: tuple[OpRecord, ...] = (
    _op("patch_embed", "conv2d", "mac0", 0, 200, 9600, 1234.5678),
    _op("patch_embed.bn", "batchnorm", "", 200, 200, 0, 0.0, status="folded", elements=0, dram_read_bytes=0,
        dram_write_bytes=0),
    _op("blocks.0.qkv", "linear", "mac0", 200, 400, 12000, 1500.25, group="g0"),
    _op("blocks.0.attn.qk", "matmul", "mac1", 250, 450, 5000, 700.125, group="g0"),
    _op("blocks.0.attn.softmax", "softmax", "nl0", 450, 520, 0, 80.5),
    _op("blocks.0.attn.av", "matmul", "mac1", 520, 650, 3200, 400.0),
    _op("blocks.0.proj", "linear", "mac0", 650, 800, 8000, 950.75),
    _op("blocks.0.mlp.act", "activation", "nl0", 800, 850, 0, 40.0),
    _op("blocks.0.requant", "requant", "nl0", 850, 900, 0, 10.0),
    _op("aten.weird|op", "other", "", 0, 0, 0, 0.0, status="unmodelled", elements=128, dram_read_bytes=0,
        dram_write_bytes=0),
    _op("head", "linear", "mac0", 900, 1000, 6000, 600.0),
)

_CATEGORY = {"conv2d": "compute", "linear": "compute", "matmul": "compute", "softmax": "nonlinear",
             "activation": "nonlinear", "requant": "requant"}


def _spans(ops: tuple[OpRecord, ...]) -> tuple[Span, ...]:
    """Per simulated op: two compute tiles on its engine, a DRAM read that overlaps a DRAM write of the previous
    tile, and SRAM read/write spans; 6 spans per op plus one NoC transfer."""
    spans: list[Span] = []
    for record in ops:
        if record.status != "simulated":
            continue
        s, e = record.start_cycle, record.end_cycle
        mid = (s + e) // 2
        category = _CATEGORY[record.kind]
        spans += [
            Span(record.engine, s, mid, record.op, category, tile=0, nbytes=0),
            Span(record.engine, mid, e, record.op, category, tile=1, nbytes=0),
            Span("dram", s, mid, record.op, "dram_read", tile=0, nbytes=record.dram_read_bytes),
            Span("dram", s + 5, mid + 5, record.op, "dram_write", tile=0, nbytes=record.dram_write_bytes),
            Span("sram", s, s + 10, record.op, "buffer_read", tile=0, nbytes=64),
            Span("sram", e - 10, e, record.op, "buffer_write", tile=1, nbytes=32),
        ]
    spans.append(Span("noc", 100, 140, "patch_embed", "noc", tile=1, nbytes=256))
    return tuple(spans)


def _engine_stats(ops: tuple[OpRecord, ...]) -> dict[str, EngineStat]:
    """Engine statistics consistent with the ops."""
    stats = {}
    for name, peak in PEAKS.items():
        mine = [r for r in ops if r.engine == name and r.status == "simulated"]
        macs = sum(r.macs for r in mine)
        stats[name] = EngineStat(
            name=name, type=TYPES[name], peak_macs_per_cycle=peak, busy_cycles=sum(r.cycles for r in mine),
            macs=macs, utilization=macs / (peak * LATENCY) if peak else 0.0, ops=len(mine),
        )
    return stats


def build_result() -> Result:
    """The synthetic Result used throughout tests/report."""
    engines = _engine_stats(OPS)
    dram_read = sum(r.dram_read_bytes for r in OPS)
    dram_write = sum(r.dram_write_bytes for r in OPS)
    components = {name: ComponentStat(name, "engine", stat.busy_cycles) for name, stat in engines.items()}
    components["sram"] = ComponentStat("sram", "buffer", 180, read_bytes=9 * 64, write_bytes=9 * 32)
    components["dram"] = ComponentStat("dram", "dram", 640, read_bytes=dram_read, write_bytes=dram_write)
    components["noc"] = ComponentStat("noc", "noc", 40, read_bytes=256, write_bytes=256)
    by_kind: dict[str, float] = {}
    for record in OPS:
        by_kind[record.kind] = by_kind.get(record.kind, 0.0) + record.energy_pj
    return Result(
        model="tiny_vit",
        config="test_accel",
        clock_mhz=CLOCK_MHZ,
        batch=BATCH,
        latency_cycles=LATENCY,
        ops=OPS,
        engines=engines,
        components=components,
        energy_pj_by_component={"mac0": 4285.5678, "mac1": 1100.125, "nl0": 130.5, "sram": 300.1,
                                "dram": 5000.0, "noc": 12.3456789},
        energy_pj_by_op_kind=by_kind,
        spans=_spans(OPS),
        dram_read_bytes=dram_read,
        dram_write_bytes=dram_write,
        events=4321,
        workload_meta={"source": "hand-built", "image_size": (224, 224), "params": 5_700_000, "ratio": 1 / 3},
        notes=("random weights and synthetic inputs", "one | pipe in a note"),
    )


@pytest.fixture()
def result() -> Result:
    """The synthetic Result."""
    return build_result()


@pytest.fixture()
def clean_result() -> Result:
    """The synthetic Result with nothing unmodelled and no notes."""
    base = build_result()
    return replace(base, ops=tuple(r for r in base.ops if r.status != "unmodelled"), notes=())


@pytest.fixture()
def make_result() -> Callable[..., Result]:
    """Build a variant of the synthetic Result with some fields replaced."""
    return lambda **changes: replace(build_result(), **changes)
