"""Database plumbing: engines, Alembic upgrades and the schema check at start-up."""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

from sqlalchemy import URL, Engine, inspect, make_url, text

import migrations
from models import make_engine

if TYPE_CHECKING:
    from alembic.config import Config

# The newest migration's revision (tests/test_startup.py checks it against Alembic's head). With
# it, a start on a current schema reads one row and skips Alembic, whose import and script
# loading took a quarter of a second of every start.
HEAD = "0007"


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
