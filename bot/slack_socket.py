"""Slack's side of Socket Mode, for the loopback emulator (stdlib only, like it).

The app calls `apps.connections.open` with its app-level token and gets a WebSocket URL; the
emulator answers that URL on its own port (plain `ws://`: slack_sdk's client skips TLS on any
port but 443). Over the socket Slack sends `hello`, then envelopes (`slash_commands`,
`interactive`, `events_api`), and the app acks each by its `envelope_id`, with the response
payload when it has one. `SocketLink.request` plays one envelope and waits for that ack.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import socket
import struct
import threading
from typing import Any

JsonDict = dict[str, Any]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's fixed handshake suffix
TEXT, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x8, 0x9, 0xA, 0x0
MAX_FRAME = 16 * 1024 * 1024


class SocketClosed(Exception):
    """The app's connection is gone (closed by it, or by the emulator stopping)."""


def accept_key(key: str) -> str:
    """The `Sec-WebSocket-Accept` answer to a client's `Sec-WebSocket-Key`."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


def encode_frame(opcode: int, data: bytes) -> bytes:
    """One final, unmasked frame (a server never masks)."""
    head = bytes([0x80 | opcode])
    n = len(data)
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + data


def _read_exact(rfile: Any, n: int) -> bytes:
    data = rfile.read(n)
    if data is None or len(data) < n:
        raise SocketClosed("the app closed the connection")
    return data


def read_frame(rfile: Any) -> tuple[int, bytes]:
    """(opcode, payload) of the next frame, unmasked; continuation frames are joined."""
    opcode, parts = None, []
    while True:
        b0, b1 = _read_exact(rfile, 2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", _read_exact(rfile, 2))
        elif n == 127:
            (n,) = struct.unpack("!Q", _read_exact(rfile, 8))
        if n > MAX_FRAME:
            raise SocketClosed(f"frame of {n} bytes is over the emulator's limit")
        mask = _read_exact(rfile, 4) if b1 & 0x80 else None
        data = _read_exact(rfile, n)
        if mask is not None:
            data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
        if b0 & 0x0F != CONTINUATION:
            if b0 & 0x0F in (CLOSE, PING, PONG):  # control frames are never fragmented
                return b0 & 0x0F, data
            opcode = b0 & 0x0F
        parts.append(data)
        if b0 & 0x80:
            return opcode if opcode is not None else TEXT, b"".join(parts)


class SocketLink:
    """One app connection: envelopes go out, acks come back by envelope id."""

    def __init__(self, conn: socket.socket, app_id: str, link_id: int) -> None:
        self.conn = conn
        self.app_id = app_id
        self.link_id = link_id
        self.closed = threading.Event()
        self.received: list[JsonDict] = []  # every JSON message the app sent, in order
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._acks: dict[str, JsonDict] = {}
        self._ids = itertools.count(1)

    def send_json(self, message: JsonDict) -> None:
        self._send(TEXT, json.dumps(message, separators=(",", ":")).encode("utf-8"))

    def _send(self, opcode: int, data: bytes) -> None:
        with self._send_lock:
            try:
                self.conn.sendall(encode_frame(opcode, data))
            except OSError as e:
                self.closed.set()
                raise SocketClosed(str(e)) from None

    def serve(self, rfile: Any) -> None:
        """Say hello, then read the app's frames until it or the emulator closes the link."""
        self.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "debug_info": {"host": "leadbot-emulator", "approximate_connection_time": 18060},
                "connection_info": {"app_id": self.app_id},
            }
        )
        try:
            while True:
                opcode, data = read_frame(rfile)
                if opcode == PING:
                    self._send(PONG, data)
                elif opcode == CLOSE:
                    with contextlib.suppress(SocketClosed):
                        self._send(CLOSE, data[:2])
                    return
                elif opcode == TEXT:
                    self._received(data)
        except (SocketClosed, OSError, ValueError):
            return
        finally:
            self.closed.set()
            with self._cond:
                self._cond.notify_all()

    def _received(self, data: bytes) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return  # Slack ignores what it cannot parse; so does the emulator
        if not isinstance(message, dict):
            return
        with self._cond:
            self.received.append(message)
            envelope = message.get("envelope_id")
            if isinstance(envelope, str):
                self._acks[envelope] = message
                self._cond.notify_all()

    def request(
        self,
        kind: str,
        payload: JsonDict,
        *,
        timeout: float = 3.0,
        accepts_response_payload: bool = True,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
    ) -> JsonDict | None:
        """Send one envelope and wait for its ack: the ack's `payload` ({} for a bare ack), or
        None when no ack came within `timeout` (Slack then tells the user the app did not
        respond)."""
        envelope_id = f"emu-{self.link_id}-{next(self._ids)}"
        message: JsonDict = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        if retry_attempt is not None:
            message["retry_attempt"] = retry_attempt
            message["retry_reason"] = retry_reason or "timeout"
        self.send_json(message)
        with self._cond:
            self._cond.wait_for(
                lambda: envelope_id in self._acks or self.closed.is_set(), timeout=timeout
            )
            ack = self._acks.pop(envelope_id, None)
        if ack is None:
            return None
        body = ack.get("payload")
        return body if isinstance(body, dict) else {}

    def refresh(self) -> None:
        """Ask the app to move to a new connection, as Slack does every few hours: it opens
        one (apps.connections.open again) and drops this one."""
        self.send_json(
            {
                "type": "disconnect",
                "reason": "refresh_requested",
                "debug_info": {"host": "leadbot-emulator"},
            }
        )

    def close(self, *, frame: bool = True) -> None:
        """Close from Slack's side without warning (1001, going away), as when its server
        restarts; `frame=False` ends the TCP connection with no CLOSE frame, as a proxy or a
        load balancer does."""
        if frame:
            with contextlib.suppress(SocketClosed):
                self._send(CLOSE, struct.pack("!H", 1001))
        with contextlib.suppress(OSError):
            self.conn.shutdown(socket.SHUT_RDWR)
        self.closed.set()
