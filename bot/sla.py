"""The working-hours clock: SLA deadlines that only run while sales is at work.

Working time is real elapsed time inside working windows. Each working day (a day of
`hours.days` that is not a holiday, both read in `hours.timezone`) has one window from `start`
to `end` local wall-clock time; nothing else counts. So `1d` of working time is 24 working hours,
which on a 09:00–18:00 schedule is two full days and 6 hours more — not "one working day".

An `end` earlier than `start` (Hours.overnight) closes the window on the next calendar day:
22:00–06:00 on Mon–Fri runs from Monday 22:00 to Tuesday 06:00, …, Friday 22:00 to Saturday
06:00, and an `end` of 00:00 closes it at midnight. An `end` equal to `start` makes a whole day:
00:00–00:00 on every day but holidays is round the clock with days off. Such a window belongs to
the day it opens on: that day must be a working day and not a holiday, whatever the day it
closes on.

All instants in and out are timezone-aware; results are in UTC. A window is placed by its local
wall-clock times, so 09:00–18:00 stays 09:00–18:00 on the days clocks change; if a window itself
spans a change (say 00:00–12:00, or 22:00–06:00 over the night the clocks change), it is as long
as the real time between its two ends. A start or end time that does not exist that day (skipped
by the change) maps as zoneinfo does for fold=0, i.e. with the offset from before the change;
one that happens twice (clocks going back) is its first occurrence.

Pure functions; no database, no Slack.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

from bot.policy import Hours

# A schedule without a working day for this long is broken (every day a holiday, no days at
# all): give up with ValueError rather than search forever.
MAX_SEARCH_DAYS = 3 * 366
# Windows are placed in UTC from local days; past this day that can overflow datetime.
_LAST_DAY = date.max - timedelta(days=2)
_ZERO = timedelta(0)
_TICK = timedelta(microseconds=1)


def add_working_time(start: datetime, delta: timedelta, hours: Hours) -> datetime:
    """The moment `delta` of working time has passed after `start`.

    When the time runs out exactly at the end of a window, that end is the answer, not the next
    opening. A zero delta gives `start` itself.
    """
    at = _utc(start, "start")
    if delta < _ZERO:
        raise ValueError("delta must not be negative")
    if hours.always or delta == _ZERO:
        return at + delta
    left = delta
    for opens, closes in _windows(hours, _local_date(at, hours)):
        if closes <= at:
            continue
        begin = max(opens, at)
        if left <= closes - begin:
            return begin + left
        left -= closes - begin
    raise AssertionError("unreachable: _windows never ends")  # pragma: no cover


def next_working_day(when: datetime, hours: Hours) -> datetime:
    """The same local time on the next working day, kept inside that day's working hours: what
    "in a day" means to people. (A day of working time, add_working_time's 24 hours, is three
    days of 8.) With no working hours, simply 24 hours later.

    With hours past midnight a day runs from `end` to `end`, as a window belongs to the day it
    opens on: at 02:00 on Tuesday in 22:00–06:00 hours it is still Monday's night, and the next
    working day's 02:00 is the one on Wednesday morning, inside Tuesday's window."""
    at = _utc(when, "when")
    if hours.always:
        return at + timedelta(days=1)
    local = at.astimezone(hours.timezone)
    clock = local.time()
    # Before `end` o'clock it is still yesterday's night; the same time in the next working
    # day's night then falls on the calendar day after that night opens.
    spill = timedelta(days=1 if hours.overnight and clock < hours.end else 0)
    today = local.date() - spill
    for day, opens, closes in _placed(hours, today + timedelta(days=1)):
        wanted = datetime.combine(day + spill, clock, tzinfo=hours.timezone).astimezone(UTC)
        # Before opening: at opening. After closing: a minute before it, so still that day.
        return min(max(wanted, opens), closes - min(timedelta(minutes=1), closes - opens))
    raise AssertionError("unreachable: _windows never ends")  # pragma: no cover


def is_working_time(when: datetime, hours: Hours) -> bool:
    """Whether the SLA clock runs at `when`; a window includes its start, not its end."""
    at = _utc(when, "when")
    if hours.always:
        return True
    windows = _windows(hours, _local_date(at, hours), until=at + _TICK)
    return any(opens <= at < closes for opens, closes in windows)


def next_working_moment(when: datetime, hours: Hours) -> datetime:
    """`when` itself (in UTC) inside working time, else the next opening."""
    at = _utc(when, "when")
    if hours.always:
        return at
    for opens, closes in _windows(hours, _local_date(at, hours)):
        if closes > at:
            return max(opens, at)
    raise AssertionError("unreachable: _windows never ends")  # pragma: no cover


def working_time_between(a: datetime, b: datetime, hours: Hours) -> timedelta:
    """Working time from `a` to `b`, for "claimed late" checks; zero when `b` is not after `a`."""
    first, last = _utc(a, "a"), _utc(b, "b")
    if last <= first:
        return _ZERO
    if hours.always:
        return last - first
    total = _ZERO
    for opens, closes in _windows(hours, _local_date(first, hours), until=last):
        begin, end = max(opens, first), min(closes, last)
        if end > begin:
            total += end - begin
    return total


def _windows(
    hours: Hours, first_day: date, *, until: datetime | None = None
) -> Iterator[tuple[datetime, datetime]]:
    """Working windows in UTC, in order, from the one opening on the local day `first_day`.

    With `until`, it stops at the first window opening at or after it; without, it goes on for
    ever, unless MAX_SEARCH_DAYS pass without a window.
    """
    for _, opens, closes in _placed(hours, first_day, until=until):
        yield opens, closes


def _placed(
    hours: Hours, first_day: date, *, until: datetime | None = None
) -> Iterator[tuple[date, datetime, datetime]]:
    """_windows, each with the local day it opens on (the day it belongs to)."""
    tz = hours.timezone
    # A window past midnight closes on the day after it opens.
    closing_day = timedelta(days=1 if hours.overnight else 0)
    day = first_day
    idle = 0
    previous_close: datetime | None = None
    while True:
        if day >= _LAST_DAY:
            # A ValueError like the one below, not an OverflowError from deep in datetime.
            raise ValueError("working time runs past the end of the calendar (year 9999)")
        if day.weekday() in hours.days and day not in hours.holidays:
            opens = datetime.combine(day, hours.start, tzinfo=tz).astimezone(UTC)
            closes = datetime.combine(day + closing_day, hours.end, tzinfo=tz).astimezone(UTC)
            if until is not None and opens >= until:
                return
            # Clocks going back around midnight could make a window start before the last one
            # ended; counting that time twice would break the sums.
            if previous_close is not None:
                opens = max(opens, previous_close)
            if closes > opens:
                idle = 0
                previous_close = closes
                yield day, opens, closes
        idle += 1
        if until is None and idle > MAX_SEARCH_DAYS:
            raise ValueError(
                f"no working time within {MAX_SEARCH_DAYS} days after {first_day.isoformat()} — "
                "check the working days and holidays"
            )
        if until is not None and day > until.astimezone(tz).date():
            return
        day += timedelta(days=1)


def _local_date(at: datetime, hours: Hours) -> date:
    """The day to start looking for the window open at `at` (or the next one) from."""
    # A day early: with clock changes at midnight, the previous day's window can still be open.
    # Hours past midnight: yesterday's window is open this morning anyway, and a closing time the
    # clocks skip late in the evening can push the one of the day before past midnight too.
    back = 2 if hours.overnight else 1
    return at.astimezone(hours.timezone).date() - timedelta(days=back)


def _utc(when: datetime, name: str) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return when.astimezone(UTC)
