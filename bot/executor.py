"""A thread pool that can say when all submitted work has finished."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


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

        return super().submit(tracked)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout=timeout)
