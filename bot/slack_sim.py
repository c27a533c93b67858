"""Send requests to the app exactly as Slack does: signed slash commands, interactions, events.

`SlackSim` builds the bodies Slack sends (form-encoded slash commands, `payload=<json>`
interactions, JSON Events API callbacks), signs them with the app's signing secret the way
Slack does (`v0:{timestamp}:{body}`, HMAC-SHA256) and POSTs them over real HTTP. It never
raises on 4xx/5xx; tests inspect the returned `Response`.

`SocketSim` sends the same requests to an app connected in Socket Mode (to the emulator's
WebSocket), as the envelopes Slack sends there, and answers with the app's ack.

Only the stdlib and slack_sdk are used so the module can ship inside the package.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPSConnection
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from slack_sdk.signature import SignatureVerifier

from bot import slack_limits
from bot.slack_socket import SocketLink

JsonDict = dict[str, Any]

# What Slack's own HTTP client identifies as; some apps log or check it.
SLACK_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"

# Element types whose state Slack reports under something other than "value".
_SINGLE_OPTION = {"static_select", "external_select", "radio_buttons"}
_MULTI_OPTION = {"multi_static_select", "multi_external_select", "checkboxes"}
_SELECTED_KEY = {
    "users_select": "selected_user",
    "multi_users_select": "selected_users",
    "conversations_select": "selected_conversation",
    "multi_conversations_select": "selected_conversations",
    "channels_select": "selected_channel",
    "multi_channels_select": "selected_channels",
    "datepicker": "selected_date",
    "timepicker": "selected_time",
    "datetimepicker": "selected_date_time",
    "rich_text_input": "rich_text_value",
}


@dataclass
class Response:
    """The app's answer to one simulated Slack request."""

    status: int
    headers: dict[str, str]
    body: str
    request_body: bytes = field(default=b"", repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def header(self, name: str) -> str | None:
        """A response header, case-insensitively."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    def json(self) -> Any:
        """The body parsed as JSON; None for an empty body (a bare ack); ValueError otherwise."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ValueError(
                f"response body is not JSON (HTTP {self.status}, "
                f"Content-Type {self.header('Content-Type')!r}): {self.body[:200]!r}"
            ) from exc


def slack_escape(text: str) -> str:
    """Escape text the way Slack does before sending it to apps (only &, < and >)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def option(value: Any) -> JsonDict:
    """A select/checkbox option: `"v"`, `("Text", "v")` or a full option dict."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple):
        text, val = value
    else:
        text = val = value
    return {"text": {"type": "plain_text", "text": str(text), "emoji": True}, "value": str(val)}


def element_state(element_type: str, value: Any) -> JsonDict:
    """One element's entry in `view.state.values`, shaped the way Slack reports that type.

    A Mapping `value` is taken as the raw state (the type is added if missing).
    """
    if isinstance(value, Mapping):
        return {"type": element_type, **value}
    state: JsonDict = {"type": element_type}
    if element_type in _SINGLE_OPTION:
        state["selected_option"] = None if value is None else option(value)
    elif element_type in _MULTI_OPTION:
        state["selected_options"] = [option(v) for v in value or []]
    elif element_type in _SELECTED_KEY:
        state[_SELECTED_KEY[element_type]] = value
    else:
        # plain_text_input, email_text_input, url_text_input, number_input...
        state["value"] = value
    return state


def state_values(fields: Mapping[str, Any]) -> JsonDict:
    """Build `view.state.values` from a compact spec.

    `{"name": ("name_input", "plain_text_input", "Jane")}` → block `name`, action `name_input`.
    A 2-tuple `(action_id, value)` means a plain_text_input. A Mapping is taken as the raw
    `{action_id: state}` of that block, so raw and compact entries can be mixed.
    """
    values: JsonDict = {}
    for block_id, spec in fields.items():
        if isinstance(spec, Mapping):
            values[block_id] = {k: dict(v) for k, v in spec.items()}
            continue
        if not isinstance(spec, tuple) or len(spec) not in (2, 3):
            raise ValueError(
                f"state for block {block_id!r} must be (action_id, type, value), "
                f"(action_id, value) or a raw mapping, got {spec!r}"
            )
        if len(spec) == 2:
            action_id, element_type, value = spec[0], "plain_text_input", spec[1]
        else:
            action_id, element_type, value = spec
        values[block_id] = {action_id: element_state(element_type, value)}
    return values


def _find_element(blocks: Any, action_id: str) -> tuple[str | None, JsonDict | None]:
    """The block_id and element carrying `action_id` in a message's blocks, if any."""
    for block in blocks or []:
        if not isinstance(block, Mapping):
            continue
        candidates = list(block.get("elements") or [])
        if isinstance(block.get("accessory"), Mapping):
            candidates.append(block["accessory"])
        if isinstance(block.get("element"), Mapping):
            candidates.append(block["element"])
        for element in candidates:
            if isinstance(element, Mapping) and element.get("action_id") == action_id:
                return block.get("block_id"), dict(element)
    return None, None


def _message_parts(message: Any) -> tuple[JsonDict | None, str | None, str | None]:
    """(message dict, channel, ts) from a dict or an emulator `Message`-like object."""
    if message is None:
        return None, None, None
    if isinstance(message, Mapping):
        data = dict(message)
        return data, data.get("channel"), data.get("ts")
    to_dict = getattr(message, "to_dict", None)
    if callable(to_dict):
        return to_dict(), getattr(message, "channel", None), getattr(message, "ts", None)
    raise TypeError(f"message must be a dict or have to_dict(), got {type(message).__name__}")


class SlackSim:
    """Plays Slack's side of the HTTP conversation with the app under test."""

    def __init__(
        self,
        app_url: str,
        signing_secret: str,
        team_id: str = "T0LEADBOT",
        *,
        team_domain: str = "leadbot-emulator",
        api_app_id: str = "A0LEADBOT",
        bot_user_id: str = "U0LEADBOT",
        verification_token: str = "leadbot-sim-verification-token",
        timeout: float = 10.0,
        response_url_for: Callable[[str], str] | None = None,
        user_names: Mapping[str, str] | None = None,
        channel_names: Mapping[str, str] | None = None,
        on_refused: Callable[[str, str, list[str], Any], None] | None = None,
    ) -> None:
        """`response_url_for(name)` mints response URLs (e.g. `SlackEmulator.response_url`);
        without it, fake `https://hooks.slack.com/...` URLs are sent, as Slack would.

        `on_refused(method, error, messages, body)` hears of each ack Slack would refuse (a
        message or view over Block Kit's limits), e.g. `SlackEmulator.note_refusal`."""
        parts = urlsplit(app_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"app_url must be an http(s) URL, got {app_url!r}")
        self.app_url = app_url
        self.signing_secret = signing_secret
        self.team_id = team_id
        self.team_domain = team_domain
        self.api_app_id = api_app_id
        self.bot_user_id = bot_user_id
        self.verification_token = verification_token
        self.timeout = timeout
        self.response_url_for = response_url_for
        self.user_names = dict(user_names or {})
        self.channel_names = dict(channel_names or {})
        self.on_refused = on_refused
        self._parts = parts
        self._seq = itertools.count(1)

    # ----------------------------------------------------------------- transport

    def raw(
        self,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
        sign: bool = True,
        timestamp: int | str | None = None,
        secret: str | None = None,
    ) -> Response:
        """POST `body` as-is: signed (unless `sign=False`) with an optional timestamp/secret."""
        sent: dict[str, str] = {
            "Content-Type": content_type,
            "User-Agent": SLACK_USER_AGENT,
            "Accept": "application/json,*/*",
        }
        if sign:
            ts = str(int(time.time()) if timestamp is None else timestamp)
            sent["X-Slack-Request-Timestamp"] = ts
            sent["X-Slack-Signature"] = self.signature(body, ts, secret)
        sent.update(headers or {})
        conn_cls = HTTPSConnection if self._parts.scheme == "https" else HTTPConnection
        conn = conn_cls(self._parts.hostname or "", self._parts.port, timeout=self.timeout)
        path = self._parts.path or "/"
        if self._parts.query:
            path += "?" + self._parts.query
        try:
            conn.request("POST", path, body=body, headers=sent)
            resp = conn.getresponse()
            data = resp.read()
            charset = resp.headers.get_content_charset() or "utf-8"
            response = Response(
                status=resp.status,
                headers=dict(resp.getheaders()),
                body=data.decode(charset, errors="replace"),
                request_body=body,
            )
        finally:
            conn.close()
        if self.on_refused is not None:
            self._check_ack(response)
        return response

    def _check_ack(self, response: Response) -> None:
        """An ack carrying a message (a slash command's answer) or a view (`response_action`
        update/push) is held to Block Kit's limits, as Slack holds it."""
        hear = self.on_refused
        try:
            body = response.json() if response.status == 200 else None
        except ValueError:
            return
        if hear is None or not isinstance(body, dict):
            return
        if isinstance(body.get("view"), dict):
            errors = slack_limits.view_errors(body["view"])
            error = "invalid_arguments"
        else:
            blocks = body.get("blocks")
            errors = slack_limits.message_errors(blocks if isinstance(blocks, list) else None)
            error = "invalid_blocks"
            if not errors and len(str(body.get("text") or "")) > slack_limits.MESSAGE_TEXT:
                errors = [f"text over {slack_limits.MESSAGE_TEXT:,} characters was truncated"]
                error = "message_truncated"
        if errors:
            hear("ack", error, errors, body)

    def signature(self, body: bytes | str, timestamp: int | str, secret: str | None = None) -> str:
        """The `X-Slack-Signature` value Slack would send for `body` at `timestamp`."""
        key = self.signing_secret if secret is None else secret
        ts = str(timestamp)
        try:
            generated = SignatureVerifier(key).generate_signature(timestamp=ts, body=body)
        except (UnicodeDecodeError, ValueError):
            generated = None  # non-UTF-8 body or empty secret: sign the bytes directly
        if generated is not None:
            return generated
        raw = body.encode("utf-8") if isinstance(body, str) else body
        base = b"v0:" + ts.encode("ascii") + b":" + raw
        return "v0=" + hmac.new(key.encode("utf-8"), base, hashlib.sha256).hexdigest()

    def _post_form(
        self,
        fields: list[tuple[str, str]],
        *,
        headers: Mapping[str, str] | None = None,
        timestamp: int | str | None = None,
        secret: str | None = None,
    ) -> Response:
        body = urlencode(fields).encode("utf-8")
        return self.raw(
            body,
            "application/x-www-form-urlencoded",
            headers=headers,
            timestamp=timestamp,
            secret=secret,
        )

    def _post_payload(
        self, payload: JsonDict, *, timestamp: int | str | None, secret: str | None
    ) -> Response:
        # Interactions arrive as a form with a single compact-JSON `payload` field.
        encoded = json.dumps(payload, separators=(",", ":"))
        return self._post_form([("payload", encoded)], timestamp=timestamp, secret=secret)

    # ----------------------------------------------------------------- id helpers

    def _next(self) -> int:
        return next(self._seq)

    def new_trigger_id(self) -> str:
        """A fresh trigger_id shaped like Slack's (`<n>.<n>.<hex>`)."""
        return f"{int(time.time())}{self._next():04d}.{self._next()}.{secrets.token_hex(16)}"

    def new_response_url(self, kind: str = "commands") -> str:
        name = f"{kind}-{self._next()}"
        if self.response_url_for is not None:
            return self.response_url_for(name)
        return (
            f"https://hooks.slack.com/{kind}/{self.team_id}/{self._next()}/{secrets.token_hex(12)}"
        )

    def user_name(self, user_id: str) -> str:
        return self.user_names.get(user_id, user_id.lower())

    def channel_name(self, channel_id: str) -> str:
        if channel_id in self.channel_names:
            return self.channel_names[channel_id]
        if channel_id.startswith("D"):
            return "directmessage"
        if channel_id.startswith("G"):
            return "privategroup"
        return channel_id.lower()

    def _user(self, user_id: str, team_id: str) -> JsonDict:
        name = self.user_name(user_id)
        return {"id": user_id, "username": name, "name": name, "team_id": team_id}

    def _base_payload(
        self, kind: str, user_id: str, team_id: str | None, trigger_id: str | None
    ) -> JsonDict:
        team = team_id or self.team_id
        return {
            "type": kind,
            "user": self._user(user_id, team),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "trigger_id": trigger_id or self.new_trigger_id(),
            "team": {"id": team, "domain": self.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
        }

    # ----------------------------------------------------------------- slash commands

    def slash_command(
        self,
        text: str,
        user_id: str,
        channel_id: str = "C0EVENTS01",
        command: str = "/lead",
        trigger_id: str | None = None,
        response_url: str | None = None,
        *,
        escape: bool = True,
        channel_name: str | None = None,
        team_id: str | None = None,
        timestamp: int | str | None = None,
        secret: str | None = None,
        **extra: str,
    ) -> Response:
        """POST a slash command; `text` is HTML-escaped like Slack unless `escape=False`.

        `extra` adds (or overrides) form fields.
        """
        fields: dict[str, str] = {
            "token": self.verification_token,
            "team_id": team_id or self.team_id,
            "team_domain": self.team_domain,
            "channel_id": channel_id,
            "channel_name": channel_name or self.channel_name(channel_id),
            "user_id": user_id,
            "user_name": self.user_name(user_id),
            "command": command,
            "text": slack_escape(text) if escape else text,
            "api_app_id": self.api_app_id,
            "is_enterprise_install": "false",
            "response_url": response_url or self.new_response_url("commands"),
            "trigger_id": trigger_id or self.new_trigger_id(),
        }
        fields.update({k: str(v) for k, v in extra.items()})
        return self._post_form(list(fields.items()), timestamp=timestamp, secret=secret)

    # ----------------------------------------------------------------- interactions

    def action(
        self,
        user_id: str,
        action: Mapping[str, Any],
        *,
        block_id: str | None = None,
        channel_id: str | None = None,
        message_ts: str | None = None,
        message: Any = None,
        view: Mapping[str, Any] | None = None,
        ephemeral: bool = False,
        response_url: str | None = None,
        trigger_id: str | None = None,
        team_id: str | None = None,
        state: Mapping[str, Any] | None = None,
        timestamp: int | str | None = None,
        secret: str | None = None,
    ) -> Response:
        """POST a `block_actions` payload carrying one raw `action` dict.

        With `view`, the action comes from a modal/App Home (view container, no response_url);
        otherwise from a message. `message` may be a dict or an emulator `Message`, which also
        supplies the default channel, ts and the block_id holding `action_id`.
        """
        msg, msg_channel, msg_ts = _message_parts(message)
        act: JsonDict = dict(action)
        if "action_id" not in act:
            raise ValueError("action needs an action_id")
        found_block, element = _find_element(
            (view or {}).get("blocks") if view is not None else (msg or {}).get("blocks"),
            act["action_id"],
        )
        act.setdefault("block_id", block_id or found_block or "leadbot_sim_block")
        if element is not None:
            act.setdefault("type", element.get("type"))
            if "text" in element:
                act.setdefault("text", element["text"])
        act.setdefault("action_ts", f"{time.time():.6f}")
        payload = self._base_payload("block_actions", user_id, team_id, trigger_id)
        if view is not None:
            view_data = dict(view)
            view_data.setdefault("state", {"values": dict(state or {})})
            payload["container"] = {"type": "view", "view_id": view_data.get("id")}
            payload["view"] = view_data
        else:
            channel = channel_id or msg_channel or "C0EVENTS01"
            ts = message_ts or msg_ts or f"{time.time():.6f}"
            payload["container"] = {
                "type": "message",
                "message_ts": ts,
                "channel_id": channel,
                "is_ephemeral": ephemeral,
            }
            payload["channel"] = {"id": channel, "name": self.channel_name(channel)}
            if msg is not None:
                msg.pop("channel", None)  # Slack's message objects in payloads carry no channel
                payload["message"] = msg
            payload["state"] = {"values": dict(state or {})}
            payload["response_url"] = response_url or self.new_response_url("actions")
        payload["actions"] = [act]
        return self._post_payload(payload, timestamp=timestamp, secret=secret)

    def block_action(
        self,
        user_id: str,
        action_id: str,
        value: str,
        *,
        block_id: str | None = None,
        channel_id: str | None = None,
        message_ts: str | None = None,
        message: Any = None,
        view: Mapping[str, Any] | None = None,
        response_url: str | None = None,
        trigger_id: str | None = None,
        team_id: str | None = None,
        timestamp: int | str | None = None,
        secret: str | None = None,
    ) -> Response:
        """A button click: `block_actions` with one `button` action."""
        return self.action(
            user_id,
            {"action_id": action_id, "value": value, "type": "button"},
            block_id=block_id,
            channel_id=channel_id,
            message_ts=message_ts,
            message=message,
            view=view,
            response_url=response_url,
            trigger_id=trigger_id,
            team_id=team_id,
            timestamp=timestamp,
            secret=secret,
        )

    def select(
        self,
        user_id: str,
        action_id: str,
        value: Any,
        *,
        select_type: str = "static_select",
        **kwargs: Any,
    ) -> Response:
        """A select menu choice; `value` is `"v"`, `("Text", "v")` or an option dict."""
        act: JsonDict = {"action_id": action_id, "type": select_type}
        act.update({k: v for k, v in element_state(select_type, value).items() if k != "type"})
        return self.action(user_id, act, **kwargs)

    def view_submission(
        self,
        user_id: str,
        view: Mapping[str, Any],
        values: Mapping[str, Any],
        *,
        callback_id: str | None = None,
        private_metadata: str | None = None,
        trigger_id: str | None = None,
        team_id: str | None = None,
        timestamp: int | str | None = None,
        secret: str | None = None,
    ) -> Response:
        """Submit a modal. `view` is the view as opened (its id/callback_id/private_metadata are
        used unless overridden); `values` is a `state_values` spec or raw state values."""
        team = team_id or self.team_id
        view_id = view.get("id") or f"V0SIM{self._next():05d}"
        sent_view: JsonDict = {
            "type": "modal",
            "blocks": [],
            "clear_on_close": False,
            "notify_on_close": False,
            "external_id": "",
            "previous_view_id": None,
            "root_view_id": view_id,
            **dict(view),
        }
        sent_view.update(
            {
                "id": view_id,
                "team_id": team,
                "app_id": self.api_app_id,
                "app_installed_team_id": team,
                "bot_id": view.get("bot_id") or "B0LEADBOT",
                "callback_id": callback_id
                if callback_id is not None
                else view.get("callback_id", ""),
                "private_metadata": private_metadata
                if private_metadata is not None
                else view.get("private_metadata", ""),
                "state": {"values": state_values(values)},
                "hash": view.get("hash") or f"{int(time.time())}.{secrets.token_hex(4)}",
            }
        )
        payload = self._base_payload("view_submission", user_id, team_id, trigger_id)
        payload["view"] = sent_view
        payload["response_urls"] = []
        return self._post_payload(payload, timestamp=timestamp, secret=secret)

    # ----------------------------------------------------------------- Events API

    def event(
        self,
        event: Mapping[str, Any],
        retry_num: int | None = None,
        *,
        retry_reason: str = "http_timeout",
        event_id: str | None = None,
        team_id: str | None = None,
        timestamp: int | str | None = None,
        secret: str | None = None,
    ) -> Response:
        """POST an `event_callback`. Retries reuse the first attempt's `event_id` on Slack, so
        pass the same `event_id` with `retry_num` to emulate one."""
        team = team_id or self.team_id
        now = time.time()
        inner = dict(event)
        inner.setdefault("event_ts", f"{now:.6f}")
        if inner.get("type") in ("message", "app_mention"):
            inner.setdefault("ts", inner["event_ts"])
        body = {
            "token": self.verification_token,
            "team_id": team,
            "api_app_id": self.api_app_id,
            "event": inner,
            "type": "event_callback",
            "event_id": event_id or f"Ev0SIM{self._next():06d}",
            "event_time": int(now),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": team,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-{secrets.token_hex(16)}",
        }
        headers: dict[str, str] = {}
        if retry_num is not None:
            headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": retry_reason}
        return self.raw(
            json.dumps(body, separators=(",", ":")).encode("utf-8"),
            "application/json",
            headers=headers,
            timestamp=timestamp,
            secret=secret,
        )

    def url_verification(self, challenge: str = "leadbot-challenge") -> Response:
        """The handshake Slack sends when the Request URL is saved."""
        body = {
            "token": self.verification_token,
            "challenge": challenge,
            "type": "url_verification",
        }
        return self.raw(json.dumps(body).encode("utf-8"), "application/json")


class SocketSim(SlackSim):
    """SlackSim for an app in Socket Mode: each request goes to `link` (SlackEmulator.socket_link)
    as the envelope Slack would send, unsigned (the socket is the proof), and the `Response` is
    the app's ack: status 200 with the ack's payload as JSON (empty for a bare ack), or 504 when
    no ack came within `timeout` seconds."""

    def __init__(self, link: SocketLink, team_id: str = "T0LEADBOT", **kwargs: Any) -> None:
        super().__init__("http://socket-mode.invalid/", "", team_id, **kwargs)
        self.link = link

    def raw(
        self,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
        sign: bool = True,
        timestamp: int | str | None = None,
        secret: str | None = None,
    ) -> Response:
        if content_type == "application/json":
            payload = json.loads(body)
            if payload.get("type") != "event_callback":
                raise ValueError(f"Socket Mode sends no {payload.get('type')!r} requests")
            kind = "events_api"
        else:
            fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            if "payload" in fields:
                kind, payload = "interactive", json.loads(fields["payload"])
            else:
                kind, payload = "slash_commands", fields
        retry = {k.lower(): v for k, v in (headers or {}).items()}
        ack = self.link.request(
            kind,
            payload,
            timeout=self.timeout,
            retry_attempt=int(retry["x-slack-retry-num"]) if "x-slack-retry-num" in retry else None,
            retry_reason=retry.get("x-slack-retry-reason"),
        )
        if ack is None:
            return Response(504, {}, "no ack", request_body=body)
        text = json.dumps(ack) if ack else ""
        response = Response(200, {"Content-Type": "application/json"}, text, request_body=body)
        if self.on_refused is not None:
            self._check_ack(response)
        return response
