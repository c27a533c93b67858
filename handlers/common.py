"""Helpers shared by the listeners."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot import db, leads, render
from bot.ids import is_digits
from bot.services import Services
from models import Lead

DB_DOWN = (
    "⚠️ I couldn't save that lead: the database is not answering right now. "
    "Nothing was stored. Please try again in a minute; here is what you typed so it isn't lost:"
)


def may_have_been_saved(card_channel: str) -> str:
    """For a lead whose commit was in flight when its connection was cut at the request's
    deadline (bot.db.RequestDeadline): the server may have stored it, or may yet."""
    return (
        "⚠️ The database stopped answering while saving that lead, so I can't tell whether it "
        "was stored. If it was, its card will show up in "
        f"{render.channel_mention(card_channel)} once the database answers again: look there "
        "before sending it again (sent again, it is marked as a possible duplicate of the "
        "stored one). Here is what you typed:"
    )


FORM_NOT_SAVED = "The database is not answering — nothing was saved. Try again soon."
FORM_MAY_HAVE_BEEN_SAVED = (
    "The database stopped answering while saving this: it may have been saved. Look for its "
    "card before submitting again."
)

log = logging.getLogger(__name__)


def lead_failed(error: SQLAlchemyError) -> bool:
    """Log a /lead or form whose lead the database failed to store, in one line; True when it
    may have been stored all the same (its commit was in flight when its connection was cut
    at the request's deadline), False when nothing was."""
    if db.cut_during_commit():
        log.error(
            "lead maybe stored: its commit got no answer within the request's deadline (%s)",
            type(error).__name__,
        )
        return True
    log.error("lead not stored, database error: %s", type(error).__name__)
    return False


def text_in(body: Any, key: str, field: str) -> str | None:
    """body[key][field] when it is text; None when missing or of another shape. A payload can
    be signed and still malformed: reading it must not end in an exception."""
    inner = body.get(key) if isinstance(body, dict) else None
    value = inner.get(field) if isinstance(inner, dict) else None
    return value if isinstance(value, str) and value else None


def user_of(body: Any) -> str:
    """Who clicked or submitted ("" if the payload does not say)."""
    return text_in(body, "user", "id") or ""


def team_of(body: Any, services: Services) -> str:
    """The workspace a click or submission came from; this one's if the payload does not say."""
    return text_in(body, "team", "id") or services.team_id


def clicked_in(body: Any) -> str | None:
    """Where a click happened (a channel or a DM), for a private answer there."""
    return text_in(body, "channel", "id") or text_in(body, "container", "channel_id")


def clicked_message_ts(body: Any) -> str | None:
    """The ts of the message a button was clicked in, when it is one that stays where it was
    posted (a card, a DM); None for a modal or the App Home (a view), an ephemeral message (a
    fresh answer, such as `/lead mine`), and a payload that does not say."""
    container = body.get("container") if isinstance(body, dict) else None
    if not isinstance(container, dict) or container.get("type") != "message":
        return None
    if container.get("is_ephemeral") is True:
        return None
    ts = container.get("message_ts")
    return ts if isinstance(ts, str) and ts else None


# For a click in a message posted before the lead's card (bot.leads.predates_card): the card of
# an erased lead whose id a new lead was given.
OUT_OF_DATE_CARD = "This card is out of date: the lead it showed is gone."


def clicked_before_its_card(conn: Session | Connection, body: Any, lead: Lead) -> bool:
    """Whether the click was in a message posted before `lead`'s card, so about another lead:
    an erased one whose id `lead` was given (bot.leads.predates_card). For a button that acts
    on the lead it names, checked before anything is changed; answered with OUT_OF_DATE_CARD.
    Clicks in a view or an ephemeral message are not checked (see `clicked_message_ts`)."""
    ts = clicked_message_ts(body)
    return ts is not None and leads.predates_card(ts, leads.card_mark(conn, lead))


def metadata_of(view: Any) -> dict[str, Any]:
    """What leadbot put in a modal's private_metadata (a JSON object); {} if it is not that."""
    raw = view.get("private_metadata") if isinstance(view, dict) else None
    try:
        data = json.loads(raw) if isinstance(raw, str) and raw else {}
    except (ValueError, RecursionError):  # a forged one: not JSON, or nested past the stack
        return {}
    return data if isinstance(data, dict) else {}


def small_int(value: Any) -> int | None:
    """A lead id or version read from JSON: a whole number as leadbot writes them, else None.
    Past 2**63 SQLite cannot even bind it (OverflowError), so it stops at 12 digits, as a
    button's value does (parse_value)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**12:
        return value
    return None


def state_values_of(view: Any) -> dict[str, Any]:
    """A submitted modal's state.values; {} if the payload does not carry them as an object."""
    state = view.get("state") if isinstance(view, dict) else None
    values = state.get("values") if isinstance(state, dict) else None
    return values if isinstance(values, dict) else {}


DB_BUSY = "⚠️ The database is not answering right now, so nothing changed. Try again in a minute."


def form_change_failed() -> str:
    """Under a form's field, for a change to a lead (an outcome, a reassign) the database did
    not store in time: nothing changed, or, when the commit was in flight as its connection was
    cut at the request's deadline (bot.db.RequestDeadline), it may have."""
    if db.cut_during_commit():
        return (
            "The database stopped answering while saving this: it may have been saved. Look at "
            "the lead's card before trying again."
        )
    return "The database is not answering; nothing changed. Try again."


def gone(lead_id: int) -> str:
    """For a click on a lead that was deleted (`forget`, the purge)."""
    return f"Lead #{lead_id} no longer exists; nothing changed."


def erased_meanwhile(services: Services, lead_id: int, what: str, error: SQLAlchemyError) -> bool:
    """Whether a change to lead `lead_id` that the database refused failed because `forget` or
    the purge deleted the lead meanwhile (a row for it broke its foreign key, or it could not be
    read back): an info line. Otherwise the database is in trouble: an error line."""
    try:
        with services.sessions() as s:
            erased = s.get(Lead, lead_id) is None
    except SQLAlchemyError:
        erased = False
    if erased:
        log.info("%s of lead %s: the lead was erased meanwhile", what, lead_id)
    else:
        log.error("%s of lead %s failed, database error: %s", what, lead_id, type(error).__name__)
    return erased


def write_failed(services: Services, lead_id: int, what: str, error: SQLAlchemyError) -> str:
    """What to tell the person whose change the database refused (see erased_meanwhile)."""
    return gone(lead_id) if erased_meanwhile(services, lead_id, what, error) else DB_BUSY


def services_of(context: Any) -> Services:
    return context["leadbot"]


def later(services: Services, fn: Callable[..., None], *args: Any) -> None:
    """Run `fn(*args)` after the listener returns, so Bolt answers Slack without waiting on the
    database or on Slack calls. Errors are logged with their type and traceback, never the
    payload (it carries contact details); the log filter masks anything left."""

    def run() -> None:
        try:
            fn(*args)
        except Exception as e:
            log.error("%s failed after the ack: %s", fn.__name__, type(e).__name__, exc_info=e)

    services.work.submit(run)


ButtonHandler = Callable[[dict[str, Any], dict[str, Any], Any], None]


def acks_first(
    handler: ButtonHandler,
) -> Callable[[Ack, dict[str, Any], dict[str, Any], Any], None]:
    """A button listener that acks at once and runs `handler(body, action, context)` later."""

    def listener(ack: Ack, body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
        ack()
        later(services_of(context), handler, body, action, context)

    listener.__name__ = listener.__qualname__ = handler.__name__  # Bolt's logs name listeners
    return listener


def parse_value(value: Any) -> tuple[int, int | None] | None:
    """A button value `id:version` (or just `id`) → ints; None when malformed or absurd."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    head, _, tail = value.partition(":")
    if not is_digits(head) or len(head) > 12 or (tail and not is_digits(tail)):
        return None
    return int(head), int(tail) if tail else None


__all__ = [
    "DB_DOWN",
    "FORM_MAY_HAVE_BEEN_SAVED",
    "FORM_NOT_SAVED",
    "OUT_OF_DATE_CARD",
    "SQLAlchemyError",
    "acks_first",
    "clicked_before_its_card",
    "clicked_in",
    "clicked_message_ts",
    "erased_meanwhile",
    "form_change_failed",
    "later",
    "lead_failed",
    "may_have_been_saved",
    "parse_value",
    "services_of",
    "small_int",
    "team_of",
    "text_in",
    "user_of",
]
