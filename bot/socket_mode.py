"""`leadbot socket`'s handler, and keeping its connection to Slack alive where slack_sdk's own
client does not.

slack_sdk's built-in Socket Mode client (the one Bolt's SocketModeHandler uses) reconnects on its
own only when its monitor notices, every ping interval (10 s in Bolt), and misses two ways a
connection ends; every request Slack sends meanwhile fails for its user. Both are fixed here
from the outside, with the client's public methods.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.socket_mode.internals import run_bolt_app, send_response
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.webhook import WebhookClient

from bot.request_body import MALFORMED, check_text

log = logging.getLogger(__name__)

# Slack tells the user the app did not respond when an envelope is not acknowledged within 3 s
# of being sent. One whose answer is not ready this long after it arrived (a database that
# stopped answering mid-query held a /lead for as long as that lasted: 8 s acks for an 8 s
# freeze; or every worker busy with such ones, when even `/lead help` waited) is acknowledged
# without its answer, and a slash command's answer follows through its response_url.
ACK_DEADLINE = 2.2
# How often the deadline watch looks, while envelopes are being handled.
WATCH_EVERY = 0.05
# An envelope acknowledged late and still not answered after this long is forgotten.
FORGET_AFTER = 3600.0
STILL_WORKING = (
    "⏳ This is taking longer than it should: the database is slow to answer. "
    "I'll say here how it went as soon as it's done."
)


@dataclass
class _Envelope:
    envelope_id: str
    kind: str
    arrived: float
    acked: bool = False  # acknowledged without its answer, once past the deadline


class _AckDeadline:
    """Envelopes from their arrival until acknowledged; one thread acknowledges those still
    unanswered ACK_DEADLINE seconds after they arrived. Arrival is when the connection read
    them, before they wait for one of the client's workers."""

    def __init__(self, client: Any, deadline: float = ACK_DEADLINE) -> None:
        self.client = client
        self.deadline = deadline
        self._lock = threading.Lock()
        self._pending: dict[str, _Envelope] = {}
        self._wake = threading.Event()
        threading.Thread(target=self._watch, name="leadbot-ack-deadline", daemon=True).start()

    def arrived(self, raw: str) -> None:
        """Note an envelope the connection just read (raw JSON text)."""
        if '"envelope_id"' not in raw:  # hello, disconnect: no envelope to acknowledge
            return
        try:
            message = json.loads(raw)
            envelope_id, kind = message["envelope_id"], message.get("type")
        except (ValueError, KeyError, TypeError):
            return  # slack_sdk's own reading of it says what is wrong
        # A modal's submission is left to Slack's own timeout, which keeps the modal and what
        # was typed in it; acknowledged empty, it would close as if its lead were saved.
        if not isinstance(envelope_id, str) or (kind == "interactive" and _submission(message)):
            return
        with self._lock:
            self._pending[envelope_id] = _Envelope(envelope_id, str(kind), time.monotonic())
        self._wake.set()

    def answering(self, envelope_id: str) -> _Envelope | None:
        """Take the envelope out of the watch, for its answer. Returns it if it was already
        acknowledged (its answer is late), else None (answer it as usual)."""
        with self._lock:
            envelope = self._pending.pop(envelope_id, None)
        return envelope if envelope is not None and envelope.acked else None

    def _watch(self) -> None:
        while not self.client.closed:
            if not self._wake.wait(1.0):
                continue
            time.sleep(WATCH_EVERY)
            now = time.monotonic()
            with self._lock:
                due = [
                    e
                    for e in self._pending.values()
                    if not e.acked and now - e.arrived >= self.deadline
                ]
                for e in due:
                    e.acked = True
                # One acknowledged that no worker ever took (slack_sdk could not read it) would
                # stay here for good.
                for key in [k for k, e in self._pending.items() if now - e.arrived > FORGET_AFTER]:
                    del self._pending[key]
                if not any(not e.acked for e in self._pending.values()):
                    self._wake.clear()
            for e in due:
                self._acknowledge(e)

    def _acknowledge(self, envelope: _Envelope) -> None:
        payload = None
        if envelope.kind == "slash_commands":
            payload = {"response_type": "ephemeral", "text": STILL_WORKING}
        try:
            self.client.send_socket_mode_response(
                SocketModeResponse(envelope_id=envelope.envelope_id, payload=payload)
            )
        except Exception as e:  # the connection is gone: Slack sends the envelope again
            log.warning("could not acknowledge a late %s envelope: %s", envelope.kind, e)


def _submission(message: dict[str, Any]) -> bool:
    payload = message.get("payload")
    return isinstance(payload, dict) and payload.get("type") == "view_submission"


class Handler(SocketModeHandler):
    """Bolt's Socket Mode handler, acknowledging every envelope, as `serve` answers every
    request. Bolt's own left unacknowledged an envelope it refused (a payload of the wrong
    shape, which `serve` answers 400) or had no listener for (404), and let a malformed
    payload's exception escape. Slack sends an unacknowledged envelope again, which cannot
    change the answer, and then tells the user the app did not respond.

    Every envelope is acknowledged within ACK_DEADLINE of its arrival, whatever the database
    does (see _AckDeadline); an answer ready later goes to the command's response_url."""

    def __init__(self, app: App, app_token: str | None = None, **kwargs: Any) -> None:
        super().__init__(app, app_token, **kwargs)
        self.deadline = _AckDeadline(self.client)
        enqueue = self.client.enqueue_message

        def enqueue_message(message: str) -> None:
            self.deadline.arrived(message)
            enqueue(message)

        self.client.enqueue_message = enqueue_message

    def handle(self, client: Any, req: SocketModeRequest) -> None:  # type: ignore[override]
        start = time.time()
        try:
            check_text(req.payload)  # parsed by slack_sdk, not by bot.request_body
            response = run_bolt_app(self.app, req)
        except MALFORMED:
            log.warning("refused a malformed %s envelope", req.type)
            response = None
        except Exception as e:  # Bolt's error handler answers a listener's: not reached
            log.error("handling a %s envelope failed: %s", req.type, type(e).__name__, exc_info=e)
            response = None
        late = self.deadline.answering(req.envelope_id)
        if late is not None:
            self._answer_late(late, req, response)
            return
        if response is None or response.status != 200:  # refused or unhandled: still answered
            client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            return
        send_response(client, req, response, start)

    def _answer_late(
        self, envelope: _Envelope, req: SocketModeRequest, response: BoltResponse | None
    ) -> None:
        """The answer to an envelope acknowledged already: a slash command's goes to its
        response_url (the ack said it would); any other's has nowhere to go."""
        took = time.monotonic() - envelope.arrived
        body = _json_body(response)
        url = req.payload.get("response_url") if isinstance(req.payload, dict) else None
        if req.type != "slash_commands" or not body or not isinstance(url, str) or not url:
            log.warning("answered a %s envelope %.1f s after it arrived: too late", req.type, took)
            return
        try:
            timeout = max(1, int(self.app.leadbot.settings.slack_timeout.total_seconds()))  # type: ignore[attr-defined]
            sent = WebhookClient(url, timeout=timeout).send_dict(
                {"response_type": "ephemeral", **body}
            )
            status: object = sent.status_code
        except Exception as e:
            status = type(e).__name__
        if status == 200:
            log.warning(
                "answered a slash command %.1f s after it arrived, through its response_url", took
            )
        else:
            log.error(
                "answered a slash command %.1f s after it arrived, and its response_url "
                "refused the answer (%s)",
                took,
                status,
            )


def _json_body(response: BoltResponse | None) -> dict[str, Any] | None:
    """A listener's answer as Slack would read it in an ack: its JSON object, or its text."""
    if response is None or response.status != 200 or not response.body:
        return None
    try:
        body = json.loads(response.body)
    except ValueError:
        return {"text": response.body}
    return body if isinstance(body, dict) else None


# How often the watchdog looks for a connection the other side has closed.
WATCH_INTERVAL = 0.25


def keep_alive(client: Any) -> None:
    """Reconnect at once when Slack closes the connection, with or without a CLOSE frame."""
    client.on_close_listeners.append(_reconnect_after_close(client))
    threading.Thread(
        target=_watch_for_eof, args=(client,), name="leadbot-socket-watchdog", daemon=True
    ).start()


def _reconnect_after_close(client: Any) -> Callable[[int, str | None], None]:
    """A listener for Slack's CLOSE frame (1001 when its side goes away).

    The client asks for a new connection on a CLOSE before it marks the old one closed, so the
    ask finds it still connected and does nothing, and its monitor noticed up to 10 s later.
    This asks again once the old connection is marked closed."""

    def on_close(code: int, reason: str | None) -> None:
        session = client.current_session

        def reconnect() -> None:
            deadline = time.monotonic() + 2.0
            while session is not None and session.is_active() and time.monotonic() < deadline:
                time.sleep(0.01)
            _reconnect(client)

        threading.Thread(target=reconnect, name="leadbot-socket-reconnect", daemon=True).start()

    return on_close


def _watch_for_eof(client: Any) -> None:
    """Reconnect when the other side closed the connection without a CLOSE frame (a proxy, a
    load balancer or a restart on Slack's side).

    The client then reads an empty result in a loop, at 100% CPU, and only gives up after five
    failed pings at 10 s intervals: about a minute with no connection and a busy CPU."""
    while not client.closed:
        time.sleep(WATCH_INTERVAL)
        session = client.current_session
        sock = getattr(session, "sock", None)
        if sock is None or not closed_by_peer(sock):
            continue
        log.info("Slack's side closed the Socket Mode connection; opening a new one")
        with contextlib.suppress(OSError):
            session.disconnect()
        _reconnect(client)


def _reconnect(client: Any) -> None:
    """Ask the client for a new connection, unless it is stopping. A failure (Slack out of
    reach) is left to the client's monitor, which keeps trying."""
    if client.closed:
        return
    try:
        client.connect_to_new_endpoint()
    except Exception as e:
        log.warning("could not open a new Socket Mode connection: %s", type(e).__name__)


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the other side has closed `sock` and nothing is left to read.

    Peeks at the TCP stream through a duplicate of the descriptor: a TLS socket refuses recv
    flags, and the client's own reader holds the socket's lock."""
    try:
        with socket.fromfd(sock.fileno(), sock.family, sock.type) as raw:
            return raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:  # open, nothing to read
        return False
    except ConnectionError:  # reset: closed as surely as by a FIN
        return True
    except (OSError, ValueError):  # closed by the client meanwhile (fileno -1): its business
        return False
