"""How many model runs the server does at once.

Streamlit runs every browser session as a thread of one process, and the models
are loaded once and shared. Segmentations, explanations, occlusion and position
tests started by many sessions at the same time would otherwise all run at once:
each holds its activations and temporaries, so memory grows with the number of
users while the CPU time per run only gets longer. :data:`MODEL_GATE` lets
:func:`default_slots` runs through (one per core) and queues the rest, first come
first served, telling each waiting caller its place.

No Streamlit here: the dashboard's waiting message lives in ``cxr_dash/ui/state.py``.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterator

SLOTS_ENV = "CXR_MODEL_SLOTS"


class GateBusy(RuntimeError):
    """:meth:`ModelGate.slot` with ``wait=False`` found no free slot (or a queue)."""


def default_slots() -> int:
    """``CXR_MODEL_SLOTS`` when set (a positive integer), else the cores this process may use."""
    value = os.environ.get(SLOTS_ENV, "").strip()
    if value:
        try:
            slots = int(value)
        except ValueError:
            raise ValueError(f"{SLOTS_ENV}={value!r}: expected a positive integer") from None
        if slots < 1:
            raise ValueError(f"{SLOTS_ENV}={value!r}: expected a positive integer")
        return slots
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:          # not on Linux
        return max(1, os.cpu_count() or 1)


class ModelGate:
    """A first-come-first-served counting semaphore with a visible queue.

    ``with gate.slot(on_wait=report): ...`` runs the block once one of ``slots``
    places is free; while it waits, ``report(place)`` is called whenever its place
    in the queue changes (1: next), and at least every ``poll_s``. A thread that already holds a slot gets
    through at once (nested calls never deadlock), and a caller that leaves the
    queue early (an exception from ``report``, e.g. a Streamlit rerun) gives its
    place up.
    """

    def __init__(self, slots: int):
        if slots < 1:
            raise ValueError("a gate needs at least one slot")
        self.slots = slots
        self._cond = threading.Condition()
        self._queue: deque[int] = deque()
        self._tickets = itertools.count()
        self._running = 0
        self._held = threading.local()
        self.peak_running = 0           # the most runs seen at once (for the stress script)
        self.peak_waiting = 0

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def held(self) -> bool:
        """Whether the calling thread holds a slot now."""
        return getattr(self._held, "depth", 0) > 0

    @contextmanager
    def slot(self, wait: bool = True, on_wait: Callable[[int], None] | None = None,
             poll_s: float = 1.0) -> Iterator[None]:
        """Hold one slot for the block. ``wait=False``: raise :class:`GateBusy` instead
        of queueing when no slot is free now (or others are already queued)."""
        if self.held():
            self._held.depth += 1
            try:
                yield
            finally:
                self._held.depth -= 1
            return
        self._acquire(wait, on_wait, poll_s)
        self._held.depth = 1
        try:
            yield
        finally:
            self._held.depth = 0
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def _acquire(self, wait: bool, on_wait, poll_s: float) -> None:
        with self._cond:
            if self._running < self.slots and not self._queue:
                self._take()
                return
            if not wait:
                raise GateBusy(f"all {self.slots} model slots are busy")
            ticket = next(self._tickets)
            self._queue.append(ticket)
            self.peak_waiting = max(self.peak_waiting, len(self._queue))
        reported, reported_at = None, 0.0
        try:
            while True:
                with self._cond:
                    if self._queue[0] == ticket and self._running < self.slots:
                        self._queue.popleft()
                        self._take()
                        self._cond.notify_all()      # the next in line may fit too
                        return
                    place = self._queue.index(ticket) + 1
                    due = place != reported or time.monotonic() - reported_at >= poll_s
                    if on_wait is None or not due:
                        self._cond.wait(poll_s)
                        continue
                # Reported outside the lock: the callback may be slow or raise. It is
                # called again every poll_s even when the place stays: a Streamlit
                # session reacts to a rerun or a closed tab only inside such a call.
                on_wait(place)
                reported, reported_at = place, time.monotonic()
        except BaseException:
            with self._cond:
                if ticket in self._queue:
                    self._queue.remove(ticket)
                    self._cond.notify_all()
            raise

    def _take(self) -> None:
        self._running += 1
        self.peak_running = max(self.peak_running, self._running)


# The server-wide gate every model run of the dashboard passes (one process, shared models).
MODEL_GATE = ModelGate(default_slots())
