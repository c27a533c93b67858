"""The policy file: loading, every validation message, env fallbacks, routing, describing."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from bot.parsing import parse_lead_text
from bot.policy import (
    BUILT_IN,
    DEFAULT_DISQUALIFY_REASONS,
    Policy,
    PolicyError,
    Route,
    default_policy,
    describe_policy,
    load_policy,
    parse_policy,
)
from bot.settings import SettingsError
from bot.sla import add_working_time

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "policy.example.toml"

# Enough of a policy to be valid; tests add the part they are about.
BASE = """
[priorities.hot]
claim_within = "15m"
[priorities.warm]
claim_within = "1h"
"""


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Policy:
    (tmp_path / "policy.toml").write_text(text, encoding="utf-8")
    return load_policy(env={} if env is None else env, cwd=tmp_path)


def error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(PolicyError) as caught:
        load(tmp_path, text, env)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


# --- the shipped example ------------------------------------------------------------------------


def test_example_loads_cleanly() -> None:
    policy = load_policy(EXAMPLE, env={})
    assert policy.source == str(EXAMPLE)
    assert list(policy.priorities) == ["hot", "warm", "cold"]
    assert policy.default_priority == "warm"
    hot = policy.rule("hot")
    assert hot.claim_within == timedelta(minutes=15)
    assert hot.escalate_after == 2
    assert hot.follow_up_within == timedelta(hours=4)
    assert hot.means.startswith("Asked for a demo")
    for rule in policy.priorities.values():
        assert rule.means and rule.claim_within > timedelta(0) and rule.escalate_after >= 1
    hours = policy.hours
    assert not hours.always
    assert hours.timezone.key == "America/New_York"
    assert hours.days == frozenset(range(5))
    assert (hours.start, hours.end) == (time(9), time(18))
    assert date(2026, 12, 25) in hours.holidays
    assert policy.persona_keys()[0] == "it-leader"
    assert len(policy.personas) >= 3
    assert policy.routes[0] == Route(channel="C0EMEA0001", territory="EMEA")
    assert policy.routes[1] == Route(channel="C0HOTIT001", persona="it-leader", priority="hot")
    assert policy.disqualify_reasons == DEFAULT_DISQUALIFY_REASONS


def test_example_feeds_the_lead_parser() -> None:
    policy = load_policy(EXAMPLE, env={})
    result = parse_lead_text(
        "Jane Doe, jane@acme.example, HOT, persona: IT-Leader",
        priorities=policy.priority_keys(),
        default_priority=policy.default_priority,
        personas=policy.persona_keys() or None,
    )
    assert result.lead is not None
    assert (result.lead.priority, result.lead.persona) == ("hot", "it-leader")


# --- where the policy comes from ----------------------------------------------------------------


def test_no_file_in_cwd_means_built_in_defaults(tmp_path: Path) -> None:
    policy = load_policy(env={}, cwd=tmp_path)
    assert policy.source == BUILT_IN
    assert policy == default_policy({})


def test_policy_toml_in_cwd_is_used(tmp_path: Path) -> None:
    policy = load(tmp_path, BASE)
    assert policy.source == "policy.toml"
    assert policy.priority_keys() == ("hot", "warm")


def test_policy_file_env_is_relative_to_cwd(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "sales.toml").write_text(BASE, encoding="utf-8")
    (tmp_path / "policy.toml").write_text("this is not toml", encoding="utf-8")
    policy = load_policy(env={"POLICY_FILE": "conf/sales.toml"}, cwd=tmp_path)
    assert policy.source == "conf/sales.toml"


def test_path_argument_beats_policy_file_env(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(BASE, encoding="utf-8")
    policy = load_policy("a.toml", env={"POLICY_FILE": "missing.toml"}, cwd=tmp_path)
    assert policy.source == "a.toml"


def test_explicit_path_must_exist(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"^nope\.toml: file not found$"):
        load_policy("nope.toml", env={}, cwd=tmp_path)


def test_policy_file_env_must_exist(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"^nope\.toml: file not found \(POLICY_FILE\)$"):
        load_policy(env={"POLICY_FILE": "nope.toml"}, cwd=tmp_path)


def test_empty_policy_file_env_means_unset(tmp_path: Path) -> None:
    assert load_policy(env={"POLICY_FILE": "  "}, cwd=tmp_path).source == BUILT_IN


def test_a_directory_is_not_a_policy(tmp_path: Path) -> None:
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(PolicyError, match=r"^dir\.toml: cannot be read"):
        load_policy("dir.toml", env={}, cwd=tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_bytes(b'[hours]\ntimezone = "\xff"\n')
    with pytest.raises(PolicyError, match=r"^policy\.toml: not UTF-8 text$"):
        load_policy(env={}, cwd=tmp_path)


def one_line_error(env: dict[str, str], cwd: Path) -> str:
    with pytest.raises(PolicyError) as caught:
        load_policy(env=env, cwd=cwd)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def test_policy_file_under_an_unknown_home(tmp_path: Path) -> None:
    message = one_line_error(env={"POLICY_FILE": "~nosuchuser-leadbot/p.toml"}, cwd=tmp_path)
    assert message == (
        '~nosuchuser-leadbot/p.toml: no home directory for "~nosuchuser-leadbot" (POLICY_FILE)'
    )


@pytest.mark.parametrize(
    "name", ["p" * 5000 + ".toml", "x" * 300 + "/p.toml", "conf/" + "y" * 300 + ".toml"]
)
def test_a_name_too_long_is_one_short_line(tmp_path: Path, name: str) -> None:
    (tmp_path / "conf").mkdir()
    message = one_line_error(env={"POLICY_FILE": name}, cwd=tmp_path)
    assert message.endswith(": cannot be read (File name too long) (POLICY_FILE)")
    assert len(message) < 200  # the name is cut in the middle
    assert message.startswith(name[:20]) and "…" in message


def test_a_device_is_not_read(tmp_path: Path) -> None:
    # /dev/zero never ends: reading it would hang start-up and fill the memory.
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    message = one_line_error(env={"POLICY_FILE": "/dev/zero"}, cwd=tmp_path)
    assert message == "/dev/zero: cannot be read (a device or pipe, not a file) (POLICY_FILE)"


def test_a_huge_file_is_refused_with_its_size(tmp_path: Path) -> None:
    # Valid TOML (one long comment), so only the size can stop it.
    (tmp_path / "policy.toml").write_text("#" * (1024 * 1024) + "\n", encoding="utf-8")
    assert one_line_error(env={}, cwd=tmp_path) == (
        "policy.toml: too large (1,048,577 bytes; at most 1,048,576)"
    )
    (tmp_path / "policy.toml").write_text("#" * (1024 * 1024 - 1) + "\n", encoding="utf-8")
    assert load_policy(env={}, cwd=tmp_path).source == "policy.toml"


@pytest.mark.parametrize("env", [{}, {"POLICY_FILE": "policy.toml"}])
def test_a_dangling_link_is_not_the_defaults(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "policy.toml").symlink_to(tmp_path / "gone.toml")
    message = one_line_error(env=env, cwd=tmp_path)
    assert message.startswith(f"policy.toml: a link to a missing file ({tmp_path}/gone.toml)")


def test_policy_error_is_a_settings_error() -> None:
    # So start-up prints it as one line, like any other bad setting.
    assert issubclass(PolicyError, SettingsError)
    assert issubclass(PolicyError, ValueError)


def test_parse_policy_names_the_source() -> None:
    with pytest.raises(PolicyError, match=r"^team\.toml: hours\.foo: unknown key"):
        parse_policy("[hours]\nfoo = 1\n", source="team.toml", env={})


# --- every validation error, with its place ----------------------------------------------------

# One minute a week: about 8h40m of working time in 10 years.
TINY_HOURS = '[hours]\nstart = "09:00"\nend = "09:01"\ndays = ["sun"]\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # TOML syntax, with tomllib's line and column first
        ("[hours\n", "policy.toml: line 1, column 7: "),
        ('a = 1\nb = "x\n', "policy.toml: line 2, column 7: "),
        # what tomllib fails on without a TOMLDecodeError
        (
            "x = " + "[" * 1000 + "]" * 1000 + "\n",
            "policy.toml: not valid TOML (nested too deeply)",
        ),
        ("x = " + "{a=" * 1000 + "1" + "}" * 1000 + "\n", "policy.toml: not valid TOML (nested"),
        (
            "escalate_after = " + "7" * 5000 + "\n",
            "policy.toml: not valid TOML (a number longer than 4300 digits)",
        ),
        # unknown keys anywhere
        ("colour = 1\n", "policy.toml: colour: unknown key — expected one of default_priority,"),
        (
            '[hours]\nfoo = 1\nstart = "09:00"\nend = "18:00"\n',
            "policy.toml: hours.foo: unknown key",
        ),
        ('[[personas]]\nkey = "a"\nnick = "b"\n', "policy.toml: personas[1].nick: unknown key"),
        (BASE + 'colour = "red"\n', "policy.toml: priorities.warm.colour: unknown key"),
        (
            '[[routes]]\nchannel = "C0AAA"\n[[routes]]\nchanel = "C0AAA"\n',
            "policy.toml: routes[2].chanel: unknown key",
        ),
        ('[outcomes]\nreasons = ["x"]\n', "policy.toml: outcomes.reasons: unknown key"),
        # shapes
        ('hours = "9-5"\n', 'policy.toml: hours: expected a table, not "9-5"'),
        ('[personas]\nkey = "a"\n', "policy.toml: personas: expected a list of tables"),
        ('[routes]\nchannel = "C0AAA"\n', "policy.toml: routes: expected a list of tables"),
        ('priorities = ["hot"]\n', "policy.toml: priorities: expected a table of priorities"),
        ("[priorities]\n", "policy.toml: priorities: empty"),
        ('[priorities]\nhot = "15m"\n', 'policy.toml: priorities.hot: expected a table, not "15m"'),
        # hours
        (
            '[hours]\ntimezone = "Mars/Base"\nstart = "09:00"\nend = "18:00"\n',
            'policy.toml: hours.timezone: "Mars/Base" is not a time zone',
        ),
        (
            '[hours]\ntimezone = "America"\nstart = "09:00"\nend = "18:00"\n',
            'policy.toml: hours.timezone: "America" is not a time zone',
        ),
        ('[hours]\nend = "18:00"\n', "policy.toml: hours.start: missing"),
        ('[hours]\nstart = "09:00"\n', "policy.toml: hours.end: missing"),
        (
            '[hours]\nstart = "9am"\nend = "18:00"\n',
            'policy.toml: hours.start: "9am" is not a time — expected HH:MM',
        ),
        ('[hours]\nstart = "09:00"\nend = "24:00"\n', 'policy.toml: hours.end: "24:00" is not a'),
        ('[hours]\nstart = "09:00"\nend = 18\n', "policy.toml: hours.end: 18 is not a time"),
        (
            '[hours]\nstart = "09:00"\nend = "18:00"\ndays = ["mon", "fry"]\n',
            'policy.toml: hours.days[2]: "fry" is not a day — expected one of mon, tue,',
        ),
        ('[hours]\nstart = "09:00"\nend = "18:00"\ndays = []\n', "policy.toml: hours.days: empty"),
        (
            '[hours]\nstart = "09:00"\nend = "18:00"\ndays = ["mon", "tue", "Monday"]\n',
            'policy.toml: hours.days[3]: "Monday" is listed twice',
        ),
        # an SLA these hours would take more than 10 years to reach (past year 9999 it crashed)
        (
            TINY_HOURS + '[priorities.hot]\nclaim_within = "365d"\n',
            'policy.toml: priorities.hot.claim_within: "365d" of working time would end more '
            "than 10 years ahead — these [hours] hold 8h",
        ),
        (
            TINY_HOURS + '[priorities.hot]\nclaim_within = "5m"\nfollow_up_within = "1h"\n'
            '[priorities.warm]\nclaim_within = "5m"\nfollow_up_within = "9h"\n',
            'policy.toml: priorities.warm.follow_up_within: "9h" of working time would end',
        ),
        (
            TINY_HOURS + '[priorities.hot]\nclaim_within = "5m"\n',
            'policy.toml: priorities.hot.follow_up_within: the default "1d" of working time',
        ),
        (TINY_HOURS, 'policy.toml: priorities.hot.follow_up_within: the default "1d"'),
        (
            '[hours]\nstart = "09:00"\nend = "18:00"\ndays = "mon-fri"\n',
            "policy.toml: hours.days: expected a list",
        ),
        (
            '[hours]\nstart = "09:00"\nend = "18:00"\nholidays = ["2026-12-25", "2026-02-30"]\n',
            'policy.toml: hours.holidays[2]: "2026-02-30" is not a date — expected YYYY-MM-DD',
        ),
        (
            '[hours]\nstart = "09:00"\nend = "18:00"\nholidays = ["12/25/2026"]\n',
            'policy.toml: hours.holidays[1]: "12/25/2026" is not a date',
        ),
        (
            '[hours]\nstart = "09:00"\nend = "18:00"\nholidays = [2026-12-25T10:00:00Z]\n',
            "policy.toml: hours.holidays[1]: 2026-12-25 10:00:00+00:00 is not a date",
        ),
        # personas
        (
            '[[personas]]\nkey = "it-leader"\n[[personas]]\nkey = "IT-Leader"\n',
            'policy.toml: personas[2].key: "IT-Leader" is used twice',
        ),
        ('[[personas]]\nname = "IT leader"\n', "policy.toml: personas[1].key: missing"),
        (
            '[[personas]]\nkey = "IT, leader"\n',
            'policy.toml: personas[1].key: "IT, leader" is not a key',
        ),
        ('[[personas]]\nkey = "a"\nname = ""\n', "policy.toml: personas[1].name: empty"),
        ('[[personas]]\nkey = "a"\nname = 7\n', "policy.toml: personas[1].name: expected a string"),
        (
            '[[personas]]\nkey = "a"\nname = "' + "x" * 76 + '"\n',
            "policy.toml: personas[1].name: too long (76 characters; at most 75)",
        ),
        # priorities
        (
            '[priorities.hot]\nclaim_within = "soon"\n',
            'policy.toml: priorities.hot.claim_within: "soon" is not a duration — use a number',
        ),
        (
            '[priorities.hot]\nclaim_within = "0m"\n',
            'policy.toml: priorities.hot.claim_within: "0m" must be longer than zero',
        ),
        (
            '[priorities.hot]\nclaim_within = "1h"\nfollow_up_within = "366d"\n',
            'policy.toml: priorities.hot.follow_up_within: "366d" is too long — at most 365d',
        ),
        (
            "[priorities.hot]\nclaim_within = 15\n",
            "policy.toml: priorities.hot.claim_within: 15 is not a duration",
        ),
        (
            '[priorities.hot]\nmeans = "Ready to buy"\n',
            "policy.toml: priorities.hot.claim_within: missing",
        ),
        (
            '[priorities.hot]\nclaim_within = "15m"\nfollow_up_within = "tomorrow"\n',
            'policy.toml: priorities.hot.follow_up_within: "tomorrow" is not a duration',
        ),
        (
            '[priorities.hot]\nclaim_within = "15m"\nescalate_after = 0\n',
            "policy.toml: priorities.hot.escalate_after: 0 is not a number of reminders",
        ),
        (
            '[priorities.hot]\nclaim_within = "15m"\nescalate_after = "2"\n',
            'policy.toml: priorities.hot.escalate_after: "2" is not a number of reminders',
        ),
        (
            '[priorities.hot]\nclaim_within = "15m"\nescalate_after = 1.5\n',
            "policy.toml: priorities.hot.escalate_after: 1.5 is not a number of reminders",
        ),
        (
            '[priorities.hot]\nclaim_within = "15m"\nescalate_after = true\n',
            "policy.toml: priorities.hot.escalate_after: true is not a number of reminders",
        ),
        (
            '[priorities."very hot"]\nclaim_within = "15m"\n',
            'policy.toml: priorities."very hot": "very hot" is not a key',
        ),
        (
            '[priorities.hot]\nclaim_within = "15m"\n[priorities.HOT]\nclaim_within = "15m"\n',
            'policy.toml: priorities.HOT: "HOT" is used twice',
        ),
        (
            BASE.replace("[priorities.hot]", 'default_priority = "lukewarm"\n[priorities.hot]'),
            'policy.toml: default_priority: "lukewarm" is not one of hot, warm',
        ),
        # routes
        (
            '[[routes]]\nchannel = "C0AAA"\nterritory = "EMEA"\n[[routes]]\nterritory = "APAC"\n',
            "policy.toml: routes[2].channel: missing",
        ),
        (
            '[[routes]]\nchannel = "leads"\n',
            'policy.toml: routes[1].channel: "leads" is not a channel — expected a channel id',
        ),
        ('[[routes]]\nchannel = "U0AAAA"\n', 'policy.toml: routes[1].channel: "U0AAAA" is not a'),
        (
            '[[personas]]\nkey = "it-leader"\n[[routes]]\nchannel = "C0AAA"\npersona = "cfo"\n',
            'policy.toml: routes[1].persona: "cfo" is not one of it-leader',
        ),
        (
            BASE + '[[routes]]\nchannel = "C0AAA"\npriority = "scorching"\n',
            'policy.toml: routes[1].priority: "scorching" is not one of hot, warm',
        ),
        (
            '[[routes]]\nchannel = "C0AAA"\nterritory = ""\n',
            "policy.toml: routes[1].territory: empty",
        ),
        (
            '[[routes]]\nchannel = "C0AAA"\nterritory = "EMEA"\n'
            '[[routes]]\nchannel = "C0BBB"\nterritory = "emea"\nevent = "x"\n',
            "policy.toml: routes[2]: never used — routes[1] comes first",
        ),
        (
            '[[routes]]\nchannel = "C0AAA"\n[[routes]]\nchannel = "C0BBB"\nterritory = "EMEA"\n',
            "policy.toml: routes[2]: never used — routes[1] comes first",
        ),
        (
            '[[routes]]\nchannel = "C0AAA"\nevent = "#SaaStr"\n'
            '[[routes]]\nchannel = "C0BBB"\nevent = "saastr"\n',
            "policy.toml: routes[2]: never used",
        ),
        # outcomes
        (
            '[outcomes]\ndisqualify_reasons = ["No budget", "no budget"]\n',
            'policy.toml: outcomes.disqualify_reasons[2]: "no budget" is listed twice',
        ),
        (
            "[outcomes]\ndisqualify_reasons = []\n",
            "policy.toml: outcomes.disqualify_reasons: empty",
        ),
        (
            '[outcomes]\ndisqualify_reasons = ["ok", ""]\n',
            "policy.toml: outcomes.disqualify_reasons[2]: empty — remove it",
        ),
        (
            '[outcomes]\ndisqualify_reasons = ["' + "x" * 80 + '"]\n',
            "policy.toml: outcomes.disqualify_reasons[1]: too long (80 characters; at most 75)",
        ),
        # A priority's key is stored with each lead: on PostgreSQL a longer one failed every
        # /lead of that priority with "the database is not answering".
        (
            f'[priorities.{"p" * 33}]\nclaim_within = "1h"\n',
            f'policy.toml: priorities.{"p" * 33}: "{"p" * 33}" is too long (33 characters; at '
            "most 32)",
        ),
    ],
)
def test_validation_errors_name_the_place(tmp_path: Path, text: str, expected: str) -> None:
    assert error(tmp_path, text).startswith(expected)


def test_toml_error_keeps_tomllib_words(tmp_path: Path) -> None:
    message = error(tmp_path, "[hours]\nstart = \n")
    assert message.startswith("policy.toml: line 2, column 9: ")
    assert message.endswith("(TOML syntax)")
    assert "(at line" not in message


def test_toml_error_at_the_end_of_the_file(tmp_path: Path) -> None:
    message = error(tmp_path, "days = [")
    assert message.startswith("policy.toml: end of file: ")
    assert "(at end of document)" not in message


def test_long_values_are_cut_in_messages(tmp_path: Path) -> None:
    message = error(tmp_path, '[[routes]]\nchannel = "' + "x" * 500 + '"\n')
    assert len(message) < 200
    assert "…" in message


def test_a_newline_in_a_value_stays_on_one_line(tmp_path: Path) -> None:
    message = error(tmp_path, '[[routes]]\nchannel = """C0\nAAA"""\n')
    assert message.startswith('policy.toml: routes[1].channel: "C0\\nAAA" is not a channel')


# --- what the file may leave out ---------------------------------------------------------------


def test_toml_native_times_and_dates_are_accepted(tmp_path: Path) -> None:
    policy = load(tmp_path, "[hours]\nstart = 08:30:00\nend = 17:00:00\nholidays = [2026-12-25]\n")
    assert (policy.hours.start, policy.hours.end) == (time(8, 30), time(17))
    assert policy.hours.holidays == frozenset({date(2026, 12, 25)})


def test_hours_may_run_past_midnight(tmp_path: Path) -> None:
    night = load(tmp_path, '[hours]\nstart = "22:00"\nend = "06:00"\n' + BASE).hours
    assert (night.start, night.end, night.overnight) == (time(22), time(6), True)
    # "00:00" as the end is the midnight that closes the opening day.
    evening = load(tmp_path, '[hours]\nstart = "18:00"\nend = "00:00"\n' + BASE).hours
    assert (evening.start, evening.end, evening.overnight) == (time(18), time(0), True)
    office = load(tmp_path, '[hours]\nstart = "09:00"\nend = "18:00"\n' + BASE).hours
    assert not office.overnight
    assert not load(tmp_path, BASE).hours.overnight  # around the clock


def test_night_hours_reach_their_slas(tmp_path: Path) -> None:
    # One night a week, 23:59 to 00:00: a minute, like TINY_HOURS; the reach check counts it.
    tiny_night = '[hours]\nstart = "23:59"\nend = "00:00"\ndays = ["sun"]\n'
    assert error(tmp_path, tiny_night + '[priorities.hot]\nclaim_within = "9h"\n').startswith(
        'policy.toml: priorities.hot.claim_within: "9h" of working time would end more than 10 '
        "years ahead — these [hours] hold 8h"
    )
    policy = load(tmp_path, '[hours]\nstart = "22:00"\nend = "06:00"\n' + BASE)
    now = datetime.now(UTC)
    due = add_working_time(now, policy.rule("hot").claim_within, policy.hours)
    assert timedelta(minutes=15) <= due - now < timedelta(days=4)


def test_hours_defaults_to_monday_to_friday(tmp_path: Path) -> None:
    policy = load(tmp_path, '[hours]\nstart = "09:00"\nend = "18:00"\n')
    assert policy.hours.days == frozenset(range(5))
    assert policy.hours.holidays == frozenset()


def test_day_names_any_case_and_long_form(tmp_path: Path) -> None:
    policy = load(tmp_path, '[hours]\nstart="09:00"\nend="18:00"\ndays=["Saturday", "SUN"]\n')
    assert policy.hours.days == frozenset({5, 6})


def test_no_hours_section_means_around_the_clock(tmp_path: Path) -> None:
    assert load(tmp_path, BASE).hours.always


def test_persona_name_defaults_to_key(tmp_path: Path) -> None:
    policy = load(tmp_path, '[[personas]]\nkey = "cfo"\n')
    assert (policy.personas[0].name, policy.personas[0].description) == ("cfo", "")


def test_no_priorities_section_gives_the_built_in_ones(tmp_path: Path) -> None:
    policy = load(tmp_path, '[[routes]]\nchannel = "#leads-emea"\nterritory = "EMEA"\n')
    assert policy.priority_keys() == ("hot", "warm", "cold")
    assert policy.default_priority == "warm"


def test_default_priority_is_warm_else_first(tmp_path: Path) -> None:
    text = '[priorities.now]\nclaim_within = "5m"\n[priorities.later]\nclaim_within = "1d"\n'
    assert load(tmp_path, text).default_priority == "now"
    assert load(tmp_path, BASE).default_priority == "warm"


def test_default_priority_can_be_set_any_case(tmp_path: Path) -> None:
    policy = load(tmp_path, 'default_priority = "HOT"\n' + BASE)
    assert policy.default_priority == "hot"


def test_priorities_keep_file_order(tmp_path: Path) -> None:
    text = "".join(f'[priorities.{k}]\nclaim_within = "1h"\n' for k in ("c", "a", "b"))
    assert load(tmp_path, text).priority_keys() == ("c", "a", "b")


# --- environment fallbacks and precedence -----------------------------------------------------


def test_built_in_defaults() -> None:
    policy = default_policy({})
    assert policy.source == BUILT_IN
    assert policy.priority_keys() == ("hot", "warm", "cold")
    assert policy.default_priority == "warm"
    assert all(r.means for r in policy.priorities.values())
    assert {r.claim_within for r in policy.priorities.values()} == {timedelta(minutes=30)}
    assert {r.escalate_after for r in policy.priorities.values()} == {2}
    assert {r.follow_up_within for r in policy.priorities.values()} == {timedelta(days=1)}
    assert policy.hours.always and policy.hours.timezone.key == "UTC"
    assert policy.personas == () and policy.persona_keys() == ()
    assert policy.routes == ()
    assert policy.disqualify_reasons == DEFAULT_DISQUALIFY_REASONS


def test_env_fills_the_built_in_defaults() -> None:
    env = {"TIMEZONE": "Asia/Tokyo", "REMINDER_AFTER": "45m", "ESCALATE_AFTER": "4"}
    policy = default_policy(env)
    assert policy.hours.timezone.key == "Asia/Tokyo"
    assert {r.claim_within for r in policy.priorities.values()} == {timedelta(minutes=45)}
    assert {r.escalate_after for r in policy.priorities.values()} == {4}


def test_env_values_are_stripped_and_blank_means_unset() -> None:
    policy = default_policy(
        {"TIMEZONE": " Europe/Berlin ", "REMINDER_AFTER": "", "ESCALATE_AFTER": " "}
    )
    assert policy.hours.timezone.key == "Europe/Berlin"
    assert policy.rule("hot").claim_within == timedelta(minutes=30)
    assert policy.rule("hot").escalate_after == 2


def test_default_policy_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMINDER_AFTER", "20m")
    assert default_policy().rule("warm").claim_within == timedelta(minutes=20)


def test_timezone_env_fills_hours_without_timezone(tmp_path: Path) -> None:
    text = '[hours]\nstart = "09:00"\nend = "18:00"\n'
    assert load(tmp_path, text, {"TIMEZONE": "Europe/Berlin"}).hours.timezone.key == "Europe/Berlin"
    assert load(tmp_path, text).hours.timezone.key == "UTC"


def test_file_timezone_beats_env(tmp_path: Path) -> None:
    text = '[hours]\ntimezone = "Asia/Tokyo"\nstart = "09:00"\nend = "18:00"\n'
    assert load(tmp_path, text, {"TIMEZONE": "Europe/Berlin"}).hours.timezone.key == "Asia/Tokyo"


def test_timezone_env_applies_without_hours_section(tmp_path: Path) -> None:
    hours = load(tmp_path, BASE, {"TIMEZONE": "America/Chicago"}).hours
    assert hours.always and hours.timezone.key == "America/Chicago"


def test_reminder_after_fills_missing_claim_within(tmp_path: Path) -> None:
    text = '[priorities.hot]\nclaim_within = "15m"\n[priorities.warm]\nmeans = "m"\n'
    policy = load(tmp_path, text, {"REMINDER_AFTER": "2h"})
    assert policy.rule("warm").claim_within == timedelta(hours=2)
    assert policy.rule("hot").claim_within == timedelta(minutes=15)  # the file wins


def test_missing_claim_within_without_reminder_after_is_an_error(tmp_path: Path) -> None:
    message = error(tmp_path, '[priorities.warm]\nmeans = "m"\n')
    assert message.startswith("policy.toml: priorities.warm.claim_within: missing")
    assert "REMINDER_AFTER" in message


def test_escalate_after_env_fills_and_file_wins(tmp_path: Path) -> None:
    text = BASE.replace('claim_within = "15m"', 'claim_within = "15m"\nescalate_after = 1')
    policy = load(tmp_path, text, {"ESCALATE_AFTER": "5"})
    assert policy.rule("hot").escalate_after == 1
    assert policy.rule("warm").escalate_after == 5
    assert load(tmp_path, BASE).rule("warm").escalate_after == 2


def test_follow_up_within_defaults_to_one_day(tmp_path: Path) -> None:
    assert load(tmp_path, BASE).rule("hot").follow_up_within == timedelta(days=1)


# --- SLAs the working hours can reach ----------------------------------------------------------


def test_reminder_after_too_long_for_the_hours_names_itself(tmp_path: Path) -> None:
    text = TINY_HOURS + '[priorities.hot]\nfollow_up_within = "5m"\n'
    message = error(tmp_path, text, {"REMINDER_AFTER": "1d"})
    assert message.startswith(
        'policy.toml: priorities.hot.claim_within: REMINDER_AFTER "1d" of working time would end '
        "more than 10 years ahead"
    )


def test_the_reach_check_refuses_only_what_the_hours_cannot_reach(tmp_path: Path) -> None:
    # Tiny hours: 10 years hold about 8h40m of working time (52 or 53 Sundays a year).
    sla = '[priorities.hot]\nclaim_within = "{}"\nfollow_up_within = "5m"\n'
    assert error(tmp_path, TINY_HOURS + sla.format("9h")).startswith(
        "policy.toml: priorities.hot.claim_within: "
    )
    policy = load(tmp_path, TINY_HOURS + sla.format("8h30m"))
    now = datetime.now(UTC)
    due = add_working_time(now, policy.rule("hot").claim_within, policy.hours)
    assert due - now < timedelta(days=11 * 366)
    # 365d of ordinary office hours is under 3 years of them: allowed, as are the defaults.
    hours = '[hours]\nstart = "09:00"\nend = "18:00"\n'
    text = hours + '[priorities.hot]\nclaim_within = "365d"\nfollow_up_within = "365d"\n'
    assert load(tmp_path, text).rule("hot").claim_within == timedelta(days=365)
    assert load(tmp_path, hours).priority_keys() == ("hot", "warm", "cold")


def test_no_working_time_in_the_next_year(tmp_path: Path) -> None:
    # Every day from yesterday on for 370 days a holiday; a lead would never be due.
    today = datetime.now(UTC).date()
    days = ", ".join(str(today + timedelta(days=n)) for n in range(-1, 370))
    text = f'[hours]\nstart = "09:00"\nend = "18:00"\nholidays = [{days}]\n' + BASE
    assert error(tmp_path, text).startswith(
        "policy.toml: hours: no working time in the next 366 days"
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TIMEZONE": "Mars/Base"}, "TIMEZONE: 'Mars/Base' is not a time zone"),
        ({"REMINDER_AFTER": "soon"}, "REMINDER_AFTER: 'soon' is not a duration"),
        ({"ESCALATE_AFTER": "0"}, "ESCALATE_AFTER: '0' is not a number of reminders"),
        ({"TIMEZONE": "America"}, "TIMEZONE: 'America' is not a time zone"),
        ({"REMINDER_AFTER": "400d"}, "REMINDER_AFTER: '400d' is too long — at most 365d"),
        ({"ESCALATE_AFTER": "²"}, "ESCALATE_AFTER: '²' is not a number of reminders"),
    ],
)
def test_bad_env_values_name_the_setting(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    # Worded as the settings module words them, and not blamed on the file.
    for call in (lambda: default_policy(env), lambda: load(tmp_path, BASE, env)):
        with pytest.raises(PolicyError) as caught:
            call()
        assert str(caught.value).startswith(expected)


# --- routing -------------------------------------------------------------------------------------

ROUTES = """
[[personas]]
key = "it-leader"
[[personas]]
key = "developer"

[priorities.hot]
claim_within = "15m"
[priorities.warm]
claim_within = "1h"

[[routes]]
territory = "EMEA"
channel = "C0EMEA0001"

[[routes]]
persona = "it-leader"
priority = "hot"
channel = "C0HOTIT001"

[[routes]]
event = "#SaaStr2026"
channel = "#leads-saastr"
"""


def route(policy: Policy, **lead: str | None) -> str:
    values: dict[str, str | None] = dict.fromkeys(("territory", "persona", "priority", "event"))
    values.update(lead)
    return policy.route(**values, default_channel="C0DEFAULT")


def test_first_match_wins(tmp_path: Path) -> None:
    policy = load(tmp_path, ROUTES)
    lead = {"territory": "EMEA", "persona": "it-leader", "priority": "hot", "event": "SaaStr2026"}
    assert route(policy, **lead) == "C0EMEA0001"
    assert route(policy, **(lead | {"territory": "NA"})) == "C0HOTIT001"
    assert route(policy, **(lead | {"territory": None, "priority": "warm"})) == "#leads-saastr"


def test_all_conditions_must_match(tmp_path: Path) -> None:
    policy = load(tmp_path, ROUTES)
    assert route(policy, persona="it-leader", priority="warm") == "C0DEFAULT"
    assert route(policy, persona="developer", priority="hot") == "C0DEFAULT"
    assert route(policy, priority="hot") == "C0DEFAULT"  # no persona: no match


def test_matching_ignores_case_spaces_and_hash(tmp_path: Path) -> None:
    policy = load(tmp_path, ROUTES)
    assert route(policy, territory=" emea ") == "C0EMEA0001"
    assert route(policy, persona="IT-LEADER", priority="Hot") == "C0HOTIT001"
    assert route(policy, event="saastr2026") == "#leads-saastr"
    assert route(policy, event="#SAASTR2026") == "#leads-saastr"


def test_no_match_goes_to_the_default_channel(tmp_path: Path) -> None:
    assert route(load(tmp_path, ROUTES), territory="APAC") == "C0DEFAULT"
    assert route(default_policy({}), territory="EMEA") == "C0DEFAULT"


def test_route_without_conditions_matches_everything(tmp_path: Path) -> None:
    policy = load(tmp_path, ROUTES + '[[routes]]\nchannel = "G0CATCHALL"\n')
    assert route(policy) == "G0CATCHALL"
    assert route(policy, territory="EMEA") == "C0EMEA0001"


def test_route_persona_is_free_text_without_personas(tmp_path: Path) -> None:
    policy = load(tmp_path, '[[routes]]\npersona = "Head of Data"\nchannel = "C0DATA"\n')
    assert route(policy, persona="head of data") == "C0DATA"


def test_route_keys_are_stored_canonical(tmp_path: Path) -> None:
    text = ROUTES.replace(
        'persona = "it-leader"\npriority = "hot"', 'persona = "IT-Leader"\npriority = "HOT"'
    )
    assert load(tmp_path, text).routes[1] == Route(
        channel="C0HOTIT001", persona="it-leader", priority="hot"
    )


def test_rule_lookup(tmp_path: Path) -> None:
    policy = load(tmp_path, BASE)
    assert policy.rule("HOT").key == "hot"
    # A lead stored under a priority the policy later dropped still gets a rule.
    assert policy.rule("cold") == policy.rule(policy.default_priority)


# --- describe_policy -----------------------------------------------------------------------------


def test_describe_the_example() -> None:
    text = describe_policy(load_policy(EXAMPLE, env={}), default_channel="C0LEADS001")
    for expected in (
        "*IT leader*",
        "Director or VP of IT at a 200-5,000 person company",
        "*hot*",
        "Asked for a demo or pricing",
        "claim within 15m",
        "after 2 reminders",
        "follow up within 4h",
        "*warm* _(default)_",
        "working hours",
        "Mon–Fri, 09:00–18:00 (America/New_York)",
        "2026-12-25",
        "territory EMEA → <#C0EMEA0001>",
        "persona it-leader, priority hot → <#C0HOTIT001>",
        "event #SaaStr2026 → #leads-saastr",
        "every other lead → <#C0LEADS001>",
        "No budget · Not a fit · Existing customer · Unresponsive · Duplicate",
        "policy.example.toml`",
    ):
        assert expected in text, expected
    assert text.index("*hot*") < text.index("*warm*") < text.index("*cold*")


def test_describe_says_durations_are_working_time() -> None:
    text = describe_policy(load_policy(EXAMPLE, env={}))
    assert "24 working hours" in text


def test_describe_built_in_defaults() -> None:
    text = describe_policy(default_policy({"TIMEZONE": "Europe/Berlin"}))
    assert "built-in defaults" in text
    assert "Around the clock" in text and "Europe/Berlin" in text
    assert "Any persona" in text
    assert "every lead → the leads channel" in text
    assert "working hours only" not in text  # there are none to count


def test_describe_odd_days(tmp_path: Path) -> None:
    text = '[hours]\nstart = "10:00"\nend = "14:30"\ndays = ["sun", "mon", "tue", "wed", "fri"]\n'
    assert "Mon–Wed, Fri, Sun, 10:00–14:30 (UTC)" in describe_policy(load(tmp_path, text))


def test_describe_hours_past_midnight(tmp_path: Path) -> None:
    text = '[hours]\ntimezone = "Europe/Berlin"\nstart = "22:00"\nend = "06:00"\n'
    assert "Mon–Fri, 22:00 to 06:00 the next day (Europe/Berlin)" in describe_policy(
        load(tmp_path, text)
    )
    holiday = describe_policy(load(tmp_path, text + 'holidays = ["2026-12-24"]\n'))
    assert (
        "22:00 to 06:00 the next day (Europe/Berlin); closed on 2026-12-24 (the hours that "
        "would start on those days)"
    ) in holiday
    evening = '[hours]\nstart = "18:00"\nend = "00:00"\ndays = ["fri", "sat"]\n'
    assert "Fri, Sat, 18:00–midnight (UTC)" in describe_policy(load(tmp_path, evening))
    evening += 'holidays = ["2026-12-31"]\n'
    assert "18:00–midnight (UTC); closed on 2026-12-31\n" in describe_policy(
        load(tmp_path, evening)
    )


def test_start_equal_to_end_is_a_whole_day(tmp_path: Path) -> None:
    text = '[hours]\nstart = "00:00"\nend = 00:00:00\ndays = ["mon", "tue", "wed", "thu", "fri"]\n'
    hours = load(tmp_path, text).hours
    assert (hours.start, hours.end, hours.overnight) == (time(0), time(0), True)
    assert "Mon–Fri, all day (UTC)" in describe_policy(load(tmp_path, text))
    text = '[hours]\nstart = "09:00"\nend = "09:00"\n'
    assert "Mon–Fri, 09:00 to 09:00 the next day (UTC)" in describe_policy(load(tmp_path, text))


def test_describe_escapes_user_text(tmp_path: Path) -> None:
    text = """
[[personas]]
key = "x"
name = "R&D <lead>"
description = "<!channel> & <@U123>"
[priorities.hot]
means = "5 > 3 & <b>"
claim_within = "15m"
[[routes]]
territory = "<EMEA>"
channel = "C0AAA"
[outcomes]
disqualify_reasons = ["A&B", "<x>"]
"""
    out = describe_policy(load(tmp_path, text))
    assert "R&amp;D &lt;lead&gt;" in out
    assert "&lt;!channel&gt; &amp; &lt;@U123&gt;" in out
    assert "5 &gt; 3 &amp; &lt;b&gt;" in out
    assert "territory &lt;EMEA&gt; → <#C0AAA>" in out
    assert "A&amp;B · &lt;x&gt;" in out
    # The only raw angle brackets left are the bot's own channel links.
    assert out.replace("<#C0AAA>", "").count("<") == 0
    assert out.count("&amp;amp;") == 0
