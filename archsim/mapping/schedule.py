"""Build the TaskGraph: every op placed on engines, costed, fused, given a home for its tensors, and tiled.

Stages, in order (each a small function below): fold/skip ops that cost nothing or cannot be modelled; assign the
rest and cost them in the dataflows the mapper's search picks (:mod:`archsim.mapping.search`); move independent ops
so producers meet their consumers; form fusion groups (inter- and intra-layer pipelines); decide where each tensor
lives (streamed, resident on chip, or in DRAM); tile every group, at least so its working set fits its buffers and
as the search picks.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Mapping

from archsim.config.load import ArchConfig
from archsim.errors import MappingError
from archsim.hardware.kind import OpCost, kind_of
from archsim.mapping.assign import Neighbours, assigned_engines, op_classes
from archsim.mapping.policy import policy_of
from archsim.mapping.search import Choice, Mapper, most_tiles, output_rows
from archsim.mapping.taskgraph import Part, RequantStage, Skipped, Task, TaskGraph
from archsim.workloads.geometry import Depthwise, Gemm, geometry
from archsim.workloads.ir import Op, Tensor, Workload
from archsim.workloads.kinds import category_of, is_mac, op_kind


# ---- 1. fold, skip, assign, cost ---------------------------------------------------------------------------------


def _canonical(alias: Mapping[str, str], name: str) -> str:
    while name in alias:
        name = alias[name]
    return name


def _split_geometry(geom: Gemm | Depthwise, weights: list[int]) -> list[Gemm | Depthwise]:
    """Split output channels over engines in proportion to ``weights`` (their peak MACs per cycle)."""
    total = sum(weights)
    size = geom.n if isinstance(geom, Gemm) else geom.channels
    shares, given = [], 0
    for i, w in enumerate(weights):
        s = size - given if i == len(weights) - 1 else round(size * w / total)
        s = max(0, min(s, size - given))
        shares.append(s)
        given += s
    out: list[Gemm | Depthwise] = []
    for s in shares:
        if isinstance(geom, Gemm):
            out.append(replace(geom, n=s))
        else:
            out.append(replace(geom, channels=s))
    return out


def _cost(op: Op, tensors: Mapping[str, Tensor], cfg: ArchConfig, engines: tuple[str, ...], cls: str,
          mapper: Mapper, role: str = "", ctx: Neighbours | None = None) -> tuple[tuple[Part, ...], OpCost]:
    """Each engine's part of ``op`` and the whole op's cost, in the dataflows the mapper picks."""
    if len(engines) == 1:
        ch = mapper.dataflow(cfg, engines[0], op, tensors, cls)
        return (_part(cfg, engines[0], op, tensors, None, ch),), ch.cost
    if not is_mac(op.kind):
        raise MappingError(f"op {op.name} ({op.kind}) is assigned to {' + '.join(engines)}, but only MAC ops can be "
                           "split over several engines", source=cfg.source, key=f"mapping.assign.{role}")
    cfgs = [cfg.engines[e] for e in engines]
    geom = geometry(op, tensors)
    pieces = policy_of(cfg).split(role, op, tensors, ctx, geom, engines) if ctx is not None else None
    if pieces is None:
        pieces = _split_geometry(geom, [kind_of(c).peak_macs_per_cycle(c) for c in cfgs])
    busy = sum(1 for g in pieces if g.macs)
    choices = [mapper.dataflow(cfg, e, op, tensors, cls, g, busy) if g.macs else None for g, e in zip(pieces, engines)]
    parts = tuple(_part(cfg, e, op, tensors, g, ch) for e, g, ch in zip(engines, pieces, choices))
    return parts, _merge(op, tensors, [ch.cost if ch is not None else OpCost(cycles=0) for ch in choices])


def _part(cfg: ArchConfig, engine: str, op: Op, tensors: Mapping[str, Tensor], share: Gemm | Depthwise | None,
          choice: Choice | None) -> Part:
    """One engine's part: the chosen cost and dataflow, and what its processing groups lose against one group."""
    if choice is None:
        return Part(engine, 0, 0, 0.0)
    c, df = choice.cost, choice.dataflow
    ecfg = cfg.engines[engine]
    lost, why = kind_of(ecfg).group_loss(ecfg, op, tensors, share, df)
    return Part(engine, c.macs, c.cycles, c.energy_pj, df.label if df is not None else "", lost, why)


def _merge(op: Op, tensors: Mapping[str, Tensor], costs: list[OpCost]) -> OpCost:
    """Whole-op cost of a split op: parts run at once; inputs are broadcast to every part (read once)."""
    return OpCost(
        cycles=max(c.cycles for c in costs),
        macs=sum(c.macs for c in costs),
        elements=sum(c.elements for c in costs),
        act_read_bytes=max(c.act_read_bytes for c in costs),
        weight_read_bytes=sum(c.weight_read_bytes for c in costs),
        write_bytes=sum(c.write_bytes for c in costs),
        energy_pj=sum(c.energy_pj for c in costs),
        detail="split:" + "+".join(c.detail for c in costs),
    )


def _place(w: Workload, cfg: ArchConfig, ctx: Neighbours,
           mapper: Mapper) -> tuple[list[Task], list[Skipped], dict[str, str]]:
    """Decide for every op: folded, unmodelled, or a costed Task on its engines."""
    mapping = cfg.mapping
    tensors = w.tensors
    producers = {op.output: op for op in w.ops}
    consumers = w.consumers()
    alias: dict[str, str] = {}
    tasks: list[Task] = []
    skipped: list[Skipped] = []
    for index, op in enumerate(w.ops):
        if category_of(op.kind) == "unmodelled":
            skipped.append(Skipped(op, "unmodelled", f"aten op {op.attrs.get('aten', op.source)!r} has no lowering"))
            if op.inputs:
                alias[op.output] = op.inputs[0]
            continue
        if op.kind == "batchnorm" and mapping.fold_batchnorm and op.inputs:
            src = producers.get(op.inputs[0])
            if src is not None and src.kind == "conv2d" and consumers.get(src.output) == [op.name]:
                skipped.append(Skipped(op, "folded", f"batchnorm folded into {src.name}"))
                alias[op.output] = op.inputs[0]
                continue
        classes = op_classes(op, tensors, ctx)
        found = assigned_engines(op, tensors, cfg, ctx)
        if found is None:
            if mapping.on_unmapped == "report":
                skipped.append(Skipped(op, "unmodelled", f"no engine assigned to {' / '.join(classes)}"))
                if op.inputs:
                    alias[op.output] = op.inputs[0]
                continue
            raise MappingError(
                f"op {op.name} ({' / '.join(classes)}) has no engine: add one of these classes to mapping.assign, "
                "or set mapping.on_unmapped: report",
                source=cfg.source,
                key="mapping.assign",
            )
        engines, matched = found
        cls = matched
        for e in engines:
            runs_as = kind_of(cfg.engines[e]).supports(cfg.engines[e], op, classes)
            if runs_as is None:
                raise MappingError(
                    f"op {op.name} ({' / '.join(classes)}) is assigned to engine {e!r} "
                    f"(type {cfg.engines[e].type}), which cannot run it",
                    source=cfg.source,
                    key=f"mapping.assign.{matched}",
                )
            cls = runs_as
        if is_mac(op.kind):
            macs = geometry(op, tensors).macs
            if macs != op.macs:
                raise MappingError(f"op {op.name}: trace says {op.macs} MACs but its shapes give {macs}")
        parts, cost = _cost(op, tensors, cfg, engines, cls, mapper, matched, ctx)
        task = Task(op=op, index=index, cls=cls, parts=parts, cost=cost, role=matched)
        if is_mac(op.kind) and mapping.requant and _requantized(op):
            task.requant = _requant_stage(op, tensors, cfg)
        tasks.append(task)
    return tasks, skipped, alias


def _requantized(op: Op) -> bool:
    """False for a MAC op the quantizer leaves at accumulator width (``attrs.quant.requant == "none"``, e.g. the
    classifier's logits); every other MAC op is re-quantized behind its output."""
    facts = op.attrs.get("quant")
    return not (isinstance(facts, Mapping) and facts.get("requant") == "none")


def _requant_stage(op: Op, tensors: Mapping[str, Tensor], cfg: ArchConfig) -> RequantStage:
    """The re-quantization of ``op``'s output, priced by the engine ``assign['requant']`` names as a requant op."""
    target = cfg.mapping.assign["requant"]
    engine = target if isinstance(target, str) else target[0]
    scale = op.scale_kind if op.scale_kind != "none" else cfg.defaults.scale_kind
    stage = Op(name=f"{op.name}.requant", kind="requant", inputs=(op.output,), output=op.output, scale_kind=scale,
               scope=op.scope)
    ecfg = cfg.engines[engine]
    kind = kind_of(ecfg)
    if kind.supports(ecfg, stage, ["requant"]) is None:
        raise MappingError(f"engine {engine!r} (type {ecfg.type}) cannot re-quantize {op.name}", source=cfg.source,
                           key="mapping.assign.requant")
    c = kind.cost(ecfg, stage, tensors, "requant")
    return RequantStage(engine, stage.name, scale, c.elements, c.cycles, c.energy_pj, c.detail)


# ---- 2. fusion groups -------------------------------------------------------------------------------------------

def _hoist(tasks: list[Task], alias: Mapping[str, str], window: int = 3) -> list[Task]:
    """Move ops that do not read a producer's output ahead of it when, within ``window`` places, the output's only
    reader follows: producer and consumer become neighbours and may fuse (EfficientViT's trace puts the K-sum
    between KᵀV and Q·S). The moved ops depend on nothing the producer makes, so the order stays topological.
    Indices are renumbered to the new order."""
    order = list(tasks)
    count: dict[str, int] = {}
    for t in order:
        for name in dict.fromkeys(_canonical(alias, i) for i in t.op.inputs):
            count[name] = count.get(name, 0) + 1

    def reads(t: Task) -> set[str]:
        return {_canonical(alias, x) for x in t.op.inputs}

    def output(t: Task) -> str:
        return _canonical(alias, t.op.output)

    for i in range(len(order)):
        out = output(order[i])
        if count.get(out) != 1:
            continue
        j = next((k for k in range(i + 1, min(len(order), i + 1 + window)) if out in reads(order[k])), None)
        if j is None or j == i + 1:
            continue
        start = i  # the chain of neighbours feeding order[i] moves as one, so it stays together
        while start > max(0, i - window) and output(order[start - 1]) in reads(order[start]):
            start -= 1
        made = {output(t) for t in order[start:i + 1]}
        between = order[i + 1:j]
        if not any(made & reads(b) for b in between):
            order[start:j] = [*between, *order[start:i + 1]]
    for index, t in enumerate(order):
        t.index = index
    return order


def _fuse(tasks: list[Task], alias: Mapping[str, str], cfg: ArchConfig, graph_outputs: set[str],
          tensors: Mapping[str, Tensor]) -> list[list[Task]]:
    """Cut the task sequence into groups of consecutive producer -> consumer tasks on distinct engines, which
    stream tiles; the cut keeps the most bytes on chip.

    Greedy chaining is not enough: in conv (MAT) -> act (aux) after an add (aux), joining the conv to the add's
    group leaves the act, whose output is the larger tensor, no engine. So every valid group is considered and
    the best cut found by dynamic programming over group ends (ties: fewer groups, then longer early groups).
    """
    pipe = cfg.mapping.pipeline
    policy = policy_of(cfg)
    any_operand = policy.streams_any_operand
    readers: dict[str, list[int]] = {}
    for t in tasks:
        for name in dict.fromkeys(_canonical(alias, i) for i in t.op.inputs):
            readers.setdefault(name, []).append(t.index)
    # best[i]: (bytes streamed, -groups) of the best cut of tasks[:i]; start[i]: where its last group begins
    best: list[tuple[int, int]] = [(0, 0)] + [(-1, 0)] * len(tasks)
    start = [0] * (len(tasks) + 1)
    for j in range(len(tasks)):
        group, streamed = [tasks[j]], 0
        while True:
            end = j + len(group)
            score = (best[j][0] + streamed, best[j][1] - 1)
            if score >= best[end]:  # on ties the later start wins: earlier groups as long as greedy makes them
                best[end], start[end] = score, j
            if end == len(tasks):
                break
            t = tasks[end]
            if not (pipe.intra_layer if _attention_join(group[-1].op, t.op) else pipe.inter_layer):
                break
            if policy.starts_group(t.op, tensors) or not _can_join(
                    group, t, alias, readers, pipe.max_group_ops, graph_outputs, tensors, any_operand):
                break
            streamed += tensors[_canonical(alias, group[-1].op.output)].nbytes
            group.append(t)
    groups: list[list[Task]] = []
    end = len(tasks)
    while end > 0:
        groups.append(tasks[start[end]:end])
        end = start[end]
    groups.reverse()
    for gi, g in enumerate(groups):
        name = f"g{gi}" if len(g) > 1 else ""
        for t in g:
            t.group = name
    return groups


def _attention_join(producer: Op, consumer: Op) -> bool:
    """A join inside attention (either side multiplies two activations: Q·Kᵀ, ·V, KᵀV, Q·S) is the intra-layer
    pipeline of P2-ViT and Trio-ViT (attention head by head); every other join is inter-layer."""
    return any(op.kind == "matmul" and not op.weights for op in (producer, consumer))


def _streamable(op: Op) -> bool:
    kind = op_kind(op.kind)
    return kind is not None and kind.streamable


def _streamed_input(t: Task, out: str, alias: Mapping[str, str], any_operand: bool) -> int | None:
    """Position of the operand of ``t`` that is the tensor ``out`` (only the first, unless ``any_operand``)."""
    positions = range(len(t.op.inputs)) if any_operand else range(min(1, len(t.op.inputs)))
    return next((i for i in positions if _canonical(alias, t.op.inputs[i]) == out), None)


def _can_join(group: list[Task], t: Task, alias: Mapping[str, str], readers: Mapping[str, list[int]], max_ops: int,
              graph_outputs: set[str], tensors: Mapping[str, Tensor], any_operand: bool = False) -> bool:
    prev = group[-1]
    out = _canonical(alias, prev.op.output)
    pos = _streamed_input(t, out, alias, any_operand)
    if len(group) >= max_ops or pos is None:
        return False
    if t.op.input_bytes(pos, tensors) != tensors[out].nbytes:  # reads only a view (e.g. the class token): no stream
        return False
    if readers.get(out) != [t.index] or out in graph_outputs:
        return False
    if not (_streamable(prev.op) and _streamable(t.op)):
        return False
    used = {e for m in group for e in m.engines}
    return not used.intersection(t.engines)


# ---- 3. residency and 4. tiling ------------------------------------------------------------------------------------


def _plan_memory(groups: list[list[Task]], alias: Mapping[str, str], w: Workload, cfg: ArchConfig,
                 mapper: Mapper) -> None:
    """Decide each tensor's home (streamed, resident, DRAM), then tile every group to fit its buffers."""
    tensors = w.tensors
    act_buf = cfg.buffer_for("activation")
    wgt_buf = cfg.buffer_for("weight")
    act_cap = cfg.buffers[act_buf].capacity_bytes
    resident_budget = int(act_cap * cfg.mapping.resident_fraction)
    act_work = act_cap - resident_budget
    wgt_work = cfg.buffers[wgt_buf].capacity_bytes
    if act_buf == wgt_buf:
        act_work = wgt_work = act_work // 2
    k = 2 if cfg.mapping.pipeline.double_buffering else 1
    depth = cfg.mapping.pipeline.fifo_depth
    stream_buf = cfg.stream_buffer()
    stream_work = cfg.buffers[stream_buf].capacity_bytes if stream_buf else None
    min_tiles = cfg.mapping.pipeline.min_tiles

    graph_outputs = {_canonical(alias, t) for t in w.graph_outputs()}
    last_use: dict[str, int] = {}
    for g in groups:
        for t in g:
            for i in t.op.inputs:
                last_use[_canonical(alias, i)] = t.index
    resident: dict[str, int] = {}  # live resident tensor -> bytes
    by_producer = {t.op.output: t for g in groups for t in g}

    for gi, g in enumerate(groups):
        names_in_group = {t.op.output for t in g}
        for pos, t in enumerate(g):
            if pos > 0:
                t.stream_in = _canonical(alias, g[pos - 1].op.output)
            if pos < len(g) - 1:
                t.stream_out = True
            deps = []
            act_in = 0
            read: dict[str, int] = {}  # canonical input -> bytes read (views read less than their base)
            for pos_in, x in enumerate(t.op.inputs):
                c = _canonical(alias, x)
                read[c] = max(read.get(c, 0), t.op.input_bytes(pos_in, tensors))
            for i, nbytes in read.items():
                if i == t.stream_in:
                    continue
                producer = by_producer.get(i)
                if producer is not None and i not in names_in_group:
                    deps.append(producer.name)
                if i not in resident:
                    act_in += nbytes
            t.deps = tuple(dict.fromkeys(deps))
            t.act_dram_bytes = act_in
            t.weight_dram_bytes = sum(tensors[x].nbytes for x in t.op.weights)
            out = t.op.output
            out_bytes = tensors[out].nbytes
            if not t.stream_out:
                live = sum(resident.values())
                if out in graph_outputs:
                    t.out_dram_bytes = out_bytes
                elif live + out_bytes <= resident_budget:
                    t.resident_out = True
                else:
                    t.out_dram_bytes = out_bytes
        # free resident tensors whose last reader has now run
        last_index = g[-1].index
        for name in [n for n in resident if last_use.get(n, -1) <= last_index]:
            del resident[name]
        for t in g:
            if t.resident_out and last_use.get(t.op.output, -1) > last_index:
                resident[t.op.output] = tensors[t.op.output].nbytes
        _tile_group(g, tensors, cfg, mapper, act_buf, wgt_buf, act_work, wgt_work, k, depth, stream_work,
                    min_tiles)


def _tile_group(g: list[Task], tensors: Mapping[str, Tensor], cfg: ArchConfig, mapper: Mapper, act_buf: str,
                wgt_buf: str, act_work: int, wgt_work: int, k: int, depth: int, stream_work: int | None = None,
                min_tiles: int = 1) -> None:
    """Cut a group into the tile count the mapper picks (at least the fewest that fit); when neither operand of an
    op fits, the loop order re-reads the one that costs fewer DRAM bytes."""
    policy = policy_of(cfg)
    fewest = policy.group_tiles([t.op for t in g], tensors, min_tiles)  # the policy's streaming grain
    for t in g:
        fewest = max(fewest, _tiles_needed(t, tensors, cfg, act_buf, wgt_buf, act_work, wgt_work, k, depth,
                                           stream_work))
    for t in g:
        if t.weight_dram_bytes and t.act_dram_bytes and fewest > 1:
            n_w = math.ceil(t.weight_dram_bytes * k / wgt_work)
            n_a = math.ceil((t.act_dram_bytes + t.out_dram_bytes) * k / act_work)
            if n_w > 1 and n_a > 1:  # neither operand fits: re-read the cheaper one once per tile of the other
                again_acts, again_weights = t.act_dram_bytes * (n_w - 1), t.weight_dram_bytes * (n_a - 1)
                t.order = "weights-outer" if again_acts <= again_weights else "activations-outer"
                t.act_dram_bytes += min(again_acts, again_weights)
    if policy.fixed_grain([t.op for t in g], tensors):
        most = fewest
    else:
        most = max(fewest, min(cfg.mapping.pipeline.max_tiles, most_tiles(g, tensors)))
    tiles, _ = mapper.tiles(cfg, g, fewest, most)
    for t in g:
        t.tiles = tiles


def _tiles_needed(t: Task, tensors: Mapping[str, Tensor], cfg: ArchConfig, act_buf: str, wgt_buf: str,
                  act_work: int, wgt_work: int, k: int, depth: int, stream_work: int | None = None) -> int:
    """Fewest tiles whose per-tile working set (double-buffered when intra-layer pipelining is on) fits. FIFO
    slots live in the stream (auxiliary) buffer when the config has one, else in the activation buffer."""
    op = t.op
    stream = (tensors[t.stream_in].nbytes if t.stream_in else 0) + (tensors[op.output].nbytes if t.stream_out else 0)
    staged = (t.act_dram_bytes + t.out_dram_bytes) * k + (stream * depth if stream_work is None else 0)
    n_s = math.ceil(stream * depth / stream_work) if stream_work and stream else 1
    rows = output_rows(op, tensors)
    if staged and staged / rows > act_work:
        raise MappingError(
            f"op {op.name}: one tile (one output row) needs {math.ceil(staged / rows)} bytes of staging but buffer "
            f"{act_buf!r} has {act_work} bytes of working space; a tile can never fit",
            source=cfg.source,
            key=f"buffers.{act_buf}.capacity_kib",
        )
    n_a = math.ceil(staged / act_work) if staged else 1
    n_w = 1
    if t.weight_dram_bytes:
        per_channel = t.weight_dram_bytes * k / _out_channels(op, tensors)
        if per_channel > wgt_work:
            raise MappingError(
                f"op {op.name}: the weights of one output channel need {math.ceil(per_channel)} bytes but buffer "
                f"{wgt_buf!r} has {wgt_work} bytes of working space; a tile can never fit",
                source=cfg.source,
                key=f"buffers.{wgt_buf}.capacity_kib",
            )
        n_w = math.ceil(t.weight_dram_bytes * k / wgt_work)
    if n_w > 1 and n_a > 1 and t.act_dram_bytes:
        return max(n_w * n_a, n_s)
    return max(n_a, n_w, n_s, 1)


def _out_channels(op: Op, tensors: Mapping[str, Tensor]) -> int:
    """How many slices an op's weights can be cut into: output channels of a MAC op, rows of any other
    weight (a position embedding added to the tokens is cut by token)."""
    shape = tensors[op.weights[0]].shape if op.weights else tensors[op.output].shape
    if is_mac(op.kind) or len(shape) < 2:
        return max(1, shape[0] if shape else 1)
    return max(1, math.prod(shape[:-1]))


# ---- entry point -------------------------------------------------------------------------------------------------


def build_taskgraph(w: Workload, cfg: ArchConfig, mapper: Mapper | None = None) -> TaskGraph:
    """Map ``w`` onto ``cfg``: the complete, static plan the simulator executes. Pass a ``mapper`` to share its
    search cache across calls."""
    mapper = Mapper() if mapper is None else mapper
    ctx = Neighbours.of(w)
    tasks, skipped, alias = _place(w, cfg, ctx, mapper)
    tasks = _hoist(tasks, alias)
    graph_outputs = {_canonical(alias, t) for t in w.graph_outputs()}
    groups = _fuse(tasks, alias, cfg, graph_outputs, w.tensors)
    policy_of(cfg).after_fusion(groups, w.tensors, cfg, ctx)
    _plan_memory(groups, alias, w, cfg, mapper)
    notes = []
    pipe = cfg.mapping.pipeline
    if not pipe.inter_layer:
        notes.append("inter-layer pipelining off: no op streams into the next layer")
    if not pipe.intra_layer:
        notes.append("intra-layer pipelining off: a tile's MACs, re-quantization and write-back run in sequence, "
                     "and attention runs op by op")
    if not pipe.double_buffering:
        notes.append("double buffering off: each tile loads only after the previous tile has computed")
    m = cfg.mapping
    notes.append(f"mapping: {m.search}" + (f" search by {m.objective}" if m.search != "fixed" else
                                           " (each engine's closed-form loop nest, fewest tiles)"))
    return TaskGraph(groups=groups, skipped=skipped, order=[op.name for op in w.ops], notes=notes)
