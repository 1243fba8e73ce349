"""The mapper's search (``mapping.search``): each op's dataflow on each of its engines, and each fusion group's tile
count, chosen by ``mapping.objective`` (latency, energy or their product, EDP).

- ``fixed``: every engine's own closed-form loop nest and the fewest tiles that fit the buffers.
- ``exhaustive``: every dataflow the engine kind offers (:meth:`EngineKind.dataflows`: how processing groups share
  the work, what the multipliers reduce over) and every multiple of the fewest tiles up to the group's row count,
  each at most ``mapping.budget`` candidates.
- ``heuristic``: the same dataflows, and tile counts doubled from the fewest while the estimate improves.

The fixed choice is always a candidate and wins ties, so a search never picks a mapping its objective rates worse
than ``fixed``. Dataflows are scored with the engine kind's cost model (cycles, and compute plus buffer-read energy);
tile counts with :func:`group_cycles`, a closed-form estimate of a fusion group's tile pipeline (fill, then the
slowest stage or the shared DRAM once per tile). An op's cycles and energy only grow the group's, so choosing the
dataflows first and the tiles second is exact for latency and for energy; for EDP it is the usual coordinate step.

A :class:`Mapper` holds the search's cache, keyed by op shape, operand widths and the engine's whole config, so one
mapper may be reused across runs and configs (a sweep); the default is one per :func:`build_taskgraph` call.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

from archsim.config.schema import EngineBase
from archsim.hardware.kind import Dataflow, OpCost, kind_of
from archsim.workloads.geometry import Depthwise, Gemm, geometry
from archsim.workloads.ir import Op, Tensor

if TYPE_CHECKING:
    from archsim.config.load import ArchConfig
    from archsim.mapping.taskgraph import Task


@dataclass(frozen=True, slots=True)
class Choice:
    """The mapper's pick for one engine's part of an op: its cost, dataflow (None: the engine's fixed one) and
    how many candidates were evaluated."""

    cost: OpCost
    dataflow: Dataflow | None
    evaluated: int


def _score(objective: str, cycles: float, energy: float) -> tuple[float, float]:
    """Lower is better; the second element breaks ties."""
    if objective == "energy":
        return energy, cycles
    if objective == "edp":
        return cycles * energy, cycles
    return cycles, energy


def op_score(cfg: ArchConfig, c: OpCost, sharing: int = 1) -> tuple[float, float]:
    """How ``mapping.objective`` rates one engine's cost of an op (lower is better). Its cycles are the engine's
    or its operand reads from the buffers, whichever is longer: it computes while they stream in, activations then
    weights as the runner fetches them, through ports that ``sharing`` engines running parts of the same op share.
    Its energy is the compute energy plus the buffer reads."""
    act_pj, wgt_pj = _read_pj(cfg)
    act_rate, wgt_rate = (rate / sharing for rate in _read_rates(cfg))
    cycles = max(c.cycles, c.act_read_bytes / act_rate + c.weight_read_bytes / wgt_rate)
    energy = c.energy_pj + c.act_read_bytes * 8 * act_pj + c.weight_read_bytes * 8 * wgt_pj
    return _score(cfg.mapping.objective, cycles, energy)


def group_cycles(cfg: ArchConfig, group: Sequence[Task], tiles: int) -> float:
    """The tile-pipeline estimate the search rates a fusion group's tile count by (:meth:`_PipelineModel.cycles`)."""
    return _PipelineModel.of(cfg).cycles(group, tiles)


@dataclass
class Mapper:
    """Searches mappings for one config at a time; its cache outlives a run when the caller keeps the mapper."""

    cache: dict[tuple[object, ...], Choice] = field(default_factory=dict)
    _engine_keys: dict[int, str] = field(default_factory=dict)
    dataflows_scored: int = 0  # dataflow candidates costed (cache hits excluded; benchmarks/mapper_speed.py)
    tilings_scored: int = 0  # tile-count candidates estimated

    def _engine_key(self, ecfg: EngineBase) -> str:
        key = self._engine_keys.get(id(ecfg))
        if key is None:
            key = self._engine_keys[id(ecfg)] = ecfg.model_dump_json()
        return key

    def dataflow(self, cfg: ArchConfig, engine: str, op: Op, tensors: Mapping[str, Tensor], cls: str,
                 share: Gemm | Depthwise | None = None, sharing: int = 1) -> Choice:
        """The best dataflow of ``op`` (or ``share``) on ``engine`` by the config's objective; ``sharing`` engines
        run parts of the op at once and share the buffer ports."""
        ecfg = cfg.engines[engine]
        kind = kind_of(ecfg)
        m = cfg.mapping
        options = kind.dataflows(ecfg, op, tensors, share) if m.search != "fixed" else ()
        if not options:
            return Choice(kind.cost(ecfg, op, tensors, cls, share), None, 1)
        geom = share if share is not None else geometry(op, tensors)
        w_name = op.weights[0] if op.weights else (op.inputs[1] if len(op.inputs) > 1 else op.inputs[0])
        key = (self._engine_key(ecfg), kind.name, op.kind, cls, geom, tensors[op.inputs[0]].bits,
               tensors[w_name].bits, tensors[op.output].bits, bool(op.weights), m.objective, m.search, m.budget,
               _read_pj(cfg), _read_rates(cfg), sharing)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        best_cost = kind.cost(ecfg, op, tensors, cls, share)
        best: tuple[tuple[float, float], OpCost, Dataflow | None] = (op_score(cfg, best_cost, sharing), best_cost,
                                                                     None)
        evaluated = 1
        for df in options[: m.budget]:
            c = kind.cost(ecfg, op, tensors, cls, share, dataflow=df)  # type: ignore[call-arg]
            evaluated += 1
            s = op_score(cfg, c, sharing)
            if s < best[0] or (s == best[0] and best[2] is None):  # an equal option names the fixed choice
                best = (s, c, df)
        self.dataflows_scored += evaluated
        choice = Choice(best[1], best[2], evaluated)
        self.cache[key] = choice
        return choice

    def tiles(self, cfg: ArchConfig, group: Sequence[Task], fewest: int, most: int) -> tuple[int, int]:
        """(tile count, candidates evaluated) for a fusion group that needs at least ``fewest`` tiles and can be cut
        into at most ``most`` (its smallest row count)."""
        m = cfg.mapping
        if m.search == "fixed" or most <= fewest or m.objective == "energy":  # tiles cost no energy: fewest wins
            return fewest, 1
        model = _PipelineModel.of(cfg)
        best = (model.cycles(group, fewest), fewest)
        evaluated = 1
        n = fewest
        while evaluated < m.budget:
            n = n * 2 if m.search == "heuristic" else n + fewest
            if n > most:
                break
            c = model.cycles(group, n)
            evaluated += 1
            if c < best[0]:
                best = (c, n)
            elif m.search == "heuristic":
                break
        self.tilings_scored += evaluated
        return best[1], evaluated


def _read_rates(cfg: ArchConfig) -> tuple[float, float]:
    """Bytes per cycle an engine can read from the activation and the weight buffer (port or NoC link)."""
    link = cfg.noc.bytes_per_cycle
    return (min(cfg.buffers[cfg.buffer_for("activation")].bytes_per_cycle, link),
            min(cfg.buffers[cfg.buffer_for("weight")].bytes_per_cycle, link))


def _read_pj(cfg: ArchConfig) -> tuple[float, float]:
    """pJ per bit read from the activation and the weight buffer."""
    return (cfg.buffers[cfg.buffer_for("activation")].read_pj_per_bit,
            cfg.buffers[cfg.buffer_for("weight")].read_pj_per_bit)


@dataclass(frozen=True, slots=True)
class _PipelineModel:
    """The constants :func:`group_cycles` needs from a config."""

    dram_bytes_per_cycle: float
    dram_latency: int
    act_bytes_per_cycle: float
    wgt_bytes_per_cycle: float
    stream_bytes_per_cycle: float
    noc_bytes_per_cycle: float
    access_latency: int  # a transfer's fixed delay on chip: NoC hops and the buffer's response
    double_buffering: bool
    intra_layer: bool

    @classmethod
    def of(cls, cfg: ArchConfig) -> "_PipelineModel":
        d = cfg.dram
        row = d.row_buffer
        latency = cfg.ns_to_cycles(d.latency_ns + (row.trcd_ns + row.tcl_ns if row else 0.0))
        act = cfg.buffers[cfg.buffer_for("activation")]
        stream = cfg.stream_buffer()
        p = cfg.mapping.pipeline
        return cls(
            dram_bytes_per_cycle=d.bandwidth_gbps * 1e9 / (cfg.clock_mhz * 1e6) * d.channels,
            dram_latency=latency,
            act_bytes_per_cycle=act.bytes_per_cycle,
            wgt_bytes_per_cycle=cfg.buffers[cfg.buffer_for("weight")].bytes_per_cycle,
            stream_bytes_per_cycle=cfg.buffers[stream].bytes_per_cycle if stream else act.bytes_per_cycle,
            noc_bytes_per_cycle=cfg.noc.bytes_per_cycle,
            access_latency=cfg.noc.hop_latency_cycles + 1,
            double_buffering=p.double_buffering,
            intra_layer=p.intra_layer,
        )

    def cycles(self, group: Sequence[Task], n: int) -> float:
        """Estimated cycles of ``group`` cut into ``n`` tiles: the first tile through every stage of the chain, then
        one tile per slowest stage (or per the group's DRAM traffic, which all its stages share), plus a tail.

        Per task and tile: load = DRAM bytes / bandwidth + the DRAM latency per transfer; compute = the slowest
        part's cycles or the operand reads from the buffers, whichever is longer; write-back = re-quantization plus
        DRAM or buffer write. Without double buffering a tile's load and compute run in sequence; without the
        intra-layer pipeline its compute and write-back do."""
        fill = 0.0
        load_fill = 0.0
        slowest = 0.0
        dram = 0.0
        tail = 0
        for t in group:
            load_bytes = t.weight_dram_bytes + t.act_dram_bytes
            transfers = (t.weight_dram_bytes > 0) + (t.act_dram_bytes > 0)
            load = load_bytes / n / self.dram_bytes_per_cycle + transfers * (self.dram_latency + self.access_latency)
            sharing = len(t.parts)  # the parts of a split op read through the same buffer ports
            fetch = (t.cost.act_read_bytes / n / min(self.act_bytes_per_cycle / sharing, self.noc_bytes_per_cycle)
                     + t.cost.weight_read_bytes / n / min(self.wgt_bytes_per_cycle / sharing, self.noc_bytes_per_cycle))
            if fetch:
                fetch += self.access_latency
            compute = max(max(p.cycles for p in t.parts) / n, fetch)
            write = (t.requant.cycles / n) if t.requant is not None else 0.0
            if t.out_dram_bytes:
                write += t.out_dram_bytes / n / self.dram_bytes_per_cycle + self.dram_latency
            elif t.stream_out or t.resident_out:
                buf = self.stream_bytes_per_cycle if t.stream_out else self.act_bytes_per_cycle
                write += t.cost.write_bytes / n / min(buf, self.noc_bytes_per_cycle) + self.access_latency
            stages = [load, compute, write]
            if not self.double_buffering:
                stages = [load + compute, write]
            if not self.intra_layer:
                stages = [*stages[:-2], stages[-2] + stages[-1]]
            load_fill = max(load_fill, load)
            fill += compute + write
            slowest = max(slowest, *stages)
            dram += (load_bytes + t.out_dram_bytes) / n / self.dram_bytes_per_cycle
            tail = max(tail, max((p.cycles for p in t.tail), default=0))
        return load_fill + fill + (n - 1) * max(slowest, dram) + tail


def most_tiles(group: Sequence[Task], tensors: Mapping[str, Tensor]) -> int:
    """The most tiles a group can be cut into: its ops' smallest output row count (pixels or tokens)."""
    return min(output_rows(t.op, tensors) for t in group)


def output_rows(op: Op, tensors: Mapping[str, Tensor]) -> int:
    """How many independent output rows (pixels or tokens) an op's output can be cut into."""
    shape = tensors[op.output].shape
    if op.kind == "conv2d" and len(shape) == 4:
        return shape[0] * shape[2] * shape[3]
    return max(1, math.prod(shape[:-1])) if len(shape) > 1 else 1


def label(t: Task) -> str:
    """The chosen mapping of a task in one line: each engine's dataflow, tiles, loop order, where the output goes."""
    flows = [f"{p.engine}[{p.dataflow}]" if p.dataflow else p.engine for p in t.parts]
    out = "fifo" if t.stream_out else "chip" if t.resident_out else "dram"
    parts = [" + ".join(flows), f"tiles={t.tiles}"]
    if t.order:
        parts.append(f"order={t.order}")
    parts.append(f"out={out}")
    return " ".join(parts)


__all__ = ["Choice", "Mapper", "group_cycles", "label", "most_tiles", "op_score", "output_rows"]
