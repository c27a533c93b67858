"""The engine's connection handling: SQLite writers queue in the process, and a PostgreSQL
connection cut while idle is replaced before anyone uses it."""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, inspect, text
from sqlalchemy.exc import IntegrityError, OperationalError

import models
from bot import db
from models import make_engine, single_statement_engine


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM job_runs")) or 0)


def _insert(conn: object, job: str) -> None:
    conn.execute(  # type: ignore[attr-defined]
        text("INSERT INTO job_runs (job, due_on, at) VALUES (:job, '2026-11-26', '2026-11-26')"),
        {"job": job},
    )


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """SQLite whatever the suite's database: the writer queue is SQLite's alone."""
    engine = make_engine(f"sqlite:///{tmp_path / 'writers.db'}")
    models.Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_sqlite_writers_queue_and_each_commits(sqlite_engine: Engine) -> None:
    """A second writer waits for the first to commit, then goes: no 'database is locked'."""
    engine = sqlite_engine
    first_wrote = threading.Event()
    second_started = threading.Event()
    outcome: list[object] = []

    def second() -> None:
        second_started.set()
        try:
            with engine.begin() as conn:
                _insert(conn, "second")
            outcome.append("committed")
        except Exception as e:
            outcome.append(e)

    with engine.begin() as conn:
        _insert(conn, "first")
        first_wrote.set()
        waiter = threading.Thread(target=second)
        waiter.start()
        assert second_started.wait(5)
        waiter.join(0.3)
        # Still waiting for our transaction: the lock is held until COMMIT.
        assert waiter.is_alive() and outcome == []
    waiter.join(5)
    assert outcome == ["committed"]
    assert _count(engine) == 2


def test_sqlite_writer_lock_is_given_back_on_rollback_and_error(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    with pytest.raises(ZeroDivisionError), engine.begin() as conn:
        _insert(conn, "rolled back")
        raise ZeroDivisionError
    # The duplicate key fails mid-transaction; its rollback must free the lock too.
    with engine.begin() as conn:
        _insert(conn, "kept")
    with pytest.raises(Exception, match="UNIQUE"), engine.begin() as conn:
        _insert(conn, "kept")
    done = threading.Event()

    def write() -> None:
        with engine.begin() as conn:
            _insert(conn, "after")
        done.set()

    threading.Thread(target=write).start()
    assert done.wait(5), "a later writer was left waiting on a lock nobody holds"
    assert _count(engine) == 2


def test_sqlite_writer_waiting_too_long_is_told_the_database_is_locked(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = sqlite_engine
    monkeypatch.setattr(models._OneWriterConnection, "WAIT", 0.2)
    failure: list[BaseException] = []

    def second() -> None:
        try:
            with engine.begin() as conn:
                _insert(conn, "second")
        except OperationalError as e:
            failure.append(e)

    with engine.begin() as conn:
        _insert(conn, "first")
        waiter = threading.Thread(target=second)
        waiter.start()
        waiter.join(5)
    assert len(failure) == 1 and isinstance(failure[0].orig, sqlite3.OperationalError)
    assert "locked" in str(failure[0].orig)
    assert _count(engine) == 1


def test_postgres_connection_cut_while_idle_is_replaced(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database restart or a firewall drops pooled connections; the next request must not be
    the one that finds out."""
    if not database_url.startswith("postgresql"):
        pytest.skip("needs LEADBOT_TEST_DATABASE_URL (PostgreSQL)")
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    admin = make_engine(database_url)
    try:
        with engine.connect() as conn:
            pid = conn.scalar(text("SELECT pg_backend_pid()"))
        with admin.connect() as conn:
            assert conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        # Idle for longer than PING_IDLE_AFTER (made 0 here, rather than waiting).
        monkeypatch.setattr(models, "PING_IDLE_AFTER", 0.0)
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT pg_backend_pid()")) != pid
    finally:
        engine.dispose()
        admin.dispose()


def test_postgres_connections_carry_tcp_deadlines_a_url_may_override(database_url: str) -> None:
    """A server gone without a word (a failover moved its address) held a query, or the pool's
    ping, for ~15 minutes of TCP retransmissions; keepalives and tcp_user_timeout bound it."""
    if not database_url.startswith("postgresql"):
        pytest.skip("needs LEADBOT_TEST_DATABASE_URL (PostgreSQL)")
    sep = "&" if "?" in database_url else "?"
    for url, user_timeout in (
        (database_url, "10000"),
        (f"{database_url}{sep}tcp_user_timeout=30000", "30000"),
    ):
        engine = make_engine(url, pool_size=1, max_overflow=0)
        try:
            with engine.connect() as conn:
                driver = conn.connection.dbapi_connection
                assert driver is not None
                given = driver.info.get_parameters()  # type: ignore[attr-defined]
        finally:
            engine.dispose()
        assert given["tcp_user_timeout"] == user_timeout
        assert (given["keepalives"], given["keepalives_idle"], given["connect_timeout"]) == (
            "1",
            "10",
            "2",
        )


def test_single_statement_sessions_send_no_begin_on_postgres(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads and lone UPDATEs run in autocommit on PostgreSQL (psycopg sends BEGIN and COMMIT as
    round trips of their own); elsewhere they are the ordinary sessions."""
    engine = make_engine(database_url)
    try:
        sessions = models.make_sessionmaker(engine)
        single = models.single_statement(sessions)
        if not database_url.startswith("postgresql"):
            assert single is sessions
            return
        # Every checkout pings first, as after an idle spell: the ping must leave no
        # transaction open, or the connection could not be switched to autocommit.
        monkeypatch.setattr(models, "PING_IDLE_AFTER", 0.0)
        for _ in range(2):
            with single.begin() as s:
                assert s.scalar(text("SELECT 1")) == 1
                status = s.connection().connection.driver_connection.info.transaction_status
                assert status.name == "IDLE"  # no BEGIN was sent
        with sessions.begin() as s:  # the ordinary sessions are transactions still
            s.execute(text("SELECT 1"))
            status = s.connection().connection.driver_connection.info.transaction_status
            assert status.name == "INTRANS"
    finally:
        engine.dispose()


# --- the order in which SQLite writers get the lock -------------------------------------------


def _in_line(queue: models.WriterQueue, n: int) -> None:
    """Wait (bounded) until `n` writers queue: a thread's arrival is not synchronous."""
    deadline = time.monotonic() + 5
    while queue.waiting < n:
        assert time.monotonic() < deadline, f"{queue.waiting} writers in line, expected {n}"
        time.sleep(0.001)


def _writer(queue: models.WriterQueue, name: str, order: list[str]) -> threading.Thread:
    """A thread that takes the lock, notes `name` in `order`, and gives it back."""

    def write() -> None:
        if queue.acquire(timeout=10):
            order.append(name)
            queue.release()

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_writers_get_the_lock_in_the_order_they_asked() -> None:
    queue = models.WriterQueue()
    order: list[str] = []
    assert queue.acquire(timeout=1)
    threads = []
    for i in range(5):
        threads.append(_writer(queue, f"writer {i}", order))
        _in_line(queue, i + 1)
    queue.release()
    for thread in threads:
        thread.join(5)
    assert order == [f"writer {i}" for i in range(5)]
    assert queue.acquire(timeout=0), "the lock was left held after the last writer"


def test_a_writer_that_gives_the_lock_back_cannot_take_it_again_ahead_of_a_waiting_one() -> None:
    """The outbox and the after-ack work write in back-to-back transactions: each one must
    queue behind the writers already waiting, not barge in while they wake."""
    queue = models.WriterQueue()
    order: list[str] = []
    assert queue.acquire(timeout=1)
    waiting = _writer(queue, "waiting", order)
    _in_line(queue, 1)
    queue.release()
    assert queue.acquire(timeout=5)  # at once again, as a back-to-back transaction does
    order.append("back to back")
    queue.release()
    waiting.join(5)
    assert order == ["waiting", "back to back"]


def test_a_writer_that_gives_up_leaves_the_line() -> None:
    queue = models.WriterQueue()
    order: list[str] = []
    assert queue.acquire(timeout=1)
    assert not queue.acquire(timeout=0.05)  # from this thread: it holds it, and waits in vain
    assert queue.waiting == 0
    later = _writer(queue, "later", order)
    _in_line(queue, 1)
    queue.release()
    later.join(5)
    assert order == ["later"]
    assert queue.acquire(timeout=0)


def test_the_pool_hands_out_the_connection_used_last(sqlite_engine: Engine) -> None:
    """SQLite drops a connection's page cache when another connection wrote since its last
    transaction: the connection used last is the one whose cache is most likely still good."""
    first, second = sqlite_engine.connect(), sqlite_engine.connect()
    raw_first = first.connection.dbapi_connection
    raw_second = second.connection.dbapi_connection
    assert raw_first is not raw_second
    first.close()
    second.close()  # used last
    with sqlite_engine.connect() as again:
        assert again.connection.dbapi_connection is raw_second


def test_a_plain_lead_reads_as_its_row_and_tracks_later_changes() -> None:
    values = {c.key: None for c in models.Lead.__table__.c} | {
        "id": 7,
        "name": "Ada Lovelace",
        "status": models.NEW,
    }
    lead = models.plain_lead(values)
    built = models.Lead(**values)
    assert all(getattr(lead, k) == getattr(built, k) for k in values)
    assert inspect(lead).transient
    lead.status = models.CLAIMED
    assert inspect(lead).attrs.status.history.added == [models.CLAIMED]


def _as_web_request(work: Callable[[], None]) -> tuple[str | None, float, bool | None]:
    """Run `work` as bot.server runs a request's handling; (what was cut, seconds taken,
    whether the error invalidated the connection: None when it finished)."""
    request = db.web_request()
    request.started, request.cut = time.monotonic(), None
    try:
        work()
        invalidated = None
    except OperationalError as e:
        invalidated = e.connection_invalidated
    finally:
        took = time.monotonic() - request.started
        request.started = None
    return request.cut, took, invalidated


# Short, but with room for a loaded CI machine: the COMMIT case's four statements before its
# COMMIT must be done by then, and each cut must land before its 3 s query would have ended.
DEADLINE = 1.0


def _web_thread(
    results: dict[str, tuple[str | None, float, bool | None]],
    name: str,
    work: Callable[[], None],
) -> threading.Thread:
    """A thread that runs `work` as a web request, its outcome (`_as_web_request`) in
    results[name]."""

    def run() -> None:
        results[name] = _as_web_request(work)

    return threading.Thread(target=run)


def _slow_commit(engine: Engine) -> None:
    """A transaction whose COMMIT takes 3 s (a deferred trigger sleeps in it)."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TEMP TABLE slow_commit (x int)"))
        conn.execute(
            text(
                "CREATE FUNCTION pg_temp.slowly() RETURNS trigger LANGUAGE plpgsql AS "
                "$$BEGIN PERFORM pg_sleep(3); RETURN NULL; END$$"
            )
        )
        conn.execute(
            text(
                "CREATE CONSTRAINT TRIGGER slowly AFTER INSERT ON slow_commit DEFERRABLE "
                "INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pg_temp.slowly()"
            )
        )
        conn.execute(text("INSERT INTO slow_commit VALUES (1)"))


def test_a_web_request_past_its_deadline_is_cut_and_nothing_else(database_url: str) -> None:
    """bot.db.RequestDeadline, with a short deadline: a web request's query, autocommit
    statement and COMMIT are each cut at the deadline, saying whether a commit was in flight,
    and the request opens no new connection after; a thread that is not a web request's waits
    as long as its query takes."""
    if not database_url.startswith("postgresql"):
        pytest.skip("needs LEADBOT_TEST_DATABASE_URL (PostgreSQL)")
    engine = make_engine(database_url, pool_size=1, max_overflow=10)
    watch = db.RequestDeadline(engine, deadline=DEADLINE, every=0.1)
    results: dict[str, tuple[str | None, float, bool | None]] = {}

    def query() -> None:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_sleep(3)"))

    def autocommit() -> None:
        with single_statement_engine(engine).connect() as conn:
            conn.execute(text("SELECT pg_sleep(3)"))

    def commit() -> None:
        _slow_commit(engine)

    def then_connect() -> None:  # cut, then asks for a new connection in the same request
        try:
            query()
        except OperationalError:
            started = time.monotonic()
            with (
                pytest.raises(OperationalError, match="no new connection"),
                engine.connect() as conn,
            ):
                conn.execute(text("SELECT 1"))
            assert time.monotonic() - started < 0.5
            raise

    def job() -> None:
        started = time.monotonic()
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_sleep(1.5)"))
        results["job"] = (None, time.monotonic() - started, None)

    web = functools.partial(_web_thread, results)

    threads = [
        web("query", query),
        web("autocommit", autocommit),
        web("commit", commit),
        web("then connect", then_connect),
        threading.Thread(target=job),
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        for name, cut in (
            ("query", db.CUT_QUERY),
            ("autocommit", db.CUT_COMMIT),
            ("commit", db.CUT_COMMIT),
            ("then connect", db.CUT_QUERY),
        ):
            assert results[name][0] == cut, (name, results[name])
            assert results[name][2] is True, (name, results[name])  # the pool drops it
            assert DEADLINE <= results[name][1] < 2.5, (name, results[name])
        assert results["job"][0] is None and results["job"][1] >= 1.5
        assert watch.cuts == 4
        # Outside a request, the pool opens connections as usual.
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT 1")) == 1
    finally:
        engine.dispose()  # (a new pool: the watch's listeners go with it, and away with it)
        watch.close()
    assert "connect" not in vars(engine.dialect)
    assert (len(engine.pool.dispatch.checkin), len(engine.pool.dispatch.checkout)) == (1, 1)


class _CommitBySQL(psycopg.Connection[Any]):
    """psycopg with a commit() whose code is not psycopg's Connection.commit, as after an
    upgrade that renamed or restructured it: the same COMMIT, sent as a statement."""

    def commit(self) -> None:
        self.execute("COMMIT")


def test_the_commit_mark_not_psycopgs_code_says_a_commit_was_in_flight(
    database_url: str,
) -> None:
    """The watch told a COMMIT from a query by finding psycopg's Connection.commit on the
    waiting thread's stack: with a commit() of other code, a COMMIT cut at the deadline was
    said to have stored nothing. The dialect's do_commit now marks the connection while it
    runs: a COMMIT is "commit" whatever psycopg's code, and a query is "query", also after a
    commit that returned and one that failed on the same connection."""
    if not database_url.startswith("postgresql"):
        pytest.skip("needs LEADBOT_TEST_DATABASE_URL (PostgreSQL)")
    engine = make_engine(database_url, pool_size=1, max_overflow=10)

    @event.listens_for(engine, "do_connect")
    def connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        return _CommitBySQL.connect(*cargs, **cparams)

    watch = db.RequestDeadline(engine, deadline=DEADLINE, every=0.1)
    results: dict[str, tuple[str | None, float, bool | None]] = {}

    def commit() -> None:
        _slow_commit(engine)

    def query() -> None:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_sleep(3)"))

    def after_commits() -> None:  # one commit returns, one fails, then a query waits
        with engine.connect() as conn:
            conn.execute(
                text("CREATE TEMP TABLE once (x int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
            )
            conn.commit()
            conn.execute(text("INSERT INTO once VALUES (1), (1)"))
            with pytest.raises(IntegrityError):
                conn.commit()
            conn.rollback()
            conn.execute(text("SELECT pg_sleep(3)"))

    web = functools.partial(_web_thread, results)

    threads = [web("commit", commit), web("query", query), web("after commits", after_commits)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        for name, cut in (
            ("commit", db.CUT_COMMIT),
            ("query", db.CUT_QUERY),
            ("after commits", db.CUT_QUERY),
        ):
            assert results[name][0] == cut, (name, results[name])
            assert DEADLINE <= results[name][1] < 2.5, (name, results[name])
        assert watch.cuts == 3
    finally:
        engine.dispose()
        watch.close()
    assert "do_commit" not in vars(engine.dialect)


def test_an_engine_is_watched_once(tmp_path: Path) -> None:
    """Each RequestDeadline wraps the dialect's connect: two on one engine, closed in the order
    they were made, left the first one's wrapper installed for good. A second is refused."""
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        first = db.RequestDeadline(engine)
        with pytest.raises(ValueError, match="watched already"):
            db.RequestDeadline(engine)
        first.close()
        assert not {"connect", "do_commit"} & set(vars(engine.dialect))
        db.RequestDeadline(engine).close()  # once closed, it may be watched again
        assert not {"connect", "do_commit"} & set(vars(engine.dialect))
    finally:
        engine.dispose()
