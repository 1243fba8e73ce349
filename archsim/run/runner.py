"""Execute a TaskGraph on the components: one SimPy process per pipeline stage of every task.

Per tile, a task loads what it needs from DRAM into its buffers, computes while its operands stream from the
buffers into the engine over the NoC, re-quantizes, and writes the result back (to the activation buffer, to DRAM, or
into the FIFO of the next task of its fusion group). The three stages run as separate processes joined by one-slot
stores as the pipeline switches allow: with double buffering tile i+1 loads while tile i computes, and a group's
first weights load while the previous group on its engines is still computing; with the intra-layer pipeline tile
i is re-quantized and written back while tile i+1 computes. With a switch off, the stages it joins run in sequence.

Engines run their groups in trace order (a static, compiled schedule); a group also waits for the tasks producing
its inputs. A run that ends with unfinished tasks is a deadlock and raises SimulationError naming them.
"""
from __future__ import annotations


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
from archsim.kernel.tlm import Command, Payload, Process, Target, transport_ranked
from archsim.mapping.taskgraph import Task, TaskGraph


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
        self.units = {t.requant.engine: Port(sim.env) for t in graph.tasks
                      if t.requant is not None}
        self.categories = {name: kind_of(e).category for name, e in cfg.engines.items()}
        self.double_buffered = cfg.mapping.pipeline.double_buffering
        self.overlapped = cfg.mapping.pipeline.intra_layer
        self.depth = cfg.mapping.pipeline.fifo_depth
        self.done: dict[str, simpy.Event] = {}
        self.state: dict[str, tuple[str, int]] = {}  # each task's state, formatted only for a deadlock: (text, tile)

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
        if self.double_buffered:
            if ready.engines_draining:
                self.state[t.name] = ("waiting for a buffer half of its engines", 0)
                yield env.all_of(ready.engines_draining)
        else:
            self.state[t.name] = ("waiting for its inputs or engines", 0)
            yield env.all_of([*ready.engines_free, inputs])
        halves = Tokens(env, 2) if self.double_buffered else None
        run = _TaskRun(self, t, fifo_in, fifo_out, inputs, engines_free, halves, ready.last_tile)
        # which stages each process runs, in order: (load, compute, write)
        if self.double_buffered:
            segments = [(True, False, False), (False, True, False), (False, False, True)]
        else:
            segments = [(True, True, False), (False, False, True)]
        if not self.overlapped:
            segments = [*segments[:-2], (segments[-2][0], True, True)]
        links = [Fifo(env, f"{t.name}:{k}->", 1) for k in range(len(segments) - 1)]
        procs = [env.process(self._segment(run, *seg, links[k - 1] if k else None, links[k] if k < len(links) else None))
                 for k, seg in enumerate(segments)]
        yield env.all_of(procs)
        self.state[t.name] = ("done", 0)
        self.done[t.name].succeed()

    def _segment(self, run: _TaskRun, load: bool, compute: bool, write: bool, inbox: Fifo | None,
                 outbox: Fifo | None) -> Process:
        """One process of a task: for every tile, take it from ``inbox``, run its stages in order, pass it on."""
        state, name = self.state, run.name
        for i in range(run.tiles):
            if inbox is not None:
                yield inbox.get()
            if load:
                yield from self._load_tile(run, i)
            if compute:
                yield from self._compute_tile(run, i)
            if write:
                yield from self._write_tile(run, i)
            if outbox is not None:
                state[name] = ("tile {i}: waiting for the next stage", i)
                yield outbox.put(i)

    # ---- tile stages ---------------------------------------------------------------------------------------------
    def _load_tile(self, run: _TaskRun, i: int) -> Process:
        """Weights first (they need no producer, so a group's first tile may prefetch them), then activations
        once the producers have finished, then the fused producer's tile. A prefetching group loads one tile
        ahead, no more; double-buffered, each tile first takes a free buffer half."""
        state, name, n = self.state, run.name, run.tiles
        if i == 1 and not run.engines_free.processed:
            state[name] = ("tile 1: waiting for the previous group to free the buffers", i)
            yield run.engines_free
        if run.halves is not None:
            state[name] = ("tile {i}: waiting for a free buffer half", i)
            yield run.halves.get(1)
        state[name] = ("tile {i}: loading", i)
        w = share(run.weight_dram_bytes, n, i)
        if w > 0:
            yield from transport_ranked(self.sim, run.weight_load_path,
                                        Payload(READ, "weights", w, run.engine, name, run.kind, i), "dram_read")
        if not run.inputs.processed:
            state[name] = ("waiting for its inputs", i)
            yield run.inputs
        a = share(run.act_dram_bytes, n, i)
        if a > 0:
            yield from transport_ranked(self.sim, run.act_load_path,
                                        Payload(READ, "activations", a, run.engine, name, run.kind, i), "dram_read")
        if run.fifo_in is not None:
            state[name] = ("tile {i}: waiting for the producer's tile (FIFO empty)", i)
            yield run.fifo_in.get()

    def _fetch_tile(self, run: _TaskRun, i: int) -> Process:
        """Operand reads from the buffers into the engine; they stream while the engine computes."""
        n = run.tiles
        fa = share(run.act_read_bytes, n, i)
        if fa > 0:
            yield from transport_ranked(self.sim, run.act_fetch_path,
                                        Payload(READ, "operands", fa, run.engine, run.name, run.kind, i), "buffer_read")
        fw = share(run.weight_read_bytes, n, i)
        if fw > 0:
            yield from transport_ranked(self.sim, run.weight_fetch_path,
                                        Payload(READ, "weights", fw, run.engine, run.name, run.kind, i), "buffer_read")

    def _compute_tile(self, run: _TaskRun, i: int) -> Process:
        """The engine computes tile ``i`` while its operands stream in; the tile ends when both are done. The
        task's first tile waits for its engines; starting its last tile frees the previous group's buffer half
        (``last_tile``); a computed tile returns its buffer half."""
        env = self.sim.env
        ledger = self.sim.ledger
        state, name, n = self.state, run.name, run.tiles
        if i == 0 and not run.engines_free.processed:
            state[name] = ("waiting for its engines", i)
            yield run.engines_free
        if i == n - 1:
            run.last_tile.succeed()
        fetch = env.process(self._fetch_tile(run, i)) if run.fetches else None
        cycles = [share(c, n, i) for c in run.part_cycles]
        start = int(env.now)
        state[name] = ("tile {i}: computing", i)
        longest = max(cycles)
        if longest:
            yield env.timeout(longest)
        for (engine, category, pj), c in zip(run.parts, cycles):
            ledger.span(engine, start, start + c, name, category, i)
            ledger.charge(engine, name, run.kind, pj)
        ledger.touch(name, start, start + longest)
        if fetch is not None:
            state[name] = ("tile {i}: waiting for operands from the buffers", i)
            yield fetch
        if run.task.tail and i == n - 1:
            yield from self._tail(run.task, i)
        if run.halves is not None:
            yield run.halves.put(1)

    def _tail(self, t: Task, i: int) -> Process:
        """Work left after the last tile, run on several engines at once (Trio Rule D: the PW channels the MAT
        could not finish while the depthwise conv ran, taken by all PEs once it has ended)."""
        ledger = self.sim.ledger
        start = self.sim.now
        self.state[t.name] = ("computing its tail on all engines", i)
        longest = max(p.cycles for p in t.tail)
        if longest:
            yield self.sim.env.timeout(longest)
        for p in t.tail:
            ledger.span(p.engine, start, start + p.cycles, t.name, self.categories[p.engine], i)
            ledger.charge(p.engine, t.name, t.op.kind, p.energy_pj)
        ledger.touch(t.name, start, start + longest)

    def _write_tile(self, run: _TaskRun, i: int) -> Process:
        """Re-quantize tile ``i`` on its unit, write it back (to DRAM and/or a buffer), pass it to the consumer."""
        env = self.sim.env
        ledger = self.sim.ledger
        state, name, n = self.state, run.name, run.tiles
        rq = run.task.requant
        if rq is not None:
            unit = self.units[rq.engine]
            state[name] = (run.requant_wait, i)
            request = unit.request()
            yield request
            c = share(rq.cycles, n, i)
            start = int(env.now)
            if c:
                yield env.timeout(c)
            ledger.span(rq.engine, start, start + c, rq.name, "requant", i)
            ledger.charge(rq.engine, rq.name, "requant", rq.energy_pj / n)
            unit.release(request)
        state[name] = ("tile {i}: writing back", i)
        out = share(run.out_dram_bytes, n, i)
        if out > 0:
            yield from transport_ranked(self.sim, run.dram_write_path,
                                        Payload(WRITE, run.output, out, run.engine, name, run.kind, i), "dram_write")
        if run.buffer_write_path is not None:
            nbytes = share(run.write_bytes, n, i)
            if nbytes > 0:
                yield from transport_ranked(self.sim, run.buffer_write_path,
                                            Payload(WRITE, run.output, nbytes, run.engine, name, run.kind, i),
                                            "buffer_write")
        if run.fifo_out is not None:
            state[name] = ("tile {i}: waiting for FIFO space (consumer behind)", i)
            yield run.fifo_out.put(i)


READ, WRITE = Command.READ, Command.WRITE


class _TaskRun:
    """What the tile stages of one task read over and over, looked up once: its figures, its events and the
    (rank-ordered) paths of its transfers."""

    __slots__ = ("task", "name", "kind", "output", "engine", "tiles", "fifo_in", "fifo_out", "inputs",
                 "engines_free", "halves", "last_tile", "weight_dram_bytes", "act_dram_bytes", "out_dram_bytes",
                 "act_read_bytes", "weight_read_bytes", "write_bytes", "fetches", "part_cycles", "parts",
                 "weight_load_path", "act_load_path", "act_fetch_path", "weight_fetch_path", "dram_write_path",
                 "buffer_write_path", "requant_wait")

    def __init__(self, runner: Runner, t: Task, fifo_in: Fifo | None, fifo_out: Fifo | None, inputs: simpy.Event,
                 engines_free: simpy.Event, halves: Tokens | None, last_tile: simpy.Event) -> None:
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
        self.buffer_write_path: list[Target] | None = None
        unit = t.requant.engine if t.requant is not None else ""
        self.requant_wait = "tile {i}: waiting for re-quantization unit " + unit.replace("{", "{{").replace("}", "}}")
        if t.resident_out or t.stream_out:
            dst = runner.stream_buf if t.stream_out else act
            self.buffer_write_path = [noc.route(eng, dst.name), dst]
