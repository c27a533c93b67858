"""Time as a dependency: production reads the wall clock, tests and the demo move a fake one.

Two kinds: business time (`Clock`: a lead's age, SLAs, the digest), which the demo moves by days,
and delivery time (`DeliveryTime`: the outbox's leases, retries and pacing), which processes
share and which only tests move.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that only moves when told to; shared safely between threads."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = _aware_utc(start or datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now

    def set(self, when: datetime) -> None:
        when = _aware_utc(when)
        with self._lock:
            self._now = when


def _aware_utc(when: datetime) -> datetime:
    # now() promises UTC: a time set in another zone would reach renderers that label it UTC,
    # and a naive one would fail only later, comparing with the database's aware times.
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("FakeClock needs a timezone-aware time")
    return when.astimezone(UTC)


class DeliveryTime(Protocol):
    def wall(self) -> datetime:
        """Now, timezone-aware, in UTC: leases and retry times, compared across processes."""
        ...

    def ticks(self) -> float:
        """Seconds from an arbitrary start, never going back: pacing and Retry-After."""
        ...


class SystemDeliveryTime:
    def wall(self) -> datetime:
        return datetime.now(UTC)

    def ticks(self) -> float:
        return time.monotonic()


class FakeDeliveryTime:
    """Delivery time that only moves when told to (tests): a retry, a lease's end or a paced
    channel's next token comes when the test says, not after a real wait.

    It starts `lead` ahead of the real clock, because rows are enqueued at real time (inside the
    callers' transactions, which know no outbox): what is enqueued during a test is due at once,
    and what the outbox schedules (retries, leases) falls due only as this clock is advanced."""

    def __init__(self, lead: timedelta = timedelta(minutes=10)) -> None:
        self._wall = datetime.now(UTC) + lead
        self._ticks = 0.0
        self._lock = threading.Lock()

    def wall(self) -> datetime:
        with self._lock:
            return self._wall

    def ticks(self) -> float:
        with self._lock:
            return self._ticks

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._wall += timedelta(seconds=seconds)
            self._ticks += seconds
