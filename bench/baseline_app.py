"""The baseline: a bare Bolt app whose listeners only ack, behind the same server as leadbot.

Run as `python -m bench.baseline_app --port P` with the same environment as `leadbot serve`:
the same waitress settings and thread count (WEB_THREADS, leadbot's default), the same CPU
placement (PIN_CPU), the same listener executor size and Bolt mode (`process_before_response`,
bot.app.PROCESS_BEFORE_RESPONSE), the same request verification and the same `auth.test` at
start-up. What it lacks is exactly leadbot's own work (parsing, the database, rendering, the
outbox, the scheduler), so leadbot's figure / this figure is leadbot's overhead.

With BASELINE_WRITES=1 it is the *persisting floor* instead: the same bare app, plus the least
database work leadbot's contract asks for, through leadbot's own engine settings (models.
make_engine: pool, SQLite writer lock, PostgreSQL lock timeout) on DATABASE_URL. `/lead` inserts
one row and commits before it acks with the row's number, as leadbot's receipt must; Claim acks,
then writes one row on a pool of WORK_THREADS, as leadbot does after its ack. No parsing,
rendering, outbox, events or logging per request: what no app on this stack can go below.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot.affinity import pin_process
from bot.app import PROCESS_BEFORE_RESPONSE, WORK_THREADS
from bot.ids import Action, View
from bot.server import create_waitress
from bot.settings import PIN_AUTO, SETTINGS_HELP, database_url

StartResponse = Callable[..., Any]


def process_before_response() -> bool:
    """leadbot's Bolt mode, unless BASELINE_PROCESS_BEFORE_RESPONSE (0 or 1) says otherwise: the
    bench also measures Bolt's default mode (0), where Bolt polls every 10 ms for the ack."""
    override = os.environ.get("BASELINE_PROCESS_BEFORE_RESPONSE")
    return PROCESS_BEFORE_RESPONSE if override is None else override == "1"


def build() -> App:
    client = WebClient(
        token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"], timeout=10
    )
    app = App(
        client=client,
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        token_verification_enabled=True,
        process_before_response=process_before_response(),
        raise_error_for_unhandled_request=False,
        logger=logging.getLogger("baseline.bolt"),
        # leadbot's listener pool (its after-ack work pool): the same size here.
        listener_executor=ThreadPoolExecutor(max_workers=WORK_THREADS),
    )

    def only_ack(ack: Ack) -> None:
        ack()

    if os.environ.get("BASELINE_WRITES") == "1":
        save, claim = _floor_listeners(os.environ["DATABASE_URL"])
        app.command("/lead")(save)
        app.action(Action.CLAIM.value)(claim)
    else:
        app.command("/lead")(only_ack)
        app.action(Action.CLAIM.value)(only_ack)
    app.action(Action.RELEASE.value)(only_ack)
    app.view(View.NEW_LEAD.value)(only_ack)
    return app


def _floor_listeners(url: str) -> tuple[Callable[..., None], Callable[..., None]]:
    """`/lead` and Claim listeners for the persisting floor (see the module's docstring)."""
    from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    from models import make_engine

    engine = make_engine(database_url(url))
    metadata = MetaData()
    leads = Table(
        "bench_floor_leads",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("team_id", String(32)),
        Column("user_id", String(32)),
        Column("text", Text),
        Column("at", DateTime(timezone=True)),
    )
    # Clicks name leadbot's lead ids, which the floor never stored: their own table, so that
    # a click's id never collides with the next id PostgreSQL's sequence hands a /lead.
    claims = Table(
        "bench_floor_claims",
        metadata,
        Column("lead_id", Integer, primary_key=True, autoincrement=False),
        Column("owner_id", String(32)),
    )
    metadata.create_all(engine)
    save_row = leads.insert().returning(leads.c.id)
    upsert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    # A click writes one row: a conditional claim, as leadbot's UPDATE … WHERE status = 'new'.
    stmt = upsert(claims)
    claim_row = stmt.on_conflict_do_update(
        index_elements=[claims.c.lead_id],
        set_={"owner_id": stmt.excluded.owner_id},
        where=claims.c.owner_id.is_(None),
    )
    work = ThreadPoolExecutor(max_workers=WORK_THREADS)

    def save(ack: Ack, command: dict[str, Any]) -> None:
        values = {
            "team_id": command.get("team_id"),
            "user_id": command.get("user_id"),
            "text": command.get("text"),
            "at": datetime.now(UTC),
        }
        with engine.begin() as conn:
            number = conn.execute(save_row, values).scalar_one()
        ack(f"Lead #{number} saved.")

    def write_claim(lead_id: int, user: str) -> None:
        with engine.begin() as conn:
            conn.execute(claim_row, {"lead_id": lead_id, "owner_id": user})

    def claim(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        lead_id = int(str(action.get("value", "0")).partition(":")[0] or 0)
        work.submit(write_claim, lead_id, str(body.get("user", {}).get("id")))

    return save, claim


def wsgi(app: App) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    slack = SlackRequestHandler(app, path="/slack/events")

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            data = json.dumps({"ok": True}).encode()
            start_response(
                "200 OK",
                [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
            )
            return [data]
        return slack(environ, start_response)

    return application


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    args = p.parse_args()
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    threads = int(os.environ.get("WEB_THREADS") or SETTINGS_HELP["WEB_THREADS"][0] or 16)
    # leadbot's CPU placement too (before the threads start, as `leadbot serve` does): where
    # `auto` puts a lone leadbot, without holding the CPU, as leadbot runs beside it.
    pin_process(
        os.environ.get("PIN_CPU") or SETTINGS_HELP["PIN_CPU"][0] or PIN_AUTO, claiming=False
    )
    server = create_waitress(wsgi(build()), host=args.host, port=args.port, threads=threads)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C, when run by hand
        server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
