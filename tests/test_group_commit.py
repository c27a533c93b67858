"""models.group: callers that arrive together share one transaction, each gets its own
result, and one bad work does not sink the others; and concurrent /leads over HTTP are each
stored once, with their own receipts."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, event, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from models import JobRun, LeadEvent
from models.group import GroupCommit
from tests.conftest import MARKETER, Bot

DAY = date(2026, 11, 26)
AT = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


def _job(name: str) -> Callable[[Connection], str]:
    def work(conn: Connection) -> str:
        conn.execute(insert(JobRun).values(job=name, due_on=DAY, at=AT))
        return name

    return work


def _stored_jobs(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(select(JobRun.job)))


@contextmanager
def _commits(engine: Engine) -> Iterator[list[int]]:
    seen: list[int] = []

    def count(_conn: Any) -> None:
        seen.append(1)

    event.listen(engine, "commit", count)
    try:
        yield seen
    finally:
        event.remove(engine, "commit", count)


def _until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.005)


class _Batch:
    """A leader whose work holds its batch open until released, and followers queued
    behind it: they are sure to run together in the next batch."""

    def __init__(self, group: GroupCommit) -> None:
        self.group = group
        self.started = threading.Event()
        self.release = threading.Event()
        self.outcomes: dict[str, object] = {}
        self.threads: list[threading.Thread] = []

    def _call(self, name: str, work: Callable[[Connection], str]) -> None:
        try:
            self.outcomes[name] = self.group.run(work)
        except Exception as e:
            self.outcomes[name] = e

    def lead(self) -> None:
        def holding(conn: Connection) -> str:
            result = _job("leader")(conn)
            self.started.set()
            assert self.release.wait(10)
            return result

        self._start("leader", holding)
        assert self.started.wait(10)

    def follow(self, name: str, work: Callable[[Connection], str]) -> None:
        self._start(name, work)

    def _start(self, name: str, work: Callable[[Connection], str]) -> None:
        thread = threading.Thread(target=self._call, args=(name, work))
        thread.start()
        self.threads.append(thread)

    def finish(self, followers: int) -> dict[str, object]:
        _until(lambda: self.group.waiting == followers, f"{followers} callers queued")
        self.release.set()
        for thread in self.threads:
            thread.join(10)
        return self.outcomes


def test_a_lone_caller_runs_at_once_in_a_transaction_of_its_own(engine: Engine) -> None:
    group = GroupCommit(engine)
    with _commits(engine) as commits:
        assert group.run(_job("alone")) == "alone"
    assert _stored_jobs(engine) == {"alone"}
    assert (len(commits), group.batches, group.waiting) == (1, 1, 0)


def test_callers_that_arrive_together_share_one_commit(engine: Engine) -> None:
    group = GroupCommit(engine)
    batch = _Batch(group)
    names = [f"follower-{i}" for i in range(5)]
    with _commits(engine) as commits:
        batch.lead()
        for name in names:
            batch.follow(name, _job(name))
        outcomes = batch.finish(len(names))
    assert outcomes == {"leader": "leader", **{n: n for n in names}}
    assert len(commits) == 2  # the leader's, then one for all five followers
    assert group.batches == 2
    assert _stored_jobs(engine) == {"leader", *names}


def test_one_bad_work_does_not_sink_the_others(engine: Engine) -> None:
    group = GroupCommit(engine)
    batch = _Batch(group)
    runs: list[str] = []

    def bad(conn: Connection) -> str:
        runs.append("bad")
        _job("bad")(conn)  # written, then undone with its transaction
        raise ValueError("this lead cannot be stored")

    batch.lead()
    batch.follow("good-1", _job("good-1"))
    batch.follow("bad", bad)
    batch.follow("good-2", _job("good-2"))
    outcomes = batch.finish(3)

    assert outcomes["good-1"] == "good-1" and outcomes["good-2"] == "good-2"
    assert isinstance(outcomes["bad"], ValueError)
    assert _stored_jobs(engine) == {"leader", "good-1", "good-2"}
    assert runs == ["bad", "bad"]  # in the batch, then alone


def test_a_database_failure_reaches_every_caller_of_the_batch_at_once(engine: Engine) -> None:
    """Locked past its wait, or down: tried again one by one, each would wait as long again."""
    group = GroupCommit(engine)
    batch = _Batch(group)
    runs: list[str] = []

    def counted(name: str) -> Callable[[Connection], str]:
        def work(conn: Connection) -> str:
            runs.append(name)
            return _job(name)(conn)

        return work

    def unavailable(conn: Connection) -> str:
        runs.append("unavailable")
        raise OperationalError("INSERT …", {}, Exception("database is locked"))

    batch.lead()
    batch.follow("first", counted("first"))
    _until(lambda: group.waiting == 1, "the first follower queued")
    batch.follow("unavailable", unavailable)
    _until(lambda: group.waiting == 2, "the second follower queued")
    batch.follow("last", counted("last"))
    outcomes = batch.finish(3)

    assert all(isinstance(outcomes[n], OperationalError) for n in ("first", "unavailable", "last"))
    assert runs == ["first", "unavailable"]  # nothing run again, "last" never reached
    assert _stored_jobs(engine) == {"leader"}


def test_concurrent_leads_over_http_are_each_stored_once_with_their_own_receipt(
    bot: Bot,
) -> None:
    # Different people: the same person twice at the same instant is marked a repeat on
    # SQLite, whose writes take turns, but not always on PostgreSQL (each INSERT's lookup may
    # run before the other commits); tests/test_duplicates.py covers repeats.
    texts = [f"Person {i}, p{i}@acme.example, Acme, warm" for i in range(13)]
    barrier = threading.Barrier(len(texts))
    receipts: dict[int, str] = {}

    def send(i: int) -> None:
        barrier.wait()
        response = bot.sim.slash_command(texts[i], user_id=MARKETER, channel_id="C0EVENTS01")
        assert response.status == 200
        receipts[i] = response.json()["text"]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    bot.settle()

    stored = {lead.id: lead for lead in bot.leads()}
    assert len(stored) == len(texts)
    numbers = {i: int(re.search(r"Lead #(\d+) ", text).group(1)) for i, text in receipts.items()}  # type: ignore[union-attr]
    assert sorted(numbers.values()) == sorted(stored)  # every receipt names its own lead
    for i, number in numbers.items():
        assert stored[number].name == texts[i].split(",")[0]
    with bot.services.sessions() as s:
        submitted = s.scalars(select(LeadEvent.lead_id).where(LeadEvent.kind == "submitted"))
        assert sorted(submitted) == sorted(stored)
    assert all(bot.lead(number).card_ts for number in stored)  # and each got its card
