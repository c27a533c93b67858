"""Batches on a pool (bot.executor.Batcher): what comes while one batch runs goes in the next."""

from __future__ import annotations

import logging
import threading

import pytest

from bot.executor import Batcher, TrackingExecutor


def test_items_handed_in_while_a_batch_runs_go_together_in_the_next() -> None:
    pool = TrackingExecutor(max_workers=4, name="leadbot-batch-probe")
    running, go_on = threading.Event(), threading.Event()
    batches: list[list[int]] = []
    at_once = 0
    lock = threading.Lock()

    def handle(batch: list[int]) -> None:
        nonlocal at_once
        with lock:
            at_once += 1
            assert at_once == 1, "two batches ran at once"
        batches.append(batch)
        if batch == [0]:
            running.set()
            assert go_on.wait(10)
        with lock:
            at_once -= 1

    batcher: Batcher[int] = Batcher(pool, handle, most=3, name="probe")
    try:
        batcher.submit(0)
        assert running.wait(10)
        for item in range(1, 8):
            batcher.submit(item)
        go_on.set()
        assert pool.wait_idle(10)
        # In order, the first alone, then what waited, three at most per batch.
        assert batches == [[0], [1, 2, 3], [4, 5, 6], [7]]
        batcher.submit(8)  # after the last batch ended: a batch of its own, started anew
        assert pool.wait_idle(10)
        assert batches[-1] == [8]
    finally:
        go_on.set()
        pool.shutdown(wait=True)


def test_a_failing_batch_is_logged_by_type_and_the_next_batches_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = TrackingExecutor(max_workers=2, name="leadbot-batch-probe")
    handled: list[list[str]] = []

    def handle(batch: list[str]) -> None:
        handled.append(batch)
        if "bad" in batch:
            raise KeyError("jane@acme.example")  # what an item may carry stays out of the log

    batcher: Batcher[str] = Batcher(pool, handle, most=10, name="probe")
    try:
        with caplog.at_level(logging.ERROR, logger="bot.executor"):
            batcher.submit("bad")
            assert pool.wait_idle(10)
            batcher.submit("good")
            assert pool.wait_idle(10)
    finally:
        pool.shutdown(wait=True)
    assert handled == [["bad"], ["good"]]
    [record] = caplog.records
    assert record.getMessage() == "probe: a batch of 1 failed: KeyError"


def test_a_batch_holds_at_least_one_item() -> None:
    pool = TrackingExecutor(max_workers=1, name="leadbot-batch-probe")
    try:
        with pytest.raises(ValueError, match="at least one"):
            Batcher(pool, lambda batch: None, most=0, name="probe")
    finally:
        pool.shutdown(wait=True)


def test_handing_in_to_a_stopped_pool_fails_and_a_later_start_is_not_blocked() -> None:
    pool = TrackingExecutor(max_workers=1, name="leadbot-batch-probe")
    pool.shutdown(wait=True)
    handled: list[list[int]] = []
    batcher: Batcher[int] = Batcher(pool, handled.append, most=5, name="probe")
    with pytest.raises(RuntimeError):
        batcher.submit(1)
    # The batcher is not left thinking a batch is under way: with a live pool it starts one.
    live = TrackingExecutor(max_workers=1, name="leadbot-batch-probe")
    batcher._pool = live
    try:
        batcher.submit(2)
        assert live.wait_idle(10)
    finally:
        live.shutdown(wait=True)
    assert handled == [[1, 2]]


def test_work_a_stopped_pool_refuses_does_not_count_as_busy() -> None:
    pool = TrackingExecutor(max_workers=1, name="test-stopped")
    pool.shutdown(wait=True)
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)
    # Graceful shutdown and the tests wait for idle; refused work must not hold them forever.
    assert pool.wait_idle(timeout=0)
