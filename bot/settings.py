"""All settings in one place, from the environment or a `.env` file.

A missing or malformed setting raises `SettingsError` whose message is one line naming the
setting and what is expected; the CLI prints that line and exits, never a traceback.
"""

from __future__ import annotations

import difflib
import io
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values
from dotenv.parser import parse_stream
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from bot.ids import is_digits

if TYPE_CHECKING:
    from bot.policy import Policy


class SettingsError(ValueError):
    """A setting is missing or malformed; str(error) is one line for a person."""


_DURATION_PART = re.compile(r"([0-9]+)\s*([smhd])")
_DURATION = re.compile(r"^\s*(?:[0-9]+\s*[smhd]\s*)+$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A channel id, not a name: a name cannot be used to look a card up again after a crash.
_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,}$")
_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# The longest durations taken. Longer is a typo, and would overflow datetime arithmetic (or,
# for an SLA, walk years of working days to find one deadline).
LONGEST_SLA = timedelta(days=365)  # REMINDER_AFTER, a policy's claim_within, follow_up_within
LONGEST_KEPT = timedelta(days=3650)  # RETAIN_FOR, DUPLICATE_WINDOW
# RETAIN_FOR deletes leads older than it: `12m` meant as twelve months, read as twelve minutes,
# would have the next hourly purge delete every lead, the unclaimed ones included.
SHORTEST_KEPT = timedelta(days=1)
LONGEST_SLACK_CALL = timedelta(minutes=5)  # SLACK_TIMEOUT
LONGEST_VALUE = 4096  # characters in any setting: a path's limit, far past any id, token or URL
# What a token or secret can be: it goes into HTTP headers, where "xoxb-…" (the README's
# placeholder, with its ellipsis) or a space once stopped start-up with a traceback.
_TOKEN = re.compile(r"[\x21-\x7e]+")
# CPU numbers and ranges as Linux writes them (`1`, `2,3`, `0-3`), which the errors echo.
_CPUS = re.compile(r"^[0-9]{1,4}(-[0-9]{1,4})?(\s*,\s*[0-9]{1,4}(-[0-9]{1,4})?)*$")
# PIN_CPU's words (bot.affinity acts on them; it imports them from here).
PIN_AUTO, PIN_OFF = "auto", "off"

# Every setting with its default (None = no default) and a short description; the README
# table and `.env.example` say the same, and a test keeps them in step.
SETTINGS_HELP: dict[str, tuple[str | None, str]] = {
    "SLACK_BOT_TOKEN": (None, "bot token, xoxb-… (OAuth & Permissions page of the Slack app)"),
    "SLACK_SIGNING_SECRET": (None, "signing secret (Basic Information page of the Slack app)"),
    "SLACK_APP_TOKEN": (None, "app-level token, xapp-…, only for `leadbot socket`"),
    "SLACK_API_URL": ("https://slack.com/api/", "Slack Web API base URL"),
    "DATABASE_URL": ("sqlite:///leadbot.db", "SQLAlchemy URL: sqlite:///file.db or postgresql://…"),
    "LEADS_CHANNEL": (None, "channel id (C…) where claim cards are posted"),
    "MANAGER_IDS": ("", "Slack user ids (U…) of managers, comma-separated"),
    "REMINDER_AFTER": (
        "30m",
        "remind about an unclaimed lead after this, and again every interval",
    ),
    "ESCALATE_AFTER": ("2", "reminders before the managers get a DM"),
    "DIGEST_AT": ("09:00", "time of the managers' daily digest, HH:MM"),
    # Empty by default so that a policy file's hours.timezone is the team's one zone: with
    # TIMEZONE=UTC in .env and New York hours in the file, the digest went out at 05:00 New
    # York time and /lead report's days began at 19:00.
    "TIMEZONE": (
        "",
        "IANA time zone of DIGEST_AT and /lead report's days, e.g. Europe/Berlin; "
        "empty: the policy's hours.timezone, else UTC",
    ),
    "SLACK_TIMEOUT": ("10s", "how long one Slack API call may take before it is retried"),
    "SLACK_POSTS_PER_SECOND": ("1", "pace of posts per channel (Slack allows about 1/s)"),
    "RETAIN_FOR": (
        "",
        "delete leads older than this (e.g. 365d) with the purge job; empty keeps all",
    ),
    "SALES_IDS": ("", "if set, only these user ids (U…) may claim leads, comma-separated"),
    "SALES_USERGROUP": ("", "if set, only members of this user group (S…) may claim leads"),
    "POLICY_FILE": ("policy.toml", "the handoff policy (TOML); built-in defaults when absent"),
    "DUPLICATE_WINDOW": (
        "90d",
        "a lead matching an earlier one's email or phone within this is marked",
    ),
    "HOST": ("0.0.0.0", "address `leadbot serve` listens on"),
    "PORT": ("3000", "port `leadbot serve` listens on"),
    # Web threads mostly wait on the database, not the CPU: 16 beat 8 by ~15-25% in the ack
    # bench on 2 cores (python -m bench --only ack --web-threads N), 32 gave no more.
    "WEB_THREADS": ("16", "worker threads of the HTTP server"),
    "PIN_CPU": (
        PIN_AUTO,
        "CPUs `leadbot serve` and `socket` run on: auto (one no other leadbot process holds), "
        "off, or numbers like 1 or 2,3",
    ),
    "LOG_LEVEL": ("INFO", "DEBUG, INFO, WARNING or ERROR"),
}

# What a running bot cannot do without.
SERVE_REQUIRES = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "LEADS_CHANNEL")


@dataclass(frozen=True)
class Settings:
    # Secrets stay out of repr(): a settings object in a log line or a report shows none.
    slack_bot_token: str = field(default="", repr=False)
    slack_signing_secret: str = field(default="", repr=False)
    slack_app_token: str = field(default="", repr=False)
    slack_api_url: str = "https://slack.com/api/"
    database_url: str = field(default="sqlite:///leadbot.db", repr=False)
    leads_channel: str = ""
    manager_ids: tuple[str, ...] = ()
    reminder_after: timedelta = timedelta(minutes=30)
    escalate_after: int = 2
    digest_at: time = time(9, 0)
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    slack_timeout: timedelta = timedelta(seconds=10)
    posts_per_second: float = 1.0
    retain_for: timedelta | None = None
    sales_ids: tuple[str, ...] = ()
    sales_usergroup: str = ""
    duplicate_window: timedelta = timedelta(days=90)
    policy: Policy = field(default_factory=lambda: _policy(None))
    host: str = "0.0.0.0"
    port: int = 3000
    web_threads: int = 16
    pin_cpu: str = PIN_AUTO
    log_level: str = "INFO"

    @property
    def sqlalchemy_url(self) -> URL:
        return database_url(self.database_url)

    def zone_mismatch(self) -> str | None:
        """A line for the start-up log when TIMEZONE and the policy's hours.timezone differ
        (both set, then: an unset TIMEZONE takes the policy's), else None."""
        ours, theirs = self.timezone.key, self.policy.hours.timezone.key
        if ours == theirs:
            return None
        return (
            f"TIMEZONE is {ours} but the policy's hours.timezone is {theirs}: the digest and "
            f"/lead report's days go by {ours}, the SLA clock by {theirs}; leave TIMEZONE "
            "empty to use the policy's zone throughout"
        )


def parse_duration(
    text: str,
    *,
    name: str = "duration",
    longest: timedelta = LONGEST_SLA,
    shortest: timedelta | None = None,
) -> timedelta:
    """`45s`, `30m`, `2h`, `1d` or combinations like `1h30m`; positive, at most `longest` (and
    at least `shortest`, when given)."""
    if not _DURATION.match(text or ""):
        raise SettingsError(
            f"{name}: {text!r} is not a duration — use a number and a unit, like 45s, 30m, 2h or 1d"
        )
    # A number of more digits than any duration taken counts as 10**12, past every ceiling:
    # int() refuses past 4,300 digits.
    seconds = sum(
        (int(n) if len(n) <= 12 else 10**12) * _UNITS[u] for n, u in _DURATION_PART.findall(text)
    )
    if seconds <= 0:
        raise SettingsError(f"{name}: {text!r} must be longer than zero")
    # Checked before timedelta(), which overflows past 999,999,999 days.
    if seconds > longest.total_seconds():
        raise SettingsError(f"{name}: {text!r} is too long — at most {format_duration(longest)}")
    if shortest is not None and seconds < shortest.total_seconds():
        raise SettingsError(
            f"{name}: {text!r} is too short — at least {format_duration(shortest)} "
            "(m is minutes: for months write days, like 365d)"
        )
    return timedelta(seconds=seconds)


def cpu_list(text: str) -> set[int]:
    """`1`, `2,3` or `0-3` (as matched by _CPUS) → the CPU numbers; empty for a range like 3-1."""
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if high and int(high) < int(low):
            return set()
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def parse_timezone(text: str) -> ZoneInfo:
    """TIMEZONE: an IANA name."""
    try:
        return ZoneInfo(text)
    # OSError: a folder of the database, like "America", or a name too long for a file.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise SettingsError(
            f"TIMEZONE: {text!r} is not a time zone — expected an IANA name like Europe/Berlin"
        ) from None


def parse_reminders(text: str) -> int:
    """ESCALATE_AFTER: a whole number of reminders, 1 or more."""
    if not is_digits(text) or len(text) > 9 or int(text) < 1:
        raise SettingsError(
            f"ESCALATE_AFTER: {text!r} is not a number of reminders — expected 1 to 999999999"
        )
    return int(text)


def format_duration(delta: timedelta) -> str:
    """The inverse of parse_duration for display: 1h30m, 45s, 2d."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def database_url(text: str) -> URL:
    """Parse DATABASE_URL; `postgresql://` means psycopg 3, as the README promises."""
    try:
        url = make_url(text)
        url.port  # noqa: B018 — a port that is not a number fails here, not at connect time
    except (ArgumentError, ValueError):
        raise SettingsError(
            f"DATABASE_URL: {_masked(text)!r} is not a database URL — "
            "expected sqlite:///leadbot.db or postgresql://user:pass@host/db"
        ) from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres") and url.drivername in _POSTGRES_DRIVERS:
        if not url.database:
            # It would connect to the server's own `postgres` database and build tables there.
            raise SettingsError(
                f"DATABASE_URL: {url.render_as_string()!r} names no database — add one, like "
                "postgresql://user:pass@host/leadbot"
            )
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and url.drivername in ("sqlite", "sqlite+pysqlite"):
        name = url.database or ""
        if name in ("", ":memory:") or url.query.get("mode") == "memory" or ":memory:" in name:
            # Each of leadbot's threads would open its own, empty, and it is gone at exit.
            hint = f", like sqlite:///{url.host}" if url.host else ", like sqlite:///leadbot.db"
            raise SettingsError(
                f"DATABASE_URL: {_masked(text)!r} is a SQLite database in memory, which leadbot "
                f"cannot keep — name a file after three slashes{hint}"
            )
        return url
    if backend in ("postgresql", "postgres", "sqlite"):
        plain = "sqlite:///…" if backend == "sqlite" else "postgresql://…"
        raise SettingsError(
            f"DATABASE_URL: the driver {url.drivername!r} is not supported — write {plain} "
            "(leadbot uses psycopg 3 or Python's sqlite3)"
        )
    raise SettingsError(
        f"DATABASE_URL: {url.drivername!r} is not supported — use sqlite:///… or postgresql://…"
    )


_POSTGRES_DRIVERS = ("postgresql", "postgres", "postgresql+psycopg")


def _masked(text: str) -> str:
    """A URL as typed, its password (if any) hidden, for messages that echo it: after the user
    name up to the first `@`, as SQLAlchemy reads it (a `/` in it included), and libpq's
    `password=` / `sslpassword=` query parameters."""
    text = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text)
    return re.sub(r"(?i)([?&](?:ssl)?password=)[^&#]*", r"\1***", text)


def _api_url(text: str) -> str:
    """SLACK_API_URL, checked as far as a URL can be without a request; ends with a slash."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 — a port that is not a number or out of range fails here
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() or not c.isprintable() for c in text)
    ):
        raise SettingsError(
            f"SLACK_API_URL: {text!r} — expected an http(s) URL like https://slack.com/api/"
        )
    return text if text.endswith("/") else text + "/"


def _env(environ: Mapping[str, str] | None, dotenv_path: str | Path | None) -> dict[str, str]:
    merged: dict[str, str] = {}
    if dotenv_path is not None and Path(dotenv_path).is_file():
        try:
            text = Path(dotenv_path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise SettingsError(f"{dotenv_path}: not UTF-8 text — save it as UTF-8") from None
        except OSError as e:
            raise SettingsError(f"{dotenv_path}: cannot be read ({e.strerror or e})") from None
        # python-dotenv skips a line it cannot read with a warning that names no file: an
        # unclosed quote then silently left, say, DATABASE_URL at its default.
        for binding in parse_stream(io.StringIO(text)):
            if binding.error:
                raise SettingsError(
                    f"{dotenv_path}: line {binding.original.line}: cannot be read — expected "
                    "NAME=value (is a quote left open?)"
                )
        values = dotenv_values(stream=io.StringIO(text))
        for name in values:
            _check_name(name, dotenv_path)
        merged.update({k: v for k, v in values.items() if v is not None})
    # The real environment wins over .env, as with python-dotenv's load_dotenv(override=False),
    # except where it is empty: `DATABASE_URL=${DATABASE_URL}` in a compose file, with nothing
    # to fill it in, left leadbot on ./leadbot.db while .env named the real database.
    given = os.environ if environ is None else environ
    merged.update({k: v for k, v in given.items() if v.strip()})
    env = {k: v.strip() for k, v in merged.items() if k in SETTINGS_HELP}
    for name, value in env.items():
        _check_text(name, value)
    return env


# How alike (difflib's ratio) a name in .env must be to a setting's to be taken for a misspelling
# of it: DATABSE_URL 0.96, MANAGER_ID 0.95, LOGLEVEL 0.94, SLACK_TOKEN 0.85; other tools' names
# stay below (TEST_DATABASE_URL 0.83, SLACK_CLIENT_SECRET 0.77, POSTGRES_PASSWORD 0.51).
_NEAR_MISS = 0.84


def _check_name(name: str, dotenv_path: str | Path) -> None:
    """A name in the .env file that is not a setting but close to one (in other letters' case,
    or a letter or two off) stops start-up: misspelled, its setting silently kept its default
    (DATABSE_URL: a new ./leadbot.db; MANAGER_ID: no managers). A .env may also hold other
    tools' variables (docker compose reads it too): names far from every setting are left."""
    if name in SETTINGS_HELP:
        return
    upper = name.upper().replace("-", "_")
    near = difflib.get_close_matches(upper, SETTINGS_HELP, n=1, cutoff=_NEAR_MISS)
    if upper in SETTINGS_HELP or near:
        meant = upper if upper in SETTINGS_HELP else near[0]
        raise SettingsError(
            f"{dotenv_path}: {name} is not a setting — did you mean {meant}? (names are "
            "upper case; see .env.example)"
        )


def _check_text(name: str, value: str) -> None:
    if len(value) > LONGEST_VALUE:
        raise SettingsError(f"{name}: {len(value):,} characters; at most {LONGEST_VALUE:,}")
    try:
        value.encode("utf-8")  # bytes the environment could not decode arrive as surrogates
    except UnicodeEncodeError:
        raise SettingsError(f"{name}: not UTF-8 text") from None


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    require: Iterable[str] = (),
    dotenv_path: str | Path | None = ".env",
) -> Settings:
    """Read and check every setting; raise SettingsError naming the first bad one."""
    env = _env(environ, dotenv_path)

    def get(name: str) -> str:
        value = env.get(name, "")
        if value:
            return value
        default = SETTINGS_HELP[name][0]
        return default or ""

    for name in require:
        if not get(name):
            raise SettingsError(
                f"{name}: missing — set it in the environment or .env ({SETTINGS_HELP[name][1]})"
            )

    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        if get(name) and not _TOKEN.fullmatch(get(name)):
            # Not echoed: it is a secret, even when mistyped.
            raise SettingsError(
                f"{name}: not a token — it holds a space or a character that is not ASCII; "
                "paste it in full, as Slack shows it"
            )
    _check_bot_token(get("SLACK_BOT_TOKEN"))
    leads_channel = get("LEADS_CHANNEL")
    if leads_channel and not _CHANNEL.match(leads_channel):
        raise SettingsError(
            f"LEADS_CHANNEL: {leads_channel!r} is not a channel id — expected an id like "
            "C0123ABCD (in Slack: the channel's name → ⋯ → Copy link, the last part)"
        )
    managers = _user_ids(get("MANAGER_IDS"), "MANAGER_IDS")
    sales = _user_ids(get("SALES_IDS"), "SALES_IDS")
    usergroup = get("SALES_USERGROUP")
    if usergroup and not re.match(r"^S[A-Z0-9]{2,}$", usergroup):
        raise SettingsError(
            f"SALES_USERGROUP: {usergroup!r} is not a user group id — expected an id like S0123ABCD"
        )
    retain = get("RETAIN_FOR")
    escalate = parse_reminders(get("ESCALATE_AFTER"))
    digest_at = get("DIGEST_AT")
    m = _HHMM.match(digest_at)
    if not m:
        raise SettingsError(f"DIGEST_AT: {digest_at!r} is not a time — expected HH:MM, like 09:00")
    tz = parse_timezone(get("TIMEZONE")) if get("TIMEZONE") else None
    port = _int(get("PORT"), "PORT", 1, 65535)
    threads = _int(get("WEB_THREADS"), "WEB_THREADS", 1, 256)
    pin_cpu = get("PIN_CPU").lower()
    if pin_cpu not in (PIN_AUTO, PIN_OFF) and (not _CPUS.match(pin_cpu) or not cpu_list(pin_cpu)):
        raise SettingsError(
            f"PIN_CPU: {pin_cpu!r} — expected auto, off, or CPU numbers like 1, 2,3 or 0-3"
        )
    log_level = get("LOG_LEVEL").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"LOG_LEVEL: {log_level!r} — expected DEBUG, INFO, WARNING or ERROR")
    api_url = _api_url(get("SLACK_API_URL"))
    pace = get("SLACK_POSTS_PER_SECOND")
    try:
        posts_per_second = float(pace)
    except ValueError:
        posts_per_second = 0.0
    # Below 0.01 (a post every 100 s) a burst of cards would wait for days.
    if not 0.01 <= posts_per_second <= 1000:
        raise SettingsError(
            f"SLACK_POSTS_PER_SECOND: {pace!r} — expected a number from 0.01 to 1000, like 1 or 0.5"
        )
    db = get("DATABASE_URL")
    database_url(db)  # validate now so start-up stops with one line, not a driver traceback
    # Read last: it names its own file and place, and its defaults use the settings above.
    policy = _policy(env)

    return Settings(
        slack_bot_token=get("SLACK_BOT_TOKEN"),
        slack_signing_secret=get("SLACK_SIGNING_SECRET"),
        slack_app_token=get("SLACK_APP_TOKEN"),
        slack_api_url=api_url,
        database_url=db,
        leads_channel=leads_channel,
        manager_ids=managers,
        reminder_after=parse_duration(get("REMINDER_AFTER"), name="REMINDER_AFTER"),
        escalate_after=escalate,
        digest_at=time(int(m.group(1)), int(m.group(2))),
        timezone=tz or policy.hours.timezone,
        slack_timeout=parse_duration(
            get("SLACK_TIMEOUT"), name="SLACK_TIMEOUT", longest=LONGEST_SLACK_CALL
        ),
        posts_per_second=posts_per_second,
        retain_for=(
            parse_duration(retain, name="RETAIN_FOR", longest=LONGEST_KEPT, shortest=SHORTEST_KEPT)
            if retain
            else None
        ),
        sales_ids=sales,
        sales_usergroup=usergroup,
        duplicate_window=parse_duration(
            get("DUPLICATE_WINDOW"), name="DUPLICATE_WINDOW", longest=LONGEST_KEPT
        ),
        policy=policy,
        host=get("HOST"),
        port=port,
        web_threads=threads,
        pin_cpu=pin_cpu,
        log_level=log_level,
    )


def _policy(env: Mapping[str, str] | None) -> Policy:
    # Imported here: the policy module builds on this one (durations, SettingsError).
    from bot.policy import default_policy, load_policy

    return default_policy({}) if env is None else load_policy(env=env)


# Slack's other kinds of token, by prefix. A user token (xoxp-) passes auth.test, and then acts
# as the person who installed the app rather than as the bot.
_OTHER_TOKENS = {
    "xoxp-": "a user token",
    "xapp-": "an app-level token (that one goes in SLACK_APP_TOKEN)",
    "xoxe": "a refresh or configuration token",
    "xoxa-": "a workspace token",
}


def _check_bot_token(token: str) -> None:
    if not token or token.startswith("xoxb-"):
        return
    # Only the prefix is named: the rest is a secret.
    kind = next((k for p, k in _OTHER_TOKENS.items() if token.startswith(p)), None)
    what = f"{kind} ({token[:5]}…)" if kind else "not a bot token"
    raise SettingsError(
        f"SLACK_BOT_TOKEN: {what} — leadbot needs the Bot User OAuth Token, which starts with "
        "xoxb- (the Slack app's OAuth & Permissions page)"
    )


def _user_ids(text: str, name: str) -> tuple[str, ...]:
    # Each once, in the order given: a manager listed twice got every digest and escalation
    # twice.
    ids = tuple(dict.fromkeys(m for m in re.split(r"[\s,]+", text) if m))
    for m in ids:
        if not _USER.match(m):
            raise SettingsError(
                f"{name}: {m!r} is not a Slack user id — expected ids like U0123ABCD, "
                "comma-separated (profile → ⋯ → Copy member ID)"
            )
    return ids


def _int(text: str, name: str, low: int, high: int) -> int:
    if not is_digits(text) or len(text) > 9 or not low <= int(text) <= high:
        raise SettingsError(f"{name}: {text!r} — expected a whole number from {low} to {high}")
    return int(text)


def env_example() -> str:
    """The text of `.env.example`: every setting with its meaning and default."""
    lines = [
        "# leadbot settings. Copy to .env (never commit it) and fill in the blanks.",
        "# The real environment overrides this file; a bad value stops start-up with one line.",
        "",
    ]
    for name, (default, meaning) in SETTINGS_HELP.items():
        lines.append(
            f"# {meaning}"
            # (A meaning that says what empty does needs no "default: none".)
            + ("" if default is None or "empty" in meaning else f" (default: {default or 'none'})")
        )
        lines.append(f"{name}={default or ''}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m bot.settings > .env.example
    print(env_example(), end="")
