"""`leadbot socket`'s handler, and keeping its connection to Slack alive where slack_sdk's own
client does not.

slack_sdk's built-in Socket Mode client (the one Bolt's SocketModeHandler uses) reconnects on its
own only when its monitor notices, every ping interval (10 s in Bolt), and misses two ways a
connection ends; every request Slack sends meanwhile fails for its user. Both are fixed here
from the outside, with the client's public methods.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.socket_mode.internals import run_bolt_app, send_response
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.request_body import MALFORMED, check_text

log = logging.getLogger(__name__)


class Handler(SocketModeHandler):
    """Bolt's Socket Mode handler, acknowledging every envelope, as `serve` answers every
    request. Bolt's own left unacknowledged an envelope it refused (a payload of the wrong
    shape, which `serve` answers 400) or had no listener for (404), and let a malformed
    payload's exception escape. Slack sends an unacknowledged envelope again, which cannot
    change the answer, and then tells the user the app did not respond."""

    def handle(self, client: Any, req: SocketModeRequest) -> None:  # type: ignore[override]
        start = time.time()
        try:
            check_text(req.payload)  # parsed by slack_sdk, not by bot.request_body
            response = run_bolt_app(self.app, req)
        except MALFORMED:
            log.warning("refused a malformed %s envelope", req.type)
            response = None
        if response is None or response.status != 200:  # refused or unhandled: still answered
            client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            return
        send_response(client, req, response, start)


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
