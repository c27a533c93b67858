"""The App Home tab: how to use leadbot, your open leads, the unclaimed queue, the policy."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View
from sqlalchemy import func, select

from bot import outcomes, render, report
from bot.policy import describe_policy
from bot.services import Services
from models import CLAIMED, NEW, Lead

LIST_MAX = 15


def home_view(services: Services, user_id: str) -> dict[str, Any]:
    # Won, lost and disqualified leads are done: not "open" any more.
    is_mine = (Lead.status == CLAIMED, Lead.owner_id == user_id, outcomes.not_closed())
    with services.sessions() as s:
        mine = list(
            s.scalars(
                select(Lead)
                .where(*is_mine)
                # How long each has been yours, as listed (a Reassign hands one over); claims
                # written together share a time.
                .order_by(outcomes.OWNER_SINCE, Lead.id)
                .limit(LIST_MAX)
            )
        )
        queue = list(
            s.scalars(
                select(Lead)
                .where(Lead.status == NEW)
                .order_by(Lead.submitted_at, Lead.id)
                .limit(LIST_MAX)
            )
        )
        # Only when a list is full can there be more than it shows.
        mine_total = _count(s, *is_mine) if len(mine) == LIST_MAX else len(mine)
        queue_total = _count(s, Lead.status == NEW) if len(queue) == LIST_MAX else len(queue)
    now = services.clock.now()
    # Where the team has said who sales is (SALES_IDS, SALES_USERGROUP), the queue's names and
    # companies are for them and the managers: a lead routed to a private channel is not
    # listed to the whole workspace. Everyone else sees how many wait.
    sees_queue = services.access.may_claim(user_id)
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text="leadbot")),
        SectionBlock(
            text=MarkdownTextObject(
                text="Type `/lead` after a conversation at an event to hand the lead to sales "
                "(`/lead help` for the format); `/lead edit N` corrects lead #N after it is "
                "sent. The first rep to click *Claim* owns it."
            )
        ),
        DividerBlock(),
        # Fifteen leads with long names and companies, linked, are more than one section's
        # 3,000 characters: the Home tab then failed to build at all. A section per few lines.
        *report.line_sections(
            _lines(
                "*Your open leads*",
                mine,
                now,
                mine_total,
                "`/lead mine` lists them all",
                held=True,
            ),
            max_sections=LIST_MAX + 1,
        ),
        *(
            report.line_sections(
                _lines(
                    "*Unclaimed, oldest first*",
                    queue,
                    now,
                    queue_total,
                    "the morning digest counts them all",
                ),
                max_sections=LIST_MAX + 1,
            )
            if sees_queue
            else [SectionBlock(text=MarkdownTextObject(text=_waiting(queue_total)))]
        ),
        DividerBlock(),
        # The written policy, split on lines into sections within Block Kit's limits.
        *report.line_sections(
            describe_policy(
                services.settings.policy, default_channel=services.settings.leads_channel
            )
        ),
        ContextBlock(elements=[MarkdownTextObject(text=f"Updated {render.slack_date(now)}")]),
    ]
    return View(type="home", blocks=blocks).to_dict()


def _waiting(total: int) -> str:
    leads = "1 lead is" if total == 1 else f"{total} leads are"
    return f"*Unclaimed*\n{leads} waiting for sales (the list is for sales and the managers)."


def _count(s: Any, *where: Any) -> int:
    return s.scalar(select(func.count()).select_from(Lead).where(*where)) or 0


def _lines(
    title: str, leads: list[Lead], now: Any, total: int, where_rest: str, *, held: bool = False
) -> str:
    """The list under its title; past what is shown, how many more and where they are. Each
    lead's age says what it counts: `held` (your own leads), since you got it, as `/lead mine`
    says it; otherwise how long it has waited since it was submitted."""
    if not leads:
        return f"{title}\nnone"
    rows = []
    for lead in leads:
        link = render.lead_ref(lead)
        if held:
            age = f"yours for {render.human_duration(now - (outcomes.owner_since(lead) or now))}"
        else:
            age = f"waiting {render.human_duration(now - lead.submitted_at)}"
        rows.append(f"• {link} {render.lead_label(lead, 60)} — {render.esc(lead.priority)}, {age}")
    if total > len(leads):
        rows.append(f"…and {total - len(leads)} more: {where_rest}")
    return title + "\n" + "\n".join(rows)
