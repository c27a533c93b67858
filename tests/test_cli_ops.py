"""What an operator meets running the CLI: migrations that take turns, Ctrl-C, a database path
or a setting name that is wrong, which database and policy a start uses, and tokens, secrets
and URLs that are not what Slack expects. Over real processes where the person sees the answer.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic import command as alembic
from sqlalchemy import Engine, insert, text

from bot import cli, db
from bot.settings import SettingsError, load_settings
from bot.slack_emulator import SlackEmulator
from models import make_engine
from tests.conftest import LEADS_CHANNEL, MANAGER, PG_URL_VAR, SECRET, Bot, _worker
from tests.test_migrations import LEADS, _lead_rows, _store_leads, _wait_for_a_build_waiting
from tests.test_security import FORM, _command_body, logged

ROOT = Path(__file__).resolve().parent.parent
WAITING = "another leadbot is migrating this database; waiting for it to finish (at most 10 min)"
SLACK_ENV = {
    "SLACK_BOT_TOKEN": "xoxb-1",
    "SLACK_SIGNING_SECRET": SECRET,
    "LEADS_CHANNEL": LEADS_CHANNEL,
}


@pytest.fixture
def empty_url(tmp_path: Path) -> Iterator[str]:
    """A database without any schema yet (SQLite: a file not made yet), as a URL."""
    pg = os.environ.get(PG_URL_VAR)
    if not pg:
        yield f"sqlite:///{tmp_path / 'leadbot.db'}"
        return
    name = f"leadbot_cliops_{_worker()}"
    url = db.fresh_pg_database(pg, name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        db.fresh_pg_database(pg, name, drop=True)


@pytest.fixture
def empty_engine(empty_url: str) -> Iterator[Engine]:
    engine = make_engine(empty_url)
    yield engine
    engine.dispose()


class Run:
    """A `leadbot` process started in the background, its output in files."""

    def __init__(self, args: tuple[str, ...], env: dict[str, str], cwd: Path, name: str) -> None:
        self.out, self.err = cwd / f"{name}.out", cwd / f"{name}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", *args],
                env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "PIN_CPU": "off", **env},
                cwd=cwd,
                stdout=out,
                stderr=err,
            )

    def says(self, what: str, timeout: float = 30) -> None:
        """Wait until its stderr holds `what` (it is still running then)."""
        deadline = time.monotonic() + timeout
        while what not in self.err.read_text():
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.err_text}"
            assert time.monotonic() < deadline, f"never said {what!r}: {self.err_text}"
            time.sleep(0.02)

    def end(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)

    @property
    def err_text(self) -> str:
        return self.err.read_text()

    @property
    def out_text(self) -> str:
        return self.out.read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def runs(*started: Run) -> Iterator[None]:
    """Kills the processes if the block fails (they are left running otherwise)."""
    try:
        yield
    except BaseException:
        for run in started:
            run.kill()
        raise


def _alembic_upgrade(engine: Engine, target: str = "head") -> None:
    """What another migrate does while it holds the lock (db.upgrade would wait for it)."""
    config = db.alembic_config(engine)
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        alembic.upgrade(config, target)


# --- migrations take turns -----------------------------------------------------------------------


def test_a_migrate_waits_for_the_one_running_and_then_finds_the_schema_current(
    empty_engine: Engine, empty_url: str, tmp_path: Path
) -> None:
    """Two `leadbot migrate` at once (an init container per pod) both saw an empty schema and
    both ran the migrations: one failed on what the other had made ("DuplicateColumn … a
    re-run fails the same way until that is fixed") while the schema ended at head."""
    with db.migration_lock(empty_engine):  # another migrate, running
        second = Run(("migrate",), {"DATABASE_URL": empty_url}, tmp_path, "second")
        with runs(second):
            second.says(WAITING)
            assert db.current_revision(empty_engine) is None  # it waits before it reads
            _alembic_upgrade(empty_engine)  # the other one finishes its work
            time.sleep(0.3)  # (several of the waiting run's tries: it must not get through)
            assert second.proc.poll() is None, second.err_text
    assert second.end() == 0, second.err_text
    assert second.out_text == f"database schema is up to date ({db.HEAD})\n"
    assert second.err_text == f"leadbot: {WAITING}\n"


def test_migrates_and_a_sqlite_start_take_turns_and_all_succeed(
    empty_engine: Engine, empty_url: str, tmp_path: Path, slack: SlackEmulator
) -> None:
    """On SQLite two migrates and a `jobs run` (which migrates the file itself) at once gave
    "table alembic_version already exists; the schema is at empty"."""
    sqlite = empty_engine.dialect.name == "sqlite"
    if sqlite:
        (tmp_path / "leadbot.db").touch()  # an empty file: jobs run migrates it, never makes it
    env = {"DATABASE_URL": empty_url, **SLACK_ENV, "SLACK_API_URL": slack.url}
    with db.migration_lock(empty_engine):
        started = [Run(("migrate",), env, tmp_path, f"migrate{i}") for i in range(2)]
        if sqlite:  # (PostgreSQL starts never migrate: they ask for `leadbot migrate`)
            started.append(Run(("jobs", "run", "purge"), env, tmp_path, "purge"))
        with runs(*started):
            for run in started:
                run.says(WAITING)
    for run in started:
        assert run.end() == 0, run.err_text
        assert "Traceback" not in run.err_text
    said = sorted(run.out_text.splitlines()[0] for run in started[:2])
    assert (
        said
        == [
            f"database schema is up to date ({db.HEAD})",
            f"database schema migrated from empty to {db.HEAD}",
        ]
        or said == [f"database schema is up to date ({db.HEAD})"] * 2
    )  # the start went first
    assert db.current_revision(empty_engine) == db.HEAD


def test_a_migrate_that_waits_too_long_gives_up_with_one_line(
    empty_engine: Engine,
    empty_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("DATABASE_URL", empty_url)
    monkeypatch.setattr(db, "MIGRATION_WAIT", 0.5)  # ten minutes, as deployed
    with db.migration_lock(empty_engine):
        status = cli.main(["migrate"])
    assert status == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "leadbot: another leadbot is migrating this database; waiting for it to finish "
        "(at most 0.5 s)",
        "leadbot: DATABASE_URL: another leadbot has been migrating this database for more than "
        "0.5 s; gave up waiting — let it finish (or stop it), then run `leadbot migrate` again "
        "(the schema is at empty)",
    ]
    assert db.current_revision(empty_engine) is None


# --- Ctrl-C --------------------------------------------------------------------------------------


def test_ctrl_c_while_a_migrate_waits_is_one_line(
    empty_engine: Engine, empty_url: str, tmp_path: Path
) -> None:
    with db.migration_lock(empty_engine):
        waiting = Run(("migrate",), {"DATABASE_URL": empty_url}, tmp_path, "waiting")
        with runs(waiting):
            waiting.says(WAITING)
            waiting.proc.send_signal(signal.SIGINT)
            assert waiting.end() == 130, waiting.err_text
    assert waiting.err_text.splitlines() == [
        f"leadbot: {WAITING}",
        "leadbot: interrupted: the schema is at empty; run `leadbot migrate` again to finish",
    ]
    again = Run(("migrate",), {"DATABASE_URL": empty_url}, tmp_path, "again")
    assert again.end() == 0, again.err_text
    assert again.out_text.startswith(f"database schema migrated from empty to {db.HEAD}")


def test_ctrl_c_in_the_middle_of_a_migration_is_one_line_and_a_rerun_finishes(
    empty_engine: Engine, empty_url: str, tmp_path: Path
) -> None:
    """Once a traceback of 39 lines. Interrupted while an index build waits for a transaction
    under way (PostgreSQL: up to 60 s, a moment the test can find)."""
    engine = empty_engine
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL: SQLite's migrations have no wait the test can stop them in")
    db.upgrade(engine, "0005")
    _store_leads(engine, 10)
    with engine.connect() as under_way:
        under_way.execute(insert(LEADS), _lead_rows(1, status="new"))
        run = Run(("migrate",), {"DATABASE_URL": empty_url}, tmp_path, "migrate")
        with runs(run):
            _wait_for_a_build_waiting(engine)
            run.proc.send_signal(signal.SIGINT)
            assert run.end() == 130, run.err_text
        under_way.commit()
    assert run.err_text == (
        "leadbot: interrupted: the schema is at 0005; run `leadbot migrate` again to finish\n"
    )
    again = Run(("migrate",), {"DATABASE_URL": empty_url}, tmp_path, "again")
    assert again.end() == 0, again.err_text
    assert again.out_text == f"database schema migrated from 0005 to {db.HEAD}\n"
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM leads")) == 11


def test_ctrl_c_during_jobs_run_is_one_line(
    database_url: str, slack: SlackEmulator, tmp_path: Path
) -> None:
    """Once a traceback of 56 lines. Interrupted while the digest's DM is in flight: the
    digest is recorded as sent, its DM stays queued for the outbox."""
    gate = slack.hold("chat.postMessage")
    env = {
        **SLACK_ENV,
        "DATABASE_URL": database_url,
        "SLACK_API_URL": slack.url,
        "MANAGER_IDS": MANAGER,
    }
    run = Run(("jobs", "run", "digest", "--force"), env, tmp_path, "digest")
    try:
        with runs(run):
            assert gate.arrived.wait(30), run.err_text
            run.proc.send_signal(signal.SIGINT)
            run.says("interrupted")
            gate.release()  # the call in flight ends, and so does the process
            assert run.end() == 130, run.err_text
    finally:
        gate.release()
    assert "Traceback" not in run.err_text
    assert run.err_text.splitlines()[-1] == (
        "leadbot: interrupted: outbox stopped part-way; what it did is kept, run `leadbot jobs "
        "run outbox` again (letting the Slack call in flight finish; Ctrl-C again to stop at once)"
    )


# --- a SQLite path that names no database --------------------------------------------------------


@pytest.mark.parametrize(
    "command", [("forget", "jane@acme.example"), ("jobs", "run", "reminders")], ids=str
)
@pytest.mark.parametrize("url", ["", "sqlite:///leadbt.db"], ids=["default", "typo"])
def test_a_sqlite_file_that_does_not_exist_is_named_not_made(
    tmp_path: Path, command: tuple[str, ...], url: str
) -> None:
    """Run from cron in $HOME, `forget jane@…` answered "forgot 0 leads" from a new, empty
    leadbot.db, while the real one still held Jane."""
    env = {**SLACK_ENV, "SLACK_API_URL": "http://127.0.0.1:9/api/"}  # never reached
    if url:
        env["DATABASE_URL"] = url
    run = Run(command, env, tmp_path, "run")
    assert run.end() == 2
    path = tmp_path / ("leadbt.db" if url else "leadbot.db")
    assert run.err_text == (
        f"leadbot: DATABASE_URL: there is no database at '{path}' — run leadbot from the "
        "directory that holds it, or set DATABASE_URL to its absolute path, like "
        "sqlite:////srv/leadbot/leadbot.db\n"
    )
    assert not path.exists()


def test_migrate_makes_a_new_sqlite_file_and_says_where(tmp_path: Path) -> None:
    """Kept: a SQLite deployment may begin with `leadbot migrate`. The line names the file, so
    one made in the wrong directory shows."""
    run = Run(("migrate",), {}, tmp_path, "migrate")
    assert run.end() == 0, run.err_text
    assert run.out_text == (
        f"database schema migrated from empty to {db.HEAD} (a new SQLite database: "
        f"{tmp_path / 'leadbot.db'})\n"
    )


# --- which database and policy a start uses ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _started_line(env: dict[str, str], cwd: Path) -> str:
    run = Run(("serve", "--host", "127.0.0.1", "--port", str(_free_port())), env, cwd, "serve")
    with runs(run):
        run.says("serving on")
        run.proc.send_signal(signal.SIGTERM)
        assert run.end() == 0, run.err_text
    return next(line for line in run.err_text.splitlines() if "serving on" in line)


def test_the_start_up_line_names_the_database_and_the_policy(
    database_url: str, slack: SlackEmulator, tmp_path: Path
) -> None:
    """`DATABSE_URL` in .env, or a start in another directory, began on a new ./leadbot.db:
    nothing in the log said which database was in use."""
    env = {**SLACK_ENV, "SLACK_API_URL": slack.url, "DATABASE_URL": database_url}
    line = _started_line(env, tmp_path)
    if database_url.startswith("sqlite"):
        where = database_url.removeprefix("sqlite:///")
    else:
        url = make_engine(database_url).url
        where = f"postgresql://{url.host}:{url.port or 5432}/{url.database} (user {url.username})"
    assert line.endswith(f"; database {where}, built-in policy"), line
    shutil.copy(ROOT / "policy.example.toml", tmp_path / "policy.toml")
    line = _started_line(env, tmp_path)
    assert line.endswith(f"; database {where}, policy {tmp_path / 'policy.toml'}"), line


def test_a_start_on_a_new_sqlite_file_says_it_made_it(slack: SlackEmulator, tmp_path: Path) -> None:
    env = {**SLACK_ENV, "SLACK_API_URL": slack.url}  # DATABASE_URL: the default, ./leadbot.db
    line = _started_line(env, tmp_path)
    assert line.endswith(f"; database {tmp_path / 'leadbot.db'}, built-in policy"), line
    made = f"there is no database at {tmp_path / 'leadbot.db'}: making a new, empty one"
    assert made in (tmp_path / "serve.err").read_text()


# --- settings: names in .env, the bot token ------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "meant"),
    [
        ("DATABSE_URL=postgresql://u@h/leads", "DATABASE_URL"),
        ("database_url=postgresql://u@h/leads", "DATABASE_URL"),
        ("MANAGER_ID=U0MANAGER1", "MANAGER_IDS"),
        ("LOGLEVEL=DEBUG", "LOG_LEVEL"),
    ],
)
def test_a_misspelled_name_in_dotenv_stops_start_up_naming_the_setting(
    tmp_path: Path, line: str, meant: str
) -> None:
    """Ignored, it left its setting at the default: a new ./leadbot.db, no managers."""
    (tmp_path / ".env").write_text(
        f"SLACK_BOT_TOKEN=xoxb-1\nSLACK_SIGNING_SECRET=s\nLEADS_CHANNEL=C0LEADS001\n{line}\n"
    )
    run = Run(("serve",), {}, tmp_path, "serve")
    assert run.end() == 2
    name = line.split("=")[0]
    assert run.err_text == (
        f"leadbot: .env: {name} is not a setting — did you mean {meant}? (names are upper case; "
        "see .env.example)\n"
    )
    assert not (tmp_path / "leadbot.db").exists()


def test_other_tools_names_in_dotenv_are_left_alone(tmp_path: Path) -> None:
    """docker compose reads .env too: names far from every setting are not leadbot's."""
    env_file = tmp_path / ".env"
    env_file.write_text(
        "COMPOSE_PROJECT_NAME=leads\nPOSTGRES_PASSWORD=pw\nTEST_DATABASE_URL=sqlite:///t.db\n"
        "SLACK_CLIENT_SECRET=x\nLEADS_CHANNEL=C0DOTENV01\n"
    )
    assert load_settings({}, dotenv_path=env_file).leads_channel == "C0DOTENV01"


@pytest.mark.parametrize(
    ("token", "kind"),
    [
        ("xoxp-1234-5678-secretpart", "a user token (xoxp-…)"),
        ("xapp-1-A0-secretpart", "an app-level token (that one goes in SLACK_APP_TOKEN) (xapp-…)"),
        ("secretpart", "not a bot token"),
    ],
)
def test_a_token_that_is_not_a_bot_token_is_refused(token: str, kind: str) -> None:
    """A user token passes auth.test, then acts as the person who installed the app."""
    with pytest.raises(SettingsError) as error:
        load_settings({**SLACK_ENV, "SLACK_BOT_TOKEN": token}, dotenv_path=None)
    assert str(error.value) == (
        f"SLACK_BOT_TOKEN: {kind} — leadbot needs the Bot User OAuth Token, which starts with "
        "xoxb- (the Slack app's OAuth & Permissions page)"
    )
    assert "secretpart" not in str(error.value)


# --- Slack at the wrong address, and a signing secret that does not match ------------------------


def test_a_slack_api_url_without_its_api_path_is_named_not_blamed_on_slack(
    slack: SlackEmulator, tmp_path: Path
) -> None:
    """Was "Slack answered auth.test with … HTTP 404: trouble on Slack's side, not with
    SLACK_BOT_TOKEN — try again shortly": the operator waited for an outage that was not."""
    root = slack.url.removesuffix("api/")
    env = {**SLACK_ENV, "SLACK_API_URL": root, "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    run = Run(("serve",), env, tmp_path, "serve")
    assert run.end() == 2
    assert run.err_text.splitlines()[-1] == (
        f"leadbot: SLACK_API_URL: {root} answered auth.test with HTTP 404 that is not Slack's "
        "API — the URL is wrong: it should end in /api/, like https://slack.com/api/"
    )
    assert "Traceback" not in run.err_text


class _Clock:
    def __init__(self) -> None:
        self.now_ = time.time()

    def now(self) -> float:
        return self.now_


def test_wrong_signatures_warn_naming_the_secret_once_a_minute(bot: Bot) -> None:
    """Every request from Slack refused with one INFO line each: the bot looked merely quiet."""
    check = bot.app.leadbot_signature  # type: ignore[attr-defined]
    clock = check.verifier.clock = _Clock()
    with logged("INFO") as log:
        start = clock.now_
        for step in (0, 1, 59, 61):  # seconds after the first
            clock.now_ = start + step
            response = bot.sim.raw(
                _command_body(), FORM, secret="not-the-secret", timestamp=int(clock.now_)
            )
            assert response.status == 401
    lines = log.getvalue().splitlines()
    warnings = [line for line in lines if "WARNING" in line]
    assert len(warnings) == 2, lines  # the first, and the one a minute later
    assert all("SLACK_SIGNING_SECRET" in line for line in warnings)
    assert sum("refused a request: wrong signature" in line for line in lines) == 4
