"""Each renderer pushed to its maxima through the running app: the biggest policy the file may
hold, a lead with every field at its longest and full of characters Slack escapes, and more
leads than any list shows.

The loopback Slack answers as slack.com does for payloads over Block Kit's limits
(bot.slack_limits), and the `slack` fixture fails a test after which it refused anything; these
tests also check that what did not fit is said ("…and N more"), not dropped silently.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot import leads
from bot.parsing import MAX_LENGTHS, LeadInput
from bot.policy import PRIORITY_KEY_MAX
from bot.slack_emulator import SlackEmulator
from tests.conftest import MANAGER, MARKETER, REP_A, REP_B, Bot, start_bot
from tests.test_handoff import modal_state
from tests.test_jobs import stored_with_card
from tests.test_outcomes import card, choose, click_card, modal, nudges, open_disqualify

# Escaped by Slack (& < >: five characters for one), read as formatting, or both.
HOSTILE = "&<>*_~`|@ #:"


def hostile(n: int, tag: str = "") -> str:
    """`n` characters, starting with `tag`, made of what grows most when escaped."""
    text = (tag + HOSTILE * (n // len(HOSTILE) + 1))[: n - 1] + (tag[-1:] or "x")
    assert len(text) == n and text == text.strip()
    return text


def shown(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)


def toml(text: str) -> str:
    return json.dumps(text)  # a JSON string is a TOML basic string


KEY = 50  # bot.policy._KEY: a letter and up to 49 more
PRIORITY_KEY = PRIORITY_KEY_MAX  # stored with each lead
ROUTES = 150


def biggest_policy() -> str:
    """100 personas, 100 priorities, 100 disqualify reasons, every text at its longest, and
    many routes: far more than Block Kit shows in one place."""
    lines = []
    for i in range(100):
        key = f"p{i:03d}".ljust(KEY, "x")
        lines += [
            "[[personas]]",
            f"key = {toml(key)}",
            f"name = {toml(hostile(75, str(i)))}",
            f"description = {toml(hostile(500, str(i)))}",
        ]
    for i in range(100):
        key = f"q{i:03d}".ljust(PRIORITY_KEY, "y")
        lines += [
            f"[priorities.{key}]",
            f"means = {toml(hostile(500, str(i)))}",
            'claim_within = "30m"',
            "escalate_after = 1",
            'follow_up_within = "1h"',
        ]
    lines.append(f'default_priority = "{"q099".ljust(PRIORITY_KEY, "y")}"')
    reasons = ", ".join(toml(hostile(75, f"{i:03d}")) for i in range(100))
    for i in range(ROUTES):
        lines += ["[[routes]]", f"territory = {toml(hostile(500, f'{i:03d}'))}"]
        lines.append(f'channel = "C0ROUTE{i:04d}"')
    # default_priority is a top-level key: TOML wants it before the first table.
    top = [line for line in lines if line.startswith("default_priority")]
    rest = [line for line in lines if not line.startswith("default_priority")]
    return "\n".join([*top, *rest, "[outcomes]", f"disqualify_reasons = [{reasons}]", ""])


def longest_email() -> str:
    local = "a" * 64
    labels = ["b" * 63, "c" * 63, "d" * 50]
    domain = ".".join(labels) + ".example"
    email = f"{local}@{domain}"[: MAX_LENGTHS["email"]]
    assert len(email) <= MAX_LENGTHS["email"]
    return email


def longest_phone() -> str:
    phone = "+1 (415) 555-0100 . 0101 . 01 ...........     "[: MAX_LENGTHS["phone"]]
    assert sum(c.isdigit() for c in phone) <= 20
    return phone.strip()


def longest_fields(policy_bot: Bot, tag: str) -> dict[str, str]:
    policy = policy_bot.services.settings.policy
    notes = "\n".join(hostile(99, f"{i}") for i in range(100))[: MAX_LENGTHS["notes"]]
    return {
        "name": hostile(MAX_LENGTHS["name"], tag),
        "email": longest_email().replace("a", tag[0], 1),
        "phone": longest_phone(),
        "company": hostile(MAX_LENGTHS["company"], tag),
        "title": hostile(MAX_LENGTHS["title"], tag),
        "event": hostile(MAX_LENGTHS["event"], tag),
        "territory": hostile(MAX_LENGTHS["territory"], tag),
        "persona": policy.personas[-1].key,
        "priority": list(policy.priorities)[-1],
        "notes": notes,
    }


def open_modal(bot: Bot, trigger_id: str) -> dict[str, Any]:
    bot.sim.slash_command(
        "", user_id=MARKETER, trigger_id=trigger_id, response_url=bot.slack.response_url(trigger_id)
    )
    bot.settle()
    return modal(bot, trigger_id)


def submit_longest(bot: Bot, tag: str) -> int:
    view = open_modal(bot, f"trig-{tag}")
    done = bot.sim.view_submission(
        MARKETER,
        view,
        modal_state(longest_fields(bot, tag)),
        private_metadata=view["private_metadata"],
    )
    assert done.status == 200 and "errors" not in done.body, done.body
    bot.settle()
    return bot.leads()[-1].id


def policy_bot(tmp_path: Path, database_url: str, slack: SlackEmulator, clock: Any) -> Bot:
    path = tmp_path / "policy.toml"
    path.write_text(biggest_policy(), encoding="utf-8")
    return start_bot(database_url, slack, clock, POLICY_FILE=str(path))


def home(bot: Bot, user: str) -> dict[str, Any]:
    bot.sim.event({"type": "app_home_opened", "user": user, "tab": "home"})
    bot.settle()
    view = bot.slack.home(user)
    assert view is not None
    return view


def test_the_biggest_policy_and_the_longest_lead_through_a_whole_life(
    tmp_path: Path, database_url: str, slack: SlackEmulator, clock: Any
) -> None:
    bot = policy_bot(tmp_path, database_url, slack, clock)
    try:
        # The modal offers all 100 personas and priorities; the receipt and card go out.
        lead_id = submit_longest(bot, "A")
        lead = bot.lead(lead_id)
        assert lead.card_ts and lead.name == hostile(MAX_LENGTHS["name"], "A")
        assert bot.slack.wait_for_response(name="trig-A")
        waiting_id = submit_longest(bot, "B")  # left unclaimed: reminded, then escalated
        assert bot.lead(waiting_id).card_ts

        # Claimed: the card grows its owner actions; the rep gets every detail and the notes.
        bot.clock.advance(timedelta(minutes=5))
        claim_card = card(bot, lead)
        bot.sim.block_action(
            REP_A,
            "lead_claim",
            f"{lead.id}:{bot.lead(lead.id).version}",
            channel_id=claim_card.channel,
            message_ts=claim_card.ts,
        )
        bot.settle()
        assert bot.lead(lead_id).owner_id == REP_A
        [details] = bot.slack.dms(REP_A)
        shown = json.dumps(details.blocks)
        assert shown.count("&amp;") >= MAX_LENGTHS["notes"] // len(HOSTILE)  # all the notes

        choose(bot, REP_A, bot.lead(lead_id), "contacted")
        # A manager hands it to another rep.
        click_card(bot, MANAGER, bot.lead(lead_id), "lead_reassign", trigger_id="trig-ra")
        view = modal(bot, "trig-ra")
        bot.sim.view_submission(
            MANAGER, view, {"new_owner": ("new_owner_input", "users_select", REP_B)}
        )
        bot.settle()
        assert bot.lead(lead_id).owner_id == REP_B

        # Reminders and escalation for the unclaimed one; follow-ups for the claimed one.
        for _ in range(3):
            bot.clock.advance(timedelta(hours=2))
            bot.run_job("reminders")
            bot.run_job("followups")
        assert nudges(bot, REP_B)

        # Every list and page, with the policy and these leads.
        for user in (REP_A, REP_B, MARKETER, MANAGER):
            home(bot, user)
        mine = bot.sim.slash_command("mine", user_id=REP_B).json()
        assert "blocks" in mine
        policy = bot.sim.slash_command("policy", user_id=MARKETER).json()
        assert policy["text"]
        assert bot.sim.slash_command("report", user_id=MANAGER).json()["text"]
        assert bot.sim.slash_command("help", user_id=MARKETER).json()["text"]
        bot.clock.set(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
        assert bot.run_job("digest").startswith("sent")

        # Disqualified with the longest reason and note: the submitter hears both.
        view = open_disqualify(bot, bot.lead(lead_id), "trig-dq", user=REP_B)
        reasons = bot.services.settings.policy.disqualify_reasons
        done = bot.sim.view_submission(
            REP_B,
            view,
            {
                "outcome_reason": ("outcome_reason_input", "static_select", reasons[-1]),
                "outcome_note": ("outcome_note_input", "plain_text_input", hostile(500, "n")),
            },
        )
        assert done.status == 200 and "errors" not in done.body, done.body
        bot.settle()
        assert bot.lead(lead_id).stage == "disqualified"
        assert any("Disqualified" in m.text for m in bot.slack.dms(MARKETER))
    finally:
        bot.stop()


def test_the_whole_policy_is_shown_or_said_to_be_cut(
    tmp_path: Path, database_url: str, slack: SlackEmulator, clock: Any
) -> None:
    bot = policy_bot(tmp_path, database_url, slack, clock)
    try:
        page = json.dumps(home(bot, MARKETER))
        assert "/lead policy" in page  # App Home shows the start and says where the rest is
        answer = bot.sim.slash_command("policy", user_id=MARKETER).json()
        shown = json.dumps(answer)
        last_route = f"C0ROUTE{ROUTES - 1:04d}"
        assert last_route in shown or "more" in shown
    finally:
        bot.stop()


# --- the most leads -----------------------------------------------------------------------------

REPS = [f"U0REP{i:05d}" for i in range(60)]


def seed_many(bot: Bot, now: datetime) -> None:
    """150 leads with the longest names, each from its own event: 60 claimed by 60 reps, 50
    claimed by REP_A and still open, 40 waiting unclaimed long past due."""
    with bot.services.sessions.begin() as s:
        for i in range(150):
            at = now - timedelta(hours=30 - i * 0.1)
            typed = LeadInput(
                name=hostile(MAX_LENGTHS["name"], f"{i:03d}"),
                email=f"lead{i}@example.com",
                company=hostile(MAX_LENGTHS["company"], f"{i:03d}"),
                event=hostile(MAX_LENGTHS["event"], f"{i:03d}"),
            )
            lead = stored_with_card(s, typed, at)
            if i < 60:
                rep = REPS[i]
            elif i < 110:
                rep = REP_A
            else:
                continue
            leads.claim(s, lead.id, rep, team_id="T0LEADBOT", now=at + timedelta(hours=3))


def test_the_most_leads_fit_every_list_and_say_how_many_more(bot: Bot) -> None:
    now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    seed_many(bot, now)
    bot.clock.set(now)

    mine = bot.sim.slash_command("mine", user_id=REP_A).json()
    assert "Your open leads (50)" in shown(mine) and "…and 30 more" in shown(mine)

    page = shown(home(bot, REP_A))
    assert "more" in page  # 50 open, 40 unclaimed: neither list ends silently

    assert bot.run_job("digest").startswith("sent")
    digest = shown(bot.slack.dms(MANAGER)[-1].blocks)
    assert "Unclaimed backlog (40)" in digest and "more" in digest

    report = shown(bot.sim.slash_command("report", user_id=MANAGER).json())
    assert "more" in report

    for rep in REPS[:3]:
        home(bot, rep)
