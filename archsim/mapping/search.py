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
    return _op_score(_Facts.of(cfg), c, sharing)


def _op_score(facts: _Facts, c: OpCost, sharing: int) -> tuple[float, float]:
    act_pj, wgt_pj = facts.read_pj
    act_rate, wgt_rate = (rate / sharing for rate in facts.read_rates)
    cycles = max(c.cycles, c.act_read_bytes / act_rate + c.weight_read_bytes / wgt_rate)
    energy = c.energy_pj + c.act_read_bytes * 8 * act_pj + c.weight_read_bytes * 8 * wgt_pj
    return _score(facts.objective, cycles, energy)


def group_cycles(cfg: ArchConfig, group: Sequence[Task], tiles: int) -> float:
    """The tile-pipeline estimate the search rates a fusion group's tile count by (:meth:`_PipelineModel.cycles`)."""
    return _PipelineModel.of(cfg).cycles(group, tiles)


@dataclass
class Mapper:
    """Searches mappings for one config at a time; its cache outlives a run when the caller keeps the mapper."""

    cache: dict[tuple[object, ...], Choice] = field(default_factory=dict)
    # by id(); each entry keeps its object alive, so an id is never reused while its entry exists
    _engine_keys: dict[int, tuple[EngineBase, str]] = field(default_factory=dict)
    _facts: dict[int, tuple[ArchConfig, _Facts]] = field(default_factory=dict)
    dataflows_scored: int = 0  # dataflow candidates costed (cache hits excluded; benchmarks/mapper_speed.py)
    tilings_scored: int = 0  # tile-count candidates estimated

    def _engine_key(self, ecfg: EngineBase) -> str:
        hit = self._engine_keys.get(id(ecfg))
        if hit is None or hit[0] is not ecfg:
            hit = self._engine_keys[id(ecfg)] = (ecfg, ecfg.model_dump_json())
        return hit[1]

    def facts(self, cfg: ArchConfig) -> _Facts:
        """The figures of ``cfg`` the search reads for every op and tile count, derived once per config."""
        hit = self._facts.get(id(cfg))
        if hit is None or hit[0] is not cfg:
            hit = self._facts[id(cfg)] = (cfg, _Facts.of(cfg))
        return hit[1]

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
        facts = self.facts(cfg)
        geom = share if share is not None else geometry(op, tensors)
        w_name = op.weights[0] if op.weights else (op.inputs[1] if len(op.inputs) > 1 else op.inputs[0])
        key = (self._engine_key(ecfg), kind.name, op.kind, cls, geom, tensors[op.inputs[0]].bits,
               tensors[w_name].bits, tensors[op.output].bits, bool(op.weights), m.objective, m.search, m.budget,
               facts.read_pj, facts.read_rates, sharing)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        best_cost = kind.cost(ecfg, op, tensors, cls, share)
        best: tuple[tuple[float, float], OpCost, Dataflow | None] = (_op_score(facts, best_cost, sharing), best_cost,
                                                                     None)
        evaluated = 1
        for df in options[: m.budget]:
            c = kind.cost(ecfg, op, tensors, cls, share, dataflow=df)  # type: ignore[call-arg]
            evaluated += 1
            s = _op_score(facts, c, sharing)
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
        estimate = self.facts(cfg).pipeline.terms(group)
        best = (estimate(fewest), fewest)
        evaluated = 1
        n = fewest
        while evaluated < m.budget:
            n = n * 2 if m.search == "heuristic" else n + fewest
            if n > most:
                break
            c = estimate(n)
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
class _Facts:
    """What the search reads of a config for every op and tile count (:meth:`Mapper.facts` keeps one per config)."""

    objective: str
    read_pj: tuple[float, float]
    read_rates: tuple[float, float]
    pipeline: _PipelineModel

    @classmethod
    def of(cls, cfg: ArchConfig) -> "_Facts":
        return cls(cfg.mapping.objective, _read_pj(cfg), _read_rates(cfg), _PipelineModel.of(cfg))


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
        return self.terms(group)(n)

    def terms(self, group: Sequence[Task]) -> _GroupTerms:
        """:meth:`cycles` of ``group`` as a function of the tile count, with what does not depend on it worked out
        once (the search rates several tile counts of each group)."""
        rows = []
        for t in group:
            load_bytes = t.weight_dram_bytes + t.act_dram_bytes
            transfers = (t.weight_dram_bytes > 0) + (t.act_dram_bytes > 0)
            sharing = len(t.parts)  # the parts of a split op read through the same buffer ports
            write_rate = None
            if not t.out_dram_bytes and (t.stream_out or t.resident_out):
                buf = self.stream_bytes_per_cycle if t.stream_out else self.act_bytes_per_cycle
                write_rate = min(buf, self.noc_bytes_per_cycle)
            rows.append((
                load_bytes, transfers * (self.dram_latency + self.access_latency),
                t.cost.act_read_bytes, min(self.act_bytes_per_cycle / sharing, self.noc_bytes_per_cycle),
                t.cost.weight_read_bytes, min(self.wgt_bytes_per_cycle / sharing, self.noc_bytes_per_cycle),
                max(p.cycles for p in t.parts), t.requant.cycles if t.requant is not None else None,
                t.out_dram_bytes, t.cost.write_bytes, write_rate, max((p.cycles for p in t.tail), default=0),
            ))
        return _GroupTerms(self, rows)


class _GroupTerms:
    """One group's terms of :meth:`_PipelineModel.cycles`; calling it with a tile count gives the estimate."""

    __slots__ = ("model", "rows")

    def __init__(self, model: _PipelineModel, rows: list[tuple[int, int, int, float, int, float, int, int | None,
                                                               int, int, float | None, int]]) -> None:
        self.model = model
        self.rows = rows

    def __call__(self, n: int) -> float:
        m = self.model
        dram_rate, dram_latency, access_latency = m.dram_bytes_per_cycle, m.dram_latency, m.access_latency
        fill = 0.0
        load_fill = 0.0
        slowest = 0.0
        dram = 0.0
        tail = 0
        for (load_bytes, load_latency, act_read, act_rate, wgt_read, wgt_rate, compute_cycles, requant, out_bytes,
             write_bytes, write_rate, tail_cycles) in self.rows:
            load = load_bytes / n / dram_rate + load_latency
            fetch = act_read / n / act_rate + wgt_read / n / wgt_rate
            if fetch:
                fetch += access_latency
            compute = max(compute_cycles / n, fetch)
            write = (requant / n) if requant is not None else 0.0
            if out_bytes:
                write += out_bytes / n / dram_rate + dram_latency
            elif write_rate is not None:
                write += write_bytes / n / write_rate + access_latency
            stages = [load, compute, write]
            if not m.double_buffering:
                stages = [load + compute, write]
            if not m.intra_layer:
                stages = [*stages[:-2], stages[-2] + stages[-1]]
            load_fill = max(load_fill, load)
            fill += compute + write
            slowest = max(slowest, *stages)
            dram += (load_bytes + out_bytes) / n / dram_rate
            tail = max(tail, tail_cycles)
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
