"""The Slack app manifest: paste it at api.slack.com/apps → Create New App → From a manifest."""

from __future__ import annotations

import json

SCOPES = (
    "commands",
    "chat:write",
    "chat:write.public",
    "im:write",
    # Card recovery after a crash mid-post reads the leads channel's recent history.
    "channels:history",
    "groups:history",
    # SALES_USERGROUP: who may claim.
    "usergroups:read",
)


def manifest_yaml(url: str | None = None, *, name: str = "leadbot") -> str:
    """Socket Mode without a URL; HTTP mode (`URL/slack/events`) with one."""
    endpoint = None
    if url:
        base = url.rstrip("/")
        endpoint = base if base.endswith("/slack/events") else f"{base}/slack/events"
    # Double-quoted, JSON-escaped: a YAML string whatever the URL holds (`: `, ` #`, quotes),
    # where a plain scalar would end at a comment or stop the manifest from parsing.
    quoted = json.dumps(endpoint, ensure_ascii=False) if endpoint else ""
    command_url = f"\n      url: {quoted}" if endpoint else ""
    interactivity_url = f"\n    request_url: {quoted}" if endpoint else ""
    events_url = f"\n    request_url: {quoted}" if endpoint else ""
    scopes = "".join(f"\n      - {s}" for s in SCOPES)
    return f"""\
# Slack app manifest for leadbot ({"HTTP mode: " + quoted if endpoint else "Socket Mode"}).
# Create the app from it at https://api.slack.com/apps → Create New App → From a manifest.
display_information:
  name: {name}
  description: Hands event leads from field marketing to sales, with claims, reminders and digests.
  background_color: "#1d3557"
features:
  app_home:
    home_tab_enabled: true
    messages_tab_enabled: true
    messages_tab_read_only_enabled: false
  bot_user:
    display_name: {name}
    always_online: true
  slash_commands:
    - command: /lead{command_url}
      description: Submit a lead for sales to claim (no text opens a form)
      usage_hint: "Jane Doe, jane@acme.example, Acme Corp, hot, #SaaStr2026, wants a demo"
      should_escape: false
oauth_config:
  scopes:
    bot:{scopes}
settings:
  event_subscriptions:{events_url}
    bot_events:
      - app_home_opened
  interactivity:
    is_enabled: true{interactivity_url}
  org_deploy_enabled: false
  socket_mode_enabled: {"false" if endpoint else "true"}
  token_rotation_enabled: false
"""
