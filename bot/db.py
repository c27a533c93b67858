"""Database plumbing: engines, Alembic upgrades and the schema check at start-up."""

from __future__ import annotations

import logging
import threading
import time
from importlib.resources import files
from typing import TYPE_CHECKING

from sqlalchemy import URL, Engine, exc, inspect, make_url, text

import migrations
from models import make_engine

if TYPE_CHECKING:
    from alembic.config import Config

# The newest migration's revision (tests/test_startup.py checks it against Alembic's head). With
# it, a start on a current schema reads one row and skips Alembic, whose import and script
# loading took a quarter of a second of every start.
HEAD = "0007"


def unavailable(error: BaseException) -> bool:
    """Whether `error` says the database is out of reach (down, restarting, not answering, the
    connection cut), rather than refusing a statement or a bug: worth waiting out."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError))


class Trouble:
    """The log of work that keeps failing and is tried again by itself (the outbox's passes, a
    scheduled job): the first failure is one ERROR line, with its traceback unless the database
    is simply out of reach; the same failure again is only counted, with a reminder every
    `remind_every` seconds; the first success after it says how long it lasted. Logged at every
    try, an outage of 30 s wrote 1,400 lines, a traceback every 2 seconds."""

    def __init__(self, log: logging.Logger, what: str, remind_every: float = 60.0) -> None:
        self.log = log
        self.what = what
        self.remind_every = remind_every
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
            self.log.error(
                "%s failed: %s (the database is out of reach); trying again, quietly until it "
                "works",
                self.what,
                kind,
            )
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


def upgrade(engine: Engine, target: str = "head") -> tuple[str | None, str]:
    """Migrate to `target`, head by default (idempotent); returns (revision before, revision
    after). Tests name an older target to start from an old schema. Raises UnknownRevision for
    a database a newer leadbot migrated."""
    from alembic import command

    before = current_revision(engine)
    check_known(before)
    config = alembic_config(engine)
    # A plain connection, not a transaction: Alembic commits each migration itself.
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, target)
    return before, head_revision() if target == "head" else target


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
