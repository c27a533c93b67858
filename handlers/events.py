"""Events API: the App Home tab."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App

from bot import home
from bot.services import Services
from handlers.common import later, services_of

log = logging.getLogger(__name__)


def register(app: App) -> None:
    app.event("app_home_opened")(home_opened)


def home_opened(event: dict[str, Any], context: Any) -> None:
    services = services_of(context)
    user = str(event.get("user") or "")
    if event.get("tab", "home") != "home" or not user:
        return
    # Bolt acks the event when this returns; the view is built and published after.
    later(services, _publish_home, services, user)


def _publish_home(services: Services, user: str) -> None:
    try:
        services.slack.publish_home(user, home.home_view(services, user))
    except Exception as e:
        log.warning("home tab not published: %s", type(e).__name__)
