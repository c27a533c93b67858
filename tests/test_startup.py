"""Settings, the CLI and the schema: clear one-line errors, idempotent migrations."""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bot import cli, db
from bot.manifest import SCOPES, manifest_yaml
from bot.policy import BUILT_IN
from bot.settings import (
    SERVE_REQUIRES,
    SETTINGS_HELP,
    SettingsError,
    env_example,
    load_settings,
    parse_duration,
)
from bot.slack_emulator import SlackEmulator
from models import Base
from tests.conftest import Bot

ROOT = Path(__file__).resolve().parent.parent
GOOD = {
    "SLACK_BOT_TOKEN": "xoxb-1",
    "SLACK_SIGNING_SECRET": "s",
    "LEADS_CHANNEL": "C0LEADS001",
}


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("TIMEZONE", "Mars/Olympus", "TIMEZONE: 'Mars/Olympus' is not a time zone"),
        ("REMINDER_AFTER", "soon", "REMINDER_AFTER: 'soon' is not a duration"),
        ("REMINDER_AFTER", "0m", "REMINDER_AFTER: '0m' must be longer than zero"),
        # Each of these once stopped start-up with a traceback (OverflowError, ValueError,
        # IsADirectoryError), or passed and overflowed later, at the first /lead.
        (
            "REMINDER_AFTER",
            "9999999999d",
            "REMINDER_AFTER: '9999999999d' is too long — at most 365d",
        ),
        ("SLACK_TIMEOUT", "999999999d", "SLACK_TIMEOUT: '999999999d' is too long — at most 5m"),
        ("RETAIN_FOR", "3651d", "RETAIN_FOR: '3651d' is too long — at most 3650d"),
        # Twelve months meant, twelve minutes read: the next purge deleted every lead.
        ("RETAIN_FOR", "12m", "RETAIN_FOR: '12m' is too short — at least 1d (m is minutes"),
        ("DUPLICATE_WINDOW", "999999999d", "DUPLICATE_WINDOW: '999999999d' is too long"),
        ("ESCALATE_AFTER", "²", "ESCALATE_AFTER: '²' is not a number of reminders"),
        ("WEB_THREADS", "²", "WEB_THREADS: '²' — expected a whole number from 1 to 256"),
        ("TIMEZONE", "America", "TIMEZONE: 'America' is not a time zone"),
        ("TIMEZONE", "x" * 300, "TIMEZONE: 'xxx"),
        ("ESCALATE_AFTER", "two", "ESCALATE_AFTER: 'two'"),
        # Each of these once stopped start-up with a traceback too (UnicodeEncodeError in an
        # HTTP header, int() past 4,300 digits, ModuleNotFoundError, ValueError, InvalidURL),
        # or passed: no database name built leadbot's tables in the server's `postgres`.
        ("SLACK_BOT_TOKEN", "xoxb-…", "SLACK_BOT_TOKEN: not a token — it holds a space"),
        ("SLACK_APP_TOKEN", "xapp-1 2", "SLACK_APP_TOKEN: not a token"),
        ("REMINDER_AFTER", "9" * 5000 + "s", "REMINDER_AFTER: 5,001 characters; at most 4,096"),
        ("REMINDER_AFTER", "9" * 13 + "s", "REMINDER_AFTER: '9999999999999s' is too long"),
        ("REMINDER_AFTER", "٣٠m", "REMINDER_AFTER: '٣٠m' is not a duration"),
        ("WEB_THREADS", "9" * 20, "WEB_THREADS: '99999999999999999999' — expected a whole"),
        ("ESCALATE_AFTER", "9" * 20, "ESCALATE_AFTER: '99999999999999999999' is not a number"),
        ("LOG_LEVEL", "x" * 5000, "LOG_LEVEL: 5,000 characters; at most 4,096"),
        ("DATABASE_URL", "sqlite:////tmp/\udcff.db", "DATABASE_URL: not UTF-8 text"),
        (
            "DATABASE_URL",
            "postgresql+asyncpg://u@h/db",
            "DATABASE_URL: the driver 'postgresql+asyncpg'",
        ),
        ("DATABASE_URL", "sqlite+aiosqlite:///x.db", "DATABASE_URL: the driver 'sqlite+aiosqlite'"),
        (
            "DATABASE_URL",
            "postgresql://u:pw@h:abc/db",
            "DATABASE_URL: 'postgresql://u:***@h:abc/db'",
        ),
        (
            "DATABASE_URL",
            "postgresql://u@h/",
            "DATABASE_URL: 'postgresql://u@h/' names no database",
        ),
        ("DATABASE_URL", "sqlite://x.db", "DATABASE_URL: 'sqlite://x.db' is a SQLite database in"),
        ("SLACK_API_URL", "https://a b/", "SLACK_API_URL: 'https://a b/' — expected an http(s)"),
        ("SLACK_API_URL", "http://[::1/api/", "SLACK_API_URL: 'http://[::1/api/' — expected"),
        (
            "SLACK_POSTS_PER_SECOND",
            "1e-300",
            "SLACK_POSTS_PER_SECOND: '1e-300' — expected a number",
        ),
        ("DIGEST_AT", "9am", "DIGEST_AT: '9am' is not a time"),
        ("LEADS_CHANNEL", "leads channel", "LEADS_CHANNEL: 'leads channel' is not a channel id"),
        ("LEADS_CHANNEL", "#leads", "LEADS_CHANNEL: '#leads' is not a channel id"),
        ("MANAGER_IDS", "U0GOOD1,bob", "MANAGER_IDS: 'bob' is not a Slack user id"),
        ("DATABASE_URL", "not a url", "DATABASE_URL: 'not a url' is not a database URL"),
        ("DATABASE_URL", "mysql://x@h/db", "DATABASE_URL: 'mysql' is not supported"),
        # Each thread would open its own, empty: the first /lead failed on "no such table".
        ("DATABASE_URL", "sqlite://", "DATABASE_URL: 'sqlite://' is a SQLite database in memory"),
        ("DATABASE_URL", "sqlite:///:memory:", "DATABASE_URL: 'sqlite:///:memory:' is a SQLite"),
        ("PORT", "99999", "PORT: '99999'"),
        ("SLACK_API_URL", "slack.com", "SLACK_API_URL: 'slack.com'"),
        ("PIN_CPU", "first", "PIN_CPU: 'first' — expected auto, off, or CPU numbers"),
        ("PIN_CPU", "1,,2", "PIN_CPU: '1,,2' — expected auto, off, or CPU numbers"),
        ("PIN_CPU", "-1", "PIN_CPU: '-1' — expected auto, off, or CPU numbers"),
        (
            "PIN_CPU",
            "3-1",
            "PIN_CPU: '3-1' — expected auto, off, or CPU numbers like 1, 2,3 or 0-3",
        ),
    ],
)
def test_bad_setting_names_itself(name: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({**GOOD, name: value}, require=GOOD, dotenv_path=None)
    message = str(error.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_a_database_url_message_hides_its_password() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({**GOOD, "DATABASE_URL": "postgresql://u:s3cret@h:abc/db"}, dotenv_path=None)
    assert "s3cret" not in str(error.value)


def test_a_dotenv_line_that_cannot_be_read_stops_start_up_naming_it(tmp_path: Path) -> None:
    """python-dotenv skips such a line with a warning that names no file: with an unclosed
    quote, DATABASE_URL stayed at its default and `migrate` built ./leadbot.db instead."""
    env_file = tmp_path / ".env"
    env_file.write_text('SLACK_BOT_TOKEN=xoxb-1\nDATABASE_URL="postgresql://u@h/db\n')
    with pytest.raises(SettingsError) as error:
        load_settings({}, dotenv_path=env_file)
    assert (
        str(error.value)
        == f"{env_file}: line 2: cannot be read — expected NAME=value (is a quote left open?)"
    )


def test_an_empty_environment_value_leaves_the_dotenv_one(tmp_path: Path) -> None:
    """`DATABASE_URL=${DATABASE_URL}` in a compose file with nothing to fill it in gave an
    empty variable, which overrode .env's and fell back to the default ./leadbot.db."""
    env_file = tmp_path / ".env"
    env_file.write_text("DATABASE_URL=postgresql://u@h/leads\n")
    s = load_settings({**GOOD, "DATABASE_URL": ""}, dotenv_path=env_file)
    assert s.database_url == "postgresql://u@h/leads"


def test_missing_required_setting_names_itself() -> None:
    with pytest.raises(SettingsError, match=r"^SLACK_SIGNING_SECRET: missing"):
        load_settings({"SLACK_BOT_TOKEN": "x"}, require=("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"))


def test_defaults_and_parsing() -> None:
    s = load_settings(
        {**GOOD, "MANAGER_IDS": "U01, U02 W03", "DATABASE_URL": "postgresql://u:p@h/db"},
        dotenv_path=None,
    )
    assert s.reminder_after == timedelta(minutes=30) and s.escalate_after == 2
    assert s.manager_ids == ("U01", "U02", "W03")
    assert s.sqlalchemy_url.drivername == "postgresql+psycopg"  # psycopg 3, as written
    assert s.digest_at.hour == 9 and s.timezone.key == "UTC"
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("365d") == timedelta(days=365)  # the longest an SLA may be


def test_dotenv_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("LEADS_CHANNEL=C0DOTENV01\nREMINDER_AFTER=2h\n")
    s = load_settings({"REMINDER_AFTER": "45s"}, dotenv_path=env_file)
    assert s.leads_channel == "C0DOTENV01"
    assert s.reminder_after == timedelta(seconds=45)


def test_a_dotenv_file_that_is_not_utf8_stops_start_up_with_one_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"SLACK_BOT_TOKEN=xoxb-1\nLEADS_CHANNEL=\xff\xfe\n")
    result = _leadbot("serve", env={}, cwd=tmp_path)  # once: UnicodeDecodeError, a traceback
    assert result.returncode == 2
    assert result.stderr.strip() == "leadbot: .env: not UTF-8 text — save it as UTF-8"


def test_the_env_example_copied_as_it_is_starts_without_a_policy_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README step 5 copies .env.example, which names POLICY_FILE=policy.toml: that was then
    required to exist, and start-up stopped with "policy.toml: file not found (POLICY_FILE)",
    though the README promises the built-in defaults without a file."""
    monkeypatch.chdir(tmp_path)
    filled = "\nSLACK_BOT_TOKEN=xoxb-1\nSLACK_SIGNING_SECRET=s\nLEADS_CHANNEL=C0LEADS001\n"
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text() + filled)
    assert "\nPOLICY_FILE=policy.toml" in (tmp_path / ".env").read_text()
    settings = load_settings({}, require=SERVE_REQUIRES, dotenv_path=tmp_path / ".env")
    assert settings.policy.source == BUILT_IN


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in SETTINGS_HELP:
        assert f"| `{name}` |" in readme, name


def test_env_example_lists_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    for name in SETTINGS_HELP:
        assert f"\n{name}=" in text, name
    assert text == env_example(), "regenerate it: python -m bot.settings > .env.example"


def _leadbot(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        # PIN_CPU=auto would take a CPU host-wide, from the pinning tests running beside these
        # (tests.conftest.cpu_claims), even in a process that stops at once.
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "PIN_CPU": "off", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_with_bad_setting_stops_with_one_line(tmp_path: Path) -> None:
    result = _leadbot("serve", env={**GOOD, "TIMEZONE": "Nowhere/Special"}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "leadbot: TIMEZONE: 'Nowhere/Special' is not a time zone — "
        "expected an IANA name like Europe/Berlin"
    )
    assert "Traceback" not in result.stderr


def test_serve_without_tokens_says_what_is_missing(tmp_path: Path) -> None:
    result = _leadbot("serve", env={}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("leadbot: SLACK_BOT_TOKEN: missing")
    assert len(result.stderr.strip().splitlines()) == 1


def test_migrate_is_idempotent_and_models_match_migrations(
    tmp_path: Path, database_url: str
) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}
    first = _leadbot("migrate", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "migrated from empty to" in first.stdout
    again = _leadbot("migrate", env=env, cwd=tmp_path)
    assert again.returncode == 0 and "up to date" in again.stdout

    from models import make_engine

    engine = make_engine(database_url)
    try:
        assert db.is_up_to_date(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


@pytest.mark.parametrize("command", [["migrate"], ["forget", "jane@acme.example"]])
def test_a_database_that_cannot_be_opened_is_named_in_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    """`migrate` used to call a file that is no database, or a directory, a migration that
    failed half-way "at unknown", and tell the user to run it again."""
    (tmp_path / "notes.db").write_text("not a database")
    (tmp_path / "folder.db").mkdir()
    for name, cause in [
        ("notes.db", "(DatabaseError: file is not a database)"),
        ("folder.db", "(OperationalError: unable to open database file)"),
    ]:
        env = {
            "DATABASE_URL": f"sqlite:///{tmp_path / name}",
            "SLACK_BOT_TOKEN": "xoxb-1",
            "SLACK_SIGNING_SECRET": "s",
            "LEADS_CHANNEL": "C0LEADS",
            "SLACK_API_URL": "http://127.0.0.1:9/api/",  # never reached: the database is first
        }
        result = _leadbot(*command, env=env, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr == f"leadbot: DATABASE_URL: cannot use the database {cause}\n"
    assert (tmp_path / "notes.db").read_text() == "not a database"


def test_the_head_revision_the_start_up_check_knows_is_alembics() -> None:
    """`db.HEAD` lets a start skip Alembic; a new migration must move it, or every start would
    call the schema out of date (PostgreSQL) or migrate for nothing (SQLite)."""
    assert db.head_revision() == db.HEAD, "set bot.db.HEAD to the newest migration's revision"


def test_out_of_date_schema_is_refused_unless_embedded_sqlite(tmp_path: Path) -> None:
    from bot.cli import StartupError, open_database
    from bot.settings import Settings

    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(StartupError, match="run `leadbot migrate`"):
        open_database(Settings(database_url=empty), migrate_sqlite=False)
    engine = open_database(Settings(database_url=empty))  # the embedded default migrates itself
    assert db.is_up_to_date(engine)
    engine.dispose()


def test_serve_refuses_an_out_of_date_postgres_schema() -> None:
    from bot.cli import StartupError, open_database
    from bot.settings import Settings

    url = os.environ.get("LEADBOT_TEST_DATABASE_URL")
    if not url:
        pytest.skip("needs LEADBOT_TEST_DATABASE_URL (PostgreSQL)")
    from bot.db import fresh_pg_database
    from bot.settings import database_url
    from tests.conftest import _worker

    name = f"leadbot_empty_{_worker()}"
    empty = fresh_pg_database(database_url(url), name).render_as_string(hide_password=False)
    try:
        with pytest.raises(StartupError, match="run `leadbot migrate`"):
            open_database(Settings(database_url=empty))
    finally:
        fresh_pg_database(database_url(url), name, drop=True)


def test_jobs_list_names_every_job(tmp_path: Path) -> None:
    result = _leadbot("jobs", "list", env={}, cwd=tmp_path)
    assert result.returncode == 0
    assert "reminders" in result.stdout and "digest" in result.stdout


def test_jobs_run_unknown_job_is_a_clear_error(tmp_path: Path) -> None:
    result = _leadbot("jobs", "run", "nope", env={}, cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown job 'nope'" in result.stderr


def test_manifest_declares_command_interactivity_and_scopes(tmp_path: Path) -> None:
    result = _leadbot("manifest", "--url", "https://leads.example.com", env={}, cwd=tmp_path)
    assert result.returncode == 0
    out = result.stdout
    assert "command: /lead" in out
    assert out.count('url: "https://leads.example.com/slack/events"') == 3
    assert "socket_mode_enabled: false" in out
    for scope in SCOPES:
        assert f"- {scope}" in out
    for scope in ("commands", "chat:write", "chat:write.public", "im:write"):
        assert scope in SCOPES
    # Least privilege: nothing calls users.* (it was asked for, unused).
    assert "users:read" not in SCOPES
    # The committed manifest.yml is the Socket Mode one `leadbot manifest` prints.
    assert (ROOT / "manifest.yml").read_text() == manifest_yaml()
    assert "socket_mode_enabled: true" in manifest_yaml()


def test_socket_mode_needs_an_app_token(tmp_path: Path) -> None:
    missing = _leadbot("socket", env=GOOD, cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.startswith("leadbot: SLACK_APP_TOKEN: missing")
    wrong = _leadbot(
        "socket", env={**GOOD, "SLACK_APP_TOKEN": "xoxb-not-an-app-token"}, cwd=tmp_path
    )
    assert wrong.returncode == 2
    assert "SLACK_APP_TOKEN: expected an app-level token" in wrong.stderr


def test_unreachable_database_stops_start_up_with_one_line(tmp_path: Path) -> None:
    env = {**GOOD, "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}  # nothing listens
    result = _leadbot("serve", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("leadbot: DATABASE_URL: cannot use the database")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (
            {"error": "invalid_auth"},
            "leadbot: SLACK_BOT_TOKEN: Slack did not accept it (invalid_auth) — copy the Bot User "
            "OAuth Token (xoxb-…) from the app's page (README, step 2)",
        ),
        # An outage or a rate limit is not the token's fault: replacing it would not help.
        (
            {"status": 503},
            "leadbot: Slack answered auth.test with service_unavailable, HTTP 503: trouble on "
            "Slack's side, not with SLACK_BOT_TOKEN — try again shortly",
        ),
        (
            {"error": "ratelimited"},
            "leadbot: Slack answered auth.test with ratelimited: trouble on Slack's side, not "
            "with SLACK_BOT_TOKEN — try again shortly",
        ),
    ],
    ids=["token refused", "Slack down", "rate limited"],
)
def test_slack_trouble_at_start_up_is_told_apart_from_a_refused_token(
    tmp_path: Path, slack: SlackEmulator, failure: dict[str, object], expected: str
) -> None:
    slack.fail("auth.test", times=10, **failure)  # more than slack_sdk's retries
    env = {**GOOD, "SLACK_API_URL": slack.url, "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    result = _leadbot("serve", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == expected, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("no-such-host.invalid", "not an address here"),
        ("192.0.2.1", "Cannot assign requested address"),  # TEST-NET-1: nobody's address
        ("127.0.0.1", "Address already in use"),
    ],
    ids=["unknown name", "not this machine's", "port taken"],
)
def test_serve_that_cannot_listen_stops_with_one_line(
    tmp_path: Path, slack: SlackEmulator, host: str, why: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **GOOD,
            "SLACK_API_URL": slack.url,
            "DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
            "HOST": host,
            "PORT": str(port),
        }
        result = _leadbot("serve", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"leadbot: HOST, PORT: cannot listen on {host}:{port} ({why}) — set HOST to an address "
        "of this machine (0.0.0.0: all of them) and PORT to a free port, or use --host / --port"
    ), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("sandbox", "--port", "99999"), "leadbot sandbox: error: argument --port: 99999 is not"),
        (("sandbox", "--port", "x"), "leadbot sandbox: error: argument --port: 'x' is not a port"),
        (("serve", "--port", "-1"), "leadbot serve: error: argument --port: -1 is not a port"),
        # Slack sends nothing to a plain-http or relative URL: the manifest would not install.
        (("manifest", "--url", "leads.example.com"), "leadbot manifest: error: argument --url"),
        (("manifest", "--url", "http://leads.example.com"), "leadbot manifest: error: argument"),
    ],
)
def test_a_bad_command_line_argument_is_a_usage_error(
    tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    """Once, `sandbox --port 99999` ended in bind()'s OverflowError and a traceback, and
    `manifest --url` printed a manifest Slack would refuse."""
    result = _leadbot(*args, env={}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(expected), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_serving_keeps_start_up_objects_out_of_the_collectors_full_passes(bot: Bot) -> None:
    """`serve` and `socket` run through one path: what start-up built is frozen (full cyclic
    collections skip it) and the young generation is larger, the older ones left as they were."""
    seen: dict[str, object] = {}

    def run() -> None:
        seen["frozen"] = gc.get_freeze_count()
        seen["threshold"] = gc.get_threshold()

    before = gc.get_threshold()
    gc.unfreeze()
    try:
        cli._run_until_stopped(run, bot.services, None)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 10_000  # modules, app, caches
    assert seen["threshold"] == (cli.GC_YOUNG_THRESHOLD, before[1], before[2])
    assert before[0] < cli.GC_YOUNG_THRESHOLD


@pytest.mark.parametrize(
    ("url", "why"),
    [
        # Each printed a manifest with exit 0: YAML read " #x" as a comment, ": x" and the
        # newline stopped it from parsing, and /slack/events landed in the query.
        ("https://a.example/ #x", "has a space or control character in it"),
        ("https://a.example/: x", "has a space or control character in it"),
        ("https://a.example/\nfoo: 1", "has a space or control character in it"),
        ("https://a b.example/", "has a space or control character in it"),
        ("https://a.example/?q=1#f", "has a query (?…); give the base URL only"),
        ("https://a.example/#f", "has a fragment (#…); give the base URL only"),
        ("https://a.example:99999/", "has a bad port: use 1 to 65535, or none"),
        ("https://a.example:abc/", "has a bad port: use 1 to 65535, or none"),
        ("https://u:pw@a.example/", "has a user name or password in it"),
        ("https://a..example/", "has no valid host name ('a..example')"),
        # Once argparse's "invalid _public_url value", naming a Python function.
        ("https://[::1", "is not a URL (Invalid IPv6 URL)"),
    ],
)
def test_a_manifest_url_that_slack_could_not_call_is_refused_with_the_reason(
    tmp_path: Path, url: str, why: str
) -> None:
    result = _leadbot("manifest", "--url", url, env={}, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines()[-1].startswith(
        f"leadbot manifest: error: argument --url: {url!r} {why}"
    ), result.stderr
    assert "Traceback" not in result.stderr and "_public_url" not in result.stderr


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("https://leads.example.com", "https://leads.example.com/slack/events"),
        ("https://leads.example.com/slack/events/", "https://leads.example.com/slack/events"),
        ("https://[2001:db8::1]:8443/bot", "https://[2001:db8::1]:8443/bot/slack/events"),
        # Characters YAML gives a meaning to, in a plain scalar or a quoted one.
        (
            "https://café.example/a\"b\\c'&*!,[x]{y}:",
            "https://café.example/a\"b\\c'&*!,[x]{y}:/slack/events",
        ),
    ],
)
def test_the_manifest_carries_any_accepted_url_as_one_yaml_string(
    tmp_path: Path, url: str, endpoint: str
) -> None:
    """The endpoint is a double-quoted YAML scalar, JSON-escaped (JSON strings are YAML ones):
    no parser is among leadbot's dependencies, so the lines are read back with json."""
    result = _leadbot("manifest", "--url", url, env={}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    values = [
        json.loads(line.split(": ", 1)[1])
        for line in lines
        if line.strip().startswith(("url: ", "request_url: "))
    ]
    assert values == [endpoint] * 3
    assert [line.strip() for line in lines if "url: " in line and not line.startswith("#")] == [
        f"url: {json.dumps(endpoint, ensure_ascii=False)}",
        f"request_url: {json.dumps(endpoint, ensure_ascii=False)}",
        f"request_url: {json.dumps(endpoint, ensure_ascii=False)}",
    ]


def test_jobs_without_a_subcommand_names_the_choices(tmp_path: Path) -> None:
    result = _leadbot("jobs", env={}, cwd=tmp_path)  # once: "required: jobs_command"
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "leadbot jobs: error: the following arguments are required: {list,run}"
    )


def _newer_leadbots(path: Path) -> None:
    """A migrated SQLite file stamped as a newer leadbot would leave it."""
    from sqlalchemy import text

    from models import make_engine

    engine = make_engine(f"sqlite:///{path}")
    try:
        db.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("db_arg", "expected"),
    [
        # Each once ended in a SQLAlchemy traceback of 125 lines.
        ("", "--db: empty — name a SQLite file, like --db sandbox.db"),
        ("folder", "--db: 'folder' is a folder — name a file in it, like --db folder/sandbox.db"),
        ("notes.db", "--db: cannot use the database (DatabaseError: file is not a database)"),
        # Once a message about DATABASE_URL, which the user had not set.
        (":memory:", "--db: ':memory:' would keep nothing — name a file, like --db sandbox.db"),
        # Once a folder named "sqlite:" made in silence, and the sandbox served from it.
        (
            "sqlite:///x.db",
            "--db: 'sqlite:///x.db' is a URL — --db takes a file's path, like --db sandbox.db",
        ),
        ("notes.db/x.db", "--db: cannot make the folder '{tmp}/notes.db' (a file has that name)"),
        (
            "newer.db",
            "--db: the schema is at 0099, which this leadbot does not know — it was migrated by "
            "a newer leadbot; run that version (or restore a backup)",
        ),
    ],
)
def test_a_sandbox_db_that_cannot_be_used_is_named_in_one_line(
    tmp_path: Path, db_arg: str, expected: str
) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.db").write_text("not a database")
    _newer_leadbots(tmp_path / "newer.db")
    before = sorted(tmp_path.iterdir())
    result = _leadbot("sandbox", "--no-browser", "--db", db_arg, env={}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"leadbot: {expected.format(tmp=tmp_path)}\n"
    assert sorted(tmp_path.iterdir()) == before  # nothing made: no "sqlite:" folder, no file


NEW_YORK_HOURS = """
[hours]
timezone = "America/New_York"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "09:00"
end = "17:00"
"""


def test_an_empty_timezone_takes_the_policy_s_zone_for_the_digest(
    database_url: str, slack: SlackEmulator, tmp_path: Path
) -> None:
    """.env.example once set TIMEZONE=UTC and policy.example.toml New York hours: the digest
    went out at 05:00 in New York. An empty TIMEZONE is the policy's zone now."""
    from datetime import UTC, datetime

    from tests.conftest import START, FakeClock, start_bot

    policy = tmp_path / "policy.toml"
    policy.write_text(NEW_YORK_HOURS)
    bot = start_bot(database_url, slack, FakeClock(START), TIMEZONE="", POLICY_FILE=str(policy))
    try:
        assert bot.services.settings.zone_mismatch() is None
        bot.clock.set(datetime(2026, 11, 26, 9, 30, tzinfo=UTC))  # 04:30 in New York
        assert bot.run_job("digest") == "not due yet (at 09:00 America/New_York)"
        bot.clock.set(datetime(2026, 11, 26, 14, 0, tzinfo=UTC))  # 09:00 in New York
        assert bot.run_job("digest").startswith("sent to 1 manager")
    finally:
        bot.stop()


def test_a_timezone_other_than_the_policy_s_is_named_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text(NEW_YORK_HOURS)
    settings = load_settings({**GOOD, "TIMEZONE": "UTC"}, dotenv_path=None)
    with_policy = load_settings(
        {**GOOD, "TIMEZONE": "UTC", "POLICY_FILE": str(tmp_path / "policy.toml")},
        dotenv_path=None,
    )
    assert settings.zone_mismatch() is None  # no file: its hours are in TIMEZONE
    assert with_policy.zone_mismatch() == (
        "TIMEZONE is UTC but the policy's hours.timezone is America/New_York: the digest and "
        "/lead report's days go by UTC, the SLA clock by America/New_York; leave TIMEZONE "
        "empty to use the policy's zone throughout"
    )
    # Said where an operator looks: the start-up log of `serve` (here stopped by Slack not
    # answering, after the line).
    result = _leadbot(
        "serve",
        env={
            **GOOD,
            "TIMEZONE": "UTC",
            "POLICY_FILE": str(tmp_path / "policy.toml"),
            "SLACK_API_URL": "http://127.0.0.1:9/api/",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        },
        cwd=tmp_path,
    )
    assert "TIMEZONE is UTC but the policy's hours.timezone is America/New_York" in (result.stderr)


def test_a_manager_listed_twice_gets_one_digest(
    database_url: str, slack: SlackEmulator, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from tests.conftest import MANAGER, START, FakeClock, start_bot

    bot = start_bot(database_url, slack, FakeClock(START), MANAGER_IDS=f"{MANAGER}, {MANAGER}")
    try:
        assert bot.services.settings.manager_ids == (MANAGER,)
        bot.clock.set(datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
        assert bot.run_job("digest").startswith("sent to 1 manager")
        assert len(bot.slack.dms(MANAGER)) == 1
    finally:
        bot.stop()
