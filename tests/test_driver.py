"""models.driver: hot INSERTs run through the driver store exactly what SQLAlchemy's own
execution stores, refuse what they cannot convert, and fail as SQLAlchemy errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from bot import leads, outbox
from bot.parsing import LeadInput
from models import Lead, LeadEvent, OutboxItem, driver
from tests.conftest import statements_sent

_LEADS = Lead.__table__
_INSERT_LEAD = _LEADS.insert().returning(_LEADS.c.id)
CEST = timezone(timedelta(hours=2))


def _values(name: str, email: str | None, at: datetime) -> dict[str, Any]:
    data = LeadInput(name=name, email=email, company="Zoë & Co", priority="hot", notes=None)
    return leads.lead_values(data, team_id="T1", submitted_by="U1", now=at, source_channel=None)


def _stored(engine: Engine, model: Any, ids: list[int]) -> list[dict[str, Any]]:
    """Rows as SQLAlchemy reads them, and as the database holds them (SQLite compares stored
    times as text, so the text must match too, not just what it reads back as)."""
    table = model.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(table).where(table.c.id.in_(ids)).order_by(table.c.id))
        typed = [{k: v for k, v in row._mapping.items() if k != "id"} for row in rows]
        raw = conn.exec_driver_sql(
            f"SELECT * FROM {table.name} WHERE id IN ({', '.join(map(str, ids))}) ORDER BY id"
        )
        return typed + [{k: v for k, v in row._mapping.items() if k != "id"} for row in raw]


def test_rows_through_the_driver_read_back_as_through_sqlalchemy(engine: Engine) -> None:
    # An aware time outside UTC, None, non-ASCII text: everything the types convert.
    at = datetime(2026, 11, 26, 16, 30, 5, 123456, tzinfo=CEST)
    with engine.begin() as conn:
        ours = driver.run(conn, _INSERT_LEAD, _values("Zoë", "z@example.com", at)).scalar_one()
        theirs = conn.execute(_INSERT_LEAD, _values("Zoë", "z@example.com", at)).scalar_one()
        events = [leads.event_row(lead, "submitted", "U1", at, note="ü") for lead in (ours, theirs)]
        leads.record_all(conn, [events[0], leads.event_row(ours, "claimed", "U2", at)])
        conn.execute(
            LeadEvent.__table__.insert(), [events[1], leads.event_row(theirs, "claimed", "U2", at)]
        )
        outbox.enqueue(conn, [outbox.card_row(Lead(id=ours), "C1", now=at)])
        conn.execute(
            OutboxItem.__table__.insert(), [outbox.card_row(Lead(id=theirs), "C1", now=at)]
        )

    lead_rows = _stored(engine, Lead, [ours, theirs])
    assert lead_rows[0] == lead_rows[1] and lead_rows[2] == lead_rows[3]
    assert lead_rows[0]["submitted_at"] == at and lead_rows[0]["submitted_at"].tzinfo == UTC
    assert lead_rows[0]["name"] == "Zoë" and lead_rows[0]["notes"] is None
    with engine.connect() as conn:
        table = LeadEvent.__table__
        by_lead = {
            lead: [
                (r.at, r.actor, r.kind, r.detail)
                for r in conn.execute(
                    select(table).where(table.c.lead_id == lead).order_by(table.c.id)
                )
            ]
            for lead in (ours, theirs)
        }
        cards = {
            r.lead_id: (r.kind, r.dedupe_key.split(":")[0], r.channel, r.status, r.next_attempt_at)
            for r in conn.execute(select(OutboxItem.__table__))
        }
    assert by_lead[ours] == by_lead[theirs]
    assert [e[2] for e in by_lead[ours]] == ["submitted", "claimed"]
    assert by_lead[ours][0][3] == '{"note": "\\u00fc"}' and by_lead[ours][1][3] is None
    assert cards[ours] == cards[theirs] == ("card", "card", "C1", "pending", at)
    for model in (LeadEvent, OutboxItem):
        with engine.connect() as conn:
            ids = list(conn.execute(select(model.id).order_by(model.id)).scalars())
        # Ours first, then theirs, as read through the types and then as stored.
        half = len(ids) // 2
        rows = [
            {k: v for k, v in r.items() if k not in ("lead_id", "dedupe_key")}
            for r in _stored(engine, model, ids)
        ]
        typed, stored = rows[: 2 * half], rows[2 * half :]
        assert typed[:half] == typed[half:] and stored[:half] == stored[half:]


def test_a_statement_with_a_literal_gets_its_value(engine: Engine) -> None:
    at = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
    with engine.begin() as conn:
        lead = driver.run(conn, _INSERT_LEAD, _values("Ada", None, at)).scalar_one()
        # "claimed" is written into the statement, not given in the row.
        stmt = insert(LeadEvent).from_select(
            ["lead_id", "at", "actor", "kind"],
            select(
                bindparam("lead"), bindparam("at", type_=LeadEvent.__table__.c.at.type)
            ).add_columns(bindparam("actor"), bindparam("kind_", "claimed")),
        )
        driver.run(conn, stmt, {"lead": lead, "at": at, "actor": "U9"})
        kinds = conn.execute(select(LeadEvent.kind).where(LeadEvent.lead_id == lead)).scalars()
        assert list(kinds) == ["claimed"]


def test_what_cannot_run_through_the_driver_is_refused_before_anything_is_sent(
    engine: Engine,
) -> None:
    at = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
    values = _values("Ada", None, at)
    with engine.connect() as conn:
        with statements_sent(engine) as sent:
            # A column SQLAlchemy would fill in at execution time (status has a default).
            no_status = {k: v for k, v in values.items() if k != "status"}
            with pytest.raises(ValueError, match="status"):
                driver.run(conn, _LEADS.insert(), no_status)
            # A result the driver would hand back unconverted (SQLite: a string, not a time).
            with pytest.raises(ValueError, match="submitted_at"):
                driver.run(conn, _LEADS.insert().returning(_LEADS.c.submitted_at), values)
            # A list of values, expanded at execution time.
            with pytest.raises(ValueError, match="rendered at execution"):
                driver.run(
                    conn,
                    select(_LEADS.c.id).where(_LEADS.c.id.in_(bindparam("ids", expanding=True))),
                    {"ids": [1, 2]},
                )
            # A value written into the SQL text at execution.
            with pytest.raises(ValueError, match="rendered at execution"):
                driver.run(
                    conn,
                    select(_LEADS.c.id).where(
                        _LEADS.c.team_id == bindparam("team", literal_execute=True)
                    ),
                    {"team": "T1"},
                )
            # A row that does not match the statement's first one.
            rows = [values, values | {"extra": 1}]
            with pytest.raises(ValueError, match="exactly the keys"):
                driver.run(conn, _LEADS.insert(), rows)
            with pytest.raises(ValueError, match="no rows"):
                driver.run(conn, _LEADS.insert(), [])
        assert sent == []
        assert conn.scalar(select(_LEADS.c.id)) is None


def test_a_driver_error_is_a_sqlalchemy_error_without_the_parameters(engine: Engine) -> None:
    """The handlers catch SQLAlchemyError to tell the person; logs must not carry contacts."""
    at = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
    with engine.begin() as conn:
        lead = driver.run(conn, _INSERT_LEAD, _values("Ada", "ada@example.com", at)).scalar_one()
        outbox.enqueue(conn, [outbox.card_row(Lead(id=lead), "C1", now=at)])
    with pytest.raises(IntegrityError) as caught, engine.begin() as conn:
        # The card's dedupe key: a lead never gets two.
        row = outbox.card_row(Lead(id=lead), "C1", now=at) | {"payload": "ada@example.com"}
        outbox.enqueue(conn, [row])
    assert "ada@example.com" not in str(caught.value)
    assert "hidden" in str(caught.value)
    with engine.connect() as conn:  # the first card alone, untouched
        assert list(conn.scalars(select(OutboxItem.lead_id))) == [lead]


def test_the_engine_sees_each_statement_with_its_parameters(engine: Engine) -> None:
    at = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
    with statements_sent(engine, "INSERT") as sent, engine.begin() as conn:
        lead = driver.run(conn, _INSERT_LEAD, _values("Ada", None, at)).scalar_one()
        leads.record_all(conn, [leads.event_row(lead, "submitted", "U1", at)] * 2)
    assert len(sent) == 2
    assert sent[0][0].startswith("INSERT INTO leads")
    assert sent[1][0].startswith("INSERT INTO lead_events")
    assert len(sent[1][1]) == 2  # both events, in one executemany
