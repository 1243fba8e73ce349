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
from typing import Callable

import simpy

from archsim.config.load import ArchConfig
from archsim.errors import SimulationError
from archsim.hardware.dram import Dram
from archsim.hardware.kind import kind_of
from archsim.hardware.noc import Noc
from archsim.hardware.sram import SramBuffer
from archsim.kernel.fifo import Fifo
from archsim.kernel.kernel import Simulator
from archsim.kernel.tlm import Command, Payload, Process, Target, transport
from archsim.mapping.taskgraph import Task, TaskGraph


#: one stage of a task for tile i (a SimPy generator)
Stage = Callable[[int], Process]


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
        self.units = {t.requant.engine: simpy.Resource(sim.env, capacity=1) for t in graph.tasks
                      if t.requant is not None}
        self.categories = {name: kind_of(e).category for name, e in cfg.engines.items()}
        self.double_buffered = cfg.mapping.pipeline.double_buffering
        self.overlapped = cfg.mapping.pipeline.intra_layer
        self.depth = cfg.mapping.pipeline.fifo_depth
        self.done: dict[str, simpy.Event] = {}
        self.state: dict[str, str] = {}

    # ---- the whole run ---------------------------------------------------------------------------------------------
    def run(self) -> None:
        env = self.sim.env
        engine_done: dict[str, simpy.Event] = {}  # the last task on each engine: finished
        engine_draining: dict[str, simpy.Event] = {}  # ... and computing its last tile (one buffer half is free)
        group_events: list[tuple[list[Task], simpy.Event]] = []
        for g in self.graph.groups:
            for t in g:
                self.done[t.name] = env.event()
                self.state[t.name] = "not started"
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
            raise SimulationError(
                f"simulation stopped at cycle {self.sim.now} with {len(stuck)} op(s) unfinished; "
                f"first: {first} ({self.state.get(first, '?')})"
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
                self.state[t.name] = "waiting for a buffer half of its engines"
                yield env.all_of(ready.engines_draining)
        else:
            self.state[t.name] = "waiting for its inputs or engines"
            yield env.all_of([*ready.engines_free, inputs])
        halves = simpy.Container(env, capacity=2, init=2) if self.double_buffered else None
        load = self._load_stage(t, fifo_in, inputs, engines_free, halves)
        compute = self._compute_stage(t, engines_free, halves, ready.last_tile)
        write = self._write_stage(t, fifo_out)
        stages: list[list[Stage]] = [[load], [compute], [write]]
        if not self.double_buffered:
            stages = [stages[0] + stages[1], stages[2]]
        if not self.overlapped:
            stages = [*stages[:-2], stages[-2] + stages[-1]]
        links = [simpy.Store(env, capacity=1) for _ in stages[:-1]]
        procs = [env.process(self._segment(t, seg, links[k - 1] if k else None, links[k] if k < len(links) else None))
                 for k, seg in enumerate(stages)]
        yield env.all_of(procs)
        self.state[t.name] = "done"
        self.done[t.name].succeed()

    def _segment(self, t: Task, stages: list[Stage], inbox: simpy.Store | None,
                 outbox: simpy.Store | None) -> Process:
        """One process of a task: for every tile, take it from ``inbox``, run ``stages`` in order, pass it on."""
        for i in range(t.tiles):
            if inbox is not None:
                yield inbox.get()
            for stage in stages:
                yield from stage(i)
            if outbox is not None:
                self.state[t.name] = f"tile {i}: waiting for the next stage"
                yield outbox.put(i)

    # ---- tile stages ---------------------------------------------------------------------------------------------
    def _xfer(self, t: Task, path: list[Target], command: Command, tensor: str, nbytes: int, tile: int,
              category: str) -> Process:
        if nbytes <= 0:
            return
        payload = Payload(command, tensor, nbytes, t.engines[0], t.name, t.op.kind, tile)
        yield from transport(self.sim, path, payload, category)

    def _load_stage(self, t: Task, fifo_in: Fifo | None, inputs: simpy.Event, engines_free: simpy.Event,
                    halves: simpy.Container | None) -> Stage:
        def stage(i: int) -> Process:
            if i == 1 and not engines_free.processed:  # a prefetching group loads one tile ahead, no more
                self.state[t.name] = "tile 1: waiting for the previous group to free the buffers"
                yield engines_free
            if halves is not None:
                self.state[t.name] = f"tile {i}: waiting for a free buffer half"
                yield halves.get(1)
            yield from self._load_tile(t, i, fifo_in, inputs)
        return stage

    def _compute_stage(self, t: Task, engines_free: simpy.Event, halves: simpy.Container | None,
                       last: simpy.Event) -> Stage:
        def stage(i: int) -> Process:
            if i == 0 and not engines_free.processed:
                self.state[t.name] = "waiting for its engines"
                yield engines_free
            if i == t.tiles - 1:
                last.succeed()
            yield from self._compute_tile(t, i)
            if halves is not None:
                yield halves.put(1)
        return stage

    def _write_stage(self, t: Task, fifo_out: Fifo | None) -> Stage:
        def stage(i: int) -> Process:
            yield from self._write_tile(t, i, fifo_out)
        return stage

    def _load_tile(self, t: Task, i: int, fifo_in: Fifo | None, inputs: simpy.Event) -> Process:
        """Weights first (they need no producer, so a group's first tile may prefetch them), then activations
        once the producers have finished, then the fused producer's tile."""
        n = t.tiles
        noc = self.noc
        self.state[t.name] = f"tile {i}: loading"
        w = share(t.weight_dram_bytes, n, i)
        if w:
            path: list[Target] = [self.dram, noc.route("dram", self.wgt_buf.name), self.wgt_buf]
            yield from self._xfer(t, path, Command.READ, "weights", w, i, "dram_read")
        if not inputs.processed:
            self.state[t.name] = "waiting for its inputs"
            yield inputs
        a = share(t.act_dram_bytes, n, i)
        if a:
            path = [self.dram, noc.route("dram", self.act_buf.name), self.act_buf]
            yield from self._xfer(t, path, Command.READ, "activations", a, i, "dram_read")
        if fifo_in is not None:
            self.state[t.name] = f"tile {i}: waiting for the producer's tile (FIFO empty)"
            yield fifo_in.get()

    def _fetch_tile(self, t: Task, i: int) -> Process:
        """Operand reads from the buffers into the engine; they stream while the engine computes."""
        n = t.tiles
        noc = self.noc
        eng = t.engines[0]
        fa = share(t.cost.act_read_bytes, n, i)
        if fa:
            src = self.stream_buf if t.stream_in else self.act_buf
            path: list[Target] = [noc.route(src.name, eng), src]
            yield from self._xfer(t, path, Command.READ, "operands", fa, i, "buffer_read")
        fw = share(t.cost.weight_read_bytes, n, i)
        if fw:
            path = [noc.route(self.wgt_buf.name, eng), self.wgt_buf]
            yield from self._xfer(t, path, Command.READ, "weights", fw, i, "buffer_read")

    def _compute_tile(self, t: Task, i: int) -> Process:
        """The engine computes tile ``i`` while its operands stream in; the tile ends when both are done."""
        n = t.tiles
        env = self.sim.env
        ledger = self.sim.ledger
        fetch = env.process(self._fetch_tile(t, i)) if t.cost.act_read_bytes or t.cost.weight_read_bytes else None
        cycles = [share(p.cycles, n, i) for p in t.parts]
        start = self.sim.now
        self.state[t.name] = f"tile {i}: computing"
        longest = max(cycles)
        if longest:
            yield env.timeout(longest)
        for p, c in zip(t.parts, cycles):
            ledger.span(p.engine, start, start + c, t.name, self.categories[p.engine], i)
            ledger.charge(p.engine, t.name, t.op.kind, p.energy_pj / n)
        ledger.touch(t.name, start, start + longest)
        if fetch is not None:
            self.state[t.name] = f"tile {i}: waiting for operands from the buffers"
            yield fetch
        if t.tail and i == n - 1:
            yield from self._tail(t, i)

    def _tail(self, t: Task, i: int) -> Process:
        """Work left after the last tile, run on several engines at once (Trio Rule D: the PW channels the MAT
        could not finish while the depthwise conv ran, taken by all PEs once it has ended)."""
        ledger = self.sim.ledger
        start = self.sim.now
        self.state[t.name] = "computing its tail on all engines"
        longest = max(p.cycles for p in t.tail)
        if longest:
            yield self.sim.env.timeout(longest)
        for p in t.tail:
            ledger.span(p.engine, start, start + p.cycles, t.name, self.categories[p.engine], i)
            ledger.charge(p.engine, t.name, t.op.kind, p.energy_pj)
        ledger.touch(t.name, start, start + longest)

    def _write_tile(self, t: Task, i: int, fifo_out: Fifo | None) -> Process:
        n = t.tiles
        env = self.sim.env
        rq = t.requant
        if rq is not None:
            unit = self.units[rq.engine]
            self.state[t.name] = f"tile {i}: waiting for re-quantization unit {rq.engine}"
            with unit.request() as req:
                yield req
                c = share(rq.cycles, n, i)
                start = self.sim.now
                if c:
                    yield env.timeout(c)
                self.sim.ledger.span(rq.engine, start, start + c, rq.name, "requant", i)
                self.sim.ledger.charge(rq.engine, rq.name, "requant", rq.energy_pj / n)
        self.state[t.name] = f"tile {i}: writing back"
        eng = t.engines[0]
        out = share(t.out_dram_bytes, n, i)
        if out:
            path: list[Target] = [self.dram, self.noc.route(eng, "dram")]
            yield from self._xfer(t, path, Command.WRITE, t.op.output, out, i, "dram_write")
        if t.resident_out or t.stream_out:
            nbytes = share(t.cost.write_bytes, n, i)
            dst = self.stream_buf if t.stream_out else self.act_buf
            path = [self.noc.route(eng, dst.name), dst]
            yield from self._xfer(t, path, Command.WRITE, t.op.output, nbytes, i, "buffer_write")
        if fifo_out is not None:
            self.state[t.name] = f"tile {i}: waiting for FIFO space (consumer behind)"
            yield fifo_out.put(i)
