"""Messages built as plain Block Kit dicts (bot.render's builders) are what slack_sdk's models
would have built, and within Slack's limits, at their longest."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot import render, render_outcomes
from bot.parsing import MAX_LENGTHS
from models import CLAIMED
from tests.conftest import REP_A
from tests.test_sandbox_render import NOW, make_lead


def _through_the_models(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each block parsed into slack_sdk's model and written back: to_dict() runs the models'
    validators (text lengths, element counts) and drops any key the model does not know."""
    return [Block.parse(b).to_dict() for b in blocks]  # type: ignore[union-attr]


def _longest(**overrides: Any) -> Any:
    # Every field at its limit, made of the character escaping lengthens most (& → &amp;).
    fields = {k: "&" * n for k, n in MAX_LENGTHS.items() if k not in ("email", "phone")}
    fields |= {"email": "a" * 240 + "@acme.example", "phone": "+1 " + "5" * 20}
    return make_lead(**fields, **overrides)


CLAIMED_LEAD = {"status": CLAIMED, "owner_id": REP_A, "claimed_at": NOW}


@pytest.mark.parametrize(
    "lead",
    [make_lead(**CLAIMED_LEAD), make_lead(notes=None, **CLAIMED_LEAD), _longest(**CLAIMED_LEAD)],
    ids=["usual", "no notes", "every field at its limit"],
)
def test_the_claim_dms_and_receipt_are_valid_block_kit(lead: Any) -> None:
    messages = [
        render.claimer_dm(lead),
        render.claimer_dm(lead, intro="A manager gave you lead #7."),
        render.submitter_claimed_dm(lead),
        render.receipt(lead, "C0LEADS001"),
        render.receipt(lead, "C0LEADS001", note="⚠️ Possibly the same person as #3."),
    ]
    for message in messages:
        assert message.blocks and len(message.blocks) <= 50
        assert _through_the_models(message.blocks) == message.blocks


@pytest.mark.parametrize(
    "lead",
    [
        make_lead(),
        make_lead(notes=None, title=None, event=None, persona=None, territory=None, company=None),
        make_lead(**CLAIMED_LEAD),
        make_lead(**CLAIMED_LEAD, stage="meeting", stage_at=NOW),
        make_lead(**CLAIMED_LEAD, stage="disqualified", stage_at=NOW, outcome_reason="<No> & b"),
        _longest(),
        _longest(**CLAIMED_LEAD, stage="lost", stage_at=NOW, outcome_reason="&" * 2000),
    ],
    ids=["new", "bare", "claimed", "with a stage", "closed", "longest new", "longest closed"],
)
def test_the_card_is_valid_block_kit(lead: Any) -> None:
    for note in (None, "Possible duplicate of <https://x.example/p1|#3>, owned by <@U0REPB0001>"):
        card = render.lead_card(lead, NOW, note=note)
        assert len(card.blocks) <= 50
        assert _through_the_models(card.blocks) == card.blocks
    select = render_outcomes.outcome_select(lead, versioned=False)
    assert Block.parse({"type": "actions", "elements": [select]}).to_dict()["elements"] == [select]


def test_the_longest_notes_are_split_over_sections_within_the_limit() -> None:
    dm = render.claimer_dm(_longest(**CLAIMED_LEAD))
    notes = [b["text"]["text"] for b in dm.blocks if b["type"] == "section"][2:]
    assert len(notes) == 18  # 10,000 × "&amp;" = 50,000 characters, 2,900 a section
    assert all(len(n) <= render.SECTION_TEXT_MAX for n in notes)
    joined = "".join(notes).removeprefix("*Notes*\n")
    assert joined == "&amp;" * MAX_LENGTHS["notes"]  # never cut inside an entity


def test_a_wrong_block_fails_the_check() -> None:
    """The check can fail: a section over Slack's 3,000 characters does."""
    too_long = render.receipt(make_lead(), "C0LEADS001", note="x" * 3001)
    with pytest.raises(Exception, match="cannot exceed 3000 characters"):
        _through_the_models(too_long.blocks)


def test_esc_short_bounds_the_escaped_text_and_never_cuts_an_entity() -> None:
    assert render.esc_short("R&D", 10) == "R&amp;D"
    assert render.esc_short("&" * 10, 12) == "&amp;&amp;…"  # not "&amp;&amp;&…"
    assert render.esc_short("abcdef", 4) == "abc…"
    for n in range(1, 40):
        cut = render.esc_short("<&>" * 20, n)
        assert len(cut) <= n and cut.endswith("…")
        assert "&" not in cut.rsplit(";", 1)[-1]  # no half entity before the ellipsis


def test_typed_text_inside_leadbots_formatting_is_inert_and_escaped_once() -> None:
    lead = make_lead(name="Bob* _x_ `y` ~z~ <!here> & Co", company="Acme_Corp *Ltd*")
    label = render.lead_label(lead)
    # Only leadbot's own two asterisks, around the name; typed ones are lookalikes.
    assert label.count("*") == 2 and label.startswith("*") and label.index("*", 1) > 30
    assert not any(c in label for c in "`~") and "_x_" not in label
    assert "&lt;!here&gt; &amp; Co" in label and "&amp;amp;" not in label
    assert "(Acme_Corp ∗Ltd∗)" in label  # an underscore inside a word is never italics


def test_the_card_shows_a_few_lines_of_the_notes_however_many_were_typed() -> None:
    notes = "start\n\n\n\n\n" + "line\n" * 300
    card = render.lead_card(make_lead(notes=notes), NOW)
    [shown] = [b["text"]["text"] for b in card.blocks if "*Notes*" in str(b)]
    assert shown == "*Notes*\nstart\n\n" + "line\n" * (render.CARD_NOTES_LINES - 2) + "…"


def test_a_handed_over_lead_at_its_longest_is_valid_and_says_who_handed_it_over() -> None:
    """A Reassign's card: the new owner "assigned … by" the manager, the first claim kept as
    such, with every field at its limit; the nudge's Snooze carries which nudge it is."""
    handed = {"assigned_by": "U0MANAGER1", "assigned_at": NOW + timedelta(days=3)}
    for lead in (
        _longest(**CLAIMED_LEAD, **handed),
        _longest(**CLAIMED_LEAD, **handed, stage="lost", stage_at=NOW, outcome_reason="&" * 200),
    ):
        card = render.lead_card(lead, NOW)
        assert len(card.blocks) <= 50
        assert _through_the_models(card.blocks) == card.blocks
        shown = str(card.blocks)
        assert f"Assigned to <@{REP_A}>* by <@U0MANAGER1>" in shown
        assert "First claimed" in shown and "Claimed by" not in shown
    nudge = render_outcomes.follow_up_nudge(
        make_lead(**CLAIMED_LEAD, **handed, follow_up_misses=2), NOW + timedelta(days=4)
    )
    assert "assigned to you 1d ago" in nudge.text
    snoozes = [e["value"] for b in nudge.blocks for e in b.get("elements", []) if "value" in e]
    assert snoozes == ["7:1:2", "7:1:2"]
