"""The whole bot in one process against the loopback Slack: used by tests, the demo and the
sandbox. Requests reach the real HTTP endpoint signed, exactly as Slack sends them.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from slack_bolt import App

from bot import db
from bot.app import build_services, create_app
from bot.clock import DeliveryTime, FakeClock
from bot.delivery import make_web_client
from bot.server import Server
from bot.services import Services
from bot.settings import Settings, load_settings
from bot.slack_emulator import SlackEmulator
from bot.slack_sim import SlackSim
from models import make_engine

# Drawn per process: a secret written in the source would let any page that reached the local
# bot's port (DNS rebinding) sign requests to it.
LOCAL_SECRET = secrets.token_hex(16)


def local_settings(
    database_url: str, slack_url: str, overrides: Mapping[str, str] = ()
) -> Settings:
    env = {
        "SLACK_BOT_TOKEN": "xoxb-local-token",
        "SLACK_SIGNING_SECRET": LOCAL_SECRET,
        "SLACK_API_URL": slack_url,
        "DATABASE_URL": database_url,
        "WEB_THREADS": "4",
    }
    env.update(dict(overrides))
    return load_settings(env, dotenv_path=None)


@dataclass
class LocalBot:
    """The app behind its real server, the emulator it talks to, and a signed-request sender."""

    services: Services
    server: Server
    sim: SlackSim
    slack: SlackEmulator
    clock: FakeClock
    app: App

    def settle(self, timeout: float = 15.0) -> None:
        """Wait until every acked request has finished and the outbox has delivered what is
        due (retries a few seconds away included)."""
        if not self.app.leadbot_executor.wait_idle(timeout):  # type: ignore[attr-defined]
            raise TimeoutError(f"listeners still busy after {timeout} s")
        if not self.services.notes.wait_idle(timeout):
            raise TimeoutError(f"private notes still being sent after {timeout} s")
        if not self.services.outbox.wait_quiet(timeout):
            raise TimeoutError(f"outbox still delivering after {timeout} s")

    def run_job(self, name: str) -> str:
        from jobs import JOBS

        summary = JOBS[name].run(self.services)
        self.settle()
        return summary

    def stop(self, settle_timeout: float = 15.0) -> None:
        """Stop everything it started, even when the listeners are stuck."""
        try:
            self.settle(settle_timeout)
        finally:
            self.services.outbox.stop()
            self.server.stop()
            self.app.leadbot_executor.shutdown(wait=True, cancel_futures=True)  # type: ignore[attr-defined]
            self.services.notes.shutdown(wait=True, cancel_futures=True)
            self.services.engine.dispose()


def start_local_bot(
    database_url: str,
    slack: SlackEmulator,
    clock: FakeClock,
    overrides: Mapping[str, str] = (),
    *,
    migrate: bool = False,
    port: int = 0,
    delivery_time: DeliveryTime | None = None,
) -> LocalBot:
    overrides = dict(overrides)
    channel = overrides.get("LEADS_CHANNEL", "#leads")
    if channel.startswith("#"):
        # LEADS_CHANNEL takes an id, as in a real workspace: ask the emulator for this one's.
        overrides["LEADS_CHANNEL"] = slack.channel_id(channel)
    settings = local_settings(database_url, slack.url, overrides)
    engine = make_engine(settings.sqlalchemy_url)
    if migrate:
        db.upgrade(engine)
    services = build_services(
        settings,
        client=make_web_client(settings.slack_bot_token, settings.slack_api_url, timeout=5),
        engine=engine,
        clock=clock,
        delivery_time=delivery_time,
    )
    app = create_app(settings, services=services)
    services.outbox.start()
    server = Server(app, host="127.0.0.1", port=port, threads=settings.web_threads).start()
    sim = SlackSim(
        server.url,
        settings.slack_signing_secret,
        team_id=slack.team_id,
        response_url_for=slack.response_url,
        on_refused=slack.note_refusal,
    )
    return LocalBot(services=services, server=server, sim=sim, slack=slack, clock=clock, app=app)
