"""Database plumbing: engines, Alembic upgrades and the schema check at start-up."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL, Engine, event, exc, inspect, make_url, text

import migrations
from models import make_engine

if TYPE_CHECKING:
    from alembic.config import Config

# The newest migration's revision (tests/test_startup.py checks it against Alembic's head). With
# it, a start on a current schema reads one row and skips Alembic, whose import and script
# loading took a quarter of a second of every start.
HEAD = "0011"

log = logging.getLogger(__name__)


def unavailable(error: BaseException) -> bool:
    """Whether `error` says the database is out of reach (down, restarting, not answering, the
    connection cut), rather than refusing a statement or a bug: worth waiting out."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(
        error,
        (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError, NoAnswerInTime),
    )


class Trouble:
    """The log of work that keeps failing and is tried again by itself (the outbox's passes, a
    scheduled job): the first failure is one ERROR line, with its traceback unless the database
    is simply out of reach; the same failure again is only counted, with a reminder every
    `remind_every` seconds; the first success after it says how long it lasted. Logged at every
    try, an outage of 30 s wrote 1,400 lines, a traceback every 2 seconds."""

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        remind_every: float = 60.0,
        *,
        meanwhile: str = "trying again, quietly until it works",
    ) -> None:
        self.log = log
        self.what = what
        self.remind_every = remind_every
        self.meanwhile = meanwhile  # the first line's last words: what happens from now on
        self._lock = threading.Lock()
        self._since: float | None = None  # monotonic time of the first failure in a row
        self._kind = ""
        self._count = 0
        self._said = 0.0

    def failed(self, error: BaseException) -> None:
        kind = type(error).__name__
        now = time.monotonic()
        with self._lock:
            first = self._since is None or kind != self._kind
            if first:
                self._since, self._kind, self._count, self._said = now, kind, 1, now
            else:
                self._count += 1
            since, count = self._since or now, self._count
            remind = not first and now - self._said >= self.remind_every
            if remind:
                self._said = now
        if first and unavailable(error):
            # A cut at a request's deadline says what is known of it: NoAnswerInTime's text.
            cut = isinstance(error, NoAnswerInTime)
            why = str(error) if cut else "the database is out of reach"
            self.log.error("%s failed: %s (%s); %s", self.what, kind, why, self.meanwhile)
        elif first:
            self.log.error("%s failed: %s", self.what, kind, exc_info=error)
        elif remind:
            self.log.error(
                "%s still failing after %.0f s (%d tries): %s", self.what, now - since, count, kind
            )

    def ok(self) -> None:
        if self._since is None:  # the usual case: nothing to say, no lock
            return
        with self._lock:
            since, count = self._since, self._count
            self._since = None
        if since is not None:
            self.log.warning(
                "%s works again, after %.0f s and %d failed tries",
                self.what,
                time.monotonic() - since,
                count,
            )


# --- the deadline of a web request's database work (PostgreSQL) --------------------------------

# Seconds from a web request's arrival after which a database call it is still waiting for is
# given up: its connection is cut and the request answers "not saved" (or "may have been
# saved", when a commit was in flight) instead of waiting for as long as a frozen server, a
# hung disk or a stuck commit lasts. Slack shows its own "operation_timeout" 3 s after sending;
# this leaves ~0.8 s for the answer and the network both ways. It is also just past the
# server's own lock_timeout (2 s from the statement's start, models.make_engine), whose refusal
# is certain ("nothing was stored") where a cut is not; and it is Socket Mode's ACK_DEADLINE.
REQUEST_DEADLINE = 2.2
# How often the watch looks at the connections web requests hold, when none is due sooner.
# Below REQUEST_DEADLINE, so a connection taken since the last look is seen before it is due.
WATCH_EVERY = 0.5
# What a cut connection was doing (WebRequest.cut).
CUT_QUERY = "query"  # a statement inside a transaction, or a read: nothing was stored
CUT_COMMIT = "commit"  # a COMMIT, or a statement in autocommit: it may have been stored


class WebRequest:
    """A web thread's marker: when its request arrived (None between requests) and what of its
    database work was cut at the deadline. One per thread, reused by each of its requests."""

    __slots__ = ("cut", "started")

    def __init__(self) -> None:
        self.started: float | None = None
        self.cut: str | None = None


_local = threading.local()


def web_request() -> WebRequest:
    """This thread's marker (bot.server sets `started` around the handling of each request)."""
    try:
        return _local.web  # type: ignore[no-any-return]
    except AttributeError:
        web = _local.web = WebRequest()
        return web


def cut_during_commit() -> bool:
    """Whether the web request on this thread lost a connection to REQUEST_DEADLINE while a
    commit was in flight: its write may or may not have been stored."""
    web = getattr(_local, "web", None)
    return web is not None and web.cut == CUT_COMMIT


class NoAnswerInTime(Exception):
    """A web request's database call cut at REQUEST_DEADLINE (the kind the log names); its
    text says what is known: no answer in time, and whether a commit was in flight."""


# (when its request arrived, the request's thread, psycopg's connection, the pool's proxy of
# it that SQLAlchemy commits through): a tuple, built on every web request's checkout.
_Hold = tuple[float, WebRequest, Any, Any]


# The pool's events for a connection that leaves without coming back to it.
_DROPPED = ("invalidate", "close", "detach")


class RequestDeadline:
    """Gives the database work of web requests (HTTP mode, before their answer) REQUEST_DEADLINE
    seconds from the request's arrival, on a PostgreSQL engine.

    The pool's checkout and checkin record, for web threads only (WebRequest.started set), which
    connections they hold since when: a few dict operations per checkout. One daemon thread
    looks at them when the soonest is due (at least every WATCH_EVERY s) and shuts down the
    socket of one held past its request's deadline, as /healthz does to its own check: the
    wait in psycopg ends at once in an OperationalError, the pool drops the connection, and
    the handler answers in time. Before that it notes whether a commit was in flight (the
    connection in autocommit, or inside the dialect's do_commit, which this engine's dialect
    marks per connection while it runs), which the handler asks through cut_during_commit().

    Jobs, the outbox, the scheduler, after-ack work, copy-db and /healthz run on threads of
    their own and are never cut. SQLite is not watched: a thread stuck on a hung disk cannot be
    woken this way."""

    def __init__(
        self, engine: Engine, *, deadline: float = REQUEST_DEADLINE, every: float = WATCH_EVERY
    ) -> None:
        self.engine = engine
        self.deadline = deadline
        self.every = every
        self.cuts = 0  # connections cut so far
        self.trouble = Trouble(
            log,
            "a web request's database call",
            meanwhile="its connection was cut so Slack is answered in time; quietly until one "
            "gets an answer",
        )
        self._held: dict[Any, _Hold] = {}  # pool connection record -> its hold
        self._lock = threading.Lock()  # a cut, and a held connection's return, one at a time
        self._wake = threading.Event()
        self._next_look = 0.0
        self._thread: threading.Thread | None = None
        self._closed = False
        # The connections (pool proxies, as SQLAlchemy passes them) inside do_commit now.
        self._commits: set[Any] = set()
        # On the pool itself, which engine.dispose() replaces (its listeners carried over):
        # removing them through the engine would then find none.
        self._pool = engine.pool
        # One per engine: two would wrap the dialect's connect in turn, and closing them out of
        # order would leave a closed one's wrapper in place.
        if isinstance(getattr(vars(engine.dialect).get("connect"), "__self__", None), type(self)):
            raise ValueError("this engine's requests are watched already")
        # First: models' ping on checkout may be what waits.
        event.listen(self._pool, "checkout", self._checked_out, insert=True)
        event.listen(self._pool, "checkin", self._checked_in)
        for name in _DROPPED:
            event.listen(self._pool, name, self._dropped)
        # A request that lost a connection to the deadline opens no new one: the pool opens
        # one at once when a cut hit its ping on checkout, and connect_timeout is 2 s. (The
        # dialect's method, on this engine's dialect only: called per new connection, where
        # an event for it would add a check to every statement.)
        dialect = engine.dialect
        self._own_connect = "connect" in vars(dialect)
        self._connect = dialect.connect
        dialect.connect = self._connect_unless_cut  # type: ignore[method-assign]
        # Every commit of this engine (a Connection's, a Session's) goes through the
        # dialect's do_commit, whatever psycopg calls its code: the watch reads the mark, where
        # reading psycopg's commit() off the holder's stack would, once an upgrade renamed it,
        # have said "nothing was stored" of a cut COMMIT. ~0.1 µs a commit (a COMMIT: 40 µs).
        self._own_do_commit = "do_commit" in vars(dialect)
        self._do_commit = dialect.do_commit
        dialect.do_commit = self._marked_commit  # type: ignore[method-assign]

    @classmethod
    def watch(cls, engine: Engine) -> RequestDeadline | None:
        """One for `engine` if it is PostgreSQL's through psycopg 3, else None."""
        dialect = engine.dialect
        return cls(engine) if (dialect.name, dialect.driver) == ("postgresql", "psycopg") else None

    # --- on the request's thread (keep these cheap: every web request takes them) ---

    def _checked_out(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        web = getattr(_local, "web", None)
        if web is None or web.started is None:  # not a web request: never cut
            return
        started = web.started
        self._held[record] = (started, web, dbapi_connection, proxy)
        if started + self.deadline < self._next_look:  # due before the watch looks again
            self._wake.set()
        if self._thread is None:
            self._start()

    def _checked_in(self, _dbapi_connection: Any, record: Any) -> None:
        if record in self._held and self._forget(record):
            self.trouble.ok()  # (an attribute test, unless cuts were logged)

    def _dropped(self, _dbapi_connection: Any, record: Any, *_: Any) -> None:
        if record in self._held:
            self._forget(record)

    def _forget(self, record: Any) -> bool:
        # Under the lock, so a cut cannot shut down the socket of a connection meanwhile
        # handed to someone else, or closed and its descriptor reused.
        with self._lock:
            return self._held.pop(record, None) is not None

    def _connect_unless_cut(self, *args: Any, **kwargs: Any) -> Any:
        web = getattr(_local, "web", None)
        if web is not None and web.started is not None and web.cut is not None:
            raise self.engine.dialect.loaded_dbapi.OperationalError(
                f"no new connection: the database did not answer within {self.deadline:.1f} s"
            )
        return self._connect(*args, **kwargs)

    def _marked_commit(self, connection: Any) -> None:
        # Marked before the COMMIT goes out and until it returned or failed: a cut in between
        # says "may have been stored", the safe side. (A set's add and discard are atomic.)
        commits = self._commits
        commits.add(connection)
        try:
            self._do_commit(connection)
        finally:
            commits.discard(connection)

    # --- the watch ---

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(
                target=self._watch, name="leadbot-request-deadline", daemon=True
            )
            self._thread.start()

    def _watch(self) -> None:
        while not self._closed:
            # Until the next look is known, every checkout wakes the watch (it may be due
            # before that look): none taken while this one reads is missed.
            self._next_look = float("inf")
            self._wake.clear()
            now = time.monotonic()
            soonest = now + self.every
            try:
                for record, hold in self._held.copy().items():  # (a copy is atomic)
                    due = hold[0] + self.deadline
                    if due <= now:
                        self._cut(record, hold)
                    else:
                        soonest = min(soonest, due)
            except Exception:  # never let the watch end
                log.exception("request deadline: the watch failed a round")
            self._next_look = soonest
            self._wake.wait(max(0.0, soonest - time.monotonic()))

    def _cut(self, record: Any, hold: _Hold) -> None:
        with self._lock:
            if self._held.get(record) is not hold:  # returned meanwhile
                return
            del self._held[record]
            started, web, connection, proxy = hold
            if web.started != started:  # its request is over: whatever holds it now is not
                return
            try:
                fd = connection.pgconn.socket  # raises once libpq has closed it
            except Exception:
                return  # lost already: its holder is not waiting on it
            # Read before the cut, while the holder still waits where it was. (SQLAlchemy
            # hands do_commit the pool's proxy; a caller handing it psycopg's connection counts.)
            committing = (
                connection.autocommit or proxy in self._commits or connection in self._commits
            )
            web.cut = CUT_COMMIT if committing else CUT_QUERY
            try:
                with socket.socket(fileno=os.dup(fd)) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.cuts += 1
        # What is known: no answer in time (the server may be down, or only slow).
        known = (
            "a commit in flight: it may have been stored"
            if committing
            else "no commit in flight: nothing was stored"
        )
        self.trouble.failed(NoAnswerInTime(f"no answer within {self.deadline:.1f} s, {known}"))

    def close(self) -> None:
        """Stop watching (again: nothing)."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        event.remove(self._pool, "checkout", self._checked_out)
        event.remove(self._pool, "checkin", self._checked_in)
        for name in _DROPPED:
            event.remove(self._pool, name, self._dropped)
        if self._own_connect:
            self.engine.dialect.connect = self._connect  # type: ignore[method-assign]
        else:
            del self.engine.dialect.connect
        if self._own_do_commit:
            self.engine.dialect.do_commit = self._do_commit  # type: ignore[method-assign]
        else:
            del self.engine.dialect.do_commit
        if self._thread is not None:
            self._thread.join(2)


class UnknownRevision(Exception):
    """The database is stamped with a revision this leadbot has no migration for; str() is one
    line for a person, without the setting's name (the caller knows which one it was)."""


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def check_known(revision: str | None) -> None:
    """Raise UnknownRevision for a revision no migration here made: a newer leadbot's. Alembic
    would fail on it with a traceback, and neither a re-run nor `leadbot migrate` can help."""
    if revision is None or revision == HEAD or revision in known_revisions():
        return
    raise UnknownRevision(
        f"the schema is at {revision}, which this leadbot does not know — it was migrated by a "
        "newer leadbot; run that version (or restore a backup)"
    )


def alembic_config(engine: Engine | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    # The scripts ship inside the installed package, so this works without a source checkout.
    config.set_main_option("script_location", str(files(migrations)))
    if engine is not None:
        config.set_main_option(
            "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
        )
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision stamped in the database; None for a database Alembic has never touched."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == HEAD


def upgrade(
    engine: Engine,
    target: str = "head",
    *,
    wait: float | None = None,
    waiting: Callable[[str], None] | None = None,
) -> tuple[str | None, str]:
    """Migrate to `target`, head by default (idempotent); returns (revision before, revision
    after). Tests name an older target to start from an old schema. One upgrade at a time per
    database (migration_lock, `wait` and `waiting` as there): the revision is read once the lock
    is held, so a run that waited for another one finds the schema at head and does nothing.
    Raises UnknownRevision for a database a newer leadbot migrated, MigrationBusy when another
    upgrade held the lock for all of `wait`."""
    from alembic import command

    with migration_lock(engine, wait=wait, waiting=waiting):
        before = current_revision(engine)
        check_known(before)
        config = alembic_config(engine)
        # A plain connection, not a transaction: Alembic commits each migration itself.
        with engine.connect() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, target)
    return before, head_revision() if target == "head" else target


# --- one migration at a time ---------------------------------------------------------------------

# How long an upgrade waits for another one on the same database before it gives up (seconds).
# Teams run `leadbot migrate` in each pod's init container, and SQLite deployments migrate at
# every start: without the lock, two runs at once both saw an old revision, both ran Alembic,
# and one failed on what the other had just made ("table alembic_version already exists").
MIGRATION_WAIT = 600.0
# The key of PostgreSQL's advisory lock for it ("leadbot" in ASCII). Advisory locks belong to a
# database: two databases on one server do not wait for each other.
MIGRATION_LOCK_KEY = 0x6C656164626F74
# A SQLite database's lock is a file next to it, as its -wal and -shm files are.
SQLITE_LOCK_SUFFIX = "-migrate.lock"
# How often a waiting upgrade tries the lock again (seconds).
_RETRY = 0.1


class MigrationBusy(Exception):
    """Another upgrade of this database held the lock for all of MIGRATION_WAIT; str() is one
    line for a person."""


def sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL, resolved as SQLite resolves it (from the working directory);
    None for another database or a `file:` URI."""
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    if url.database.startswith("file:"):
        return None
    return Path(url.database).resolve()


def waiting_line(wait: float) -> str:
    """What a run says, once, when it finds another one migrating."""
    return (
        "another leadbot is migrating this database; waiting for it to finish "
        f"(at most {_span(wait)})"
    )


def _span(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds:.1f} s"


def _busy(wait: float) -> MigrationBusy:
    return MigrationBusy(
        f"another leadbot has been migrating this database for more than {_span(wait)}; "
        "gave up waiting — let it finish (or stop it), then run `leadbot migrate` again"
    )


@contextmanager
def migration_lock(
    engine: Engine, *, wait: float | None = None, waiting: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold this database's migration lock for the block: on PostgreSQL a session-level
    advisory lock on a connection of its own (it outlives the migrations' commits and
    autocommit blocks, and ends with the connection if the process dies); on SQLite an
    exclusive flock on a file next to the database. Waits up to `wait` seconds (MIGRATION_WAIT)
    for another holder, saying so once through `waiting` (a WARNING by default), then raises
    MigrationBusy."""
    wait = MIGRATION_WAIT if wait is None else wait
    say = waiting or log.warning
    if engine.dialect.name == "postgresql":
        with _pg_migration_lock(engine, wait, say):
            yield
        return
    path = sqlite_file(engine.url)
    with _file_lock(path, wait, say) if path is not None else _nothing():
        yield


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def _pg_migration_lock(engine: Engine, wait: float, say: Callable[[str], None]) -> Iterator[None]:
    key = {"key": MIGRATION_LOCK_KEY}
    # Autocommit, and tried again rather than waited for in pg_advisory_lock: a session that
    # waits inside a statement (or sits in a transaction) holds a snapshot, and the holder's
    # CREATE INDEX CONCURRENTLY waits for every older snapshot to go: each waiting run made
    # the running one fail on its lock_timeout, half-way through a migration.
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    held = False
    try:
        take = text("SELECT pg_try_advisory_lock(:key)")
        held = bool(conn.scalar(take, key))
        if not held:
            say(waiting_line(wait))
            deadline = time.monotonic() + wait
            while not held:
                if time.monotonic() >= deadline:
                    raise _busy(wait)
                time.sleep(_RETRY)
                held = bool(conn.scalar(take, key))
        # The lock is the session's: it outlasts the migrations' commits and autocommit blocks
        # on their own connection, and goes with this one if the process dies.
        yield
    finally:
        try:
            if held:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), key)
            conn.close()
        except Exception:  # a connection cut or interrupted: closing it ends the lock too
            conn.invalidate()
            conn.close()


@contextmanager
def _file_lock(path: Path, wait: float, say: Callable[[str], None]) -> Iterator[None]:
    import fcntl

    lock_path = path.with_name(path.name + SQLITE_LOCK_SUFFIX)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        # A folder leadbot cannot write to: the migration itself cannot write there either,
        # and says so; nothing to take turns over.
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(waiting_line(wait))
            deadline = time.monotonic() + wait
            while True:
                time.sleep(_RETRY)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise _busy(wait) from None
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays, so the next run locks the same one


def fresh_pg_database(server_url: str | URL, name: str, *, drop: bool = False) -> URL:
    """For the tests and the bench: a new, empty PostgreSQL database `name` on the server of
    `server_url` (any old one of that name is dropped first); with `drop`, only the dropping.
    Returns its URL, for psycopg 3."""
    base = make_url(server_url).set(drivername="postgresql+psycopg")
    admin = make_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            if not drop:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return base.set(database=name)
