"""The handoff policy as code: personas, priorities and their SLAs, working hours, routes.

Read from a TOML file — `POLICY_FILE`, else `policy.toml` in the working directory when there is
one, else built-in defaults — and checked completely when loaded, so a mistake stops start-up with
one line naming the place in the file: `policy.toml: routes[2].channel: missing`. Indexes in those
messages count from 1, as people do. Pure: no database, no Slack.

Three settings fill in what the file leaves out: `TIMEZONE` (hours.timezone), `REMINDER_AFTER`
(claim_within) and `ESCALATE_AFTER` (escalate_after). The file always wins.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.settings import (
    SettingsError,
    format_duration,
    parse_duration,
    parse_reminders,
    parse_timezone,
)

DEFAULT_FILE = "policy.toml"
BUILT_IN = "built-in defaults"
DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_DISQUALIFY_REASONS: tuple[str, ...] = (
    "No budget",
    "Not a fit",
    "Existing customer",
    "Unresponsive",
    "Duplicate",
)
DEFAULT_MEANS: dict[str, str] = {
    "hot": "Asked for a demo or pricing; budget and a timeline within 90 days",
    "warm": "A real need and a good fit, but no budget or timeline yet",
    "cold": "Early interest or just curious; worth a follow-up when there is time",
}
DEFAULT_CLAIM_WITHIN = timedelta(minutes=30)  # REMINDER_AFTER's default
DEFAULT_ESCALATE_AFTER = 2  # ESCALATE_AFTER's default
DEFAULT_FOLLOW_UP_WITHIN = timedelta(days=1)
# A policy is a few KB; the cap keeps a wrong POLICY_FILE from filling memory.
MAX_FILE_BYTES = 1024 * 1024
# An SLA that ends further ahead than this is a mistake (and past year 9999 a crash).
HORIZON_YEARS = 10

# Priority and persona keys are typed in `/lead` text, so they must survive its comma-separated,
# read-by-shape grammar: a letter first, then letters, digits, - and _.
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,49}$")
# A priority's key is stored with each lead (leads.priority, 32 characters).
PRIORITY_KEY_MAX = 32
# The same shapes LEADS_CHANNEL accepts.
_CHANNEL = re.compile(r"^(?:[CG][A-Z0-9]{2,}|#[a-z0-9][a-z0-9_-]{0,79})$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TOML_AT = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")
_DAYS = {name: i for i, name in enumerate(DAY_NAMES)} | {
    name: i
    for i, name in enumerate(
        ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    )
}
# These end up as options of Slack select menus: at most 100 options of at most 75 characters.
_MAX_OPTIONS = 100
_MAX_OPTION_TEXT = 75
_QUOTE_MAX = 60

_TOP_KEYS = ("default_priority", "hours", "personas", "priorities", "routes", "outcomes")
_HOURS_KEYS = ("timezone", "days", "start", "end", "holidays")
_PERSONA_KEYS = ("key", "name", "description")
_PRIORITY_KEYS = ("means", "claim_within", "escalate_after", "follow_up_within")
_ROUTE_KEYS = ("channel", "territory", "persona", "priority", "event")
_OUTCOME_KEYS = ("disqualify_reasons",)


class PolicyError(SettingsError):
    """The policy file (or a setting it relies on) is wrong; str(error) is one line.

    A SettingsError (and so a ValueError) so that start-up reports it like any bad setting.
    """


@dataclass(frozen=True)
class Hours:
    """When the SLA clock runs. `always` means 24/7 and then the other fields are not used."""

    timezone: ZoneInfo
    days: frozenset[int]  # 0 = Monday, as date.weekday()
    start: time
    end: time
    holidays: frozenset[date] = frozenset()
    always: bool = False

    @property
    def overnight(self) -> bool:
        """Whether each window runs past midnight: `end` before `start` closes it on the next
        calendar day ("00:00" at midnight), and `end` equal to `start` makes it a whole day, to
        the same time the next day. The window belongs to the day it opens on."""
        return not self.always and self.end <= self.start


@dataclass(frozen=True)
class Persona:
    key: str
    name: str
    description: str = ""


@dataclass(frozen=True)
class PriorityRule:
    key: str
    means: str
    claim_within: timedelta  # remind after this unclaimed, and again every interval
    escalate_after: int  # reminders before the managers are told
    follow_up_within: timedelta  # claimed without an outcome: nudge the owner after this


@dataclass(frozen=True)
class Route:
    """Where a lead's card goes; every condition given must match, none given matches all."""

    channel: str
    territory: str | None = None
    persona: str | None = None
    priority: str | None = None
    event: str | None = None

    def matches(
        self,
        *,
        territory: str | None,
        persona: str | None,
        priority: str | None,
        event: str | None,
    ) -> bool:
        pairs = (
            (self.territory, territory),
            (self.persona, persona),
            (self.priority, priority),
            (_event(self.event), _event(event)),
        )
        return all(
            want is None or (have is not None and _fold(want) == _fold(have))
            for want, have in pairs
        )

    def conditions(self) -> tuple[tuple[str, str], ...]:
        """The given conditions as (name, value) pairs, in a fixed order."""
        values = (
            ("territory", self.territory),
            ("persona", self.persona),
            ("priority", self.priority),
            ("event", self.event),
        )
        return tuple((name, value) for name, value in values if value is not None)


@dataclass(frozen=True)
class Policy:
    hours: Hours
    personas: tuple[Persona, ...]
    priorities: dict[str, PriorityRule]  # in the order of the file
    default_priority: str
    routes: tuple[Route, ...] = ()
    disqualify_reasons: tuple[str, ...] = DEFAULT_DISQUALIFY_REASONS
    source: str = BUILT_IN  # the file's path as given, or "built-in defaults"

    def __post_init__(self) -> None:
        if self.default_priority not in self.priorities:
            raise ValueError("default_priority must be one of the priorities")

    def route(
        self,
        *,
        territory: str | None,
        persona: str | None,
        priority: str | None,
        event: str | None,
        default_channel: str,
    ) -> str:
        """The channel for a lead: the first matching route's, else `default_channel`."""
        for route in self.routes:
            if route.matches(territory=territory, persona=persona, priority=priority, event=event):
                return route.channel
        return default_channel

    def rule(self, priority: str) -> PriorityRule:
        """The SLA rule of a priority, case-insensitively.

        A lead stored under a priority that a later policy dropped gets the default priority's
        rule, so reminder jobs keep running after the policy file is edited.
        """
        key = _choice(priority, tuple(self.priorities)) or self.default_priority
        return self.priorities[key]

    def priority_keys(self) -> tuple[str, ...]:
        return tuple(self.priorities)

    def persona_keys(self) -> tuple[str, ...]:
        """The allowed persona keys; empty means any persona text is accepted."""
        return tuple(p.key for p in self.personas)


# --- loading ---------------------------------------------------------------------------------


def load_policy(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Policy:
    """Read and check the policy; raise PolicyError with one line naming the first mistake.

    `path`, else `POLICY_FILE` from `env` (os.environ when None), must exist. Without either,
    or with POLICY_FILE naming the default itself (as `.env.example` does), `policy.toml` in
    `cwd` (the working directory when None) is used when present, otherwise the built-in
    defaults. The file must be a regular file of at most MAX_FILE_BYTES; a link
    to a missing file is an error, not the defaults.
    """
    environ = _environ(env)
    fallback = _Fallback.from_env(environ)
    if path is not None and str(path).strip():
        name, explicit, hint = str(path), True, ""
    elif environ.get("POLICY_FILE") and environ["POLICY_FILE"] != DEFAULT_FILE:
        name, explicit, hint = environ["POLICY_FILE"], True, " (POLICY_FILE)"
    else:
        name, explicit, hint = DEFAULT_FILE, False, ""
    shown = _short_path(name)

    def refuse(problem: str) -> PolicyError:
        return PolicyError(_one_line(f"{shown}: {problem}{hint}"))

    try:
        file = Path(name).expanduser()
    except RuntimeError:  # `~user` with no such user, or `~` with no home
        raise refuse(f"no home directory for {_show(name.split('/')[0])}") from None
    if not file.is_absolute():
        file = (Path.cwd() if cwd is None else cwd) / file
    try:
        info = file.stat()
    except (FileNotFoundError, NotADirectoryError):
        if file.is_symlink():
            # Not silently the defaults: the link says a policy was meant to be there.
            raise refuse(f"a link to a missing file ({_short_path(os.readlink(file))})") from None
        if explicit:
            raise refuse("file not found") from None
        return _built_in(fallback)
    except (OSError, ValueError) as e:  # a name too long, a link loop, no permission, a NUL
        raise refuse(f"cannot be read ({_os_reason(e)})") from None
    if not stat.S_ISREG(info.st_mode):
        # A device or a pipe could be read for ever (/dev/zero) or block (a FIFO).
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a device or pipe"
        raise refuse(f"cannot be read ({kind}, not a file)")
    if info.st_size > MAX_FILE_BYTES:
        raise refuse(f"too large ({info.st_size:,} bytes; at most {MAX_FILE_BYTES:,})")
    try:
        with file.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # a file still growing is cut off here
    except OSError as e:
        raise refuse(f"cannot be read ({_os_reason(e)})") from None
    if len(data) > MAX_FILE_BYTES:
        raise refuse(f"too large (more than {MAX_FILE_BYTES:,} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise refuse("not UTF-8 text") from None
    return _parse(text, name, fallback)


def parse_policy(
    text: str, *, source: str = DEFAULT_FILE, env: Mapping[str, str] | None = None
) -> Policy:
    """Check policy TOML given as text; errors start with `source`, like load_policy's."""
    return _parse(text, source, _Fallback.from_env(_environ(env)))


def default_policy(env: Mapping[str, str] | None = None) -> Policy:
    """The policy without a file: hot, warm and cold, around the clock, no personas or routes."""
    return _built_in(_Fallback.from_env(_environ(env)))


@dataclass(frozen=True)
class _Fallback:
    """What the environment says for the values a policy file may leave out."""

    timezone: ZoneInfo
    claim_within: timedelta | None  # None: REMINDER_AFTER not set
    escalate_after: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> _Fallback:
        # The settings module's messages, so a bad value reads the same from both places.
        try:
            tz = parse_timezone(env.get("TIMEZONE") or "UTC")
            claim_within = None
            if env.get("REMINDER_AFTER"):
                claim_within = parse_duration(env["REMINDER_AFTER"], name="REMINDER_AFTER")
            escalate = parse_reminders(env.get("ESCALATE_AFTER") or str(DEFAULT_ESCALATE_AFTER))
        except SettingsError as e:
            raise PolicyError(_one_line(str(e))) from None
        return cls(tz, claim_within, escalate)


def _environ(env: Mapping[str, str] | None) -> dict[str, str]:
    source = os.environ if env is None else env
    # As in settings: surrounding spaces do not count and an empty value is no value.
    names = ("POLICY_FILE", "TIMEZONE", "REMINDER_AFTER", "ESCALATE_AFTER")
    return {n: source[n].strip() for n in names if n in source and source[n].strip()}


def _built_in(fallback: _Fallback) -> Policy:
    claim_within = fallback.claim_within or DEFAULT_CLAIM_WITHIN
    priorities = {
        key: PriorityRule(
            key=key,
            means=means,
            claim_within=claim_within,
            escalate_after=fallback.escalate_after,
            follow_up_within=DEFAULT_FOLLOW_UP_WITHIN,
        )
        for key, means in DEFAULT_MEANS.items()
    }
    return Policy(
        hours=_always(fallback.timezone),
        personas=(),
        priorities=priorities,
        default_priority="warm",
        routes=(),
        disqualify_reasons=DEFAULT_DISQUALIFY_REASONS,
        source=BUILT_IN,
    )


def _always(tz: ZoneInfo) -> Hours:
    return Hours(
        timezone=tz,
        days=frozenset(range(7)),
        start=time.min,
        end=time.max,
        holidays=frozenset(),
        always=True,
    )


def _parse(text: str, name: str, fallback: _Fallback) -> Policy:
    shown = _short_path(name)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        at = _TOML_AT.search(message)
        where = f"line {at.group(1)}, column {at.group(2)}" if at and at.group(1) else "end of file"
        message = _TOML_AT.sub("", message)
        raise PolicyError(_one_line(f"{shown}: {where}: {message} (TOML syntax)")) from None
    # What tomllib itself cannot handle escapes it as other errors, without a place.
    except RecursionError:
        raise PolicyError(_one_line(f"{shown}: not valid TOML (nested too deeply)")) from None
    except ValueError as e:
        if "integer string conversion" in str(e):
            reason = f"a number longer than {sys.get_int_max_str_digits()} digits"
        else:
            reason = _cut(str(e))
        raise PolicyError(_one_line(f"{shown}: not valid TOML ({reason})")) from None
    try:
        return _policy(data, fallback, name)
    except _Problem as e:
        raise PolicyError(_one_line(f"{shown}: {e}")) from None


class _Problem(Exception):
    """A mistake at a place in the file; the file name is added on the way out."""

    def __init__(self, place: str, message: str) -> None:
        super().__init__(f"{place}: {message}")


def _policy(data: dict[str, object], fallback: _Fallback, source: str) -> Policy:
    _check_keys(data, "", _TOP_KEYS)
    hours = _hours(data["hours"], fallback) if "hours" in data else _always(fallback.timezone)
    reach = _reach(hours)
    personas = _personas(data["personas"]) if "personas" in data else ()
    if "priorities" in data:
        priorities = _priorities(data["priorities"], fallback, reach)
    else:
        priorities = _built_in(fallback).priorities
        for key, rule in priorities.items():
            origin = "REMINDER_AFTER " if fallback.claim_within else "the default "
            _within_reach(rule.claim_within, f"priorities.{key}.claim_within", origin, reach)
            _within_reach(
                rule.follow_up_within, f"priorities.{key}.follow_up_within", "the default ", reach
            )
    default = "warm" if "warm" in priorities else next(iter(priorities))
    if "default_priority" in data:
        given = _string(data["default_priority"], "default_priority")
        found = _choice(given, tuple(priorities))
        if found is None:
            raise _Problem("default_priority", f"{_show(given)} is not one of {_list(priorities)}")
        default = found
    routes = _routes(data["routes"], personas, priorities) if "routes" in data else ()
    reasons = DEFAULT_DISQUALIFY_REASONS
    if "outcomes" in data:
        outcomes = _table(data["outcomes"], "outcomes", _OUTCOME_KEYS)
        if "disqualify_reasons" in outcomes:
            reasons = _reasons(outcomes["disqualify_reasons"])
    return Policy(
        hours=hours,
        personas=personas,
        priorities=priorities,
        default_priority=default,
        routes=routes,
        disqualify_reasons=reasons,
        source=source,
    )


def _hours(value: object, fallback: _Fallback) -> Hours:
    table = _table(value, "hours", _HOURS_KEYS)
    tz = fallback.timezone
    if "timezone" in table:
        tz_name = _string(table["timezone"], "hours.timezone")
        try:
            tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise _Problem(
                "hours.timezone",
                f"{_show(tz_name)} is not a time zone — expected an IANA name like "
                "America/New_York",
            ) from None
    days = frozenset(range(5))  # Monday to Friday unless told otherwise
    if "days" in table:
        names = _list_of(table["days"], "hours.days")
        if not names:
            raise _Problem("hours.days", 'empty — name at least one working day, like "mon"')
        picked: set[int] = set()
        for i, day in enumerate(names, 1):
            place = f"hours.days[{i}]"
            number = _DAYS.get(_string(day, place).strip().lower())
            if number is None:
                raise _Problem(
                    place, f"{_show(day)} is not a day — expected one of {_list(DAY_NAMES)}"
                )
            if number in picked:
                raise _Problem(place, f"{_show(day)} is listed twice")
            picked.add(number)
        days = frozenset(picked)
    for key in ("start", "end"):
        if key not in table:
            raise _Problem(
                f"hours.{key}", 'missing — working hours need a start and an end, like "09:00"'
            )
    start = _time(table["start"], "hours.start")
    end = _time(table["end"], "hours.end")
    # An end before the start runs past midnight, and the same time is a whole day
    # (Hours.overnight): start = end = "00:00" is round the clock on `days` but for holidays.
    holidays: set[date] = set()
    for i, day in enumerate(_list_of(table.get("holidays", []), "hours.holidays"), 1):
        holidays.add(_date(day, f"hours.holidays[{i}]"))
    return Hours(
        timezone=tz,
        days=days,
        start=start,
        end=end,
        holidays=frozenset(holidays),
        always=False,
    )


def _reach(hours: Hours) -> timedelta | None:
    """The working time in the next HORIZON_YEARS years, about; None when the clock never stops.

    Measured over one year from now, which takes a few milliseconds, and multiplied: the
    schedule repeats every week, so years differ only by their holidays.
    """
    if hours.always:
        return None
    # Here, not at the top: the clock module builds on this one (Hours).
    from bot.sla import working_time_between

    now = datetime.now(UTC)
    year = working_time_between(now, now + timedelta(days=366), hours)
    if not year:
        raise _Problem("hours", "no working time in the next 366 days — check days and holidays")
    return year * HORIZON_YEARS


def _within_reach(duration: timedelta, place: str, origin: str, reach: timedelta | None) -> None:
    """Refuse an SLA whose deadline would lie years ahead: past year 9999 it cannot be computed.

    `origin` says where a value the file does not hold came from, like "REMINDER_AFTER ".
    """
    if reach is not None and duration > reach:
        raise _Problem(
            place,
            f'{origin}"{format_duration(duration)}" of working time would end more than '
            f"{HORIZON_YEARS} years ahead — these [hours] hold {format_duration(reach)} of "
            f"working time in {HORIZON_YEARS} years",
        )


def _personas(value: object) -> tuple[Persona, ...]:
    items = _tables(value, "personas")
    if len(items) > _MAX_OPTIONS:
        raise _Problem("personas", f"{len(items)} personas; at most {_MAX_OPTIONS}")
    personas: list[Persona] = []
    seen: dict[str, str] = {}
    for i, item in enumerate(items, 1):
        place = f"personas[{i}]"
        table = _table(item, place, _PERSONA_KEYS)
        if "key" not in table:
            raise _Problem(
                f"{place}.key", 'missing — a short word typed in /lead, like "it-leader"'
            )
        key = _key(table["key"], f"{place}.key")
        if _fold(key) in seen:
            raise _Problem(f"{place}.key", f"{_show(key)} is used twice")
        seen[_fold(key)] = key
        name = _text(table.get("name", key), f"{place}.name", limit=_MAX_OPTION_TEXT)
        description = _text(table.get("description", ""), f"{place}.description", empty=True)
        personas.append(Persona(key=key, name=name, description=description))
    return tuple(personas)


def _priorities(
    value: object, fallback: _Fallback, reach: timedelta | None
) -> dict[str, PriorityRule]:
    if not isinstance(value, dict):
        raise _Problem("priorities", "expected a table of priorities, like [priorities.hot]")
    if not value:
        raise _Problem("priorities", "empty — define at least one, like [priorities.hot]")
    if len(value) > _MAX_OPTIONS:
        raise _Problem("priorities", f"{len(value)} priorities; at most {_MAX_OPTIONS}")
    rules: dict[str, PriorityRule] = {}
    seen: set[str] = set()
    for raw_key, item in value.items():
        # Written as TOML would need it, so the place can be found in the file.
        place = f"priorities.{raw_key if _BARE_KEY.match(raw_key) else json.dumps(raw_key)}"
        key = _key(raw_key, place, limit=PRIORITY_KEY_MAX)
        if _fold(key) in seen:
            raise _Problem(place, f"{_show(key)} is used twice (keys are not case-sensitive)")
        seen.add(_fold(key))
        table = _table(item, place, _PRIORITY_KEYS)
        means = _text(table.get("means", ""), f"{place}.means", empty=True)
        origin = ""
        if "claim_within" in table:
            claim_within = _duration(table["claim_within"], f"{place}.claim_within")
        elif fallback.claim_within is not None:
            claim_within, origin = fallback.claim_within, "REMINDER_AFTER "
        else:
            raise _Problem(
                f"{place}.claim_within",
                'missing — how long a lead may wait unclaimed, like "30m" '
                "(or set REMINDER_AFTER for every priority)",
            )
        escalate_after = fallback.escalate_after
        if "escalate_after" in table:
            escalate_after = _count(table["escalate_after"], f"{place}.escalate_after")
        _within_reach(claim_within, f"{place}.claim_within", origin, reach)
        follow_up_within, origin = DEFAULT_FOLLOW_UP_WITHIN, "the default "
        if "follow_up_within" in table:
            follow_up_within = _duration(table["follow_up_within"], f"{place}.follow_up_within")
            origin = ""
        _within_reach(follow_up_within, f"{place}.follow_up_within", origin, reach)
        rules[key] = PriorityRule(
            key=key,
            means=means,
            claim_within=claim_within,
            escalate_after=escalate_after,
            follow_up_within=follow_up_within,
        )
    return rules


def _routes(
    value: object, personas: tuple[Persona, ...], priorities: Mapping[str, PriorityRule]
) -> tuple[Route, ...]:
    routes: list[Route] = []
    persona_keys = tuple(p.key for p in personas)
    for i, item in enumerate(_tables(value, "routes"), 1):
        place = f"routes[{i}]"
        table = _table(item, place, _ROUTE_KEYS)
        if "channel" not in table:
            raise _Problem(
                f"{place}.channel", 'missing — where matching leads go, like "C0123ABCD"'
            )
        channel = _string(table["channel"], f"{place}.channel").strip()
        if not _CHANNEL.match(channel):
            raise _Problem(
                f"{place}.channel",
                f"{_show(channel)} is not a channel — expected a channel id like C0123ABCD "
                "or a name like #leads",
            )
        conditions: dict[str, str | None] = {}
        for key in ("territory", "persona", "priority", "event"):
            if key in table:
                conditions[key] = _text(table[key], f"{place}.{key}")
        persona = conditions.get("persona")
        # No personas in the policy means any persona text is accepted, here as in /lead.
        if persona is not None and persona_keys:
            conditions["persona"] = _choice(persona, persona_keys)
            if conditions["persona"] is None:
                raise _Problem(
                    f"{place}.persona", f"{_show(persona)} is not one of {_list(persona_keys)}"
                )
        priority = conditions.get("priority")
        if priority is not None:
            conditions["priority"] = _choice(priority, tuple(priorities))
            if conditions["priority"] is None:
                raise _Problem(
                    f"{place}.priority", f"{_show(priority)} is not one of {_list(priorities)}"
                )
        route = Route(channel=channel, **conditions)
        # A route whose conditions include an earlier route's can never be reached.
        for j, earlier in enumerate(routes, 1):
            if _condition_set(earlier) <= _condition_set(route):
                raise _Problem(
                    place, f"never used — routes[{j}] comes first and matches all its leads"
                )
        routes.append(route)
    return tuple(routes)


def _condition_set(route: Route) -> set[tuple[str, str]]:
    return {(n, _fold(_event(v) or "" if n == "event" else v)) for n, v in route.conditions()}


def _reasons(value: object) -> tuple[str, ...]:
    place = "outcomes.disqualify_reasons"
    items = _list_of(value, place)
    if not items:
        raise _Problem(place, "empty — list at least one, or leave the key out for the defaults")
    if len(items) > _MAX_OPTIONS:
        raise _Problem(place, f"{len(items)} reasons; at most {_MAX_OPTIONS}")
    reasons: list[str] = []
    for i, item in enumerate(items, 1):
        reason = _text(item, f"{place}[{i}]", limit=_MAX_OPTION_TEXT)
        if _fold(reason) in {_fold(r) for r in reasons}:
            raise _Problem(f"{place}[{i}]", f"{_show(reason)} is listed twice")
        reasons.append(reason)
    return tuple(reasons)


# --- small checkers: each returns the value or raises _Problem naming the place ---------------


def _check_keys(table: Mapping[str, object], prefix: str, allowed: tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            raise _Problem(f"{prefix}{key}", f"unknown key — expected one of {_list(allowed)}")


def _table(value: object, place: str, allowed: tuple[str, ...]) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _Problem(place, f"expected a table, not {_show(value)}")
    _check_keys(value, f"{place}.", allowed)
    return value


def _tables(value: object, place: str) -> list[object]:
    if not isinstance(value, list):
        raise _Problem(place, f"expected a list of tables — write each one as [[{place}]]")
    return value


def _list_of(value: object, place: str) -> list[object]:
    if not isinstance(value, list):
        raise _Problem(place, f'expected a list, like ["…", "…"], not {_show(value)}')
    return value


def _string(value: object, place: str) -> str:
    if not isinstance(value, str):
        raise _Problem(place, f"expected a string in quotes, not {_show(value)}")
    return value


def _text(value: object, place: str, *, empty: bool = False, limit: int = 500) -> str:
    text = " ".join(_string(value, place).split())  # one line: it is shown in Slack
    if not text and not empty:
        hint = "remove it" if place.endswith("]") else "leave the key out instead"
        raise _Problem(place, f"empty — {hint}")
    if len(text) > limit:
        raise _Problem(place, f"too long ({len(text)} characters; at most {limit})")
    return text


def _key(value: object, place: str, *, limit: int = 50) -> str:
    key = _string(value, place).strip()
    if not _KEY.match(key):
        raise _Problem(
            place,
            f"{_show(key)} is not a key — use a letter, then letters, digits, - or _ "
            "(it is typed in /lead)",
        )
    if len(key) > limit:
        raise _Problem(place, f"{_show(key)} is too long ({len(key)} characters; at most {limit})")
    return key


def _duration(value: object, place: str) -> timedelta:
    if not isinstance(value, str):
        raise _Problem(place, f'{_show(value)} is not a duration — use a string like "30m"')
    try:
        return parse_duration(value, name=place)
    except SettingsError as e:
        # Keep the settings wording; only show the value in TOML's quotes.
        message = str(e).removeprefix(f"{place}: ").replace(repr(value), _show(value), 1)
        raise _Problem(place, message) from None


def _count(value: object, place: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _Problem(
            place,
            f"{_show(value)} is not a number of reminders — expected a whole number, 1 or more",
        )
    return value


def _time(value: object, place: str) -> time:
    if isinstance(value, time):  # TOML's own local time, like 09:00:00
        return value
    match = _HHMM.match(value) if isinstance(value, str) else None
    if not match:
        raise _Problem(place, f'{_show(value)} is not a time — expected HH:MM, like "09:00"')
    return time(int(match.group(1)), int(match.group(2)))


def _date(value: object, place: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):  # TOML's own date
        return value
    if isinstance(value, str) and _ISO_DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise _Problem(place, f'{_show(value)} is not a date — expected YYYY-MM-DD, like "2026-12-25"')


def _choice(value: str, choices: tuple[str, ...]) -> str | None:
    folded = _fold(value)
    return next((c for c in choices if _fold(c) == folded), None)


def _fold(text: str) -> str:
    return text.strip().casefold()


def _event(text: str | None) -> str | None:
    # As the /lead parser stores events: without their leading `#`.
    return None if text is None else text.strip().lstrip("# ").strip()


def _show(value: object) -> str:
    """A value as TOML would write it, cut short: messages are read on a phone."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return json.dumps(_cut(value), ensure_ascii=False)
    return str(value)


def _cut(text: str, limit: int = _QUOTE_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short_path(name: str) -> str:
    """A file name for messages: a very long one keeps its start and its end."""
    if len(name) <= 2 * _QUOTE_MAX:
        return name
    return f"{name[:_QUOTE_MAX]}…{name[-_QUOTE_MAX + 1 :]}"


def _os_reason(error: OSError | ValueError) -> str:
    return (error.strerror if isinstance(error, OSError) else None) or str(error)


def _hhmm(value: time) -> str:
    return f'"{value.strftime("%H:%M")}"'


def _list(choices: Mapping[str, object] | tuple[str, ...]) -> str:
    return ", ".join(choices) if choices else "(none)"


def _one_line(message: str) -> str:
    return " ".join(message.split())


# --- describing ------------------------------------------------------------------------------


def describe_policy(policy: Policy, *, default_channel: str | None = None) -> str:
    """The policy as Slack mrkdwn, for `/lead policy` and the App Home."""
    # Names, descriptions and reasons sit inside the page's own *bold* and lines: shown inert
    # (bot.render.inline) so that none can end or start formatting. Imported here: bot.render
    # imports bot.outcomes, which imports this module.
    from bot.render import channel_mention, inline

    lines = [f"*Handoff policy* — from {_source(policy.source)}", ""]

    lines.append("*Priorities*")
    if not policy.hours.always:
        # Said plainly because `1d` is easy to misread as one working day.
        lines.append("_Times count working hours only: 1d is 24 working hours, not one workday._")
    for rule in policy.priorities.values():
        default = " _(default)_" if rule.key == policy.default_priority else ""
        means = f" — {inline(rule.means, 500)}" if rule.means else ""
        lines.append(f"• *{escape(rule.key)}*{default}{means}")
        claim = format_duration(rule.claim_within)
        reminders = "reminder" if rule.escalate_after == 1 else "reminders"
        lines.append(
            f"    claim within {claim}, else a reminder then and every {claim} after; managers "
            f"are told after {rule.escalate_after} {reminders} · follow up within "
            f"{format_duration(rule.follow_up_within)}"
        )

    lines += ["", "*Personas*"]
    if not policy.personas:
        lines.append("Any persona may be typed; none are defined.")
    for persona in policy.personas:
        about = f" — {inline(persona.description, 500)}" if persona.description else ""
        lines.append(f"• *{inline(persona.name, 500)}* (`{escape(persona.key)}`){about}")

    lines += ["", "*Working hours*", _describe_hours(policy.hours)]

    lines += ["", "*Routes* (first match wins)"]
    for route in policy.routes:
        lines.append(f"• {_describe_conditions(route)} → {channel_mention(route.channel)}")
    leads = channel_mention(default_channel) if default_channel else "the leads channel"
    everything = "every other lead" if policy.routes else "every lead"
    lines.append(f"• {everything} → {leads}")

    lines += ["", "*Disqualify reasons*"]
    lines.append(" · ".join(inline(r, 500) for r in policy.disqualify_reasons))
    return "\n".join(lines)


def escape(text: str) -> str:
    """Slack's three mrkdwn escapes; `&` first so the others are not escaped twice."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _source(source: str) -> str:
    return "the built-in defaults" if source == BUILT_IN else f"`{escape(source)}`"


def _describe_hours(hours: Hours) -> str:
    zone = escape(hours.timezone.key)
    if hours.always:
        return f"Around the clock, every day (time zone {zone})"
    start, end = hours.start.strftime("%H:%M"), hours.end.strftime("%H:%M")
    if hours.start == hours.end == time(0):
        span = "all day"
    elif hours.end == time(0):
        span = f"{start}–midnight"  # "18:00–00:00" reads as if it ended before it began
    elif hours.overnight:
        # Said in full so that "Mon–Fri" reads as the evenings the hours start, Monday's ending
        # on Tuesday, which is how the clock counts them.
        span = f"{start} to {end} the next day"
    else:
        span = f"{start}–{end}"
    text = f"{_describe_days(hours.days)}, {span} ({zone})"
    if hours.holidays:
        days = sorted(hours.holidays)
        shown = ", ".join(d.isoformat() for d in days[:20])
        more = f" and {len(days) - 20} more" if len(days) > 20 else ""
        text += f"; closed on {shown}{more}"
        if hours.overnight and hours.end != time(0):
            text += " (the hours that would start on those days)"
    return text


def _describe_days(days: frozenset[int]) -> str:
    """Runs of three or more days as `Mon–Fri`, others listed: `Mon–Wed, Sat`."""
    names = [DAY_NAMES[d].capitalize() for d in range(7)]
    runs: list[list[int]] = []
    for day in sorted(days):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts: list[str] = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{names[run[0]]}–{names[run[-1]]}")
        else:
            parts.extend(names[d] for d in run)
    return ", ".join(parts)


def _describe_conditions(route: Route) -> str:
    conditions = route.conditions()
    if not conditions:
        return "every lead"
    return ", ".join(
        f"{name} {escape('#' + (_event(value) or '') if name == 'event' else value)}"
        for name, value in conditions
    )
