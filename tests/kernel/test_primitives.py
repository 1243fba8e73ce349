"""Port, Fifo and Tokens grant in exactly the order of the SimPy resources they replace, same-cycle ties included,
and the counting environment's run loop counts and fails as SimPy's does."""
from __future__ import annotations

import random
from typing import Any, Callable

import pytest
import simpy

from archsim.kernel.fifo import Fifo, Tokens
from archsim.kernel.kernel import CountingEnvironment
from archsim.kernel.port import Port

Log = list[tuple[float, str]]


def _port_scenario(make: Callable[[simpy.Environment], Any], seed: int) -> Log:
    """Processes contend for two ports with random (often zero) delays, so many requests and releases share a
    cycle; the log is every grant and release, in the order they happen."""
    env = CountingEnvironment()
    ports = [make(env), make(env)]
    log: Log = []
    rng = random.Random(seed)

    def user(name: str, plan: list[tuple[int, int, int]]) -> Any:
        for wait, which, hold in plan:
            if wait:
                yield env.timeout(wait)
            port = ports[which]
            req = port.request()
            yield req
            log.append((env.now, f"{name} got {which}"))
            if hold:
                yield env.timeout(hold)
            port.release(req)
            log.append((env.now, f"{name} freed {which}"))

    for k in range(6):
        env.process(user(f"p{k}", [(rng.choice([0, 0, 1, 2]), rng.randrange(2), rng.choice([0, 1, 3]))
                                   for _ in range(8)]))
    env.run()
    return log


@pytest.mark.parametrize("seed", range(5))
def test_port_grants_as_simpy_resource(seed: int) -> None:
    ours = _port_scenario(Port, seed)
    assert ours == _port_scenario(lambda env: simpy.Resource(env, capacity=1), seed)
    assert len(ours) == 96  # every request was granted and released


def _queue_scenario(make_fifo: Callable[[simpy.Environment], Any], make_tokens: Callable[[simpy.Environment], Any],
                    seed: int) -> Log:
    """Producers and consumers on a two-slot FIFO, gated by a two-token pool, with random same-cycle timing."""
    env = CountingEnvironment()
    fifo, tokens = make_fifo(env), make_tokens(env)
    log: Log = []
    rng = random.Random(seed)

    def producer(name: str) -> Any:
        for i in range(6):
            if rng.random() < 0.5:
                yield env.timeout(rng.randrange(3))
            yield tokens.get(1)
            log.append((env.now, f"{name} took a token"))
            yield fifo.put((name, i))
            log.append((env.now, f"{name} put {i}"))

    def consumer(name: str) -> Any:
        for _ in range(6):
            item = yield fifo.get()
            log.append((env.now, f"{name} got {item}"))
            if rng.random() < 0.5:
                yield env.timeout(rng.randrange(3))
            yield tokens.put(1)
            log.append((env.now, f"{name} returned a token"))

    for k in range(2):
        env.process(producer(f"prod{k}"))
        env.process(consumer(f"cons{k}"))
    env.run()
    return log


@pytest.mark.parametrize("seed", range(5))
def test_fifo_and_tokens_grant_as_simpy_store_and_container(seed: int) -> None:
    ours = _queue_scenario(lambda env: Fifo(env, "f", 2), lambda env: Tokens(env, 2), seed)
    simpys = _queue_scenario(lambda env: simpy.Store(env, capacity=2),
                             lambda env: simpy.Container(env, capacity=2, init=2), seed)
    assert ours == simpys
    assert len(ours) == 48  # every put, get, token taken and returned happened


def test_run_counts_every_event_and_step_agrees() -> None:
    def body(env: simpy.Environment) -> Any:
        for _ in range(3):
            yield env.timeout(1)

    fast, stepped = CountingEnvironment(), CountingEnvironment()
    fast.process(body(fast))
    fast.run()
    stepped.process(body(stepped))
    stepped.run(until=100)
    assert fast.events == 5  # Initialize, three timeouts, the process's end
    assert stepped.events == fast.events + 1  # SimPy's own loop adds the event that stops it at ``until``


def test_run_raises_an_unhandled_failure_as_simpy_does() -> None:
    env = CountingEnvironment()

    def broken() -> Any:
        yield env.timeout(1)
        raise ValueError("boom")

    env.process(broken())
    with pytest.raises(ValueError, match="boom"):
        env.run()
