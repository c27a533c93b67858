"""A loopback Slack Web API server for tests, the demo and benchmarks.

`SlackEmulator` listens on 127.0.0.1 and answers `POST /api/<method>` the way slack.com does, so
the real `slack_sdk.WebClient` (and Bolt on top of it) can talk to it unchanged via
`WebClient(base_url=emulator.url)`. Every call is recorded; messages, views and DMs are kept in
an in-memory store; faults (5xx, 429, `ok: false`, hangs), latency and per-channel rate limits
can be injected to exercise the bot's error handling.

Payloads real Slack would refuse are refused the same way (bot.slack_limits: Block Kit's
limits, duplicate ids, over-long text) and listed in `refusals`, so a test can tell that the app
sent nothing Slack would reject.

Only the stdlib and slack_sdk are used so the module can ship inside the package.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from bot import slack_limits
from bot.slack_socket import SocketLink, accept_key

JsonDict = dict[str, Any]
MethodHandler = Callable[[JsonDict], JsonDict]

# Fields Slack accepts as JSON-encoded strings in form bodies (and tolerates in JSON bodies).
# Decoding them lets tests compare structures instead of serialised text.
JSON_STRING_FIELDS = frozenset(
    {"blocks", "attachments", "view", "metadata", "unfurls", "user_auth_blocks"}
)

PERMALINK_HOST = "https://leadbot-emulator.slack.com"

_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


@dataclass
class Call:
    """One request to `/api/<method>` and how the emulator answered it."""

    method: str
    args: JsonDict
    at: float
    status: int = 200
    error: str | None = None
    # Which injected behaviour shaped the answer: "status", "error", "hang", "ratelimit",
    # "answer" or None.
    fault: str | None = None
    token: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass
class Message:
    """A message as the emulated workspace stores it."""

    channel: str
    ts: str
    text: str = ""
    blocks: list[Any] | None = None
    thread_ts: str | None = None
    user: str | None = None
    ephemeral_for: str | None = None
    updated_count: int = 0
    attachments: list[Any] | None = None
    metadata: JsonDict | None = None
    bot_id: str | None = None

    def to_dict(self) -> JsonDict:
        """The message object as Slack returns it in API answers and interaction payloads."""
        out: JsonDict = {"type": "message", "text": self.text, "user": self.user, "ts": self.ts}
        if self.bot_id:
            out["bot_id"] = self.bot_id
        if self.blocks is not None:
            out["blocks"] = copy.deepcopy(self.blocks)
        if self.attachments is not None:
            out["attachments"] = copy.deepcopy(self.attachments)
        if self.metadata is not None:
            out["metadata"] = copy.deepcopy(self.metadata)
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if self.updated_count:
            out["edited"] = {"user": self.user, "ts": self.ts}
        return out


@dataclass
class ResponsePost:
    """One POST to a `response_url` handed out by `SlackEmulator.response_url`."""

    name: str
    url: str
    body: Any
    raw: str
    at: float
    status: int = 200


@dataclass
class _Fault:
    status: int | None
    error: str | None
    retry_after: int | None
    hang: float | None
    remaining: int
    # Only calls whose args this accepts take the fault (None: every call).
    when: Callable[[JsonDict], bool] | None = None
    # answer(): the JSON answered instead (or, with `applied`, laid over the real answer).
    body: JsonDict | None = None
    applied: bool = False


@dataclass
class _ResponseFault:
    name: str | None
    status: int
    text: str
    remaining: int


class SlackError(Exception):
    """Raised by method handlers to answer `{"ok": false, "error": ...}`; `extra` is added to
    that answer (Slack's `errors`, `response_metadata`)."""

    def __init__(self, error: str, *, refused: list[str] | None = None, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra
        # Set when the payload broke one of Slack's rules: why, for `SlackEmulator.refusals`.
        self.refused = refused


@dataclass
class Refusal:
    """A payload real Slack would have refused (or cut short), as the emulator answered it.

    `method` is the Web API method, "response_url", or the ack SlackSim checked
    ("ack:slash_command", ...); `messages` are Slack's, with JSON pointers."""

    method: str
    error: str
    messages: list[str]
    payload: Any = field(repr=False, default=None)


def _limit_error(error: str, messages: list[str], *, listed: bool) -> SlackError:
    """Slack's answer to a payload over its limits: `invalid_blocks` lists them in `errors` and
    `response_metadata.messages`, views' `invalid_arguments` in `response_metadata` only."""
    extra: JsonDict = {"response_metadata": {"messages": [f"[ERROR] {m}" for m in messages]}}
    if listed:
        extra["errors"] = list(messages)
    return SlackError(error, refused=messages, **extra)


class _RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def _json_reply(payload: Mapping[str, Any], status: int = 200, **headers: str) -> _Reply:
    return _Reply(status, json.dumps(payload).encode("utf-8"), headers=dict(headers))


def _stable_id(prefix: str, key: str) -> str:
    # Derived from the name, so the same "#leads" maps to the same id in every run and every test.
    return prefix + hashlib.sha1(key.encode("utf-8")).hexdigest()[:10].upper()


def _looks_like_id(value: str) -> bool:
    return len(value) >= 2 and value[0] in "CGDUW" and all(ch in _ID_CHARS for ch in value)


def _form_to_dict(text: str) -> JsonDict:
    parsed = parse_qs(text, keep_blank_values=True)
    return {k: v[0] if len(v) == 1 else v for k, v in parsed.items()}


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text or None


def _as_list(value: Any, error: str) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return value
    raise SlackError(error)


def _response_refusal(body: JsonDict) -> Refusal | None:
    """What slack.com would say of a response_url post: HTTP 400 with `invalid_blocks` (or
    `invalid_blocks_format`) for blocks it refuses; text past 40,000 characters is cut."""
    blocks = body.get("blocks")
    if blocks is not None and not isinstance(blocks, list):
        return Refusal(
            "response_url", "invalid_blocks_format", ["blocks is not a JSON array"], body
        )
    errors = slack_limits.message_errors(blocks)
    if errors:
        return Refusal("response_url", "invalid_blocks", errors, copy.deepcopy(body))
    if len(str(body.get("text") or "")) > slack_limits.MESSAGE_TEXT:
        note = f"text over {slack_limits.MESSAGE_TEXT:,} characters was truncated"
        return Refusal("response_url", "message_truncated", [note], copy.deepcopy(body))
    return None


def _checked_blocks(value: Any) -> list[Any] | None:
    """A message's `blocks` as Slack takes them: not a JSON array is `invalid_blocks_format`,
    one that breaks Block Kit's rules `invalid_blocks` with Slack's reasons."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise SlackError("invalid_blocks_format", refused=["blocks is not a JSON array"])
    errors = slack_limits.message_errors(value)
    if errors:
        raise _limit_error("invalid_blocks", errors, listed=True)
    return value


def parse_api_request(
    headers: Mapping[str, str], query: str, body: bytes
) -> tuple[JsonDict, str | None, str | None]:
    """Decode a Web API request like Slack: returns (args, token, error).

    The token comes from `Authorization: Bearer` or a `token` form/query field; a token inside a
    JSON body is ignored, as on slack.com.
    """
    form: JsonDict = _form_to_dict(query) if query else {}
    args: JsonDict = {}
    error: str | None = None
    media_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if body:
        if media_type == "application/json":
            try:
                data = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                data = None
            if isinstance(data, dict):
                args.update(data)
            else:
                error = "invalid_json"
        elif media_type in ("application/x-www-form-urlencoded", ""):
            try:
                form.update(_form_to_dict(body.decode("utf-8")))
            except UnicodeDecodeError:
                error = "invalid_form_data"
        else:
            # Multipart file uploads are not emulated.
            error = "invalid_form_data"
    form_token = form.pop("token", None)
    args = {**form, **args}
    token: str | None = None
    auth = headers.get("Authorization") or ""
    if auth[:7].lower() == "bearer ":
        token = auth[7:].strip() or None
    if token is None and isinstance(form_token, str) and form_token.strip():
        token = form_token.strip()
    for key in JSON_STRING_FIELDS & args.keys():
        value = args[key]
        if isinstance(value, str) and value[:1] in ("[", "{"):
            # Undecodable text is left as is; the method then answers invalid_* like Slack does.
            with contextlib.suppress(ValueError):
                args[key] = json.loads(value)
    return args, token, error


def _matches(predicate: Callable[[Any], bool] | None, item: Any) -> bool:
    if predicate is None:
        return True
    try:
        return bool(predicate(item))
    except (LookupError, TypeError, AttributeError):
        # `lambda c: c.args["text"] == ...` must not blow up on calls that lack the field.
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # server_close() would otherwise join every keep-alive connection thread and hang stop().
    block_on_close = False
    request_queue_size = 128
    emulator: SlackEmulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-answer (timeouts, stop()) are expected; stay silent on stderr.
        return


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, a keep-alive client's delayed ACK
    # would hold the body ~40 ms. Slack's servers answer without that stall.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()
        self.server.emulator._track_connection(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.emulator._track_connection(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        if urlsplit(self.path).path.rstrip("/") == "/link":
            self._socket_mode()
            return
        self._dispatch()

    def _socket_mode(self) -> None:
        """The WebSocket URL apps.connections.open hands out: upgrade, then serve the link."""
        self.close_connection = True  # afterwards, nothing more is read as HTTP
        if self._foreign_host():
            return
        key = self.headers.get("Sec-WebSocket-Key")
        if (self.headers.get("Upgrade") or "").lower() != "websocket" or not key:
            self._send(_Reply(400, b"expected a WebSocket upgrade", "text/plain; charset=utf-8"))
            return
        emu = self.server.emulator
        if emu._take_link_refusal():
            self._send(_Reply(503, b"service unavailable", "text/plain; charset=utf-8"))
            return
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept_key(key))
        self.end_headers()
        self.wfile.flush()
        link = emu._open_link(self.connection)
        try:
            link.serve(self.rfile)
        finally:
            emu._close_link(link)

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # Drain trailers up to the blank line ending the chunked body.
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            size = int(length)
        except ValueError:
            return None
        return self.rfile.read(size) if size >= 0 else None

    def _foreign_host(self) -> bool:
        """A Host header naming anything but this machine's loopback: a browser sent it after a
        hostile page's name was rebound to 127.0.0.1 (DNS rebinding), to read what the emulator
        holds (the sandbox's leads, contact details in the claim DMs). Answered 421, unread."""
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        # An absolute URL in the request line is a client using this as its HTTP proxy (tests
        # of the proxy setting), which browsers never send to a page's host.
        proxied = self.path.startswith(("http://", "https://"))
        if not host or proxied or name in ("127.0.0.1", "localhost", "[::1]"):
            return False
        self.close_connection = True
        self._send(_Reply(421, b"misdirected request", "text/plain; charset=utf-8"))
        return True

    def _dispatch(self) -> None:
        if self._foreign_host():
            return
        emu = self.server.emulator
        try:
            body = self._read_body()
        except ValueError:
            body = None
        if body is None:
            self.close_connection = True
            self._send(_Reply(400, b"bad request", "text/plain; charset=utf-8"))
            return
        url = urlsplit(self.path)
        reply: _Reply | None
        if url.path.startswith("/api/"):
            method = unquote(url.path[len("/api/") :]).strip("/")
            reply = emu._handle_api(method, self.headers, url.query, body)
        elif url.path.startswith("/response/") and self.command == "POST":
            name = unquote(url.path[len("/response/") :])
            reply = emu._handle_response(name, self.headers, body)
        else:
            reply = _Reply(404, b"not found", "text/plain; charset=utf-8")
        if reply is None:
            # The emulator is stopping: drop the connection like a dying server would.
            self.close_connection = True
            return
        self._send(reply)

    def _send(self, reply: _Reply) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            # Always sized, so HTTP/1.1 keep-alive clients know where the answer ends.
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


@dataclass
class Gate:
    """Calls held by SlackEmulator.hold: `arrived` is set when the first one comes in, and they
    are answered once `release()` is called."""

    method: str
    when: Callable[[JsonDict], bool] | None = None
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


class SlackEmulator:
    """An in-process fake of slack.com's Web API, reachable over real HTTP on 127.0.0.1."""

    def __init__(
        self,
        team_id: str = "T0LEADBOT",
        bot_user_id: str = "U0LEADBOT",
        port: int = 0,
        *,
        bot_id: str = "B0LEADBOT",
        app_id: str = "A0LEADBOT",
        team_domain: str = "leadbot-emulator",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.team_domain = team_domain
        self._port = port
        self._tls = tls  # a server context: answer over HTTPS, as Slack does
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._conn_lock = threading.Condition()
        self._connections: set[socket.socket] = set()
        self._opened = 0  # connections accepted since start, for checking clients reuse them
        # One condition guards all state, so recording a call and storing its effects is atomic
        # and wait_for() wakes only once both are visible.
        self._cond = threading.Condition(threading.RLock())
        self._ts_base = int(time.time())
        self._seq = 0
        self._methods: dict[str, MethodHandler] = {
            "api.test": lambda a: {"args": a},
            "apps.connections.open": self._apps_connections_open,
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.open": self._conversations_open,
            "conversations.info": self._conversations_info,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
        }
        self._custom: dict[str, MethodHandler] = {}
        # Socket Mode: the apps' open WebSocket links, newest last (kept across reset()).
        self._links: list[SocketLink] = []
        self._link_ids = 0
        self._link_refusals = 0
        self._reset_state()

    def _reset_state(self) -> None:
        self._calls: list[Call] = []
        self._responses: list[ResponsePost] = []
        self._messages: dict[tuple[str, str], Message] = {}
        self._channel_ids: dict[str, str] = {}
        self._channel_names: dict[str, str] = {}
        self._dm_by_user: dict[str, str] = {}
        self._user_by_dm: dict[str, str] = {}
        self._views: dict[str, JsonDict] = {}
        self._modals: dict[str, str] = {}
        self._homes: dict[str, str] = {}
        self._exchanged_triggers: set[str] = set()
        self._usergroups: dict[str, list[str]] = {}
        self._users: dict[str, JsonDict] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._response_faults: list[_ResponseFault] = []
        self._gates: list[Gate] = []
        self._latency = 0.0
        self._rate: tuple[float, int] | None = None
        self._buckets: dict[str, tuple[float, float]] = {}
        self._stats = {"calls": 0, "errors": 0, "faults": 0, "ratelimited": 0, "responses": 0}
        self._internal_errors: list[str] = []
        self._refusals: list[Refusal] = []

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> SlackEmulator:
        """Bind and serve in a daemon thread; returns self for chaining."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.emulator = self
        if self._tls is not None:
            # Handshakes happen in each connection's thread (setup), not in the accepting one.
            server.socket = self._tls.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = server
        self._port = server.server_address[1]
        # A short poll interval keeps stop() fast (shutdown waits for the next poll).
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"slack-emulator-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release hung/slow answers and close open keep-alive connections."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        self.drop_connections(wait=False)
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> SlackEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("SlackEmulator is not started; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """Base URL for `WebClient(base_url=...)`; the trailing slash matters to urljoin."""
        return f"{self._origin('http')}/api/"

    def response_url(self, name: str) -> str:
        """A URL to hand the app as a slash command / interaction `response_url`."""
        return f"{self._origin('http')}/response/{quote(name, safe='')}"

    def _origin(self, scheme: str) -> str:
        """scheme://host:port; "http" and "ws" gain their "s" when the emulator speaks TLS."""
        return f"{scheme}{'s' if self._tls else ''}://127.0.0.1:{self.port}"

    # ----------------------------------------------------------------- Socket Mode

    def _open_link(self, conn: socket.socket) -> SocketLink:
        with self._cond:
            self._link_ids += 1
            link = SocketLink(conn, self.app_id, self._link_ids)
            self._links.append(link)
            self._cond.notify_all()
        return link

    def _close_link(self, link: SocketLink) -> None:
        with self._cond:
            if link in self._links:
                self._links.remove(link)
            self._cond.notify_all()

    def refuse_socket_links(self, times: int = 1) -> None:
        """Answer the next `times` WebSocket upgrades with 503, as Slack's socket endpoint does
        in an outage (or a proxy that lets no WebSocket through)."""
        with self._cond:
            self._link_refusals = times

    def _take_link_refusal(self) -> bool:
        with self._cond:
            if self._link_refusals <= 0:
                return False
            self._link_refusals -= 1
            return True

    def socket_link(self, timeout: float = 10.0) -> SocketLink:
        """The newest open Socket Mode link, waiting up to `timeout` for an app to connect."""
        with self._cond:
            self._cond.wait_for(
                lambda: any(not link.closed.is_set() for link in self._links), timeout=timeout
            )
            open_links = [link for link in self._links if not link.closed.is_set()]
        if not open_links:
            raise TimeoutError(f"no app connected in Socket Mode within {timeout}s")
        return open_links[-1]

    @property
    def socket_links(self) -> int:
        """How many apps are connected in Socket Mode now."""
        with self._cond:
            return sum(not link.closed.is_set() for link in self._links)

    def drop_connections(self, *, wait: bool = True) -> None:
        """Close every open connection, as a server does with keep-alive ones left idle; with
        `wait`, return once their handlers are done (so clients have seen them close)."""
        with self._conn_lock:
            connections = set(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if wait:
            with self._conn_lock:
                self._conn_lock.wait_for(lambda: not connections & self._connections, timeout=5)

    def _track_connection(self, conn: socket.socket, *, add: bool) -> None:
        with self._conn_lock:
            if add:
                self._connections.add(conn)
                self._opened += 1
            else:
                self._connections.discard(conn)
                self._conn_lock.notify_all()

    # ----------------------------------------------------------------- configuration

    def fail(
        self,
        method: str,
        *,
        status: int | None = None,
        times: int = 1,
        error: str | None = None,
        retry_after: int | None = None,
        hang: float | None = None,
        when: Callable[[JsonDict], bool] | None = None,
    ) -> None:
        """Make the next `times` calls to `method` (those whose args `when` accepts) misbehave.

        - default (nothing else given) or `status=5xx`: that HTTP status, small JSON body;
        - `status=429` or `retry_after=N`: HTTP 429, `Retry-After: N` (default 1), `ratelimited`;
        - `error="..."`: HTTP 200 `{"ok": false, "error": ...}`;
        - `hang=seconds`: wait that long first (released by stop()); alone, the call is then
          answered and applied normally, as when Slack is slow but the post did go through.
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        if status is None and error is None and hang is None:
            status = 429 if retry_after is not None else 500
        if status == 429 and retry_after is None:
            retry_after = 1
        fault = _Fault(status, error, retry_after, hang, times, when)
        with self._cond:
            self._faults.setdefault(method, []).append(fault)

    def answer(
        self,
        method: str,
        body: Mapping[str, Any],
        *,
        times: int = 1,
        applied: bool = False,
        when: Callable[[JsonDict], bool] | None = None,
    ) -> None:
        """Answer the next `times` calls to `method` (those `when` accepts) with `body`, HTTP
        200: Slack's rarer answers, such as `{"ok": false, "error": "expired_trigger_id"}`.

        With `applied`, the call takes effect as usual and `body` is laid over the usual
        answer, a key set to None removing it: `{"ts": None}` is a post that went out but
        was answered without its ts, `{"warning": "..."}` an `ok` with a warning.
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        fault = _Fault(None, None, None, None, times, when, dict(body), applied)
        with self._cond:
            self._faults.setdefault(method, []).append(fault)

    def fail_responses(
        self,
        status: int = 404,
        text: str = "expired_url",
        *,
        times: int = 1,
        name: str | None = None,
    ) -> None:
        """Refuse the next `times` response_url posts (to `name`, or any) with `status` and a
        bare `text` body, as Slack does with a response_url used too late or too often."""
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._cond:
            self._response_faults.append(_ResponseFault(name, status, text, times))

    def latency(self, seconds: float) -> None:
        """Delay every answer by `seconds` (e.g. 0.3 to emulate Slack's round trip)."""
        with self._cond:
            self._latency = max(0.0, float(seconds))

    def rate_limit(self, per_second: float | None, burst: int = 1) -> None:
        """Token-bucket limit chat.postMessage per channel; `None` or <= 0 turns it off."""
        with self._cond:
            self._rate = (float(per_second), max(1, burst)) if per_second else None
            self._buckets.clear()

    def on(self, method: str, handler: MethodHandler) -> None:
        """Answer `method` with `handler(args)`; its dict is returned (`ok: true` added if absent).

        The handler may raise `SlackError("...")` to answer `ok: false`.
        """
        with self._cond:
            self._custom[method] = handler

    def hold(self, method: str, when: Callable[[JsonDict], bool] | None = None) -> Gate:
        """Keep calls to `method` (those `when` accepts) in flight, unanswered, until the gate
        is released: a slow or hung Slack, at a moment the test chooses. Held calls wait outside
        the emulator's lock, so the test can keep using the emulator meanwhile."""
        gate = Gate(method, when)
        with self._cond:
            self._gates.append(gate)
        return gate

    def set_usergroup(self, usergroup_id: str, user_ids: Iterable[str]) -> None:
        with self._cond:
            self._usergroups[usergroup_id] = list(user_ids)

    def set_user(self, user_id: str, **fields: Any) -> None:
        """Override users.info fields (name, real_name, tz, tz_offset, is_bot, profile...)."""
        with self._cond:
            self._users.setdefault(user_id, {}).update(fields)

    def channel_id(self, channel: str) -> str:
        """The id the emulator uses for `#name`, `name`, a channel id, or a user id (their DM)."""
        with self._cond:
            return self._resolve_channel(channel)

    def dm_channel(self, user_id: str) -> str:
        with self._cond:
            return self._dm_for(user_id)

    def clear(self) -> None:
        """Forget recorded calls and response_url posts; the message/view store is kept."""
        with self._cond:
            self._calls.clear()
            self._responses.clear()

    def reset(self) -> None:
        """Forget everything: calls, store, users, faults, latency and rate limits."""
        with self._cond:
            self._reset_state()
            self._custom.clear()

    # ----------------------------------------------------------------- inspection

    @property
    def calls(self) -> list[Call]:
        with self._cond:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        with self._cond:
            return [c for c in self._calls if c.method == method]

    @property
    def responses(self) -> list[ResponsePost]:
        with self._cond:
            return list(self._responses)

    @property
    def stats(self) -> dict[str, int]:
        with self._cond:
            return dict(self._stats)

    @property
    def connections_opened(self) -> int:
        """How many connections clients have opened since start()."""
        with self._conn_lock:
            return self._opened

    @property
    def refusals(self) -> list[Refusal]:
        """Every payload the app sent that real Slack would have refused or cut short (Block
        Kit limits, duplicate ids, text over 40,000 characters), oldest first. Kept by clear();
        reset() forgets them. Faults injected with fail() or answer() are not listed."""
        with self._cond:
            return list(self._refusals)

    @property
    def internal_errors(self) -> list[str]:
        """Tracebacks of emulator bugs (answered as HTTP 500 `internal_error`)."""
        with self._cond:
            return list(self._internal_errors)

    def messages(self, channel: str | None = None) -> list[Message]:
        """Snapshot of stored messages (ephemeral ones included), oldest first."""
        with self._cond:
            wanted = self._resolve_channel(channel) if channel is not None else None
            found = [m for m in self._messages.values() if wanted is None or m.channel == wanted]
            return [copy.deepcopy(m) for m in sorted(found, key=lambda m: float(m.ts))]

    def message(self, channel: str, ts: str) -> Message | None:
        with self._cond:
            msg = self._messages.get((self._resolve_channel(channel), ts))
            return copy.deepcopy(msg) if msg else None

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The parent (if stored) followed by its replies, oldest first."""
        with self._cond:
            cid = self._resolve_channel(channel)
            found = [
                m
                for m in self._messages.values()
                if m.channel == cid and (m.ts == ts or m.thread_ts == ts)
            ]
            return [copy.deepcopy(m) for m in sorted(found, key=lambda m: float(m.ts))]

    def dms(self, user_id: str) -> list[Message]:
        """Messages in the bot's DM with `user_id`."""
        return self.messages(self.dm_channel(user_id))

    def ephemerals(self, user_id: str | None = None) -> list[Message]:
        return [
            m
            for m in self.messages()
            if m.ephemeral_for and (user_id is None or m.ephemeral_for == user_id)
        ]

    def view(self, view_id: str) -> JsonDict | None:
        with self._cond:
            found = self._views.get(view_id)
            return copy.deepcopy(found) if found else None

    @property
    def modals(self) -> dict[str, JsonDict]:
        """Current state of each modal opened or pushed, by the trigger_id that opened it."""
        with self._cond:
            return {t: copy.deepcopy(self._views[v]) for t, v in self._modals.items()}

    def home(self, user_id: str) -> JsonDict | None:
        """The App Home view last published for `user_id`."""
        with self._cond:
            view_id = self._homes.get(user_id)
            return copy.deepcopy(self._views[view_id]) if view_id else None

    # ----------------------------------------------------------------- waiting

    def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        count: int = 1,
        timeout: float = 5.0,
    ) -> list[Call]:
        """Block until `count` calls to `method` (matching `predicate(call)`) were answered.

        Returns all matching calls; raises AssertionError naming what was awaited and what was
        seen on timeout. A predicate raising LookupError/TypeError/AttributeError is a non-match.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matching = [c for c in self._calls if c.method == method and _matches(predicate, c)]
                if len(matching) >= count:
                    return matching
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    what = f"{count} call(s) to {method}"
                    if predicate is not None:
                        what += f" matching {getattr(predicate, '__name__', predicate)!s}"
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {what}; saw {len(matching)} "
                        f"matching. Calls so far: {self._describe_calls()}"
                    )
                self._cond.wait(remaining)

    def wait_for_response(
        self,
        count: int = 1,
        timeout: float = 5.0,
        *,
        name: str | None = None,
        predicate: Callable[[ResponsePost], bool] | None = None,
    ) -> list[ResponsePost]:
        """Block until `count` response_url posts (optionally to `name`) arrived."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matching = [
                    r
                    for r in self._responses
                    if (name is None or r.name == name) and _matches(predicate, r)
                ]
                if len(matching) >= count:
                    return matching
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(r.name, r.body) for r in self._responses][-10:]
                    target = f" to {name!r}" if name else ""
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {count} response_url post(s)"
                        f"{target}; saw {len(matching)} matching. Posts so far: {seen}"
                    )
                self._cond.wait(remaining)

    def _describe_calls(self, limit: int = 20) -> str:
        if not self._calls:
            return "none"
        parts = []
        for c in self._calls[-limit:]:
            brief = {k: c.args[k] for k in ("channel", "text", "ts", "user") if k in c.args}
            outcome = "ok" if c.ok else f"{c.status} {c.error or ''}".strip()
            parts.append(f"{c.method}({brief}) -> {outcome}")
        more = f" (last {limit} of {len(self._calls)})" if len(self._calls) > limit else ""
        return "; ".join(parts) + more

    # ----------------------------------------------------------------- request handling

    def _pause(self, seconds: float) -> bool:
        """Sleep unless stop() is called meanwhile; False means the emulator is stopping."""
        if seconds <= 0:
            return not self._stopping.is_set()
        return not self._stopping.wait(seconds)

    def _take_fault(self, method: str, args: JsonDict) -> _Fault | None:
        with self._cond:
            queue = self._faults.get(method) or []
            fault = next((f for f in queue if _matches(f.when, args)), None)
            if fault is None:
                return None
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.remove(fault)
            return fault

    def _handle_api(
        self, method: str, headers: Mapping[str, str], query: str, body: bytes
    ) -> _Reply | None:
        arrived = time.time()
        args, token, parse_error = parse_api_request(headers, query, body)
        with self._cond:
            latency = self._latency
        if not self._pause(latency):
            return None
        with self._cond:
            gates = [g for g in self._gates if g.method == method and not g.released.is_set()]
        for gate in gates:
            if _matches(gate.when, args):
                gate.arrived.set()
                while not gate.released.wait(0.05):
                    if self._stopping.is_set():
                        return None
        fault = self._take_fault(method, args)
        if fault is not None and fault.hang and not self._pause(fault.hang):
            return None
        call = Call(method=method, args=args, at=arrived, token=token)
        with self._cond:
            reply = self._answer(call, fault, parse_error)
            self._calls.append(call)
            self._stats["calls"] += 1
            if call.fault in ("status", "error"):
                self._stats["faults"] += 1
            if not call.ok:
                self._stats["errors"] += 1
            self._cond.notify_all()
        return reply

    def _answer(self, call: Call, fault: _Fault | None, parse_error: str | None) -> _Reply:
        if fault is not None and fault.body is not None and not fault.applied:
            call.fault = "answer"
            if fault.body.get("ok") is False:
                call.error = str(fault.body.get("error") or "error")
            return _json_reply(fault.body)
        if fault is not None and (fault.status is not None or fault.error is not None):
            call.fault = "status" if fault.error is None else "error"
            if fault.error is not None:
                call.error = fault.error
                return _json_reply({"ok": False, "error": fault.error}, status=fault.status or 200)
            status = fault.status or 500
            call.status = status
            if status == 429:
                call.error = "ratelimited"
                return _json_reply(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    **{"Retry-After": str(fault.retry_after or 1)},
                )
            call.error = {500: "internal_error", 503: "service_unavailable"}.get(
                status, f"http_{status}"
            )
            return _json_reply({"ok": False, "error": call.error}, status=status)
        if fault is not None and fault.hang:
            call.fault = "hang"
        if parse_error is not None:
            call.error = parse_error
            return _json_reply({"ok": False, "error": parse_error})
        if not call.token:
            call.error = "not_authed"
            return _json_reply({"ok": False, "error": "not_authed"})
        if call.method == "apps.connections.open" and not call.token.startswith("xapp-"):
            call.error = "not_allowed_token_type"  # it takes the app-level token only
            return _json_reply({"ok": False, "error": call.error})
        handler = self._custom.get(call.method) or self._methods.get(call.method)
        if handler is None:
            call.error = "unknown_method"
            return _json_reply({"ok": False, "error": "unknown_method"})
        try:
            # Handlers see None-valued args as absent, like Slack ignores nulls.
            result = handler({k: v for k, v in call.args.items() if v is not None})
        except SlackError as exc:
            call.error = exc.error
            if exc.refused is not None:
                self._refusals.append(
                    Refusal(call.method, exc.error, exc.refused, copy.deepcopy(call.args))
                )
            return _json_reply({"ok": False, "error": exc.error, **exc.extra})
        except _RateLimited as exc:
            call.status, call.error, call.fault = 429, "ratelimited", "ratelimit"
            self._stats["ratelimited"] += 1
            return _json_reply(
                {"ok": False, "error": "ratelimited"},
                status=429,
                **{"Retry-After": str(exc.retry_after)},
            )
        except Exception:
            call.status, call.error = 500, "internal_error"
            self._internal_errors.append(traceback.format_exc())
            return _json_reply({"ok": False, "error": "internal_error"}, status=500)
        out = {"ok": True, **result}
        if fault is not None and fault.body is not None:
            call.fault = "answer"
            out.update(fault.body)
            out = {k: v for k, v in out.items() if v is not None}
        if out.get("ok") is False:
            call.error = str(out.get("error") or "error")
        return _json_reply(out)

    def _handle_response(self, name: str, headers: Mapping[str, str], body: bytes) -> _Reply | None:
        with self._cond:
            latency = self._latency
        if not self._pause(latency):
            return None
        raw = body.decode("utf-8", errors="replace")
        media_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        text = raw
        if media_type == "application/x-www-form-urlencoded":
            text = str(_form_to_dict(raw).get("payload", ""))
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = None
        status = 200 if isinstance(parsed, dict) else 400
        # slack.com answers response_url posts with a bare "ok" (or an error word).
        text_body = b"ok" if status == 200 else b"invalid_payload"
        refused: Refusal | None = None
        if isinstance(parsed, dict):
            refused = _response_refusal(parsed)
            if refused is not None and refused.error != "message_truncated":
                status, text_body = 400, refused.error.encode("utf-8")
        with self._cond:
            if refused is not None:
                self._refusals.append(refused)
            refusal = self._take_response_fault(name)
            if refusal is not None:
                status, text_body = refusal.status, refusal.text.encode("utf-8")
            post = ResponsePost(name, self.response_url(name), parsed, raw, time.time(), status)
            self._responses.append(post)
            self._stats["responses"] += 1
            self._cond.notify_all()
        return _Reply(status, text_body, "text/html; charset=utf-8")

    def note_refusal(self, method: str, error: str, messages: list[str], payload: Any) -> None:
        """Put a refusal on record that was found elsewhere (SlackSim checking an ack)."""
        with self._cond:
            self._refusals.append(Refusal(method, error, list(messages), copy.deepcopy(payload)))

    def _take_response_fault(self, name: str) -> _ResponseFault | None:
        fault = next((f for f in self._response_faults if f.name is None or f.name == name), None)
        if fault is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._response_faults.remove(fault)
        return fault

    # ----------------------------------------------------------------- store helpers (locked)

    def _next_ts(self) -> str:
        # A counter, not the clock, so concurrent posts never collide and always increase.
        self._seq += 1
        seconds, micros = divmod(self._seq, 1_000_000)
        return f"{self._ts_base + seconds}.{micros:06d}"

    def _next_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}0{self._seq:08d}"

    def _resolve_channel(self, channel: Any) -> str:
        value = str(channel or "").strip()
        if not value:
            raise SlackError("channel_not_found")
        if not value.startswith("#") and _looks_like_id(value):
            return self._dm_for(value) if value[0] in "UW" else value
        name = value.lstrip("#").lower()
        if not name:
            raise SlackError("channel_not_found")
        cid = self._channel_ids.get(name)
        if cid is None:
            cid = _stable_id("C", name)
            self._channel_ids[name] = cid
            self._channel_names[cid] = name
        return cid

    def _dm_for(self, user_id: str) -> str:
        dm = self._dm_by_user.get(user_id)
        if dm is None:
            dm = _stable_id("D", user_id)
            self._dm_by_user[user_id] = dm
            self._user_by_dm[dm] = user_id
        return dm

    def _find(self, channel: Any, ts: Any) -> Message:
        msg = self._messages.get((self._resolve_channel(channel), str(ts or "")))
        if msg is None or msg.ephemeral_for:
            raise SlackError("message_not_found")
        return msg

    def _user_object(self, user_id: str) -> JsonDict:
        overrides = copy.deepcopy(self._users.get(user_id, {}))
        is_bot = user_id == self.bot_user_id
        name = overrides.pop("name", "leadbot" if is_bot else user_id.lower())
        real_name = overrides.pop("real_name", "Leadbot" if is_bot else f"User {user_id}")
        profile = {
            "display_name": name,
            "real_name": real_name,
            "email": None if is_bot else f"{name}@example.com",
            **overrides.pop("profile", {}),
        }
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "real_name": real_name,
            "deleted": False,
            "tz": "UTC",
            "tz_label": "Coordinated Universal Time",
            "tz_offset": 0,
            "is_bot": is_bot,
            "is_admin": False,
            "is_app_user": False,
            "profile": profile,
        }
        user.update(overrides)
        return user

    # ----------------------------------------------------------------- Web API methods (locked)

    def _apps_connections_open(self, args: JsonDict) -> JsonDict:
        return {"url": f"{self._origin('ws')}/link/?ticket={self._next_id('T')}"}

    def _auth_test(self, args: JsonDict) -> JsonDict:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": "Leadbot Emulator",
            "user": "leadbot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _message_fields(self, args: JsonDict) -> tuple[str, list[Any] | None, list[Any] | None]:
        text = args.get("text")
        blocks = _checked_blocks(args.get("blocks"))
        attachments = _as_list(args.get("attachments"), "invalid_attachments")
        if not text and not blocks and not attachments:
            raise SlackError("no_text")
        return str(text or ""), blocks, attachments

    def _cut_text(self, method: str, text: str, args: JsonDict) -> tuple[str, JsonDict]:
        """As slack.com: text past MESSAGE_TEXT characters is cut, with a warning (and, here,
        a refusal on record: what was cut is lost to the reader)."""
        if len(text) <= slack_limits.MESSAGE_TEXT:
            return text, {}
        note = (
            "Your message was truncated but still posted. The `text` field accepts up to "
            f"{slack_limits.MESSAGE_TEXT:,} characters."
        )
        self._refusals.append(Refusal(method, "message_truncated", [note], copy.deepcopy(args)))
        warned = {
            "warning": "message_truncated",
            "response_metadata": {
                "warnings": ["message_truncated"],
                "messages": [f"[WARN] {note}"],
            },
        }
        return text[: slack_limits.MESSAGE_TEXT], warned

    def _take_token(self, channel: str) -> None:
        if self._rate is None:
            return
        per_second, burst = self._rate
        now = time.monotonic()
        tokens, last = self._buckets.get(channel, (float(burst), now))
        tokens = min(float(burst), tokens + (now - last) * per_second)
        if tokens >= 1.0:
            self._buckets[channel] = (tokens - 1.0, now)
            return
        self._buckets[channel] = (tokens, now)
        # Slack sends whole seconds; never 0, or clients would retry in a hot loop.
        raise _RateLimited(max(1, math.ceil((1.0 - tokens) / per_second)))

    def _chat_post_message(self, args: JsonDict) -> JsonDict:
        channel = self._resolve_channel(args.get("channel"))
        text, blocks, attachments = self._message_fields(args)
        self._take_token(channel)
        text, warned = self._cut_text("chat.postMessage", text, args)
        metadata = args.get("metadata")
        msg = Message(
            channel=channel,
            ts=self._next_ts(),
            text=text,
            blocks=blocks,
            thread_ts=_opt_str(args.get("thread_ts")),
            user=self.bot_user_id,
            attachments=attachments,
            metadata=metadata if isinstance(metadata, dict) else None,
            bot_id=self.bot_id,
        )
        self._messages[(channel, msg.ts)] = msg
        return {"channel": channel, "ts": msg.ts, "message": msg.to_dict(), **warned}

    def _chat_post_ephemeral(self, args: JsonDict) -> JsonDict:
        channel = self._resolve_channel(args.get("channel"))
        user = _opt_str(args.get("user"))
        if user is None:
            raise SlackError("user_not_in_channel")
        text, blocks, attachments = self._message_fields(args)
        text, warned = self._cut_text("chat.postEphemeral", text, args)
        msg = Message(
            channel=channel,
            ts=self._next_ts(),
            text=text,
            blocks=blocks,
            thread_ts=_opt_str(args.get("thread_ts")),
            user=self.bot_user_id,
            ephemeral_for=user,
            attachments=attachments,
            bot_id=self.bot_id,
        )
        self._messages[(channel, msg.ts)] = msg
        return {"message_ts": msg.ts, **warned}

    def _find_to_edit(self, channel: Any, ts: Any) -> Message:
        """As Slack: editing a DM needs the DM's id (D…); a user id (U…/W…) is not found."""
        value = str(channel or "").strip()
        if _looks_like_id(value) and value[0] in "UW":
            raise SlackError("channel_not_found")
        return self._find(value, ts)

    def _chat_update(self, args: JsonDict) -> JsonDict:
        msg = self._find_to_edit(args.get("channel"), args.get("ts"))
        blocks = _checked_blocks(args["blocks"]) if "blocks" in args else None
        attachments = _as_list(args.get("attachments"), "invalid_attachments")
        if len(str(args.get("text") or "")) > slack_limits.MESSAGE_TEXT:
            raise SlackError(
                "msg_too_long", refused=[f"text over {slack_limits.MESSAGE_TEXT:,} characters"]
            )
        if "text" in args:
            msg.text = str(args["text"])
        # As on Slack: omitted blocks/attachments are kept, an empty list removes them.
        if "blocks" in args:
            msg.blocks = blocks or None
        if "attachments" in args:
            msg.attachments = attachments or None
        if isinstance(args.get("metadata"), dict):
            msg.metadata = args["metadata"]
        msg.updated_count += 1
        return {
            "channel": msg.channel,
            "ts": msg.ts,
            "text": msg.text,
            "message": msg.to_dict(),
        }

    def _chat_delete(self, args: JsonDict) -> JsonDict:
        msg = self._find_to_edit(args.get("channel"), args.get("ts"))
        del self._messages[(msg.channel, msg.ts)]
        return {"channel": msg.channel, "ts": msg.ts}

    def _chat_get_permalink(self, args: JsonDict) -> JsonDict:
        channel = self._resolve_channel(args.get("channel"))
        ts = _opt_str(args.get("message_ts"))
        if ts is None:
            raise SlackError("message_not_found")
        # Lenient on purpose: the app may link to messages users posted (not in the store).
        link = f"{PERMALINK_HOST}/archives/{channel}/p{ts.replace('.', '')}"
        stored = self._messages.get((channel, ts))
        if stored is not None and stored.thread_ts and stored.thread_ts != ts:
            link += f"?thread_ts={stored.thread_ts}&cid={channel}"
        return {"channel": channel, "permalink": link}

    def _conversations_open(self, args: JsonDict) -> JsonDict:
        if args.get("channel"):
            return {"channel": {"id": self._resolve_channel(args["channel"])}}
        users = args.get("users")
        if isinstance(users, str):
            users = [u.strip() for u in users.split(",") if u.strip()]
        if not users:
            raise SlackError("users_list_not_supplied")
        if len(users) == 1:
            existed = users[0] in self._dm_by_user
            channel = {"id": self._dm_for(users[0])}
            if existed:
                return {"no_op": True, "already_open": True, "channel": channel}
            return {"channel": channel}
        return {"channel": {"id": _stable_id("G", ",".join(sorted(users)))}}

    def _conversations_info(self, args: JsonDict) -> JsonDict:
        cid = self._resolve_channel(args.get("channel"))
        is_im = cid.startswith("D")
        info: JsonDict = {
            "id": cid,
            "name": self._channel_names.get(cid, cid.lower()),
            "is_channel": cid.startswith("C"),
            "is_group": cid.startswith("G"),
            "is_im": is_im,
            "is_private": not cid.startswith("C"),
            "is_member": True,
            "is_archived": False,
        }
        if is_im:
            info["user"] = self._user_by_dm.get(cid)
        return {"channel": info}

    def _conversations_history(self, args: JsonDict) -> JsonDict:
        """As Slack: the channel's top-level messages newest first, after `oldest` and before
        `latest` (both exclusive unless `inclusive`), `limit` at a time (default 100, at most
        999), with `has_more` and a `next_cursor` for the next page. (Answering every message
        the channel ever had made each look-up bigger than the last: 8 MB by the end of a soak,
        whose memory this showed as leadbot's.)"""
        cid = self._resolve_channel(args.get("channel"))
        inclusive = str(args.get("inclusive") or "").lower() in ("1", "true")
        try:
            oldest = float(args.get("oldest") or 0)
            latest = float(args["latest"]) if args.get("latest") else math.inf
            limit = max(1, min(int(args.get("limit") or 100), 999))
        except (TypeError, ValueError):
            raise SlackError("invalid_arguments") from None
        cursor = str(args.get("cursor") or "")
        skip = int(cursor) if cursor.isdigit() else 0

        def within(ts: float) -> bool:
            return oldest <= ts <= latest if inclusive else oldest < ts < latest

        found = [
            m
            for m in self._messages.values()
            if m.channel == cid
            and not m.ephemeral_for
            and (not m.thread_ts or m.thread_ts == m.ts)
            and within(float(m.ts))
        ]
        found.sort(key=lambda m: float(m.ts), reverse=True)
        page, more = found[skip : skip + limit], skip + limit < len(found)
        answer: JsonDict = {"messages": [m.to_dict() for m in page], "has_more": more}
        if more:
            answer["response_metadata"] = {"next_cursor": str(skip + limit)}
        return answer

    def _conversations_replies(self, args: JsonDict) -> JsonDict:
        cid = self._resolve_channel(args.get("channel"))
        ts = str(args.get("ts") or "")
        found = [
            m
            for m in self._messages.values()
            if m.channel == cid and not m.ephemeral_for and (m.ts == ts or m.thread_ts == ts)
        ]
        if not found:
            raise SlackError("thread_not_found")
        found.sort(key=lambda m: float(m.ts))
        return {"messages": [m.to_dict() for m in found], "has_more": False}

    def _users_info(self, args: JsonDict) -> JsonDict:
        user = _opt_str(args.get("user"))
        if user is None or not _looks_like_id(user):
            raise SlackError("user_not_found")
        return {"user": self._user_object(user)}

    def _usergroups_users_list(self, args: JsonDict) -> JsonDict:
        group = _opt_str(args.get("usergroup"))
        if group is None or group not in self._usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self._usergroups[group])}

    def _view_arg(self, args: JsonDict) -> JsonDict:
        view = args.get("view")
        if not isinstance(view, dict) or not view.get("type"):
            raise SlackError("invalid_arguments")
        errors = slack_limits.view_errors(view)
        if errors:
            raise _limit_error("invalid_arguments", errors, listed=False)
        return view

    def _exchange_trigger(self, args: JsonDict) -> str:
        trigger = _opt_str(args.get("trigger_id") or args.get("interactivity_pointer"))
        if trigger is None:
            raise SlackError("invalid_arguments")
        # Slack lets a trigger_id open exactly one view; a second use is a bug worth surfacing.
        if trigger in self._exchanged_triggers:
            raise SlackError("exchanged_trigger_id")
        self._exchanged_triggers.add(trigger)
        return trigger

    def _store_view(
        self, view: JsonDict, view_id: str, root_view_id: str, previous: str | None
    ) -> JsonDict:
        self._seq += 1
        stored = copy.deepcopy(view)
        stored.update(
            {
                "id": view_id,
                "team_id": self.team_id,
                "app_id": self.app_id,
                "bot_id": self.bot_id,
                "app_installed_team_id": self.team_id,
                "callback_id": view.get("callback_id", ""),
                "private_metadata": view.get("private_metadata", ""),
                "external_id": view.get("external_id", ""),
                "state": {"values": {}},
                "hash": f"{self._ts_base}.{self._seq:08x}",
                "root_view_id": root_view_id,
                "previous_view_id": previous,
            }
        )
        self._views[view_id] = stored
        return copy.deepcopy(stored)

    def _views_open(self, args: JsonDict) -> JsonDict:
        view = self._view_arg(args)
        trigger = self._exchange_trigger(args)
        view_id = self._next_id("V")
        self._modals[trigger] = view_id
        return {"view": self._store_view(view, view_id, view_id, None)}

    def _views_push(self, args: JsonDict) -> JsonDict:
        view = self._view_arg(args)
        trigger = self._exchange_trigger(args)
        view_id = self._next_id("V")
        self._modals[trigger] = view_id
        return {"view": self._store_view(view, view_id, view_id, None)}

    def _views_update(self, args: JsonDict) -> JsonDict:
        view = self._view_arg(args)
        view_id = _opt_str(args.get("view_id"))
        external_id = _opt_str(args.get("external_id"))
        if view_id is None and external_id is not None:
            view_id = next(
                (k for k, v in self._views.items() if v.get("external_id") == external_id), None
            )
        current = self._views.get(view_id or "")
        if current is None or view_id is None:
            raise SlackError("not_found")
        if args.get("hash") and args["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        stored = self._store_view(
            view, view_id, current["root_view_id"], current.get("previous_view_id")
        )
        return {"view": stored}

    def _views_publish(self, args: JsonDict) -> JsonDict:
        view = self._view_arg(args)
        user = _opt_str(args.get("user_id"))
        if user is None:
            raise SlackError("invalid_arguments")
        view_id = self._homes.get(user)
        if view_id is None:
            view_id = self._next_id("V")
            self._homes[user] = view_id
        elif args.get("hash") and args["hash"] != self._views[view_id]["hash"]:
            raise SlackError("hash_conflict")
        return {"view": self._store_view(view, view_id, view_id, None)}
