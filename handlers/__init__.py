"""Slack listeners: thin adapters that parse a payload, ack fast and call the core."""

from __future__ import annotations

from slack_bolt import App

from handlers import actions, commands, edit, events, outcomes, views


def register(app: App) -> None:
    commands.register(app)
    actions.register(app)
    outcomes.register(app)
    views.register(app)
    edit.register(app)
    events.register(app)
