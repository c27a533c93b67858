"""The one path by which leadbot talks to Slack's Web API.

Retries live here (slack_sdk's retry handlers): a 429 waits its Retry-After, 5xx and connection
errors back off and retry. Errors retrying cannot fix surface as `DeliveryError` with Slack's
error code and a sentence a person can act on.
"""

from __future__ import annotations

import io
import logging
import select
import threading
import time
from http.client import HTTPConnection, HTTPSConnection
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.ids import is_digits
from bot.render import Message

log = logging.getLogger(__name__)
# Slack asks for seconds, a minute at most; a larger Retry-After is taken as an hour, so that
# one bogus header cannot hold a channel's cards back for days (or overflow a datetime).
MAX_RETRY_AFTER = 3600.0

# What a person can do about each error Slack may answer.
ADVICE = {
    "channel_not_found": (
        "the leads channel does not exist or the bot cannot see it — check LEADS_CHANNEL"
    ),
    "not_in_channel": "the bot is not in the leads channel — type /invite @leadbot there",
    "is_archived": "the leads channel is archived — unarchive it or change LEADS_CHANNEL",
    "invalid_auth": "Slack rejected the bot token — check SLACK_BOT_TOKEN",
    "not_authed": "no bot token was sent — check SLACK_BOT_TOKEN",
    "account_inactive": "the bot token belongs to a deactivated app or user — reinstall the app",
    "token_revoked": "the bot token was revoked — reinstall the app and update SLACK_BOT_TOKEN",
    "missing_scope": "the Slack app lacks a permission — reinstall it from `leadbot manifest`",
    "ratelimited": "Slack is rate-limiting the bot — it will retry",
    "message_not_found": "the card was deleted from the channel",
    "ok_without_ts": "Slack took the card but did not say where it is — look for it in the channel",
}
# A card refused as malformed goes out as a short card (bot.outbox); these words are for one
# whose short card was refused too.
_MALFORMED_ADVICE = (
    "Slack refused the card's content, even a short form of it — whoever runs leadbot needs "
    "this code to fix it"
)


# Errors that may go away by themselves: retry with backoff. Anything else Slack answers is a
# configuration or content problem that retrying cannot fix. chat.postMessage documents its
# rate limit as `rate_limited` (HTTP 200), the 429 answer as `ratelimited`: both pass.
TRANSIENT = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
    }
)
# Errors someone fixes outside leadbot: /invite the bot, unarchive the channel, reinstall the
# app. A card that hits one is tried again, ever more slowly (bot.outbox), so that it goes out
# once that is done rather than never.
FIXABLE = frozenset(
    {
        "not_in_channel",
        "channel_not_found",
        "is_archived",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "missing_scope",
    }
)
# Errors that say the message itself is malformed, not where it goes nor who sends it: Block
# Kit Slack will not take (a limit it changed, text nobody foresaw), text too long, arguments
# or encoding it cannot read, metadata it refuses. The same request is refused again however
# often it is sent, but a smaller message may pass: a refused card goes out as a short card
# (bot.outbox). Channel, token and permission errors (FIXABLE, `restricted_action`, …) are
# not here: a smaller card would be refused just the same.
MALFORMED = frozenset(
    {
        "invalid_blocks",
        "invalid_blocks_format",
        "msg_blocks_too_long",
        "msg_too_long",
        "no_text",
        "invalid_arguments",
        "invalid_array_arg",
        "invalid_arg_name",
        "invalid_charset",
        "invalid_form_data",
        "invalid_json",
        "json_not_object",
        "invalid_attachments",
        "too_many_attachments",
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "metadata_too_large",
    }
)
# The MALFORMED errors about the message's metadata: the short card goes without it.
METADATA_REFUSED = frozenset(
    {"invalid_metadata_format", "invalid_metadata_schema", "metadata_too_large"}
)
ADVICE.update(dict.fromkeys(MALFORMED, _MALFORMED_ADVICE))
# An `ok` post whose answer names no ts: the message went out, but nothing says which it is.
NO_TS = "ok_without_ts"


class DeliveryError(Exception):
    def __init__(self, code: str, *, retry_after: float | None = None) -> None:
        self.code = code
        self.retry_after = retry_after
        super().__init__(code)

    @property
    def transient(self) -> bool:
        return (
            self.code in TRANSIENT
            or self.code.startswith("http_5")
            or self.code.startswith("connection_error")
        )

    @property
    def fixable(self) -> bool:
        return self.code in FIXABLE

    @property
    def malformed(self) -> bool:
        return self.code in MALFORMED

    @property
    def advice(self) -> str:
        return ADVICE.get(self.code, f"Slack answered {self.code!r}")


# Pages of channel history read to find a card (200 messages each): a busy channel's last hour.
HISTORY_PAGES = 10

# A connection idle longer than this is not reused: a NAT or load balancer may have dropped it
# without a word, and a request sent on it would wait out the whole timeout.
IDLE_REUSE_S = 30.0


class _Held:
    """One thread's open connection to one host."""

    def __init__(self, key: tuple[str, str], conn: HTTPConnection) -> None:
        self.key = key
        self.conn = conn
        self.used = time.monotonic()


class KeepAliveWebClient(WebClient):
    """A WebClient that keeps one HTTP/1.1 connection open per thread and reuses it.

    slack_sdk sends each call through urllib, which opens a new connection every time: a TCP
    and a TLS handshake per card, refresh and DM. This overrides only that last step; building
    the request, retry handlers and parsing the answer stay slack_sdk's. Behind a proxy (the
    `proxy` argument, or HTTPS_PROXY / HTTP_PROXY, which slack_sdk reads into it), it leaves the
    call to urllib.
    """

    def __init__(self, *args: Any, idle_reuse: float = IDLE_REUSE_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle_reuse = idle_reuse
        self._local = threading.local()

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or self.proxy is not None:
            return super()._perform_urllib_http_request_internal(url, req)
        held = self._connection(scheme, parts.netloc)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            held.conn.request("POST", path, body=req.data, headers=dict(req.header_items()))
        except OSError as e:
            self._drop()
            raise URLError(e) from e  # as urllib raises it, so the retry handlers see the same
        try:
            resp = held.conn.getresponse()
            body = resp.read()
        except BaseException:
            self._drop()
            raise
        held.used = time.monotonic()
        if not 200 <= resp.status < 300:
            raise HTTPError(url, resp.status, resp.reason, resp.msg, io.BytesIO(body))
        if resp.msg.get_content_type() == "application/gzip":
            return {"status": resp.status, "headers": resp.msg, "body": body}
        charset = resp.msg.get_content_charset() or "utf-8"
        return {"status": resp.status, "headers": resp.msg, "body": body.decode(charset)}

    def _connection(self, scheme: str, netloc: str) -> _Held:
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None and (
            held.key != (scheme, netloc)
            or time.monotonic() - held.used > self.idle_reuse
            or _closed_by_peer(held.conn)
        ):
            self._drop()
            held = None
        if held is None:
            conn = (
                HTTPSConnection(netloc, timeout=self.timeout, context=self.ssl)
                if scheme == "https"
                else HTTPConnection(netloc, timeout=self.timeout)
            )
            held = self._local.held = _Held((scheme, netloc), conn)
        return held

    def _drop(self) -> None:
        held: _Held | None = getattr(self._local, "held", None)
        self._local.held = None
        if held is not None:
            held.conn.close()


def _closed_by_peer(conn: HTTPConnection) -> bool:
    """An idle connection with something to read has been closed (or spoken on) by the server:
    a request sent on it would fail, so open a new one instead."""
    sock = conn.sock
    if sock is None:
        return False  # http.client reconnects by itself
    try:
        if hasattr(select, "poll"):  # not select(): it fails on descriptors past 1023
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def make_web_client(
    token: str, base_url: str, *, timeout: int = 10, retries: bool = True
) -> WebClient:
    """A WebClient; with `retries`, slack_sdk's handlers retry 429 (after Retry-After), 5xx and
    connection errors. The outbox uses one without: it schedules its own retries."""
    handlers = (
        [
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=3),
            ServerErrorRetryHandler(max_retry_count=2),
        ]
        if retries
        else []
    )
    return KeepAliveWebClient(
        token=token, base_url=base_url, timeout=timeout, retry_handlers=handlers
    )


class Slack:
    """Thin wrapper: every outgoing call of the bot, with errors normalised."""

    def __init__(self, client: WebClient) -> None:
        self.client = client

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        # The typed client methods pick each API method's encoding (JSON or form) for us.
        fn = getattr(self.client, method.replace(".", "_"))
        try:
            response = fn(**kwargs)
        except SlackApiError as e:
            status = e.response.status_code
            code = "ratelimited" if status == 429 else str(e.response.get("error") or "")
            if status >= 500 or not code:
                code = f"http_{status}"
            retry_after = None
            if status == 429:
                header = (e.response.headers or {}).get("Retry-After") or (
                    e.response.headers or {}
                ).get("retry-after")
                header = header[0] if isinstance(header, list) else header
                header = str(header or "").strip()
                retry_after = min(float(header), MAX_RETRY_AFTER) if is_digits(header) else 1.0
            raise DeliveryError(code, retry_after=retry_after) from None
        except (SlackClientError, OSError) as e:  # timeouts, refused connections, …
            raise DeliveryError(f"connection_error: {type(e).__name__}") from None
        return dict(response.data) if isinstance(response.data, dict) else {}

    def post(
        self,
        channel: str,
        message: Message,
        *,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[str, str]:
        """Post; returns (channel id, ts)."""
        args: dict[str, Any] = {"channel": channel, "text": message.text, "unfurl_links": False}
        if message.blocks:
            args["blocks"] = message.blocks
        if thread_ts:
            args["thread_ts"] = thread_ts
        if metadata:
            args["metadata"] = metadata
        data = self._call("chat.postMessage", **args)
        # The posted message carries its ts too, should the top-level field be missing.
        message = data.get("message")
        ts = data.get("ts") or (message.get("ts") if isinstance(message, dict) else None)
        return str(data.get("channel") or channel), str(ts or "")

    def update(self, channel: str, ts: str, message: Message) -> None:
        self._call("chat.update", channel=channel, ts=ts, text=message.text, blocks=message.blocks)

    def dm_channel(self, user_id: str) -> str:
        """The id (D…) of the bot's DM with this person: what editing a DM needs."""
        data = self._call("conversations.open", users=user_id)
        return str((data.get("channel") or {}).get("id") or "")

    def dm(self, user_id: str, message: Message) -> None:
        # Posting to a user id lands in the bot's DM with them (no conversations.open round trip).
        self.post(user_id, message)

    def delete(self, channel: str, ts: str) -> None:
        self._call("chat.delete", channel=channel, ts=ts)

    def ephemeral(self, channel: str, user_id: str, text: str) -> None:
        self._call("chat.postEphemeral", channel=channel, user=user_id, text=text)

    def permalink(self, channel: str, ts: str) -> str | None:
        try:
            data = self._call("chat.getPermalink", channel=channel, message_ts=ts)
        except DeliveryError as e:
            log.warning("permalink failed: %s", e.code)
            return None
        return data.get("permalink")

    def history(self, channel: str, *, oldest: float) -> list[dict[str, Any]]:
        """Top-level messages since `oldest`, newest first, with their metadata (to find a card
        we may have posted): page after page, HISTORY_PAGES at most. One page of 200 missed a
        card with more than 200 messages after it, and the card was posted twice."""
        found: list[dict[str, Any]] = []
        cursor = None
        for _ in range(HISTORY_PAGES):
            data = self._call(
                "conversations.history",
                channel=channel,
                oldest=f"{oldest:.6f}",
                limit=200,
                include_all_metadata=True,
                **({"cursor": cursor} if cursor else {}),
            )
            messages = data.get("messages")
            if isinstance(messages, list):
                found.extend(m for m in messages if isinstance(m, dict))
            meta = data.get("response_metadata")
            cursor = meta.get("next_cursor") if isinstance(meta, dict) else None
            if not data.get("has_more") or not cursor:
                break
        return found

    def usergroup_members(self, usergroup: str) -> list[str]:
        data = self._call("usergroups.users.list", usergroup=usergroup)
        users = data.get("users")
        return [str(u) for u in users] if isinstance(users, list) else []

    def publish_home(self, user_id: str, view: dict[str, Any]) -> None:
        self._call("views.publish", user_id=user_id, view=view)

    def views_open(self, trigger_id: str, view: dict[str, Any]) -> None:
        self._call("views.open", trigger_id=trigger_id, view=view)
