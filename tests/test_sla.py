"""The working-hours clock: deadlines that skip nights, weekends, holidays and survive DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.policy import Hours
from bot.sla import (
    add_working_time,
    is_working_time,
    next_working_day,
    next_working_moment,
    working_time_between,
)

NEW_YORK = ZoneInfo("America/New_York")
WEEKDAYS = frozenset(range(5))
EVERY_DAY = frozenset(range(7))
MINUTE = timedelta(minutes=1)


def office(
    zone: str = "America/New_York",
    *,
    days: frozenset[int] = WEEKDAYS,
    start: time = time(9),
    end: time = time(18),
    holidays: tuple[date, ...] = (),
) -> Hours:
    return Hours(ZoneInfo(zone), days, start, end, frozenset(holidays))


NY = office(holidays=(date(2026, 12, 25),))


def at(zone: str, *fields: int) -> datetime:
    """A local wall-clock time in `zone` as an aware UTC instant."""
    return datetime(*fields, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def ny(*fields: int) -> datetime:
    return at("America/New_York", *fields)


def local(when: datetime, hours: Hours) -> datetime:
    return when.astimezone(hours.timezone).replace(tzinfo=None)


# --- the promised example and the everyday cases ----------------------------------------------


def test_friday_evening_hot_lead_is_due_monday_morning() -> None:
    submitted = ny(2026, 11, 27, 17, 55)  # a Friday
    due = add_working_time(submitted, 15 * MINUTE, NY)
    assert local(due, NY) == datetime(2026, 11, 30, 9, 10)  # Monday
    assert due.tzinfo is UTC
    assert due == datetime(2026, 11, 30, 14, 10, tzinfo=UTC)


def test_inside_hours_is_plain_addition() -> None:
    assert add_working_time(ny(2026, 5, 12, 10, 0), timedelta(hours=2), NY) == ny(2026, 5, 12, 12)


def test_ending_exactly_at_closing_time_stays_there() -> None:
    assert add_working_time(ny(2026, 5, 12, 17, 0), timedelta(hours=1), NY) == ny(2026, 5, 12, 18)


def test_evening_submission_counts_from_next_morning() -> None:
    assert add_working_time(ny(2026, 5, 12, 20, 0), 15 * MINUTE, NY) == ny(2026, 5, 13, 9, 15)


def test_submission_before_opening() -> None:
    assert add_working_time(ny(2026, 5, 12, 7, 0), 15 * MINUTE, NY) == ny(2026, 5, 12, 9, 15)
    assert add_working_time(ny(2026, 5, 12, 0, 0), 15 * MINUTE, NY) == ny(2026, 5, 12, 9, 15)


def test_weekend_submission_waits_for_monday() -> None:
    assert add_working_time(ny(2026, 5, 16, 11, 0), 15 * MINUTE, NY) == ny(2026, 5, 18, 9, 15)
    assert add_working_time(ny(2026, 5, 17, 23, 59), 15 * MINUTE, NY) == ny(2026, 5, 18, 9, 15)


def test_holiday_is_skipped() -> None:
    # Thursday 24 December 17:50; Friday the 25th is a holiday, then the weekend.
    due = add_working_time(ny(2026, 12, 24, 17, 50), 30 * MINUTE, NY)
    assert due == ny(2026, 12, 28, 9, 20)


def test_submitted_on_a_holiday() -> None:
    assert add_working_time(ny(2026, 12, 25, 10, 0), MINUTE, NY) == ny(2026, 12, 28, 9, 1)


def test_one_day_is_24_working_hours() -> None:
    # 9 hours on Monday, 9 on Tuesday, 6 on Wednesday.
    assert add_working_time(ny(2026, 5, 11, 9, 0), timedelta(days=1), NY) == ny(2026, 5, 13, 15)


def test_multi_day_delta_across_a_weekend() -> None:
    # Thursday 6h + Friday 9h + Monday 9h = 24h, ending exactly at Monday's close.
    assert add_working_time(ny(2026, 5, 14, 12, 0), timedelta(days=1), NY) == ny(2026, 5, 18, 18)


def test_long_delta_across_weeks_and_a_holiday() -> None:
    # 5 days of working time = 120 working hours = 13 workdays and 3 hours.
    start = ny(2026, 12, 14, 9, 0)  # Monday
    due = add_working_time(start, timedelta(days=5), NY)
    # 14-18 (5), 21-24 (4), 28-31 (4) = 13 workdays (25th off); then 3h on Friday 1 January.
    assert due == ny(2027, 1, 1, 12, 0)
    assert working_time_between(start, due, NY) == timedelta(days=5)


def test_zero_delta_is_the_start() -> None:
    saturday = ny(2026, 5, 16, 11, 0)
    assert add_working_time(saturday, timedelta(0), NY) == saturday


# --- time zones on both sides of UTC ----------------------------------------------------------


@pytest.mark.parametrize(
    "zone", ["Asia/Tokyo", "America/Los_Angeles", "Pacific/Auckland", "Asia/Kolkata", "UTC"]
)
def test_friday_to_monday_in_any_zone(zone: str) -> None:
    hours = office(zone)
    due = add_working_time(at(zone, 2026, 11, 27, 17, 55), 15 * MINUTE, hours)
    assert local(due, hours) == datetime(2026, 11, 30, 9, 10)


def test_tokyo_morning_is_the_previous_utc_day() -> None:
    tokyo = office("Asia/Tokyo")
    # Sunday 23:30 UTC is Monday 08:30 in Tokyo: the local day decides, not the UTC one.
    sunday_night_utc = datetime(2026, 5, 17, 23, 30, tzinfo=UTC)
    assert not is_working_time(sunday_night_utc, tokyo)
    due = add_working_time(sunday_night_utc, 15 * MINUTE, tokyo)
    assert due == datetime(2026, 5, 18, 0, 15, tzinfo=UTC)  # Monday 09:15 JST
    # Friday 17:55 JST is Friday 08:55 UTC.
    friday = datetime(2026, 5, 15, 8, 55, tzinfo=UTC)
    assert add_working_time(friday, 15 * MINUTE, tokyo) == datetime(2026, 5, 18, 0, 10, tzinfo=UTC)


def test_los_angeles_evening_is_the_next_utc_day() -> None:
    la = office("America/Los_Angeles")
    # Friday 17:55 PDT is Saturday 00:55 UTC; due Monday 09:10 PDT = 16:10 UTC.
    friday = datetime(2026, 5, 16, 0, 55, tzinfo=UTC)
    assert is_working_time(friday, la)
    assert add_working_time(friday, 15 * MINUTE, la) == datetime(2026, 5, 18, 16, 10, tzinfo=UTC)


def test_auckland_across_its_spring_forward_weekend() -> None:
    auckland = office("Pacific/Auckland")
    # Clocks go 02:00 -> 03:00 on Sunday 27 September 2026: +12 on Friday, +13 on Monday.
    friday = at("Pacific/Auckland", 2026, 9, 25, 17, 55)
    due = add_working_time(friday, 15 * MINUTE, auckland)
    assert local(due, auckland) == datetime(2026, 9, 28, 9, 10)
    assert due == datetime(2026, 9, 27, 20, 10, tzinfo=UTC)


def test_input_in_any_zone_output_in_utc() -> None:
    start = datetime(2026, 5, 12, 16, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # 10:00 in New York
    due = add_working_time(start, timedelta(hours=1), NY)
    assert due.tzinfo is UTC and due == ny(2026, 5, 12, 11, 0)


# --- clocks changing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "change_day"),
    [
        ("America/New_York", date(2026, 3, 8)),
        ("America/New_York", date(2026, 11, 1)),
        ("Europe/Berlin", date(2026, 3, 29)),
        ("Europe/Berlin", date(2026, 10, 25)),
    ],
)
def test_a_change_day_still_has_nine_working_hours(zone: str, change_day: date) -> None:
    hours = office(zone, days=EVERY_DAY)
    before, after = change_day - timedelta(days=1), change_day + timedelta(days=1)

    def wall(day: date, hour: int, minute: int = 0) -> datetime:
        return at(zone, day.year, day.month, day.day, hour, minute)

    assert wall(change_day, 18) - wall(change_day, 9) == timedelta(hours=9)
    assert working_time_between(wall(before, 12), wall(after, 12), hours) == timedelta(hours=18)
    # Saturday 17:55 + 15m: Sunday (the change day) 09:10 local, whatever the offset now is.
    due = add_working_time(wall(before, 17, 55), 15 * MINUTE, hours)
    assert local(due, hours) == datetime.combine(change_day, time(9, 10))
    assert due == wall(change_day, 9, 10)
    # And a full day of working time still ends at the same wall-clock time two days later.
    later = add_working_time(wall(before, 9), timedelta(days=1), hours)
    assert local(later, hours) == datetime.combine(after, time(15))


def test_new_york_spring_forward_over_a_weekday_schedule() -> None:
    # Friday 17:55 EST -> Monday 09:10 EDT; in UTC, an hour earlier than the week before.
    due = add_working_time(ny(2026, 3, 6, 17, 55), 15 * MINUTE, NY)
    assert due == datetime(2026, 3, 9, 13, 10, tzinfo=UTC)
    before = add_working_time(ny(2026, 2, 27, 17, 55), 15 * MINUTE, NY)
    assert before == datetime(2026, 3, 2, 14, 10, tzinfo=UTC)


def test_new_york_fall_back_over_a_weekday_schedule() -> None:
    due = add_working_time(ny(2026, 10, 30, 17, 55), 15 * MINUTE, NY)
    assert due == datetime(2026, 11, 2, 14, 10, tzinfo=UTC)  # Monday 09:10 EST


def test_a_window_spanning_the_change_counts_real_time() -> None:
    # Working time is elapsed time: a 00:00–12:00 window is 11h on spring-forward day, 13h in fall.
    night_shift = office(days=EVERY_DAY, start=time(0), end=time(12))
    spring = working_time_between(ny(2026, 3, 8, 0, 0), ny(2026, 3, 8, 12, 0), night_shift)
    fall = working_time_between(ny(2026, 11, 1, 0, 0), ny(2026, 11, 1, 12, 0), night_shift)
    assert (spring, fall) == (timedelta(hours=11), timedelta(hours=13))
    assert add_working_time(ny(2026, 3, 8, 0, 0), timedelta(hours=11), night_shift) == ny(
        2026, 3, 8, 12, 0
    )


def test_a_start_time_the_clocks_skip() -> None:
    # 02:30 does not exist on 8 March 2026 in New York; it is read with the winter offset,
    # i.e. 03:30 EDT, so that day's 02:30–04:00 window is half an hour.
    skipped = office(days=EVERY_DAY, start=time(2, 30), end=time(4))
    assert next_working_moment(ny(2026, 3, 8, 0, 0), skipped) == datetime(
        2026, 3, 8, 7, 30, tzinfo=UTC
    )
    day = working_time_between(ny(2026, 3, 8, 0, 0), ny(2026, 3, 8, 12, 0), skipped)
    assert day == timedelta(minutes=30)


def test_a_window_the_clocks_skip_entirely_is_no_window() -> None:
    # 02:30 (read as 03:30 EDT) to 03:00 EDT on 8 March 2026 ends before it starts.
    gone = office(days=EVERY_DAY, start=time(2, 30), end=time(3))
    # Five minutes on Saturday, none on Sunday, five on Monday.
    due = add_working_time(ny(2026, 3, 7, 2, 55), 10 * MINUTE, gone)
    assert due == ny(2026, 3, 9, 2, 35)
    assert working_time_between(ny(2026, 3, 8), ny(2026, 3, 9), gone) == timedelta(0)


# --- is_working_time, next_working_moment, working_time_between -------------------------------


def test_is_working_time() -> None:
    assert is_working_time(ny(2026, 5, 12, 9, 0), NY)  # opening counts
    assert is_working_time(ny(2026, 5, 12, 17, 59), NY)
    assert not is_working_time(ny(2026, 5, 12, 18, 0), NY)  # closing does not
    assert not is_working_time(ny(2026, 5, 12, 8, 59), NY)
    assert not is_working_time(ny(2026, 5, 16, 12, 0), NY)  # Saturday
    assert not is_working_time(ny(2026, 12, 25, 12, 0), NY)  # holiday


def test_next_working_moment() -> None:
    inside = ny(2026, 5, 12, 10, 30)
    assert next_working_moment(inside, NY) == inside
    assert next_working_moment(ny(2026, 5, 12, 18, 0), NY) == ny(2026, 5, 13, 9, 0)
    assert next_working_moment(ny(2026, 5, 15, 19, 0), NY) == ny(2026, 5, 18, 9, 0)
    assert next_working_moment(ny(2026, 12, 24, 18, 0), NY) == ny(2026, 12, 28, 9, 0)
    assert next_working_moment(inside, NY).tzinfo is UTC


def test_working_time_between() -> None:
    assert working_time_between(ny(2026, 5, 15, 17, 0), ny(2026, 5, 18, 10, 0), NY) == timedelta(
        hours=2
    )
    assert working_time_between(ny(2026, 5, 16, 1), ny(2026, 5, 17, 23), NY) == timedelta(0)
    assert working_time_between(ny(2026, 5, 12, 10), ny(2026, 5, 12, 9), NY) == timedelta(0)
    assert working_time_between(ny(2026, 12, 24, 9), ny(2026, 12, 28, 9), NY) == timedelta(hours=9)


def test_claimed_late_check() -> None:
    # The use the function exists for: was the lead claimed within its SLA?
    submitted, claimed = ny(2026, 11, 27, 17, 55), ny(2026, 11, 30, 9, 20)
    assert working_time_between(submitted, claimed, NY) == 25 * MINUTE
    assert working_time_between(submitted, claimed, NY) > 15 * MINUTE


def test_between_spans_a_long_closed_stretch() -> None:
    # Bounded by its end, so four closed years are just zero hours, not a failure.
    first = date(2026, 1, 1)
    reopens = first + timedelta(days=1500)
    rare = office(days=EVERY_DAY, holidays=tuple(first + timedelta(n) for n in range(1500)))
    y, m, d = reopens.year, reopens.month, reopens.day
    assert working_time_between(ny(2026, 1, 1), ny(y, m, d), rare) == timedelta(0)
    assert working_time_between(ny(2026, 1, 1), ny(y, m, d, 10), rare) == timedelta(hours=1)


# --- around the clock and broken schedules ----------------------------------------------------


def test_always_means_plain_elapsed_time() -> None:
    always = Hours(NEW_YORK, EVERY_DAY, time.min, time.max, frozenset(), always=True)
    sunday_night = ny(2026, 3, 8, 1, 30)
    assert add_working_time(sunday_night, 15 * MINUTE, always) == sunday_night + 15 * MINUTE
    assert is_working_time(sunday_night, always)
    assert next_working_moment(sunday_night, always) == sunday_night
    assert working_time_between(sunday_night, sunday_night + timedelta(days=2), always) == (
        timedelta(days=2)
    )


def test_no_working_days_raises_instead_of_looping() -> None:
    never = office(days=frozenset())
    with pytest.raises(ValueError, match="no working time"):
        add_working_time(ny(2026, 5, 12, 10), MINUTE, never)
    with pytest.raises(ValueError, match="no working time"):
        next_working_moment(ny(2026, 5, 12, 10), never)
    assert not is_working_time(ny(2026, 5, 12, 10), never)


def test_years_of_holidays_raise_instead_of_looping() -> None:
    closed = office(holidays=tuple(date(2026, 1, 1) + timedelta(n) for n in range(4 * 366)))
    with pytest.raises(ValueError, match="no working time"):
        add_working_time(ny(2026, 1, 1), MINUTE, closed)


def test_a_year_of_holidays_is_still_searched_through() -> None:
    closed_2026 = office(holidays=tuple(date(2026, 1, 1) + timedelta(n) for n in range(365)))
    assert add_working_time(ny(2026, 3, 1), MINUTE, closed_2026) == ny(2027, 1, 1, 9, 1)


def test_naive_datetimes_and_negative_deltas_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        add_working_time(datetime(2026, 5, 12, 10), MINUTE, NY)
    with pytest.raises(ValueError, match="timezone-aware"):
        is_working_time(datetime(2026, 5, 12, 10), NY)
    with pytest.raises(ValueError, match="negative"):
        add_working_time(ny(2026, 5, 12, 10), -MINUTE, NY)


# --- properties -------------------------------------------------------------------------------

ZONES = [
    "America/New_York",
    "America/Los_Angeles",
    "Europe/Berlin",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Pacific/Auckland",
    "Australia/Lord_Howe",  # a half-hour DST change
    "Pacific/Chatham",  # +12:45 / +13:45
    "UTC",
]


@st.composite
def schedules(draw: st.DrawFn) -> Hours:
    zone = draw(st.sampled_from(ZONES))
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    # At least 30 minutes a day keeps long deltas from walking through decades.
    if draw(st.booleans()):
        start_minute = draw(st.integers(0, 23 * 60 - 30))
        end_minute = draw(st.integers(start_minute + 30, 24 * 60 - 1))
    else:  # past midnight: the end is earlier than the start (00:00 included) or the same
        start_minute = draw(st.integers(0, 24 * 60 - 1))
        end_minute = draw(st.integers(max(0, start_minute - 24 * 60 + 30), start_minute))
    holidays = draw(st.frozensets(st.dates(date(2025, 1, 1), date(2029, 12, 31)), max_size=40))
    return Hours(
        ZoneInfo(zone),
        days,
        time(*divmod(start_minute, 60)),
        time(*divmod(end_minute, 60)),
        holidays,
    )


instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2029, 12, 31), timezones=st.just(UTC)
)
deltas = st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=10))


@settings(max_examples=300)
@given(start=instants, delta=deltas, hours=schedules())
def test_adding_then_measuring_gives_the_delta_back(
    start: datetime, delta: timedelta, hours: Hours
) -> None:
    due = add_working_time(start, delta, hours)
    assert due.tzinfo is UTC
    assert due > start
    assert working_time_between(start, due, hours) == delta
    # The deadline is inside working time, or exactly at a window's end.
    assert is_working_time(due, hours) or is_working_time(due - timedelta(microseconds=1), hours)


@settings(max_examples=200)
@given(start=instants, hours=schedules())
def test_next_working_moment_is_working_time_and_nothing_is_skipped(
    start: datetime, hours: Hours
) -> None:
    opening = next_working_moment(start, hours)
    assert opening >= start
    assert is_working_time(opening, hours)
    assert working_time_between(start, opening, hours) == timedelta(0)
    assert (opening == start) == is_working_time(start, hours)


def test_the_end_of_the_calendar_is_a_value_error() -> None:
    # Not an OverflowError from deep inside datetime: callers handle ValueError.
    with pytest.raises(ValueError, match="end of the calendar"):
        add_working_time(datetime(9999, 12, 1, tzinfo=UTC), timedelta(days=365), NY)


# --- "in a day": the same time on the next working day ------------------------------------------


@pytest.mark.parametrize(
    ("clicked", "asked_again"),
    [
        # Monday 10:00 → Tuesday 10:00 (24 working hours would be Wednesday at 16:00).
        ((2026, 11, 30, 10, 0), (2026, 12, 1, 10, 0)),
        # Friday → Monday; Thursday 24 Dec → Monday 28 Dec, past the Christmas holiday.
        ((2026, 11, 27, 15, 30), (2026, 11, 30, 15, 30)),
        ((2026, 12, 24, 11, 0), (2026, 12, 28, 11, 0)),
        # Before opening → the next day's opening; after closing → a minute before it closes.
        ((2026, 11, 30, 7, 0), (2026, 12, 1, 9, 0)),
        ((2026, 11, 30, 20, 0), (2026, 12, 1, 17, 59)),
        # Saturday → Monday, at the same time.
        ((2026, 11, 28, 12, 0), (2026, 11, 30, 12, 0)),
        # Over the clocks going forward (8 March 2026 in New York): the same wall-clock time.
        ((2026, 3, 6, 10, 0), (2026, 3, 9, 10, 0)),
    ],
)
def test_a_day_is_the_same_time_on_the_next_working_day(
    clicked: tuple[int, ...], asked_again: tuple[int, ...]
) -> None:
    assert next_working_day(at("America/New_York", *clicked), NY) == at(
        "America/New_York", *asked_again
    )


def test_a_day_without_working_hours_is_24_hours() -> None:
    always = Hours(ZoneInfo("UTC"), EVERY_DAY, time(0), time(0), always=True)
    when = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert next_working_day(when, always) == when + timedelta(days=1)


# --- hours past midnight ----------------------------------------------------------------------

# A night shift: Monday 22:00 to Tuesday 06:00, …, Friday 22:00 to Saturday 06:00.
NIGHTS = office(start=time(22), end=time(6), holidays=(date(2026, 12, 24),))
# Evenings until midnight: an end of 00:00 is the midnight that ends the opening day.
EVENINGS = office(start=time(18), end=time(0))


@pytest.mark.parametrize(
    ("fields", "working"),
    [
        ((2026, 5, 11, 21, 59), False),  # Monday, before the first night
        ((2026, 5, 11, 22, 0), True),  # Monday's night opens
        ((2026, 5, 12, 0, 0), True),  # still Monday's night past midnight
        ((2026, 5, 12, 5, 59), True),
        ((2026, 5, 12, 6, 0), False),  # closing does not count
        ((2026, 5, 12, 12, 0), False),  # Tuesday daytime
        ((2026, 5, 16, 3, 0), True),  # Saturday morning: Friday's night
        ((2026, 5, 16, 23, 0), False),  # Saturday is not a working day: no night opens
        ((2026, 5, 17, 3, 0), False),
        ((2026, 5, 18, 3, 0), False),  # Monday morning: Sunday's night, which is not worked
        # 24 December is a holiday: Wednesday's night still runs into its morning, but no night
        # opens on it; Christmas Day's night (a Friday) is worked.
        ((2026, 12, 24, 3, 0), True),
        ((2026, 12, 24, 23, 0), False),
        ((2026, 12, 25, 3, 0), False),
        ((2026, 12, 25, 22, 30), True),
    ],
)
def test_a_night_belongs_to_the_day_it_opens(fields: tuple[int, ...], working: bool) -> None:
    assert is_working_time(ny(*fields), NIGHTS) is working


def test_night_shift_deadlines() -> None:
    # Submitted on Tuesday afternoon: counted from Tuesday 22:00.
    assert add_working_time(ny(2026, 5, 12, 14, 0), 15 * MINUTE, NIGHTS) == ny(2026, 5, 12, 22, 15)
    # Inside a night, across midnight.
    assert add_working_time(ny(2026, 5, 12, 23, 50), 20 * MINUTE, NIGHTS) == ny(2026, 5, 13, 0, 10)
    # Saturday 05:55, the end of Friday's night: 5 minutes then, 10 on Monday night.
    assert add_working_time(ny(2026, 5, 16, 5, 55), 15 * MINUTE, NIGHTS) == ny(2026, 5, 18, 22, 10)
    # Ending exactly at a night's close stays there.
    assert add_working_time(ny(2026, 5, 12, 5, 0), timedelta(hours=1), NIGHTS) == ny(2026, 5, 12, 6)
    assert next_working_moment(ny(2026, 5, 12, 6, 0), NIGHTS) == ny(2026, 5, 12, 22, 0)
    assert next_working_moment(ny(2026, 5, 12, 5, 0), NIGHTS) == ny(2026, 5, 12, 5, 0)
    assert next_working_moment(ny(2026, 5, 16, 6, 0), NIGHTS) == ny(2026, 5, 18, 22, 0)


def test_consecutive_nights_add_up() -> None:
    # Monday 22:00 to Saturday 06:00: five nights of 8 hours, and nothing in between.
    week = working_time_between(ny(2026, 5, 11, 12), ny(2026, 5, 16, 12), NIGHTS)
    assert week == timedelta(hours=40)
    # 1d of working time is three nights: Monday's, Tuesday's, Wednesday's.
    assert add_working_time(ny(2026, 5, 11, 22), timedelta(days=1), NIGHTS) == ny(2026, 5, 14, 6)
    # From Thursday 02:00 (Wednesday's night): 4h + Thursday's 8h + Friday's 8h + Monday's 4h.
    due = add_working_time(ny(2026, 5, 14, 2), timedelta(days=1), NIGHTS)
    assert due == ny(2026, 5, 19, 2)
    assert working_time_between(ny(2026, 5, 14, 2), due, NIGHTS) == timedelta(days=1)


def test_a_holiday_closes_the_night_that_opens_on_it() -> None:
    # Wednesday 23 December 23:00 + 8h: 7h of Wednesday's night, none on the 24th (a holiday),
    # the last hour in the night of Friday 25th.
    due = add_working_time(ny(2026, 12, 23, 23, 0), timedelta(hours=8), NIGHTS)
    assert due == ny(2026, 12, 25, 23, 0)
    assert working_time_between(ny(2026, 12, 24), ny(2026, 12, 25), NIGHTS) == timedelta(hours=6)


@pytest.mark.parametrize(
    ("zone", "change_day", "length"),
    [
        ("America/New_York", date(2026, 3, 8), timedelta(hours=7)),  # 02:00 -> 03:00
        ("America/New_York", date(2026, 11, 1), timedelta(hours=9)),  # 02:00 -> 01:00
        ("Europe/Berlin", date(2026, 3, 29), timedelta(hours=7)),
        ("Europe/Berlin", date(2026, 10, 25), timedelta(hours=9)),
    ],
)
def test_a_night_over_a_clock_change_is_its_real_length(
    zone: str, change_day: date, length: timedelta
) -> None:
    hours = office(zone, days=EVERY_DAY, start=time(22), end=time(6))
    eve = change_day - timedelta(days=1)

    def wall(day: date, hour: int, minute: int = 0) -> datetime:
        return at(zone, day.year, day.month, day.day, hour, minute)

    # The night still opens at 22:00 and closes at 06:00 local, whatever the offsets.
    assert working_time_between(wall(eve, 12), wall(change_day, 12), hours) == length
    assert add_working_time(wall(eve, 21), length, hours) == wall(change_day, 6)
    assert is_working_time(wall(change_day, 5, 59), hours)
    assert not is_working_time(wall(change_day, 6), hours)
    # Half an hour before the end, the rest of the night and half an hour of the next one.
    due = add_working_time(wall(change_day, 5, 30), timedelta(hours=1), hours)
    assert local(due, hours) == datetime.combine(change_day, time(22, 30))
    # The nights around it are 8 hours.
    assert working_time_between(wall(eve, 12), wall(eve + timedelta(days=3), 12), hours) == (
        length + timedelta(hours=16)
    )


def test_a_night_ending_at_a_time_the_clocks_skip() -> None:
    # 02:30 does not exist on 8 March 2026 in New York: read with the winter offset it is 03:30
    # EDT, so Saturday's 22:00–02:30 night still holds 4h30m of real time.
    hours = office(days=EVERY_DAY, start=time(22), end=time(2, 30))
    assert working_time_between(ny(2026, 3, 7, 12), ny(2026, 3, 8, 12), hours) == timedelta(
        hours=4, minutes=30
    )
    assert is_working_time(ny(2026, 3, 8, 3, 29), hours)
    assert not is_working_time(ny(2026, 3, 8, 3, 30), hours)


def test_a_night_ending_in_the_hour_that_happens_twice_ends_the_first_time() -> None:
    # 01:30 happens twice on 1 November 2026 in New York; the night closes at the first, EDT.
    hours = office(days=EVERY_DAY, start=time(22), end=time(1, 30))
    assert working_time_between(ny(2026, 10, 31, 12), ny(2026, 11, 1, 12), hours) == timedelta(
        hours=3, minutes=30
    )
    assert add_working_time(ny(2026, 10, 31, 22), timedelta(hours=3, minutes=30), hours) == (
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    )


def test_a_night_the_clocks_push_past_the_next_midnight_is_still_found() -> None:
    # Nuuk's clocks go from 23:00 to 00:00 on Saturday 28 March 2026. In 23:45–23:30 hours,
    # Friday's window should close at Saturday 23:30, which does not exist: with the old offset
    # that is 00:30 on Sunday. At 00:15 on Sunday it is still open, two local days after it
    # opened, so the search must start that early.
    hours = office("America/Nuuk", days=EVERY_DAY, start=time(23, 45), end=time(23, 30))
    sunday_0015 = datetime(2026, 3, 29, 1, 15, tzinfo=UTC)  # 00:15 at -01
    assert local(sunday_0015, hours) == datetime(2026, 3, 29, 0, 15)
    assert is_working_time(sunday_0015, hours)
    assert next_working_moment(sunday_0015, hours) == sunday_0015
    assert add_working_time(sunday_0015, 15 * MINUTE, hours) == sunday_0015 + 15 * MINUTE


def test_evening_hours_until_midnight() -> None:
    assert is_working_time(ny(2026, 5, 15, 23, 59), EVENINGS)  # Friday
    assert not is_working_time(ny(2026, 5, 16, 0, 0), EVENINGS)  # midnight closes it
    assert not is_working_time(ny(2026, 5, 16, 18, 0), EVENINGS)  # Saturday
    assert working_time_between(ny(2026, 5, 11), ny(2026, 5, 18), EVENINGS) == timedelta(hours=30)
    # Friday 23:00 + 2h: an hour to midnight, then Monday 18:00–19:00.
    assert add_working_time(ny(2026, 5, 15, 23), timedelta(hours=2), EVENINGS) == ny(
        2026, 5, 18, 19
    )
    # Ending exactly at midnight stays there, on the next calendar day.
    assert add_working_time(ny(2026, 5, 15, 23), timedelta(hours=1), EVENINGS) == ny(2026, 5, 16)
    assert next_working_moment(ny(2026, 5, 16), EVENINGS) == ny(2026, 5, 18, 18)


def test_evening_hours_until_midnight_when_the_clocks_change_at_midnight() -> None:
    # Santiago's clocks go from 24:00 to 01:00 on the night into Sunday 6 September 2026:
    # midnight does not exist, and read with the winter offset it is 01:00. Saturday's evening
    # 18:00–00:00 stays six hours long and closes at 01:00 on Sunday's new clock.
    evenings = office("America/Santiago", days=EVERY_DAY, start=time(18), end=time(0))
    saturday = at("America/Santiago", 2026, 9, 5, 12)
    sunday = at("America/Santiago", 2026, 9, 6, 12)
    assert working_time_between(saturday, sunday, evenings) == timedelta(hours=6)
    closing = add_working_time(saturday, timedelta(hours=6), evenings)
    assert closing == datetime(2026, 9, 6, 4, 0, tzinfo=UTC)
    assert local(closing, evenings) == datetime(2026, 9, 6, 1, 0)
    assert is_working_time(closing - MINUTE, evenings)
    assert not is_working_time(closing, evenings)


@pytest.mark.parametrize(
    ("clicked", "asked_again"),
    [
        # Inside Monday's night, before and after midnight: the same time in Tuesday's night.
        ((2026, 5, 11, 23, 0), (2026, 5, 12, 23, 0)),
        ((2026, 5, 12, 2, 0), (2026, 5, 13, 2, 0)),
        # Tuesday daytime, before Tuesday's night: the next working day's opening, as before
        # opening in office hours.
        ((2026, 5, 12, 10, 0), (2026, 5, 13, 22, 0)),
        # Friday's night, either side of midnight: Monday's night.
        ((2026, 5, 15, 23, 0), (2026, 5, 18, 23, 0)),
        ((2026, 5, 16, 3, 0), (2026, 5, 19, 3, 0)),
        # Just past a night's close it is that day's daytime: the next day's opening.
        ((2026, 5, 12, 6, 0), (2026, 5, 13, 22, 0)),
        # Wednesday 23 December's night: Thursday 24 is a holiday, so Friday's night.
        ((2026, 12, 24, 1, 0), (2026, 12, 26, 1, 0)),
    ],
)
def test_a_day_in_night_hours_is_the_same_time_in_the_next_working_night(
    clicked: tuple[int, ...], asked_again: tuple[int, ...]
) -> None:
    assert next_working_day(ny(*clicked), NIGHTS) == ny(*asked_again)


def test_a_day_in_evening_hours_until_midnight() -> None:
    assert next_working_day(ny(2026, 5, 15, 23, 30), EVENINGS) == ny(2026, 5, 18, 23, 30)
    # Daytime is before the next day's opening; so is midnight, which closed Monday's evening.
    assert next_working_day(ny(2026, 5, 12, 12, 0), EVENINGS) == ny(2026, 5, 13, 18, 0)
    assert next_working_day(ny(2026, 5, 12, 0, 0), EVENINGS) == ny(2026, 5, 13, 18, 0)


def test_a_day_over_a_night_the_clocks_change() -> None:
    # Saturday 7 March 2026, 23:00 EST in every-night hours: Sunday's 23:00 EDT, and from 05:00
    # on Sunday (EDT, in Saturday's shorter night) Monday's 05:00.
    hours = office(days=EVERY_DAY, start=time(22), end=time(6))
    assert next_working_day(ny(2026, 3, 7, 23, 0), hours) == ny(2026, 3, 8, 23, 0)
    assert next_working_day(ny(2026, 3, 8, 5, 0), hours) == ny(2026, 3, 9, 5, 0)


def test_start_equal_to_end_is_a_whole_day() -> None:
    """00:00–00:00: round the clock on the working days, closed on holidays and days off; a
    sales floor staffed in shifts all week but for public holidays."""
    weekdays = office(start=time(0), end=time(0))  # Mon–Fri, New York
    assert weekdays.overnight
    assert is_working_time(ny(2026, 5, 15, 23, 59), weekdays)  # Friday night
    assert not is_working_time(ny(2026, 5, 16, 0, 0), weekdays)  # Saturday
    assert is_working_time(ny(2026, 5, 18, 0, 0), weekdays)  # Monday from midnight
    # Friday 20:00 to Monday 04:00: four hours of Friday, four of Monday.
    friday, monday = ny(2026, 5, 15, 20), ny(2026, 5, 18, 4)
    assert working_time_between(friday, monday, weekdays) == timedelta(hours=8)
    assert add_working_time(friday, timedelta(hours=5), weekdays) == ny(2026, 5, 18, 1)
    # A week of it is five whole days.
    assert working_time_between(ny(2026, 5, 11), ny(2026, 5, 18), weekdays) == timedelta(days=5)

    # Every day but a holiday; the holiday is its whole calendar day, and the day the clocks
    # go forward (8 March 2026 in New York) holds 23 hours.
    every_day = office(days=EVERY_DAY, start=time(0), end=time(0), holidays=(date(2026, 3, 9),))
    assert working_time_between(ny(2026, 3, 8), ny(2026, 3, 11), every_day) == timedelta(hours=47)
    assert not is_working_time(ny(2026, 3, 9, 12), every_day)
    assert next_working_moment(ny(2026, 3, 9, 12), every_day) == ny(2026, 3, 10)
    assert add_working_time(ny(2026, 3, 8, 23), timedelta(hours=2), every_day) == ny(2026, 3, 10, 1)


def test_start_equal_to_end_past_midnight_is_a_day_from_that_time() -> None:
    """09:00–09:00: each working day's window runs until 09:00 the next day."""
    shifts = office(days=frozenset({0}), start=time(9), end=time(9))  # Mondays only
    assert is_working_time(ny(2026, 5, 19, 8, 59), shifts)  # Tuesday morning: Monday's
    assert not is_working_time(ny(2026, 5, 19, 9, 0), shifts)
    assert working_time_between(ny(2026, 5, 18), ny(2026, 5, 25), shifts) == timedelta(hours=24)
    # "In a day" from Tuesday 08:00 (Monday's window) is the next Monday's window, at 08:00 on
    # its Tuesday.
    assert next_working_day(ny(2026, 5, 19, 8), shifts) == ny(2026, 5, 26, 8)
