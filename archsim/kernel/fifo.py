"""Bounded FIFOs and token pools between pipelined stages: a full FIFO blocks its producer (back-pressure).

Both grant puts and gets at exactly the points in the event queue where ``simpy.Store`` and ``simpy.Container``
grant them (an event succeeds when its request can be met, and processing a put wakes the waiting gets and vice
versa), so a run is the same cycle for cycle; they only skip SimPy's generic resource machinery, which a tile
crosses several times.
"""
from __future__ import annotations

from collections import deque
from typing import Any

import simpy
from simpy.events import Event


class Fifo:
    """A bounded FIFO of items (tiles), the semantics of ``simpy.Store(env, capacity=depth)``."""

    __slots__ = ("env", "name", "capacity", "items", "_puts", "_gets")

    def __init__(self, env: simpy.Environment, name: str, depth: int) -> None:
        if depth < 1:
            raise ValueError("a FIFO needs a depth of at least one tile")
        self.env = env
        self.name = name
        self.capacity = depth
        self.items: deque[Any] = deque()
        self._puts: deque[tuple[Event, Any]] = deque()
        self._gets: deque[Event] = deque()

    def put(self, item: Any) -> Event:
        """An event that succeeds once ``item`` is in the FIFO."""
        event = Event(self.env)
        event.callbacks.append(self._wake_get)
        self._puts.append((event, item))
        self._wake_put()
        return event

    def get(self) -> Event:
        """An event that succeeds with the oldest item once there is one."""
        event = Event(self.env)
        event.callbacks.append(self._wake_put)
        self._gets.append(event)
        self._wake_get()
        return event

    def _wake_put(self, _: Event | None = None) -> None:
        """Admit the oldest waiting put if there is room (one, as SimPy's Store does)."""
        if self._puts and len(self.items) < self.capacity:
            event, item = self._puts.popleft()
            self.items.append(item)
            event.succeed()

    def _wake_get(self, _: Event | None = None) -> None:
        """Serve the oldest waiting get if there is an item (one, as SimPy's Store does)."""
        if self._gets and self.items:
            self._gets.popleft().succeed(self.items.popleft())


class Tokens:
    """A pool of ``capacity`` tokens (e.g. the two halves of a double buffer), the semantics of
    ``simpy.Container(env, capacity, init=capacity)`` with whole amounts."""

    __slots__ = ("env", "capacity", "level", "_puts", "_gets")

    def __init__(self, env: simpy.Environment, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a token pool needs at least one token")
        self.env = env
        self.capacity = capacity
        self.level = capacity
        self._puts: deque[tuple[Event, int]] = deque()
        self._gets: deque[tuple[Event, int]] = deque()

    def get(self, amount: int = 1) -> Event:
        """An event that succeeds once ``amount`` tokens are taken."""
        event = self._request(amount, self._wake_put)
        self._gets.append((event, amount))
        self._wake_get()
        return event

    def put(self, amount: int = 1) -> Event:
        """An event that succeeds once ``amount`` tokens are back."""
        event = self._request(amount, self._wake_get)
        self._puts.append((event, amount))
        self._wake_put()
        return event

    def _request(self, amount: int, on_processed: Any) -> Event:
        if amount <= 0:
            raise ValueError(f"amount(={amount}) must be > 0.")
        event = Event(self.env)
        event.callbacks.append(on_processed)
        return event

    def _wake_put(self, _: Event | None = None) -> None:
        """Admit waiting puts in order while they fit (as SimPy's Container does)."""
        while self._puts and self.capacity - self.level >= self._puts[0][1]:
            event, amount = self._puts.popleft()
            self.level += amount
            event.succeed()

    def _wake_get(self, _: Event | None = None) -> None:
        """Serve waiting gets in order while there are tokens (as SimPy's Container does)."""
        while self._gets and self.level >= self._gets[0][1]:
            event, amount = self._gets.popleft()
            self.level -= amount
            event.succeed()
