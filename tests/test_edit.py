"""`/lead edit N` over real HTTP: the lead form filled in with a stored lead, saved as one
conditional UPDATE, with its card refreshed and its owner told the corrected details."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.models.views import View
from sqlalchemy import event, func, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import ORMExecuteState

from bot import render
from bot.policy import parse_policy
from bot.privacy import forget_person
from models import Lead, OutboxItem, plain_lead
from tests.conftest import MANAGER, MARKETER, REP_A, REP_B, Bot
from tests.test_outcomes import card_json, choose, claim, events, new_lead

WRONG = "Jane Doe, jane@acme.exmaple, Acme Crop, +1 415 555 0100, hot, #SaaStr2026, wants a demo"


# --- helpers ------------------------------------------------------------------------------------


def ask(bot: Bot, text: str, user: str = MARKETER, *, trigger: str = "trig-edit", **extra: str):
    """`/lead <text>` typed by `user`; its answer (the ack), once what follows has run."""
    r = bot.sim.slash_command(
        text, user_id=user, trigger_id=trigger, response_url=bot.slack.response_url(trigger)
    )
    assert r.status == 200
    bot.settle()
    return r


def open_form(bot: Bot, lead_id: int, user: str = MARKETER, trigger: str = "trig-edit") -> dict:
    """`/lead edit N` as `user`: the form it opens (checked as Slack would check it)."""
    r = ask(bot, f"edit #{lead_id}", user, trigger=trigger)
    assert r.body == ""  # no words: the form is the answer
    [call] = [c for c in bot.slack.calls_to("views.open") if c.args["trigger_id"] == trigger]
    view = call.args["view"]
    View(**view).validate_json()
    return view


def as_filled(view: dict, **changes: str | None) -> dict[str, tuple[str, str, Any]]:
    """The form's state as Slack sends it: each input as it was filled in, but `changes`."""
    state = {}
    for block in view["blocks"]:
        if block["type"] != "input":
            continue
        element = block["element"]
        if element["type"] == "static_select":
            value = (element.get("initial_option") or {}).get("value")
        else:
            value = element.get("initial_value")
        value = changes.get(block["block_id"], value)
        state[block["block_id"]] = (element["action_id"], element["type"], value)
    return state


def save(bot: Bot, view: dict, user: str = MARKETER, **changes: str | None) -> Any:
    r = bot.sim.view_submission(user, view, as_filled(view, **changes))
    assert r.status == 200
    bot.settle()
    return r.json() if r.body else None


def outbox_rows(bot: Bot) -> int:
    with bot.services.sessions() as s:
        return s.scalar(select(func.count()).select_from(OutboxItem)) or 0


# --- correcting a lead --------------------------------------------------------------------------


def test_the_submitter_corrects_an_unclaimed_lead(bot: Bot) -> None:
    lead = new_lead(bot, WRONG, owner=None)
    assert "Acme Crop" in card_json(bot, lead)

    view = open_form(bot, lead.id)
    assert view["callback_id"] == "lead_edit" and view["title"]["text"] == f"Edit lead #{lead.id}"
    filled = {block: value for block, (_, _, value) in as_filled(view).items()}
    assert filled == {
        "name": "Jane Doe",
        "email": "jane@acme.exmaple",
        "phone": "+1 415 555 0100",
        "company": "Acme Crop",
        "title": None,
        "priority": "hot",
        "event": "SaaStr2026",
        "territory": None,
        "persona": None,
        "notes": "wants a demo",
    }
    metadata = json.loads(view["private_metadata"])
    assert (metadata["lead_id"], metadata["version"]) == (lead.id, lead.version)

    answer = save(bot, view, email="Jane@Acme.example ", company="Acme Corp", title="CTO")
    assert answer is None  # the form closes

    after = bot.lead(lead.id)
    assert (after.email, after.company, after.title) == ("Jane@Acme.example", "Acme Corp", "CTO")
    assert after.email_norm == "jane@acme.example"  # as a new lead's, for bot.duplicates
    assert after.version == lead.version + 1 and after.status == "new"
    [edited] = events(bot, lead.id, "edited")
    assert edited.actor == MARKETER
    assert json.loads(edited.detail or "{}") == {"fields": ["email", "company", "title"]}
    shown = card_json(bot, lead)
    assert "Acme Corp" in shown and "CTO" in shown and "Acme Crop" not in shown
    assert "lead_claim" in shown  # still open to claim
    [told] = bot.slack.wait_for_response(name="trig-edit")
    assert told.body["response_type"] == "ephemeral"
    said = f"Lead #{lead.id} *Jane Doe* (Acme Corp) is corrected: email, company and title."
    assert said in told.body["text"]
    assert bot.slack.dms(MARKETER) == []  # they did it themselves


def test_a_manager_corrects_a_claimed_lead_and_the_owner_gets_the_new_details(bot: Bot) -> None:
    lead = new_lead(bot, WRONG, owner=REP_A)
    [claimed_dm] = bot.slack.dms(REP_A)
    assert "jane@acme.exmaple" in json.dumps(claimed_dm.blocks)

    view = open_form(bot, lead.id, MANAGER)
    save(bot, view, MANAGER, email="jane@acme.example", phone="+1 415 555 0199")

    after = bot.lead(lead.id)
    assert (after.email, after.phone, after.phone_norm) == (
        "jane@acme.example",
        "+1 415 555 0199",
        "14155550199",
    )
    assert after.owner_id == REP_A and after.version == lead.version + 1
    [_, corrected] = bot.slack.dms(REP_A)
    body = json.dumps(corrected.blocks)
    intro = f"<@{MANAGER}> corrected lead #{lead.id} *Jane Doe* (Acme Crop) (email and phone)"
    assert intro in body
    assert "jane@acme.example" in body and "+1 415 555 0199" in body
    assert "exmaple" not in body
    # The submitter hears who corrected which fields; the values are the owner's to have.
    [news] = bot.slack.dms(MARKETER)[-1:]
    assert f"<@{MANAGER}> corrected your lead #{lead.id}" in news.text
    assert news.text.endswith(": email and phone.") and "555 0199" not in news.text
    assert f"Claimed by <@{REP_A}>" in card_json(bot, lead)
    [edited] = events(bot, lead.id, "edited")
    assert edited.actor == MANAGER
    assert json.loads(edited.detail or "{}") == {"fields": ["email", "phone"]}


def test_someone_else_is_refused_and_no_form_opens(bot: Bot) -> None:
    lead = new_lead(bot, WRONG, owner=REP_A)
    for who in (REP_B, REP_A):  # another rep, and the owner who did not submit it
        answer = ask(bot, f"edit {lead.id}", who).json()
        assert answer["response_type"] == "ephemeral"
        assert answer["text"] == (
            f"Only the lead's submitter (<@{MARKETER}>) or a manager can edit lead #{lead.id}."
        )
    assert bot.slack.calls_to("views.open") == []
    assert bot.lead(lead.id).version == lead.version and events(bot, lead.id, "edited") == []


def test_a_closed_lead_is_for_a_manager_to_correct(bot: Bot) -> None:
    lead = new_lead(bot, WRONG, owner=REP_A)
    choose(bot, REP_A, lead, "won")
    answer = ask(bot, f"edit {lead.id}", MARKETER).json()
    assert answer["text"] == f"Lead #{lead.id} is closed (Won): only a manager can edit it now."
    assert bot.slack.calls_to("views.open") == []

    view = open_form(bot, lead.id, MANAGER)
    save(bot, view, MANAGER, event="SaaStr 2026 London")
    assert bot.lead(lead.id).event == "SaaStr 2026 London" and bot.lead(lead.id).stage == "won"


def test_a_form_filled_from_an_older_version_saves_nothing(bot: Bot) -> None:
    lead = new_lead(bot, WRONG, owner=None)
    view = open_form(bot, lead.id)
    claim(bot, lead.id, REP_A)  # meanwhile
    claimed = bot.lead(lead.id)
    rows = outbox_rows(bot)

    answer = save(bot, view, email="jane@acme.example")

    assert answer["response_action"] == "errors"
    assert answer["errors"]["name"] == (
        f"Lead #{lead.id} changed since this form opened (claimed, released or edited); "
        f"nothing saved. Close it and /lead edit {lead.id} again."
    )
    after = bot.lead(lead.id)
    assert after.email == "jane@acme.exmaple" and after.version == claimed.version
    assert events(bot, lead.id, "edited") == [] and outbox_rows(bot) == rows


def test_a_change_landing_between_the_check_and_the_write_is_not_overwritten(bot: Bot) -> None:
    """The version is checked on reading the lead and again by the UPDATE itself: a claim
    committed in between (here, run just before the edit's UPDATE) leaves the edit a no-op."""
    lead = new_lead(bot, WRONG, owner=None)
    view = open_form(bot, lead.id)
    rows = outbox_rows(bot)
    landed: list[int] = []

    def claimed_meanwhile(state: ORMExecuteState) -> None:
        if state.is_update and not landed:
            landed.append(lead.id)
            state.session.execute(
                text("UPDATE leads SET version = version + 1, owner_id = :rep WHERE id = :id"),
                {"rep": REP_B, "id": lead.id},
            )

    event.listen(bot.services.sessions, "do_orm_execute", claimed_meanwhile)
    try:
        answer = save(bot, view, email="jane@acme.example")
    finally:
        event.remove(bot.services.sessions, "do_orm_execute", claimed_meanwhile)
    assert landed == [lead.id]
    assert "changed since this form opened" in answer["errors"]["name"]
    after = bot.lead(lead.id)
    assert (after.email, after.version, after.owner_id) == (lead.email, lead.version + 1, REP_B)
    assert events(bot, lead.id, "edited") == [] and outbox_rows(bot) == rows


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"email": "jane@acme"}, {"email": 'email: "jane@acme" is not a valid email address'}),
        (
            {"name": None, "email": None, "phone": None},
            {
                "name": "name: missing — who is the lead?",
                "email": "email or phone: give at least one so sales can reach them",
            },
        ),
        ({"phone": "call me"}, {"phone": 'phone: "call me" is not a valid phone number'}),
    ],
)
def test_invalid_details_are_refused_on_their_fields_and_nothing_is_saved(
    bot: Bot, changes: dict[str, str | None], errors: dict[str, str]
) -> None:
    lead = new_lead(bot, WRONG, owner=None)
    view = open_form(bot, lead.id)
    rows = outbox_rows(bot)
    answer = save(bot, view, **changes)
    assert answer == {"response_action": "errors", "errors": errors}
    after = bot.lead(lead.id)
    assert (after.name, after.email, after.version) == ("Jane Doe", lead.email, lead.version)
    assert events(bot, lead.id, "edited") == [] and outbox_rows(bot) == rows


def test_nothing_changed_is_said_and_nothing_is_written(bot: Bot) -> None:
    lead = new_lead(bot, WRONG, owner=None)
    view = open_form(bot, lead.id)
    rows = outbox_rows(bot)
    answer = save(bot, view)  # saved as it was filled in
    assert answer == {
        "response_action": "errors",
        "errors": {"name": f"Nothing to save: these are lead #{lead.id}'s details already."},
    }
    assert bot.lead(lead.id).version == lead.version
    assert events(bot, lead.id, "edited") == [] and outbox_rows(bot) == rows


def test_unknown_other_workspace_and_forgotten_leads_get_a_clear_answer(bot: Bot) -> None:
    lead = new_lead(bot, WRONG, owner=None)
    missing = "I can't find lead #{n}. Its number is on your receipt and on its card; a lead "
    missing += "erased at the person's request is gone for good."
    assert ask(bot, "edit 99").json()["text"] == missing.format(n=99)
    # Another workspace's lead (such a request is refused before it gets here: the query is
    # scoped all the same).
    other = new_lead(bot, "Raj Patel, +44 20 7946 0958, Globex", owner=None)
    with bot.services.sessions.begin() as s:
        s.execute(update(Lead).where(Lead.id == other.id).values(team_id="T0ELSEWHERE"))
    assert ask(bot, f"edit {other.id}").json()["text"] == missing.format(n=other.id)
    # Past an INTEGER id no lead can be (PostgreSQL refused the number: "database down").
    assert ask(bot, "edit 2147483648").json()["text"] == missing.format(n=2147483648)
    for typed in ("edit", "edit twelve", "EDIT 1 2", f"edit {'9' * 13}"):
        said = ask(bot, typed).json()["text"]
        assert said.startswith("To correct a lead, type `/lead edit` and its number"), typed

    view = open_form(bot, lead.id)  # then the person asks to be forgotten
    forget_person(bot.services, "jane@acme.exmaple")
    answer = bot.sim.view_submission(MARKETER, view, as_filled(view, company="Acme Corp"))
    assert (answer.status, answer.body) == (200, "")  # nothing to fix in the form: it closes
    bot.settle()
    assert bot.slack.ephemerals(MARKETER)[-1].text == (
        f"Lead #{lead.id} no longer exists; nothing changed."
    )
    assert [kept.id for kept in bot.leads()] == [other.id]
    assert ask(bot, f"edit {lead.id}").json()["text"] == missing.format(n=lead.id)
    assert len(bot.slack.calls_to("views.open")) == 1


def test_a_database_failure_writes_nothing_and_keeps_the_form(bot: Bot) -> None:
    """The outbox row fails after the UPDATE and the event ran: all of it is rolled back."""
    lead = new_lead(bot, WRONG, owner=REP_A)
    view = open_form(bot, lead.id)
    rows = outbox_rows(bot)
    engine = bot.services.engine

    def fail_outbox(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().startswith("INSERT INTO outbox"):
            raise OperationalError(statement, {}, Exception("disk I/O error"))

    event.listen(engine, "before_cursor_execute", fail_outbox)
    try:
        answer = save(bot, view, email="jane@acme.example")
    finally:
        event.remove(engine, "before_cursor_execute", fail_outbox)
    assert answer == {
        "response_action": "errors",
        "errors": {"name": "The database is not answering; nothing changed. Try again."},
    }
    after = bot.lead(lead.id)
    assert (after.email, after.version) == ("jane@acme.exmaple", lead.version)
    assert events(bot, lead.id, "edited") == [] and outbox_rows(bot) == rows
    assert len(bot.slack.dms(REP_A)) == 1  # the claim's, no other


def test_notes_too_long_for_the_form_are_kept_as_they_are(bot: Bot) -> None:
    notes = "they asked about SSO. " * 300  # 6,600 characters: /lead takes 10,000
    lead = new_lead(bot, f"Jane Doe, jane@acme.exmaple, Acme Corp, notes: {notes}", owner=None)
    view = open_form(bot, lead.id)
    assert "notes" not in {b.get("block_id") for b in view["blocks"]}
    assert "more than this form holds; they are kept as they are" in json.dumps(view)
    save(bot, view, email="jane@acme.example")
    after = bot.lead(lead.id)
    assert after.email == "jane@acme.example" and after.notes == lead.notes
    assert json.loads(events(bot, lead.id, "edited")[0].detail or "{}") == {"fields": ["email"]}


def test_contact_details_never_reach_the_logs(bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    lead = new_lead(bot, WRONG, owner=REP_A)
    view = open_form(bot, lead.id, MANAGER)
    save(
        bot,
        view,
        MANAGER,
        name="Janet Doerr",
        email="janet.private@acme.example",
        phone="+1 415 555 0177",
        notes="secret roadmap",
    )
    assert bot.lead(lead.id).email == "janet.private@acme.example"
    # leadbot's own records, unredacted (libraries' DEBUG lines carry payloads; the log
    # pipeline holds those back, tests/test_http.py).
    ours = "\n".join(
        r.getMessage() for r in caplog.records if r.name.split(".")[0] in ("bot", "handlers")
    )
    assert f"lead {lead.id} edited: name, email, phone, notes" in ours
    for value in ("Jane", "Janet", "Doerr", "exmaple", "janet.private", "555 0", "secret road"):
        assert value not in ours, value


def test_the_form_is_filled_in_from_the_policys_choices_and_never_swaps_a_dropped_one() -> None:
    """A priority or persona the policy has since dropped is not replaced by another one
    behind the person's back: nothing is chosen, and the hint says what it was."""
    policy = parse_policy(Path("policy.example.toml").read_text(), env={"TIMEZONE": "UTC"})
    base = {
        "id": 7,
        "version": 3,
        "name": "Jane Doe",
        "email": "jane@acme.example",
        "phone": None,
        "company": "Acme Corp",
        "title": None,
        "event": None,
        "territory": "EMEA",
        "notes": None,
    }

    def selects(lead: Lead) -> dict[str, tuple[str | None, str | None]]:
        view = render.lead_modal("{}", policy, lead=lead)
        View(**view).validate_json()
        return {
            b["block_id"]: (
                (b["element"].get("initial_option") or {}).get("value"),
                (b.get("hint") or {}).get("text"),
            )
            for b in view["blocks"]
            if b["type"] == "input" and b["element"]["type"] == "static_select"
        }

    listed = plain_lead(base | {"priority": "hot", "persona": "developer"})
    assert selects(listed) == {"priority": ("hot", None), "persona": ("developer", None)}
    dropped = plain_lead(base | {"priority": "urgent", "persona": "cfo"})
    assert selects(dropped) == {
        "priority": (None, "Was “urgent”, which the handoff policy no longer lists."),
        "persona": (None, "Was “cfo”, which the handoff policy no longer lists."),
    }


def test_a_form_slack_would_not_open_in_time_says_what_to_type_again(bot: Bot) -> None:
    lead = new_lead(bot, WRONG, owner=None)
    bot.slack.fail("views.open", error="expired_trigger_id")
    assert ask(bot, f"edit {lead.id}", trigger="trig-late").body == ""
    [said] = bot.slack.wait_for_response(name="trig-late")
    assert (
        said.body["text"] == f"I couldn't open the form in time; type `/lead edit {lead.id}` again."
    )
    assert bot.lead(lead.id).version == lead.version


def test_a_corrected_priority_moves_the_claim_sla_of_a_lead_still_unclaimed(
    tmp_path: Path, database_url: str, slack: Any, clock: Any
) -> None:
    """Warm (2 h) corrected to hot (15 min) at 09:30 on a Wednesday in New York: due 15
    minutes after its card was posted, reminded at the next sweep. A claimed lead's SLA was
    judged at its claim and a reminded lead's next reminder stands: neither moves."""
    from datetime import UTC, datetime, timedelta

    from tests.conftest import start_bot
    from tests.test_policy_flow import POLICY

    posted = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)  # Wednesday 09:00 in New York
    clock.set(posted)
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    bot = start_bot(database_url, slack, clock, POLICY_FILE=str(policy))
    try:
        waiting = new_lead(bot, "Jane Doe, jane@acme.example, warm", owner=None)
        claimed = new_lead(bot, "Raj Patel, raj@globex.example, warm", owner=REP_A)
        assert waiting.next_reminder_at == waiting.claim_due_at == posted + timedelta(hours=2)
        claimed_due = claimed.claim_due_at
        clock.set(posted + timedelta(minutes=30))

        for lead in (waiting, claimed):
            save(
                bot,
                open_form(bot, lead.id, MANAGER, trigger=f"t{lead.id}"),
                MANAGER,
                priority="hot",
            )

        hot_due = posted + timedelta(minutes=15)
        after = bot.lead(waiting.id)
        assert (after.priority, after.claim_due_at, after.next_reminder_at) == (
            "hot",
            hot_due,
            hot_due,
        )
        assert bot.lead(claimed.id).claim_due_at == claimed_due
        assert bot.run_job("reminders") == "1 reminded, 0 escalated"

        # Reminded once (hot: the next, an escalation, 15 minutes on); corrected back to
        # warm, the reminder already scheduled stands and the SLA it was judged by moves.
        reminded = bot.lead(waiting.id)
        save(bot, open_form(bot, waiting.id, MANAGER, trigger="t-again"), MANAGER, priority="warm")
        again = bot.lead(waiting.id)
        assert again.next_reminder_at == reminded.next_reminder_at
        assert again.claim_due_at == posted + timedelta(hours=2)
    finally:
        bot.stop()


def test_a_corrected_owner_dm_slack_refuses_for_its_blocks_arrives_as_text(bot: Bot) -> None:
    """The owner's only way to the corrected contact: refused as malformed, it comes as text
    that says who corrected the lead, not that the owner claimed it."""
    lead = new_lead(bot, WRONG, owner=REP_A)
    bot.slack.fail(
        "chat.postMessage",
        error="msg_blocks_too_long",
        when=lambda args: args.get("channel") == REP_A and bool(args.get("blocks")),
    )
    save(bot, open_form(bot, lead.id, MANAGER), MANAGER, email="jane@acme.example")

    dm = bot.slack.dms(REP_A)[-1]
    assert not dm.blocks
    assert dm.text.startswith(f"<@{MANAGER}> corrected your lead #{lead.id} *Jane Doe*")
    assert "jane@acme.example" in dm.text and "`msg_blocks_too_long`" in dm.text


def test_a_priority_corrected_while_the_card_is_on_its_way_sets_the_sla(
    tmp_path: Path, database_url: str, slack: Any, clock: Any
) -> None:
    """The outbox read the lead (warm) before posting its card; the correction to hot landed
    while the post was in flight, before there was a post to count the SLA from. The post's
    UPDATE returns the stored priority, and the SLA is hot's: due 15 minutes after the post."""
    from datetime import UTC, datetime, timedelta

    from tests.conftest import LEADS_CHANNEL, start_bot
    from tests.test_policy_flow import POLICY

    posted = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)  # Wednesday 09:00 in New York
    clock.set(posted)
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    bot = start_bot(database_url, slack, clock, POLICY_FILE=str(policy))
    gate = slack.hold(
        "chat.postMessage",
        when=lambda a: a.get("channel") == LEADS_CHANNEL and not a.get("thread_ts"),
    )
    try:
        r = bot.sim.slash_command("Jane Doe, jane@acme.example, warm", user_id=MARKETER)
        [lead] = bot.leads()
        assert gate.arrived.wait(10) and bot.lead(lead.id).card_posted_at is None
        bot.sim.slash_command(
            f"edit {lead.id}", user_id=MANAGER, trigger_id="trig-race", response_url="x"
        )
        [call] = slack.wait_for("views.open", lambda c: c.args["trigger_id"] == "trig-race")
        view = call.args["view"]
        saved = bot.sim.view_submission(MANAGER, view, as_filled(view, priority="hot"))
        assert (r.status, saved.status, saved.body) == (200, 200, "")
        assert bot.lead(lead.id).priority == "hot"
        gate.release()
        bot.settle()
        after = bot.lead(lead.id)
        hot_due = posted + timedelta(minutes=15)
        assert after.card_posted_at == posted
        assert (after.claim_due_at, after.next_reminder_at) == (hot_due, hot_due)
    finally:
        gate.release()
        bot.stop()
