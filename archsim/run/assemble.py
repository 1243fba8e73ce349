"""Result assembly: the ledger of a finished run, with the task graph it played, becomes a :class:`Result`."""
from __future__ import annotations

import math

from archsim.config.load import ArchConfig
from archsim.hardware.area import area_of
from archsim.hardware.kind import kind_of, peak_macs
from archsim.kernel.kernel import Simulator
from archsim.mapping.search import label
from archsim.mapping.taskgraph import TaskGraph
from archsim.result import ComponentStat, EngineStat, OpRecord, Result
from archsim.run.runner import Runner
from archsim.run.stalls import attribute, occupancy_series
from archsim.workloads.ir import Workload


def assemble(cfg: ArchConfig, w: Workload, graph: TaskGraph, sim: Simulator, runner: Runner) -> Result:
    """Turn the ledger of a finished run into a Result: per-op records in trace order, per-engine and per-component
    statistics, energy with static power charged over the run, stall attribution and buffer occupancy."""
    ledger = sim.ledger
    latency = max(ledger.op_last.values(), default=0)
    _charge_static(cfg, sim, runner, latency)
    windows = {name: (first, ledger.op_last.get(name, first)) for name, first in ledger.op_first.items()}
    stalls, op_stalls, op_busy = attribute(graph, runner.logs, ledger.spans, cfg.engines, windows, latency)
    dram_bpc = runner.dram.total_bytes_per_cycle
    by_name = {t.name: t for t in graph.tasks}
    skipped = {s.op.name: s for s in graph.skipped}
    records: list[OpRecord] = []
    clock = 0
    for name in graph.order:
        t = by_name.get(name)
        if t is None:
            s = skipped[name]
            records.append(OpRecord(op=name, kind=s.op.kind, engine="", start_cycle=clock, end_cycle=clock, macs=0,
                                    elements=w.tensors[s.op.output].numel, dram_read_bytes=0, dram_write_bytes=0,
                                    energy_pj=0.0, tiles=0, status=s.status, group="", scope=s.op.scope))
            continue
        start, end = ledger.op_first.get(name, 0), ledger.op_last.get(name, 0)
        clock = max(clock, end)
        rd, wr = ledger.op_dram_read.get(name, 0), ledger.op_dram_write.get(name, 0)
        peak = peak_macs(cfg.engines, t.all_engines)
        records.append(OpRecord(
            op=name, kind=t.op.kind, engine="+".join(t.all_engines), start_cycle=start, end_cycle=end,
            macs=t.cost.macs, elements=t.cost.elements, dram_read_bytes=rd, dram_write_bytes=wr,
            energy_pj=ledger.energy_by_op.get(name, 0.0), tiles=t.tiles, group=t.group, scope=t.op.scope,
            compute_bound_cycles=math.ceil(t.cost.macs / peak) if peak else 0,
            memory_bound_cycles=math.ceil((rd + wr) / dram_bpc),
            mapping=label(t), group_loss_cycles=t.slowest.group_loss, group_loss=t.slowest.group_loss_why,
            busy_cycles=op_busy.get(name, 0), stalls=op_stalls.get(name, {}),
            inputs=tuple(d for d in t.deps if d in by_name),
        ))
        rq = t.requant
        if rq is not None:
            records.append(OpRecord(
                op=rq.name, kind="requant", engine=rq.engine, start_cycle=ledger.op_first.get(rq.name, end),
                end_cycle=ledger.op_last.get(rq.name, end), macs=0, elements=rq.elements, dram_read_bytes=0,
                dram_write_bytes=0, energy_pj=ledger.energy_by_op.get(rq.name, 0.0), tiles=t.tiles, group=t.group,
                scope=t.op.scope, busy_cycles=op_busy.get(rq.name, 0), stalls=op_stalls.get(rq.name, {}),
                inputs=(name,),
            ))
    engines: dict[str, EngineStat] = {}
    for name, ecfg in cfg.engines.items():
        kind = kind_of(ecfg)
        macs = sum(p.macs for t in graph.tasks for p in (*t.parts, *t.tail) if p.engine == name)
        peak = kind.peak_macs_per_cycle(ecfg)
        n_ops = sum(1 for t in graph.tasks if name in t.all_engines) + sum(
            1 for t in graph.tasks if t.requant is not None and t.requant.engine == name)
        engines[name] = EngineStat(name=name, type=ecfg.type, peak_macs_per_cycle=peak, busy_cycles=ledger.busy.get(name, 0),
                                   macs=macs, utilization=macs / (peak * latency) if peak and latency else 0.0, ops=n_ops,
                                   adder_tree=bool(peak) and not kind.counts_in_peak(ecfg))
    components = {
        name: ComponentStat(name=name, type=_component_type(cfg, name), busy_cycles=busy,
                            read_bytes=ledger.read_bytes.get(name, 0), write_bytes=ledger.write_bytes.get(name, 0))
        for name, busy in sorted(ledger.busy.items())
    }
    notes = list(graph.notes)
    meta = dict(w.meta)
    if meta.get("weights", "random") == "random" and meta.get("source") != "yaml":
        notes.append("random weights and synthetic input: latency and energy depend only on shapes and bit widths")
    area = area_of(cfg)
    return Result(
        model=str(meta.get("model", w.name)), config=cfg.name, clock_mhz=cfg.clock_mhz,
        batch=int(meta.get("batch", 1)), latency_cycles=latency, ops=tuple(records), engines=engines,
        components=components, energy_pj_by_component=ledger.energy_by_component(),
        energy_pj_by_op_kind=ledger.energy_by_op_kind(), energy_pj_by_component_kind=ledger.energy_by_component_kind(),
        spans=ledger.frozen_spans(),
        dram_read_bytes=sum(ledger.op_dram_read.values()), dram_write_bytes=sum(ledger.op_dram_write.values()),
        events=_events(sim), workload_meta=meta, notes=tuple(notes),
        area_mm2=area.total_mm2, area_by_component=area.by_component, area_source=area.source,
        stalls=stalls, counters=occupancy_series(ledger.occupancy, cfg.buffers),
    )


def _charge_static(cfg: ArchConfig, sim: Simulator, runner: Runner, latency: int) -> None:
    """Static (leakage) energy: each component's static power over the whole run (mW x ns = pJ)."""
    ns = sim.ns(latency)
    items = [(name, e.static_mw) for name, e in cfg.engines.items()]
    items += [(name, b.static_mw) for name, b in cfg.buffers.items()]
    items += [(ch, cfg.dram.static_mw / cfg.dram.channels) for ch in runner.dram.channel_names]
    items += [("noc", cfg.noc.static_mw)]
    for name, mw in items:
        sim.ledger.charge(name, "(static)", "static", mw * ns)


def _component_type(cfg: ArchConfig, name: str) -> str:
    if name in cfg.engines:
        return cfg.engines[name].type
    if name in cfg.buffers:
        return "sram"
    if name.startswith("dram"):
        return "dram"
    if name.startswith("noc"):
        return "noc"
    return "other"


def _events(sim: Simulator) -> int:
    """Events the SimPy kernel processed (every event scheduled is processed: a run ends on an empty queue)."""
    return sim.env.events
