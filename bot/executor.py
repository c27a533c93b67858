"""A thread pool that can say when all submitted work has finished, and batches run on it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class TrackingExecutor(ThreadPoolExecutor):
    """A pool (after-ack work, private notes) able to say when all submitted work has finished.

    Tests, the demo and graceful shutdown use `wait_idle` instead of sleeping.
    """

    def __init__(self, max_workers: int = 8, name: str = "leadbot-listener") -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=name)
        self._busy = 0
        self._idle = threading.Condition()
        self._start_all(max_workers)

    def _start_all(self, n: int) -> None:
        """Start every thread now. The pool otherwise starts one per submit while it has fewer
        than its maximum, and a start waits for the new thread to get the GIL: the acks of the
        first burst after start-up (which submit) waited tens of ms for it."""
        started = threading.Barrier(n + 1)
        for _ in range(n):
            super().submit(started.wait)
        started.wait()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._idle:
            self._busy += 1

        def tracked() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

        try:
            return super().submit(tracked)
        except RuntimeError:  # shut down: it will never run, so it is not busy either
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()
            raise

    def wait_idle(self, timeout: float = 10.0) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout=timeout)


class Batcher(Generic[T]):
    """Items handed in one at a time, handled together: `handle(batch)` runs on `pool` with
    everything waiting (at most `most` at a time), one batch after another, never two at once.

    When items come slower than they are handled, each is a batch of one, started at once.
    When they come faster (a burst of clicks), they wait for the batch under way and then go
    in one: one transaction instead of many, and one thread instead of several queueing for
    the same lock. While a batch is waiting or under way, the pool counts it as busy, so
    `TrackingExecutor.wait_idle` covers it."""

    def __init__(
        self, pool: Executor, handle: Callable[[list[T]], None], *, most: int, name: str
    ) -> None:
        if most < 1:
            raise ValueError("a batch holds at least one item")
        self._pool = pool
        self._handle = handle
        self._most = most
        self._name = name
        self._lock = threading.Lock()
        self._waiting: list[T] = []
        self._running = False

    def submit(self, item: T) -> None:
        with self._lock:
            self._waiting.append(item)
            if self._running:  # the batches under way will take it
                return
            self._running = True
        try:
            self._pool.submit(self._run)
        except RuntimeError:  # the pool is shut down: nothing will take the items
            with self._lock:
                self._running = False
            raise

    def _run(self) -> None:
        while True:
            with self._lock:
                batch = self._waiting[: self._most]
                del self._waiting[: self._most]
                if not batch:
                    self._running = False
                    return
            try:
                self._handle(batch)
            except Exception as e:  # logged by type: items may carry contact details
                log.error(
                    "%s: a batch of %d failed: %s",
                    self._name,
                    len(batch),
                    type(e).__name__,
                    exc_info=e,
                )
