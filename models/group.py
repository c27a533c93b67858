"""Group commit: the transactions of callers that arrive together run as one.

On SQLite a commit writes each page its transaction changed to the log, and a new lead
changes 18 (the ends of three tables and their indexes), nearly all of them the same pages as
the next lead's. Storing four leads in one transaction took 504 µs of CPU each where a
transaction each took 699 (in-process, see bench/HISTORY.md); under load, the `/lead`s that
would each wait their turn for the file's writer lock are written together instead.

The first caller to arrive leads: it runs its own work and that of whoever queued meanwhile
in one transaction, commits, then hands the lead to the first caller that queued during its
batch, if any. A lone caller runs at once, as it would without this. Nothing a work writes is
visible to anyone before its batch commits. If the batch fails because of one work (it raised,
or its data did not fit), each of its works runs again in a transaction of its own, so one bad
lead cannot sink the others: every caller gets its own result, or its own exception. If the
database itself failed (an OperationalError: locked past its wait, down), every caller of the
batch gets that error at once.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

T = TypeVar("T")

MAX_BATCH = 16  # as many as the web threads (WEB_THREADS): a batch never waits for more


class _Entry(Generic[T]):
    __slots__ = ("done", "error", "result", "wake", "work")

    def __init__(self, work: Callable[[Connection], T]) -> None:
        self.work = work
        self.wake = threading.Event()  # set when done, or when this caller is to lead
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit:
    """Runs works (functions of a Connection in a transaction) for concurrent callers, those
    that wait together in one transaction."""

    def __init__(self, engine: Engine, max_batch: int = MAX_BATCH) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._guard = threading.Lock()
        self._line: deque[_Entry[Any]] = deque()
        self._leading = False  # a caller is running a batch, or has been told to
        self.batches = 0  # committed or failed, for tests and diagnostics

    @property
    def waiting(self) -> int:
        """Callers queued for the next batch."""
        with self._guard:
            return len(self._line)

    def run(self, work: Callable[[Connection], T]) -> T:
        """`work(conn)` inside a transaction that commits before this returns its result."""
        me: _Entry[T] = _Entry(work)
        with self._guard:
            self._line.append(me)
            lead = not self._leading
            self._leading = True
        if not lead:
            me.wake.wait()
            if me.done:
                return me.outcome()
        self._lead()
        return me.outcome()

    def _lead(self) -> None:
        with self._guard:
            batch = [self._line.popleft() for _ in range(min(self.max_batch, len(self._line)))]
        try:
            self._run(batch)
        except BaseException as e:  # interrupted: no caller may be left waiting
            for entry in batch:
                if not entry.done and entry.error is None:
                    entry.error = e
            raise
        finally:
            with self._guard:
                self.batches += 1
                following = self._line[0] if self._line else None
                self._leading = following is not None
            for entry in batch:
                entry.done = True
                entry.wake.set()
            if following is not None:
                following.wake.set()  # not done: it leads the next batch

    def _run(self, batch: list[_Entry[Any]]) -> None:
        try:
            with self.engine.begin() as conn:
                results = [entry.work(conn) for entry in batch]
        except Exception as e:
            if len(batch) == 1 or isinstance(e, OperationalError):
                # The database's own trouble (locked past its wait, down, disk full) is every
                # caller's: tried again one by one, each would wait as long again.
                for entry in batch:
                    entry.error = e
                return
            # Which one failed, and whether it would alone, is found out one by one.
            for entry in batch:
                try:
                    with self.engine.begin() as conn:
                        entry.result = entry.work(conn)
                except Exception as own:
                    entry.error = own
            return
        for entry, result in zip(batch, results, strict=True):
            entry.result = result
