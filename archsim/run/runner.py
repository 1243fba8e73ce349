"""Execute a TaskGraph on the components: one SimPy process per pipeline stage of every task.

Per tile, a task loads what it needs from DRAM into its buffers, computes while its operands stream from the
buffers into the engine over the NoC, re-quantizes, and writes the result back (to the activation buffer, to DRAM, or
into the FIFO of the next task of its fusion group). The three stages run as separate processes joined by one-slot
stores as the pipeline switches allow: with double buffering tile i+1 loads while tile i computes, and a group's
first weights load while the previous group on its engines is still computing; with the intra-layer pipeline tile
i is re-quantized and written back while tile i+1 computes. With a switch off, the stages it joins run in sequence.

Engines run their groups in trace order (a static, compiled schedule); a group also waits for the tasks producing
its inputs. A run that ends with unfinished tasks is a deadlock and raises SimulationError naming them.

Every stage process keeps a log of ``(cycle, state)`` marks (packed in one int each), appended before each wait
that may take time: a stall reason (``dram``, ``buffer``, ``producer``, ``noc``), ``busy`` while computing, or a
pointer to the stage it waits for (UP, DOWN, FETCH). archsim.run.stalls resolves the logs into stall attribution
after the run; the marks add no event, so the run's timing is untouched. The stages also log buffer occupancy
changes (Ledger.occupancy).
"""
from __future__ import annotations


from collections import deque
from dataclasses import dataclass

import simpy

from archsim.config.load import ArchConfig
from archsim.errors import SimulationError
from archsim.hardware.dram import Dram
from archsim.hardware.kind import kind_of
from archsim.hardware.noc import Noc
from archsim.hardware.sram import SramBuffer
from archsim.kernel.fifo import Fifo, Tokens
from archsim.kernel.kernel import Simulator
from archsim.kernel.port import Port
from archsim.kernel.stall import BUFFER, BUSY, DOWN, FETCH, PRODUCER, SHIFT, UP
from archsim.kernel.tlm import Command, Payload, Process, Target, response_stall, transport_ranked
from archsim.mapping.taskgraph import Task, TaskGraph

#: One stage's log: ``cycle << SHIFT | code`` (archsim.kernel.stall) in time order; a state holds until the next mark.
#: UP points at the previous stage (an empty inbox), DOWN at the next (a full outbox, or this stage is done and the
#: task waits for the rest), FETCH at the operand fetch of the current tile.
Marks = list[int]


@dataclass
class TaskLog:
    """What a task's stages were doing over time: one log per stage process (in pipeline order), which of them
    computes, the operand fetches' log, and the cycle the task finished (-1 if it never did)."""

    stages: list[Marks]
    compute: int
    fetch: Marks
    done: int = -1


@dataclass(frozen=True)
class Ready:
    """When a task may use its engines: the previous tasks on them are done (``engines_free``) or computing their
    last tile (``engines_draining``); ``last_tile`` fires when this task starts its own last tile."""

    engines_free: list[simpy.Event]
    engines_draining: list[simpy.Event]
    last_tile: simpy.Event


def share(total: int, n: int, i: int) -> int:
    """Tile ``i``'s part of ``total`` split over ``n`` tiles; the parts sum to ``total`` exactly."""
    q, r = divmod(total, n)
    return q + (1 if i < r else 0)


class Runner:
    """Builds the components of ``cfg`` in ``sim`` and plays ``graph`` on them."""

    def __init__(self, sim: Simulator, cfg: ArchConfig, graph: TaskGraph) -> None:
        self.sim = sim
        self.cfg = cfg
        self.graph = graph
        self.dram = Dram(sim, cfg.dram)
        self.buffers = {name: SramBuffer(sim, name, b) for name, b in cfg.buffers.items()}
        self.noc = Noc(sim, cfg.noc, ["dram", *cfg.buffers, *cfg.engines])
        self.act_buf = self.buffers[cfg.buffer_for("activation")]
        self.wgt_buf = self.buffers[cfg.buffer_for("weight")]
        stream = cfg.stream_buffer()
        self.stream_buf = self.buffers[stream] if stream else self.act_buf  # fused intermediates (auxiliary buffers)
        # re-quantization stages queue on their unit, one at a time
        self.units = {t.requant.engine: Port(sim.env, BUFFER) for t in graph.tasks
                      if t.requant is not None}
        self.categories = {name: kind_of(e).category for name, e in cfg.engines.items()}
        self.double_buffered = cfg.mapping.pipeline.double_buffering
        self.overlapped = cfg.mapping.pipeline.intra_layer
        self.depth = cfg.mapping.pipeline.fifo_depth
        self.done: dict[str, simpy.Event] = {}
        self.state: dict[str, tuple[str, int]] = {}  # each task's state, formatted only for a deadlock: (text, tile)
        self.logs: dict[str, TaskLog] = {}  # each task's stage logs, for the stall attribution
        # resident outputs in a buffer: consumers left to finish before their bytes leave it
        self.readers_left: dict[str, int] = {}
        for t in graph.tasks:
            for d in t.deps:
                self.readers_left[d] = self.readers_left.get(d, 0) + 1
        self.tasks = {t.name: t for t in graph.tasks}
        # the task whose output tiles a fused task receives (the previous task of its group)
        self.stream_producer = {g[pos].name: g[pos - 1] for g in graph.groups for pos in range(1, len(g))
                                if g[pos].stream_in}

    # ---- the whole run ---------------------------------------------------------------------------------------------
    def run(self) -> None:
        env = self.sim.env
        engine_done: dict[str, simpy.Event] = {}  # the last task on each engine: finished
        engine_draining: dict[str, simpy.Event] = {}  # ... and computing its last tile (one buffer half is free)
        group_events: list[tuple[list[Task], simpy.Event]] = []
        for g in self.graph.groups:
            for t in g:
                self.done[t.name] = env.event()
                self.state[t.name] = ("not started", 0)
        for g in self.graph.groups:
            ready: dict[str, Ready] = {}
            for t in g:
                ready[t.name] = Ready([engine_done[e] for e in t.all_engines if e in engine_done],
                                      [engine_draining[e] for e in t.all_engines if e in engine_draining],
                                      env.event())
            for t in g:
                for e in t.all_engines:
                    engine_done[e] = self.done[t.name]
                    engine_draining[e] = ready[t.name].last_tile
            finished = env.event()
            env.process(self._group(g, ready, finished))
            group_events.append((g, finished))
        env.run()
        stuck = [t.name for g, ev in group_events if not ev.triggered for t in g if not self.done[t.name].triggered]
        if stuck:
            first = stuck[0]
            text, tile = self.state.get(first, ("?", 0))
            raise SimulationError(
                f"simulation stopped at cycle {self.sim.now} with {len(stuck)} op(s) unfinished; "
                f"first: {first} ({text.format(i=tile)})"
            )

    def _group(self, g: list[Task], ready: dict[str, Ready], finished: simpy.Event) -> Process:
        """Run a fusion group: its tasks stream tiles to each other through FIFOs, each starting on its engines as
        soon as the previous task on them is done (an engine runs its tasks in order)."""
        env = self.sim.env
        inputs = env.all_of([self.done[d] for t in g for d in t.deps if d in self.done])
        fifos = [Fifo(env, f"{t.name}->", self.depth) for t in g[:-1]]
        procs = []
        for pos, t in enumerate(g):
            fifo_in = fifos[pos - 1] if pos > 0 else None
            fifo_out = fifos[pos] if pos < len(g) - 1 else None
            procs.append(env.process(self._task(t, fifo_in, fifo_out, inputs, ready[t.name])))
        yield env.all_of(procs)
        finished.succeed()

    # ---- one task ------------------------------------------------------------------------------------------------
    def _task(self, t: Task, fifo_in: Fifo | None, fifo_out: Fifo | None, inputs: simpy.Event,
              ready: Ready) -> Process:
        """The task's tile stages as one to three processes: load | compute | write-back, merged where a pipeline
        switch is off. Double-buffered, its first tile loads (weights at once, activations once their producers
        are done) into the buffer half the previous task on its engines has freed by starting its last tile,
        later tiles wait for a free half, and compute waits for the engines. Otherwise the task starts when its
        engines are free and its inputs exist."""
        env = self.sim.env
        engines_free = env.all_of(ready.engines_free)
        # which stages each process runs, in order: (load, compute, write)
        if self.double_buffered:
            segments = [(True, False, False), (False, True, False), (False, False, True)]
        else:
            segments = [(True, True, False), (False, False, True)]
        if not self.overlapped:
            segments = [*segments[:-2], (segments[-2][0], True, True)]
        # until its stages start, a task waits for its engines or its inputs: work elsewhere in the pipeline
        log = TaskLog([[PRODUCER] for _ in segments], next(k for k, seg in enumerate(segments) if seg[1]), [])
        self.logs[t.name] = log
        if self.double_buffered:
            if ready.engines_draining:
                self.state[t.name] = ("waiting for a buffer half of its engines", 0)
                yield env.all_of(ready.engines_draining)
        else:
            self.state[t.name] = ("waiting for its inputs or engines", 0)
            yield env.all_of([*ready.engines_free, inputs])
        halves = Tokens(env, 2) if self.double_buffered else None
        run = _TaskRun(self, t, fifo_in, fifo_out, inputs, engines_free, halves, ready.last_tile, log.fetch)
        links = [Fifo(env, f"{t.name}:{k}->", 1) for k in range(len(segments) - 1)]
        procs = [env.process(self._segment(run, *seg, links[k - 1] if k else None, links[k] if k < len(links) else None,
                                           log.stages[k]))
                 for k, seg in enumerate(segments)]
        yield env.all_of(procs)
        self.state[t.name] = ("done", 0)
        log.done = now = int(env.now)
        self._free_resident(t, now)
        self.done[t.name].succeed()

    def _free_resident(self, t: Task, now: int) -> None:
        """A finished task is one reader less of each input kept resident on chip; the last one frees its bytes."""
        readers = self.readers_left
        for d in t.deps:
            left = readers.get(d)
            if left is None:
                continue
            readers[d] = left - 1
            if left == 1:
                producer = self.tasks.get(d)
                if producer is not None and producer.resident_out and not producer.stream_out:
                    if producer.cost.write_bytes:
                        self.sim.ledger.occupancy[self.act_buf.name] += (now, -producer.cost.write_bytes)

    def _segment(self, run: _TaskRun, load: bool, compute: bool, write: bool, inbox: Fifo | None,
                 outbox: Fifo | None, marks: Marks) -> Process:
        """One process of a task: for every tile, take it from ``inbox``, run its stages in order, pass it on.
        ``marks`` is its stage log."""
        state, name, env = self.state, run.name, self.sim.env
        for i in range(run.tiles):
            if inbox is not None:
                if not inbox.items:
                    marks.append(int(env.now) << SHIFT | UP)
                yield inbox.get()
            if load:
                yield from self._load_tile(run, i, marks)
            if compute:
                yield from self._compute_tile(run, i, marks)
            if write:
                yield from self._write_tile(run, i, marks)
            if outbox is not None:
                state[name] = ("tile {i}: waiting for the next stage", i)
                if outbox.items:  # a one-slot link: full until the next stage takes its tile
                    marks.append(int(env.now) << SHIFT | DOWN)
                yield outbox.put(i)
        if outbox is not None:
            marks.append(int(env.now) << SHIFT | DOWN)  # done: the task now waits for its later stages

    # ---- tile stages ---------------------------------------------------------------------------------------------
    def _load_tile(self, run: _TaskRun, i: int, marks: Marks) -> Process:
        """Weights first (they need no producer, so a group's first tile may prefetch them), then activations
        once the producers have finished, then the fused producer's tile. A prefetching group loads one tile
        ahead, no more; double-buffered, each tile first takes a free buffer half."""
        state, name, n, env = self.state, run.name, run.tiles, self.sim.env
        if i == 1 and not run.engines_free.processed:
            state[name] = ("tile 1: waiting for the previous group to free the buffers", i)
            marks.append(int(env.now) << SHIFT | BUFFER)
            yield run.engines_free
        if run.halves is not None:
            state[name] = ("tile {i}: waiting for a free buffer half", i)
            if run.halves.level < 1:
                marks.append(int(env.now) << SHIFT | BUFFER)
            yield run.halves.get(1)
        state[name] = ("tile {i}: loading", i)
        w = share(run.weight_dram_bytes, n, i)
        if w > 0:
            yield from transport_ranked(self.sim, run.weight_load_path,
                                        Payload(READ, "weights", w, run.engine, name, run.kind, i), "dram_read",
                                        marks, run.weight_load_late)
            run.wgt_occ += (int(env.now), w)
        if not run.inputs.processed:
            state[name] = ("waiting for its inputs", i)
            marks.append(int(env.now) << SHIFT | PRODUCER)
            yield run.inputs
        a = share(run.act_dram_bytes, n, i)
        if a > 0:
            yield from transport_ranked(self.sim, run.act_load_path,
                                        Payload(READ, "activations", a, run.engine, name, run.kind, i), "dram_read",
                                        marks, run.act_load_late)
            run.act_occ += (int(env.now), a)
        if run.loaded:
            run.held.append((w, a))  # released from the buffers once the tile is computed
        if run.fifo_in is not None:
            state[name] = ("tile {i}: waiting for the producer's tile (FIFO empty)", i)
            if not run.fifo_in.items:
                marks.append(int(env.now) << SHIFT | PRODUCER)
            yield run.fifo_in.get()

    def _fetch_tile(self, run: _TaskRun, i: int) -> Process:
        """Operand reads from the buffers into the engine; they stream while the engine computes."""
        n, marks = run.tiles, run.fetch_marks
        fa = share(run.act_read_bytes, n, i)
        if fa > 0:
            yield from transport_ranked(self.sim, run.act_fetch_path,
                                        Payload(READ, "operands", fa, run.engine, run.name, run.kind, i), "buffer_read",
                                        marks, run.act_fetch_late)
        fw = share(run.weight_read_bytes, n, i)
        if fw > 0:
            yield from transport_ranked(self.sim, run.weight_fetch_path,
                                        Payload(READ, "weights", fw, run.engine, run.name, run.kind, i), "buffer_read",
                                        marks, run.weight_fetch_late)

    def _compute_tile(self, run: _TaskRun, i: int, marks: Marks) -> Process:
        """The engine computes tile ``i`` while its operands stream in; the tile ends when both are done. The
        task's first tile waits for its engines; starting its last tile frees the previous group's buffer half
        (``last_tile``); a computed tile returns its buffer half."""
        env = self.sim.env
        ledger = self.sim.ledger
        state, name, n = self.state, run.name, run.tiles
        if i == 0 and not run.engines_free.processed:
            state[name] = ("waiting for its engines", i)
            marks.append(int(env.now) << SHIFT | PRODUCER)  # another engine of the op still runs its previous op
            yield run.engines_free
        if i == n - 1:
            run.last_tile.succeed()
        fetch = env.process(self._fetch_tile(run, i)) if run.fetches else None
        cycles = [share(c, n, i) for c in run.part_cycles]
        start = int(env.now)
        state[name] = ("tile {i}: computing", i)
        longest = max(cycles)
        if longest:
            marks.append(start << SHIFT | BUSY)
            yield env.timeout(longest)
        for (engine, category, pj), c in zip(run.parts, cycles):
            ledger.span(engine, start, start + c, name, category, i)
            ledger.charge(engine, name, run.kind, pj)
        ledger.touch(name, start, start + longest)
        if fetch is not None:
            state[name] = ("tile {i}: waiting for operands from the buffers", i)
            if not fetch.triggered:
                marks.append(int(env.now) << SHIFT | FETCH)
            yield fetch
        if run.task.tail and i == n - 1:
            yield from self._tail(run.task, i, marks)
        if run.loaded:  # the tile's operands leave the buffers they were loaded or streamed into
            now = int(env.now)
            w, a = run.held.popleft()
            if w:
                run.wgt_occ += (now, -w)
            if a:
                run.act_occ += (now, -a)
            if run.streamed:
                run.stream_occ += (now, -share(run.streamed, n, i))
        if run.halves is not None:
            yield run.halves.put(1)

    def _tail(self, t: Task, i: int, marks: Marks) -> Process:
        """Work left after the last tile, run on several engines at once (Trio Rule D: the PW channels the MAT
        could not finish while the depthwise conv ran, taken by all PEs once it has ended)."""
        ledger = self.sim.ledger
        start = self.sim.now
        self.state[t.name] = ("computing its tail on all engines", i)
        longest = max(p.cycles for p in t.tail)
        if longest:
            marks.append(start << SHIFT | BUSY)
            yield self.sim.env.timeout(longest)
        for p in t.tail:
            ledger.span(p.engine, start, start + p.cycles, t.name, self.categories[p.engine], i)
            ledger.charge(p.engine, t.name, t.op.kind, p.energy_pj)
        ledger.touch(t.name, start, start + longest)

    def _write_tile(self, run: _TaskRun, i: int, marks: Marks) -> Process:
        """Re-quantize tile ``i`` on its unit, write it back (to DRAM and/or a buffer), pass it to the consumer."""
        env = self.sim.env
        ledger = self.sim.ledger
        state, name, n = self.state, run.name, run.tiles
        rq = run.task.requant
        if rq is not None:
            unit = self.units[rq.engine]
            state[name] = (run.requant_wait, i)
            request = unit.request()
            if not request.triggered:
                marks.append(int(env.now) << SHIFT | BUFFER)  # the re-quantization unit's port is taken
            yield request
            c = share(rq.cycles, n, i)
            start = int(env.now)
            if c:
                marks.append(start << SHIFT | BUFFER)  # the output waits for its re-quantization on the unit
                yield env.timeout(c)
            ledger.span(rq.engine, start, start + c, rq.name, "requant", i)
            ledger.charge(rq.engine, rq.name, "requant", rq.energy_pj / n)
            unit.release(request)
        state[name] = ("tile {i}: writing back", i)
        out = share(run.out_dram_bytes, n, i)
        if out > 0:
            yield from transport_ranked(self.sim, run.dram_write_path,
                                        Payload(WRITE, run.output, out, run.engine, name, run.kind, i), "dram_write",
                                        marks, run.dram_write_late)
        if run.buffer_write_path is not None:
            nbytes = share(run.write_bytes, n, i)
            if nbytes > 0:
                yield from transport_ranked(self.sim, run.buffer_write_path,
                                            Payload(WRITE, run.output, nbytes, run.engine, name, run.kind, i),
                                            "buffer_write", marks, run.buffer_write_late)
                if run.dst_occ is not None:  # a streamed tile stays until its consumer computed it; a resident
                    run.dst_occ += (int(env.now), nbytes)  # output until its last reader is done
        if run.fifo_out is not None:
            state[name] = ("tile {i}: waiting for FIFO space (consumer behind)", i)
            if len(run.fifo_out.items) >= run.fifo_out.capacity:
                marks.append(int(env.now) << SHIFT | BUFFER)
            yield run.fifo_out.put(i)


READ, WRITE = Command.READ, Command.WRITE


class _TaskRun:
    """What the tile stages of one task read over and over, looked up once: its figures, its events and the
    (rank-ordered) paths of its transfers."""

    __slots__ = ("task", "name", "kind", "output", "engine", "tiles", "fifo_in", "fifo_out", "inputs",
                 "engines_free", "halves", "last_tile", "weight_dram_bytes", "act_dram_bytes", "out_dram_bytes",
                 "act_read_bytes", "weight_read_bytes", "write_bytes", "fetches", "part_cycles", "parts",
                 "weight_load_path", "act_load_path", "act_fetch_path", "weight_fetch_path", "dram_write_path",
                 "buffer_write_path", "weight_load_late", "act_load_late", "act_fetch_late", "weight_fetch_late",
                 "dram_write_late", "buffer_write_late", "requant_wait", "fetch_marks", "wgt_occ", "act_occ",
                 "stream_occ", "dst_occ", "held",
                 "streamed", "loaded")

    def __init__(self, runner: Runner, t: Task, fifo_in: Fifo | None, fifo_out: Fifo | None, inputs: simpy.Event,
                 engines_free: simpy.Event, halves: Tokens | None, last_tile: simpy.Event, fetch_marks: Marks) -> None:
        noc, dram = runner.noc, runner.dram
        wgt, act = runner.wgt_buf, runner.act_buf
        self.task = t
        self.name = t.name
        self.kind = t.op.kind
        self.output = t.op.output
        self.engine = eng = t.engines[0]
        self.tiles = n = t.tiles
        self.fifo_in, self.fifo_out, self.inputs = fifo_in, fifo_out, inputs
        self.engines_free, self.halves, self.last_tile = engines_free, halves, last_tile
        self.weight_dram_bytes = t.weight_dram_bytes
        self.act_dram_bytes = t.act_dram_bytes
        self.out_dram_bytes = t.out_dram_bytes
        self.act_read_bytes = t.cost.act_read_bytes
        self.weight_read_bytes = t.cost.weight_read_bytes
        self.write_bytes = t.cost.write_bytes
        self.fetches = bool(t.cost.act_read_bytes or t.cost.weight_read_bytes)
        self.part_cycles = [p.cycles for p in t.parts]
        self.parts = [(p.engine, runner.categories[p.engine], p.energy_pj / n) for p in t.parts]
        # every path lists its targets in rank order (DRAM, NoC, SRAM), as transport() would sort them
        self.weight_load_path: list[Target] = [dram, noc.route("dram", wgt.name), wgt]
        self.act_load_path: list[Target] = [dram, noc.route("dram", act.name), act]
        src = runner.stream_buf if t.stream_in else act
        self.act_fetch_path: list[Target] = [noc.route(src.name, eng), src]
        self.weight_fetch_path: list[Target] = [noc.route(wgt.name, eng), wgt]
        self.dram_write_path: list[Target] = [dram, noc.route(eng, "dram")]
        # what each path's response phase waits on (transport_ranked's ``late``)
        self.weight_load_late = response_stall(self.weight_load_path)
        self.act_load_late = response_stall(self.act_load_path)
        self.act_fetch_late = response_stall(self.act_fetch_path)
        self.weight_fetch_late = response_stall(self.weight_fetch_path)
        self.dram_write_late = response_stall(self.dram_write_path)
        self.buffer_write_path: list[Target] | None = None
        self.buffer_write_late = BUFFER
        unit = t.requant.engine if t.requant is not None else ""
        self.requant_wait = "tile {i}: waiting for re-quantization unit " + unit.replace("{", "{{").replace("}", "}}")
        self.fetch_marks = fetch_marks
        # occupancy: DRAM loads land in these buffers; a tile streamed in from the producer of the group sits in
        # the stream buffer until this task computed it (the producer wrote it there, if it wrote to a buffer)
        occupancy = runner.sim.ledger.occupancy
        self.wgt_occ, self.act_occ = occupancy[wgt.name], occupancy[act.name]
        self.stream_occ = occupancy[runner.stream_buf.name]
        producer = runner.stream_producer.get(t.name)
        self.streamed = producer.cost.write_bytes if producer is not None and producer.stream_out else 0
        self.loaded = bool(self.weight_dram_bytes or self.act_dram_bytes or self.streamed)
        self.held: deque[tuple[int, int]] = deque()  # (weight, activation) bytes of the tiles loaded, not computed
        self.dst_occ: list[int] | None = None
        if t.resident_out or t.stream_out:
            dst = runner.stream_buf if t.stream_out else act
            self.buffer_write_path = [noc.route(eng, dst.name), dst]
            self.buffer_write_late = response_stall(self.buffer_write_path)
            if t.stream_out or runner.readers_left.get(t.name):  # a model output no task reads is not kept
                self.dst_occ = occupancy[dst.name]
