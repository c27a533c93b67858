"""Who holds a lead, and since when, as people are told it: a manager's Release tells the owner,
a Reassign shows as a handover (not as the new owner's claim) and is open only to people Claim
would take, a Snooze on an out-of-date nudge changes nothing, the card's thread counts its
reminders, and a correction's DM says it is one. Over real HTTP, on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command as alembic
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, column, insert, inspect, select, table, text

from bot import db
from bot.clock import FakeClock
from bot.slack_emulator import SlackEmulator
from handlers.outcomes import NOT_SALES
from models import NEW, Base, UTCDateTime
from tests.conftest import LEADS_CHANNEL, MANAGER, MARKETER, REP_A, REP_B, Bot, start_bot
from tests.test_edit import open_form, save
from tests.test_migrations import empty_engine  # noqa: F401  (a fixture)
from tests.test_outcomes import (
    DAY,
    card_json,
    choose,
    claim,
    click_card,
    click_dm,
    events,
    new_lead,
    nudges,
)

HOUR = timedelta(hours=1)


def date_of(when: datetime) -> str:
    """How render.slack_date starts for `when`."""
    return f"<!date^{int(when.timestamp())}^"


def reassign(bot: Bot, lead_id: int, to: str, trigger: str = "trig-ra") -> Any:
    """The manager's Reassign: the card's button, then the modal submitted with `to`."""
    click_card(bot, MANAGER, bot.lead(lead_id), "lead_reassign", trigger_id=trigger)
    [call] = [c for c in bot.slack.calls_to("views.open") if c.args["trigger_id"] == trigger]
    r = bot.sim.view_submission(
        MANAGER, call.args["view"], {"new_owner": ("new_owner_input", "users_select", to)}
    )
    assert r.status == 200
    bot.settle()
    return r


def thread_notes(bot: Bot, lead_id: int) -> list[str]:
    lead = bot.lead(lead_id)
    assert lead.card_ts
    return [m.text for m in bot.slack.thread(LEADS_CHANNEL, lead.card_ts)[1:]]


def mine(bot: Bot, user: str) -> str:
    r = bot.sim.slash_command("mine", user_id=user)
    bot.settle()
    return json.dumps(r.json(), ensure_ascii=False)


def home(bot: Bot, user: str) -> str:
    bot.sim.event({"type": "app_home_opened", "user": user, "tab": "home"})
    bot.settle()
    view = bot.slack.home(user)
    assert view is not None
    return json.dumps(view["blocks"], ensure_ascii=False)


# --- Release ------------------------------------------------------------------------------------


def test_a_managers_release_tells_the_owner_and_the_thread_names_them(bot: Bot) -> None:
    lead = new_lead(bot, owner=REP_A)
    before = len(bot.slack.dms(REP_A))
    click_card(bot, MANAGER, lead, "lead_release")
    assert bot.lead(lead.id).status == NEW
    [told] = bot.slack.dms(REP_A)[before:]
    assert told.text.startswith(f"↩️ <@{MANAGER}> released your lead #{lead.id} *Jane Doe*")
    assert "no longer yours" in told.text and "jane@acme.example" not in told.text
    assert thread_notes(bot, lead.id)[-1] == (
        f"↩️ <@{MANAGER}> released lead #{lead.id} from <@{REP_A}>; it is open to claim again."
    )

    # Their own release: nobody to tell, nobody else to name.
    claim(bot, lead.id, REP_B)
    before = len(bot.slack.dms(REP_B))
    click_card(bot, REP_B, bot.lead(lead.id), "lead_release")
    assert bot.slack.dms(REP_B)[before:] == []
    assert thread_notes(bot, lead.id)[-1] == (
        f"↩️ <@{REP_B}> released lead #{lead.id}; it is open to claim again."
    )


# --- Reassign: what the card, `/lead mine`, App Home and the nudges say --------------------------


def test_after_a_reassign_everything_counts_from_the_handover(bot: Bot) -> None:
    lead = new_lead(bot, owner=None)
    bot.clock.advance(HOUR)
    claim(bot, lead.id, REP_A)
    claimed_at = bot.lead(lead.id).claimed_at
    assert claimed_at is not None
    bot.clock.advance(3 * DAY)
    handed = bot.clock.now()
    reassign(bot, lead.id, REP_B)

    after = bot.lead(lead.id)
    assert (after.owner_id, after.claimed_at) == (REP_B, claimed_at)  # the claim's, kept
    assert (after.assigned_by, after.assigned_at) == (MANAGER, handed)
    shown = card_json(bot, lead)
    assert f"Assigned to <@{REP_B}>* by <@{MANAGER}> {date_of(handed)}" in shown
    assert f"First claimed {date_of(claimed_at)}" in shown and "1h after submission" in shown
    assert "Claimed by" not in shown and "(1h after submission)" not in shown
    assert f"assigned to <@{REP_B}>" in json.loads(shown)["text"]
    assert "yours for 0s" in mine(bot, REP_B)

    bot.clock.advance(2 * HOUR)
    bot.submit("Raj Patel, raj@globex.example, Globex")  # one waiting, for the other list
    assert "yours for 2h" in mine(bot, REP_B)
    shown_home = home(bot, REP_B)
    assert "hot, yours for 2h" in shown_home and "waiting 0s" in shown_home
    assert "3d" not in shown_home

    # The new owner's first nudge: a day after the handover, counted from it.
    bot.clock.set(handed + DAY)
    assert bot.run_job("followups") == "1 nudged, 0 escalated"
    assert "assigned to you 1d ago" in nudges(bot, REP_B)[-1].text

    # A Claim from an old card hears who holds it, and how they got it.
    bot.sim.block_action(
        REP_A, "lead_claim", f"{lead.id}:2", channel_id=LEADS_CHANNEL, message_ts=lead.card_ts
    )
    bot.settle()
    assert f"is with <@{REP_B}>, assigned by <@{MANAGER}>" in bot.slack.ephemerals(REP_A)[-1].text

    # Released and claimed again: a claim like any other, by its own time.
    click_card(bot, REP_B, bot.lead(lead.id), "lead_release")
    released = bot.lead(lead.id)
    assert (released.assigned_by, released.assigned_at) == (None, None)
    bot.clock.advance(HOUR)
    claim(bot, lead.id, REP_A)
    shown = card_json(bot, lead)
    assert f"Claimed by <@{REP_A}>" in shown and "Assigned to" not in shown
    assert "yours for 0s" in mine(bot, REP_A)


@pytest.mark.parametrize("who_is_sales", ["SALES_IDS", "SALES_USERGROUP"])
def test_a_reassign_to_someone_claim_would_refuse_is_refused_under_the_field(
    database_url: str, slack: SlackEmulator, clock: FakeClock, who_is_sales: str
) -> None:
    """Claim is for sales (and managers) only; a Reassign gave anyone the lead and its contact
    details. It now follows Claim's rule, and says so in the form, changing nothing."""
    if who_is_sales == "SALES_IDS":
        env = {"SALES_IDS": f"{REP_A},{REP_B}"}
    else:
        slack.set_usergroup("S0SALES001", [REP_A, REP_B])
        env = {"SALES_USERGROUP": "S0SALES001"}
    bot = start_bot(database_url, slack, clock, **env)
    try:
        lead = new_lead(bot, owner=REP_A)
        r = reassign(bot, lead.id, MARKETER)
        assert r.json() == {"response_action": "errors", "errors": {"new_owner": NOT_SALES}}
        after = bot.lead(lead.id)
        assert (after.owner_id, after.version) == (REP_A, lead.version)
        assert events(bot, lead.id, "reassigned") == []
        assert bot.slack.dms(MARKETER)[1:] == []  # their receipt only: no contact details
        # Someone Claim takes: a rep of the team, or a manager.
        reassign(bot, lead.id, REP_B, trigger="trig-rb")
        assert bot.lead(lead.id).owner_id == REP_B
        reassign(bot, lead.id, MANAGER, trigger="trig-rm")
        assert bot.lead(lead.id).owner_id == MANAGER
    finally:
        bot.stop()


# --- Snooze -------------------------------------------------------------------------------------


def test_a_snooze_on_a_nudge_an_outcome_overtook_changes_nothing_and_says_so(bot: Bot) -> None:
    lead = new_lead(bot, owner=REP_A)
    bot.clock.advance(DAY + timedelta(minutes=1))
    bot.run_job("followups")
    [nudge] = nudges(bot, REP_A)
    choose(bot, REP_A, bot.lead(lead.id), "contacted")  # the next nudge: a day from now
    due = bot.lead(lead.id).follow_up_at
    assert due == bot.clock.now() + DAY
    click_dm(bot, REP_A, nudge, "lead_snooze_1h")
    assert bot.lead(lead.id).follow_up_at == due
    told = bot.slack.ephemerals(REP_A)[-1].text
    assert told.startswith(f"That reminder about lead #{lead.id} *Jane Doe* (Acme Corp) is out of")
    assert f"the next one is {date_of(due)}" in told and "nothing changed" in told
    assert "Contacted" in told
    assert events(bot, lead.id, "snoozed") == []


def test_a_snooze_on_a_nudge_a_newer_one_overtook_changes_nothing(bot: Bot) -> None:
    lead = new_lead(bot, owner=REP_A)
    bot.clock.advance(DAY)
    bot.run_job("followups")
    bot.clock.advance(DAY)
    bot.run_job("followups")  # the second miss: the managers hear, a newer nudge goes out
    old, new = nudges(bot, REP_A)
    due = bot.lead(lead.id).follow_up_at
    click_dm(bot, REP_A, old, "lead_snooze_1h")
    assert bot.lead(lead.id).follow_up_at == due
    assert "out of date" in bot.slack.ephemerals(REP_A)[-1].text
    # The latest nudge snoozes, and again: a snooze does not make its own nudge out of date.
    click_dm(bot, REP_A, new, "lead_snooze_1h")
    assert bot.lead(lead.id).follow_up_at == bot.clock.now() + HOUR
    click_dm(bot, REP_A, new, "lead_snooze_1d")
    assert bot.lead(lead.id).follow_up_at == bot.clock.now() + DAY
    assert len(events(bot, lead.id, "snoozed")) == 2


def test_a_snooze_button_from_before_the_nudge_key_only_puts_the_follow_up_later(
    bot: Bot,
) -> None:
    """Nudges sent by an older leadbot carry the lead's id alone: which nudge they were is not
    known, so they may push the next follow-up later, never bring it forward."""
    lead = new_lead(bot, owner=REP_A)
    due = bot.lead(lead.id).follow_up_at
    assert due == bot.clock.now() + DAY
    bot.clock.advance(HOUR)
    for action in ("lead_snooze_1h", "lead_snooze_1d"):
        r = bot.sim.block_action(REP_A, action, str(lead.id), channel_id="D0REPAAAA1")
        assert r.status == 200
        bot.settle()
    assert "out of date" in bot.slack.ephemerals(REP_A)[0].text  # an hour: earlier, refused
    assert "Snoozed" in bot.slack.ephemerals(REP_A)[1].text  # a day from now: later, done
    assert bot.lead(lead.id).follow_up_at == bot.clock.now() + DAY


def test_broken_snooze_values_change_nothing(bot: Bot) -> None:
    """`id:version:misses` or a bare id (nudges from before the key); "1:2" was once taken."""
    lead = new_lead(bot, owner=REP_A)
    due = bot.lead(lead.id).follow_up_at
    values = ["1:2", "1:2:3:4", "1::3", "1:²:0", "1:2:x", "x"]
    for value in values:
        bot.sim.block_action(REP_A, "lead_snooze_1d", value, channel_id="D0REPAAAA1")
    bot.settle()
    assert bot.lead(lead.id).follow_up_at == due
    told = [m.text for m in bot.slack.ephemerals(REP_A)]
    assert len(told) == len(values) and all("broken" in t for t in told), told


# --- the thread's reminders, a correction's DM ---------------------------------------------------


def test_the_threads_reminders_are_numbered_as_reminders(bot: Bot) -> None:
    lead = new_lead(bot, owner=None)
    for _ in range(4):  # ESCALATE_AFTER=2: two reminders, the managers told, one more
        bot.clock.advance(timedelta(minutes=31))
        bot.run_job("reminders")
    notes = thread_notes(bot, lead.id)
    assert [n.split(":")[0] for n in notes] == [
        "⏰ Reminder 1",
        "⏰ Reminder 2",
        "📣 Still unclaimed after 2 reminders — the managers have been told.",
        "⏰ Reminder 3",
    ]


def test_the_owners_dm_after_a_correction_says_it_is_one(bot: Bot) -> None:
    lead = new_lead(bot, owner=REP_A)
    before = len(bot.slack.dms(REP_A))
    save(bot, open_form(bot, lead.id), email="jane.doe@acme.example")
    [dm] = bot.slack.dms(REP_A)[before:]
    # The notification: what happened, not the claim's "is yours".
    assert dm.text == (f"✏️ <@{MARKETER}> corrected lead #{lead.id} *Jane Doe* (Acme Corp) (email).")
    assert "jane.doe@acme.example" in json.dumps(dm.blocks)


# --- migration 0011 -----------------------------------------------------------------------------

LEADS = table(
    "leads",
    *(column(name) for name in ("id", "team_id", "name", "priority", "submitted_by", "status")),
    *(column(name) for name in ("owner_id", "version", "reminders_sent")),
    column("submitted_at", UTCDateTime()),
    column("claimed_at", UTCDateTime()),
)
EVENTS = table(
    "lead_events",
    *(column(name) for name in ("lead_id", "actor", "kind", "detail")),
    column("at", UTCDateTime()),
)


def test_0011_takes_each_reassigned_leads_handover_from_its_history(
    empty_engine: Engine,  # noqa: F811
) -> None:
    """Leads reassigned before 0011 get who handed them over and when from their latest
    `reassigned` event, if it gave the lead to the owner it has now after their claim: not a
    lead released and claimed again since, nor one reassigned on to someone else. Downgrading
    drops the columns and keeps the leads; upgrading again reaches the models' schema."""
    engine = empty_engine
    db.upgrade(engine, "0010")
    t = [datetime(2026, 3, 2, 9, tzinfo=UTC) + timedelta(hours=k) for k in range(8)]

    def lead(lead_id: int, owner: str | None, claimed: datetime | None) -> dict[str, Any]:
        status = "claimed" if owner else "new"
        return {
            "id": lead_id,
            "team_id": "T1",
            "name": f"P{lead_id}",
            "priority": "warm",
            "submitted_by": "U1",
            "status": status,
            "owner_id": owner,
            "version": 3,
            "reminders_sent": 0,
            "submitted_at": t[0],
            "claimed_at": claimed,
        }

    def moved(lead_id: int, at: datetime, by: str, owner: str, previous: str) -> dict[str, Any]:
        detail = json.dumps({"owner": owner, "previous_owner": previous}, sort_keys=True)
        return {"lead_id": lead_id, "actor": by, "kind": "reassigned", "detail": detail, "at": at}

    with engine.begin() as conn:
        conn.execute(
            insert(LEADS),
            [
                lead(1, "UB", t[1]),  # A claimed, the manager gave it to B: B's since t[3]
                lead(2, "UA", t[6]),  # given to B, released, claimed by A again: A's claim
                lead(3, "UC", t[1]),  # to B, then to C: the later handover
                lead(4, "UA", t[1]),  # never reassigned
                lead(5, None, None),  # reassigned, then released: nobody's
                lead(6, "UB", t[6]),  # given to B, released, claimed by B again: B's claim
            ],
        )
        conn.execute(
            insert(EVENTS),
            [
                moved(1, t[3], "UM", "UB", "UA"),
                moved(2, t[3], "UM", "UB", "UA"),
                moved(3, t[2], "UM", "UB", "UA"),
                moved(3, t[4], "UN", "UC", "UB"),
                moved(5, t[3], "UM", "UB", "UA"),
                moved(6, t[3], "UM", "UB", "UA"),
            ],
        )
    db.upgrade(engine, "head")
    assert db.current_revision(engine) == db.HEAD == "0011"
    with engine.connect() as conn:
        handed = table(
            "leads", column("id"), column("assigned_by"), column("assigned_at", UTCDateTime())
        )
        rows = conn.execute(select(*handed.c).order_by(handed.c.id)).all()
        got = {lead_id: (by, at) for lead_id, by, at in rows}
        assert got == {
            1: ("UM", t[3]),
            2: (None, None),
            3: ("UN", t[4]),
            4: (None, None),
            5: (None, None),
            6: (None, None),
        }
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    with engine.connect() as conn:
        config = db.alembic_config(engine)
        config.attributes["connection"] = conn
        alembic.downgrade(config, "0010")
    with engine.connect() as conn:
        names = {c["name"] for c in inspect(conn).get_columns("leads")}
        assert not {"assigned_at", "assigned_by"} & names
        assert conn.scalar(text("SELECT count(*) FROM lead_events")) == 6
        assert conn.scalar(text("SELECT count(*) FROM leads")) == 6
    db.upgrade(engine, "head")
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_mine_and_app_home_list_a_reassigned_lead_by_the_handover(bot: Bot) -> None:
    """Listed by its first claim, a lead handed over a minute ago came first as B's oldest
    ("yours for 1m" at the top), and the lists' limit kept the oldest first claims."""
    handed = new_lead(bot, "Ana Old, ana@old.example, OldCo", owner=REP_A)
    bot.clock.advance(DAY)
    new_lead(bot, "Raj Own, raj@own.example, OwnCo", owner=REP_B)
    bot.clock.advance(DAY)
    reassign(bot, handed.id, REP_B)
    for listed in (mine(bot, REP_B), home(bot, REP_B)):
        assert listed.index("Raj Own") < listed.index("Ana Old"), listed


def test_a_reassign_while_the_sales_group_cannot_be_read_says_so(
    database_url: str, slack: SlackEmulator, clock: FakeClock
) -> None:
    """Told "choose someone in it" of a group nobody's membership could be read, a manager
    picked real members of it, one after another; Claim says the group cannot be read."""
    from handlers.outcomes import GROUP_UNREADABLE

    bot = start_bot(database_url, slack, clock, SALES_USERGROUP="S0SALES001")
    try:
        lead = new_lead(bot, owner=MANAGER)
        slack.fail("usergroups.users.list", error="no_such_subteam")
        r = reassign(bot, lead.id, REP_B)
        assert r.json() == {"response_action": "errors", "errors": {"new_owner": GROUP_UNREADABLE}}
        assert bot.lead(lead.id).owner_id == MANAGER
    finally:
        bot.stop()
