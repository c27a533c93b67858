"""The lead lifecycle after the claim: outcomes, reassignment, follow-ups. The core: plain values
in, plain results out, no Slack wire format.

Sales records what happened to a lead as a *stage*; three stages close it (no more follow-ups).
Every change is one conditional UPDATE on what was read (version, owner, follow-up time), so a
stale card, a double click or two processes sweeping follow-ups at once change a lead once.
Callers own the session and its transaction, and queue what Slack must hear in the same one.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, update
from sqlalchemy.orm import Session

from bot.leads import SYSTEM, get_lead, record
from bot.policy import Hours, Policy
from bot.sla import add_working_time, next_working_day
from models import CLAIMED, Lead, UTCDateTime

# Stage values, in the order a deal usually goes, with what people read.
STAGES: dict[str, str] = {
    "contacted": "Contacted",
    "meeting": "Meeting booked",
    "qualified": "Qualified",
    "disqualified": "Disqualified",
    "won": "Won",
    "lost": "Lost",
}
DISQUALIFIED = "disqualified"
# These end the lead's follow-ups: there is nothing left for sales to report.
CLOSING: frozenset[str] = frozenset({DISQUALIFIED, "won", "lost"})
# These make a lead a real opportunity: the first one recorded sets Lead.qualified_at, kept
# whatever comes after, so the funnel's *qualified* counts it even once lost or disqualified.
QUALIFYING: tuple[str, ...] = ("qualified", "won")
NOTE_MAX = 500  # a disqualify note, kept in the event log and told to the submitter
SNOOZES = ("1h", "1d")  # the Snooze buttons of a follow-up nudge


def snooze_until(length: str, now: datetime, hours: Hours) -> datetime:
    """ "1h": an hour of working time. "1d": the same time on the next working day, as people
    mean a day; 24 hours of working time would be three working days of 8."""
    if length == "1h":
        return add_working_time(now, timedelta(hours=1), hours)
    return next_working_day(now, hours)


def stage_label(stage: str | None) -> str:
    return STAGES.get(stage or "", stage or "No outcome yet")


def is_closed(lead: Lead) -> bool:
    return lead.stage in CLOSING


def assignment(lead: Lead) -> tuple[str, datetime] | None:
    """(manager, when) if the owner was handed the lead by a Reassign rather than claiming it.

    claimed_at stays the first claim's after a Reassign (the digest counts claims by it). A
    release clears assigned_*; should one have been missed (a process of a leadbot from before
    0011 released it), the claim after it is later than the Reassign, and wins."""
    at, by = lead.assigned_at, lead.assigned_by
    if at is None or by is None or lead.claimed_at is None or at < lead.claimed_at:
        return None
    return by, at


def owner_since(lead: Lead) -> datetime | None:
    """When the owner got the lead: the Reassign that gave it to them, else their claim."""
    given = assignment(lead)
    return given[1] if given is not None else lead.claimed_at


# `owner_since` in SQL, for lists ordered by how long each lead has been its owner's.
OWNER_SINCE = case(
    (
        and_(
            Lead.assigned_at.is_not(None),
            Lead.assigned_by.is_not(None),
            Lead.assigned_at >= Lead.claimed_at,
        ),
        Lead.assigned_at,
    ),
    else_=Lead.claimed_at,
)


def may_act(user_id: str, lead: Lead, managers: Collection[str]) -> bool:
    """Only the owner or a manager records outcomes on a lead (or snoozes its follow-up)."""
    return user_id == lead.owner_id or user_id in managers


def follow_up_due(policy: Policy, lead: Lead, start: datetime) -> datetime:
    """When a claimed lead without an outcome is next due a follow-up: its priority's
    follow_up_within of working time after `start`."""
    return follow_up_due_at(policy, lead.priority, start)


def follow_up_on_claim(policy: Policy, now: datetime) -> dict[str, datetime]:
    """For leads.claim: when a lead claimed `now` falls due its first follow-up, by lower-case
    priority, "" standing for a priority the policy has since dropped (the default's rule, as
    policy.rule gives), so the claim needs no second statement to start the clock."""
    due = {key.lower(): follow_up_due_at(policy, key, now) for key in policy.priority_keys()}
    due[""] = follow_up_due_at(policy, policy.default_priority, now)
    return due


def follow_up_due_at(policy: Policy, priority: str, start: datetime) -> datetime:
    return add_working_time(start, policy.rule(priority).follow_up_within, policy.hours)


def not_closed() -> Any:
    """SQL: the lead has no closing stage (it may still need follow-ups)."""
    return or_(Lead.stage.is_(None), Lead.stage.not_in(CLOSING))


# --- recording an outcome ----------------------------------------------------------------------


@dataclass(frozen=True)
class OutcomeResult:
    ok: bool
    # "recorded" (or "allowed" from check_outcome), "not_found", "unknown_stage", "stale",
    # "not_claimed", "forbidden", "same" (already at that stage: a no-op), "reason_required"
    reason: str
    lead: Lead | None
    previous: str | None = None  # the stage before, when recorded


def check_outcome(
    session: Session,
    lead_id: int,
    user_id: str,
    stage: str,
    *,
    team_id: str,
    managers: Collection[str],
    version: int | None = None,
) -> OutcomeResult:
    """Whether `user_id` may move the lead to `stage` now; changes nothing.

    `version` is the lead version the clicked card was rendered from (None when the click came
    from a message that shows no state, such as a DM): an older one is "stale".
    """
    lead = get_lead(session, lead_id, team_id)
    if lead is None:
        return OutcomeResult(False, "not_found", None)
    if stage not in STAGES:
        return OutcomeResult(False, "unknown_stage", lead)
    if lead.status != CLAIMED or lead.owner_id is None:
        return OutcomeResult(False, "not_claimed", lead)
    if not may_act(user_id, lead, managers):
        return OutcomeResult(False, "forbidden", lead)
    # Before the version check: the same choice delivered twice is quietly nothing, not "stale".
    if lead.stage == stage:
        return OutcomeResult(False, "same", lead)
    if version is not None and version != lead.version:
        return OutcomeResult(False, "stale", lead)
    return OutcomeResult(True, "allowed", lead)


def record_outcome(
    session: Session,
    lead_id: int,
    user_id: str,
    stage: str,
    *,
    team_id: str,
    managers: Collection[str],
    policy: Policy,
    now: datetime,
    version: int | None = None,
    reason: str | None = None,
    note: str | None = None,
) -> OutcomeResult:
    """Move a claimed lead to `stage` (owner or manager only) and log it as a `stage` event.

    A closing stage clears the follow-up; any other starts its clock again from now. The first
    qualifying stage (QUALIFYING) also sets qualified_at, in the same UPDATE.
    """
    checked = check_outcome(
        session, lead_id, user_id, stage, team_id=team_id, managers=managers, version=version
    )
    if not checked.ok:
        return checked
    lead = checked.lead
    assert lead is not None
    reason = (reason or "").strip()[:200] or None
    if stage == DISQUALIFIED and reason is None:
        return OutcomeResult(False, "reason_required", lead)
    note = (note or "").strip()[:NOTE_MAX] or None
    previous, seen_version, owner = lead.stage, lead.version, lead.owner_id
    # The first time only: COALESCE keeps an earlier one (qualified, then won).
    qualified = (
        {"qualified_at": func.coalesce(Lead.qualified_at, literal(now, UTCDateTime()))}
        if stage in QUALIFYING
        else {}
    )
    result = session.execute(
        update(Lead)
        # Conditional on the version we checked: a change since (another click, a reassign, a
        # release) makes this one a no-op, and the caller refreshes the card.
        .where(
            Lead.id == lead_id,
            Lead.status == CLAIMED,
            Lead.owner_id == owner,
            Lead.version == seen_version,
        )
        .values(
            stage=stage,
            stage_at=now,
            outcome_reason=reason if stage == DISQUALIFIED else None,
            follow_up_at=None if stage in CLOSING else follow_up_due(policy, lead, now),
            follow_up_misses=0,
            version=Lead.version + 1,
            **qualified,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.refresh(lead)
        return OutcomeResult(False, "stale", lead)
    detail: dict[str, Any] = {"stage": stage, "reason": reason if stage == DISQUALIFIED else None}
    if previous:
        detail["previous"] = previous
    if note:
        detail["note"] = note
    record(session, lead_id, "stage", user_id, now, **detail)
    session.refresh(lead)
    return OutcomeResult(True, "recorded", lead, previous)


# --- reassigning -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReassignResult:
    ok: bool
    # "reassigned" (or "allowed" from check_reassign), "not_found", "forbidden", "not_claimed",
    # "closed", "stale", "same_owner"
    reason: str
    lead: Lead | None
    previous_owner: str | None = None


def check_reassign(
    session: Session,
    lead_id: int,
    user_id: str,
    *,
    team_id: str,
    managers: Collection[str],
    version: int | None = None,
    new_owner: str | None = None,
) -> ReassignResult:
    """Whether `user_id` (a manager) may hand this lead to someone else now; changes nothing."""
    lead = get_lead(session, lead_id, team_id)
    if lead is None:
        return ReassignResult(False, "not_found", None)
    if user_id not in managers:
        return ReassignResult(False, "forbidden", lead)
    if version is not None and version != lead.version:
        return ReassignResult(False, "stale", lead)
    if lead.status != CLAIMED or lead.owner_id is None:
        return ReassignResult(False, "not_claimed", lead)
    if is_closed(lead):
        return ReassignResult(False, "closed", lead)
    if new_owner is not None and new_owner == lead.owner_id:
        return ReassignResult(False, "same_owner", lead)
    return ReassignResult(True, "allowed", lead)


def reassign(
    session: Session,
    lead_id: int,
    new_owner: str,
    *,
    by: str,
    team_id: str,
    managers: Collection[str],
    policy: Policy,
    now: datetime,
    version: int | None = None,
) -> ReassignResult:
    """A manager gives a claimed, open lead to `new_owner`; the follow-up clock starts anew."""
    checked = check_reassign(
        session,
        lead_id,
        by,
        team_id=team_id,
        managers=managers,
        version=version,
        new_owner=new_owner,
    )
    if not checked.ok:
        return checked
    lead = checked.lead
    assert lead is not None
    previous, seen_version = lead.owner_id, lead.version
    result = session.execute(
        update(Lead)
        .where(
            Lead.id == lead_id,
            Lead.status == CLAIMED,
            Lead.owner_id == previous,
            Lead.version == seen_version,
        )
        .values(
            owner_id=new_owner,
            # What the card and `/lead mine` say of the new owner; claimed_at stays the claim's.
            assigned_at=now,
            assigned_by=by,
            # The new owner gets a full follow-up interval, and no misses of the previous one.
            follow_up_at=follow_up_due(policy, lead, now),
            follow_up_misses=0,
            version=Lead.version + 1,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.refresh(lead)
        return ReassignResult(False, "stale", lead)
    record(session, lead_id, "reassigned", by, now, previous_owner=previous, owner=new_owner)
    session.refresh(lead)
    return ReassignResult(True, "reassigned", lead, previous)


# --- follow-ups ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnoozeResult:
    ok: bool
    # "snoozed", "not_found", "not_claimed", "forbidden", "closed", "out_of_date" (the nudge
    # clicked is not the latest word on the lead: an outcome, a Reassign or a newer nudge came
    # since; lead.follow_up_at says when the next one is)
    reason: str
    lead: Lead | None
    until: datetime | None = None


def nudge_key(lead: Lead) -> tuple[int, int]:
    """What a follow-up nudge was sent for: the lead's version (an outcome, a Reassign, a
    release or a correction bumps it) and its misses (each nudge adds one). Its Snooze buttons
    carry it, so a snooze acts only while that nudge is the latest word on the lead."""
    return lead.version, lead.follow_up_misses or 0


def snooze(
    session: Session,
    lead_id: int,
    user_id: str,
    *,
    team_id: str,
    managers: Collection[str],
    policy: Policy,
    now: datetime,
    length: str,
    nudge: tuple[int, int] | None = None,
) -> SnoozeResult:
    """Ask again after `length` (one of SNOOZES, see snooze_until). Misses are not forgiven: if
    the lead is still without an outcome then, it counts as the next miss (the managers hear).

    `nudge`: the nudge's `nudge_key`; one that is no longer the lead's is "out_of_date" and
    changes nothing. A Snooze 1 hour on the current nudge may well bring the next follow-up
    forward (take_follow_up scheduled it a whole interval on); on an old one it brought forward
    the follow-up an outcome had just set. Buttons from before the key (None) may only put
    the follow-up later."""
    lead = get_lead(session, lead_id, team_id)
    if lead is None:
        return SnoozeResult(False, "not_found", None)
    checked = _check_snooze(lead, user_id, managers)
    if checked is not None:
        return checked
    assert lead.follow_up_at is not None
    until = snooze_until(length, now, policy.hours)
    if nudge is not None and nudge != nudge_key(lead):
        return SnoozeResult(False, "out_of_date", lead)
    if nudge is None and until <= lead.follow_up_at:
        return SnoozeResult(False, "out_of_date", lead)
    # Conditional on what was checked: an outcome or a newer nudge landing meanwhile wins.
    current = (
        (Lead.version == nudge[0], Lead.follow_up_misses == nudge[1])
        if nudge is not None
        else (Lead.follow_up_at < until,)
    )
    result = session.execute(
        update(Lead)
        .where(
            Lead.id == lead_id,
            Lead.status == CLAIMED,
            Lead.owner_id == lead.owner_id,
            Lead.follow_up_at.is_not(None),
            *current,
        )
        .values(follow_up_at=until)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.refresh(lead)
        return _check_snooze(lead, user_id, managers) or SnoozeResult(False, "out_of_date", lead)
    record(session, lead_id, "snoozed", user_id, now, until=until.isoformat())
    session.refresh(lead)
    return SnoozeResult(True, "snoozed", lead, until)


def _check_snooze(lead: Lead, user_id: str, managers: Collection[str]) -> SnoozeResult | None:
    """Why `user_id` may not snooze this lead's follow-up at all, or None."""
    if lead.status != CLAIMED or lead.owner_id is None:
        return SnoozeResult(False, "not_claimed", lead)
    if not may_act(user_id, lead, managers):
        return SnoozeResult(False, "forbidden", lead)
    if is_closed(lead) or lead.follow_up_at is None:
        return SnoozeResult(False, "closed", lead)
    return None


def due_follow_ups(session: Session, now: datetime, limit: int = 200) -> list[int]:
    """Ids of claimed leads whose follow-up is due: an index range scan on (status, due)."""
    return list(
        session.scalars(
            select(Lead.id)
            .where(Lead.status == CLAIMED, Lead.follow_up_at <= now)
            .order_by(Lead.follow_up_at)
            .limit(limit)
        )
    )


@dataclass(frozen=True)
class FollowUpTurn:
    lead: Lead
    kind: str  # "nudge" (the owner only) or "escalation" (the managers too)
    misses: int  # follow-ups missed, this one included


def take_follow_up(
    session: Session, lead_id: int, *, now: datetime, policy: Policy
) -> FollowUpTurn | None:
    """Win the right to send this lead's due follow-up, or None (someone else did / it's moot).

    The first miss nudges the owner; the second also tells the managers; later ones nudge the
    owner again, once per interval. The UPDATE is conditional on the due time and miss count we
    read, so of N processes sweeping at once exactly one sends.
    """
    lead = get_lead(session, lead_id)
    if lead is None or lead.status != CLAIMED or lead.owner_id is None or is_closed(lead):
        return None
    due, misses = lead.follow_up_at, lead.follow_up_misses or 0
    if due is None or due > now:
        return None
    result = session.execute(
        update(Lead)
        .where(
            Lead.id == lead_id,
            Lead.status == CLAIMED,
            Lead.follow_up_at == due,
            Lead.follow_up_misses == misses,
            not_closed(),
        )
        .values(follow_up_misses=misses + 1, follow_up_at=follow_up_due(policy, lead, now))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return None
    kind = "escalation" if misses == 1 else "nudge"
    record(
        session,
        lead_id,
        "follow_up_escalated" if kind == "escalation" else "follow_up_nudged",
        SYSTEM,
        now,
        misses=misses + 1,
        owner=lead.owner_id,
    )
    session.refresh(lead)
    return FollowUpTurn(lead=lead, kind=kind, misses=misses + 1)


# --- listing ------------------------------------------------------------------------------------


def open_leads_of(session: Session, user_id: str, *, team_id: str, limit: int = 20) -> list[Lead]:
    """The user's claimed leads that are not closed, oldest claim first."""
    return list(
        session.scalars(
            select(Lead)
            .where(
                Lead.team_id == team_id,
                Lead.owner_id == user_id,
                Lead.status == CLAIMED,
                not_closed(),
            )
            # By how long each has been theirs, as the list says (a Reassign hands one over).
            .order_by(OWNER_SINCE, Lead.id)
            .limit(limit)
        )
    )


def count_open_leads_of(session: Session, user_id: str, *, team_id: str) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Lead)
            .where(
                Lead.team_id == team_id,
                Lead.owner_id == user_id,
                Lead.status == CLAIMED,
                not_closed(),
            )
        )
        or 0
    )
