"""The sandbox's web page and JSON API, served by the stdlib on 127.0.0.1 only.

Defences for a server that drives a bot from a browser: requests whose Host is not
127.0.0.1/localhost are refused (DNS rebinding), actions are JSON POSTs only (a cross-site form
cannot send application/json without a CORS preflight, which is never granted) from our own
Origin, bodies are small, and a strict Content-Security-Policy allows only our own script.
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bot.ids import is_digits
from bot.request_body import NotText, check_text
from bot.sandbox import page
from bot.sandbox.workspace import PEOPLE, Sandbox, SandboxError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
ALLOWED_HOSTNAMES = frozenset({"127.0.0.1", "localhost"})
MAX_BODY = 64 * 1024
# A client that announces more body than it sends must not hold a server thread forever.
READ_TIMEOUT = 10.0
GET_PATHS = frozenset({"/", "/index.html", "/api/state"})
# Known before the body is read, so a wrong method or path is told without reading it;
# the same paths as _Handler._routes().
POST_PATHS = frozenset(
    {"/api/send", "/api/action", "/api/view/submit", "/api/view/close", "/api/open", "/api/clock"}
)
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".html": "text/html; charset=utf-8",
    ".png": "image/png",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' https: http: data:; connect-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

JsonDict = dict[str, Any]


def host_allowed(host_header: str | None) -> bool:
    """True for `127.0.0.1[:port]` and `localhost[:port]` only."""
    if not host_header:
        return False
    name = host_header.strip().lower()
    if name.count(":") == 1:
        name, _, port = name.partition(":")
        if not is_digits(port):
            return False
    return name in ALLOWED_HOSTNAMES


def _str(body: JsonDict, key: str) -> str:
    value = body.get(key)
    return value if isinstance(value, str) else ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # server_close() must not wait on browsers' keep-alive connections.
    block_on_close = False
    sandbox: Sandbox

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("sandbox page connection error\n%s", traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "leadbot-sandbox"
    sys_version = ""
    server: _Server
    timeout = READ_TIMEOUT  # applied to the socket by StreamRequestHandler.setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # ----------------------------------------------------------------- plumbing

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        cache: str = "no-store",
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: JsonDict, extra: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8", extra=extra)

    def _refuse(self, status: int, reason: str, extra: dict[str, str] | None = None) -> None:
        self.close_connection = True
        self._json(status, {"ok": False, "error": reason}, extra)

    def _wrong_method(self, allowed: str) -> None:
        self._refuse(
            405, f"{self.command} is not accepted here; use {allowed}.", {"Allow": allowed}
        )

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own refusals (unknown method, malformed request line, huge headers) in
        the same JSON shape and with the same security headers as ours, not its HTML page."""
        self.log_error("code %d, message %s", code, message)
        if code == HTTPStatus.NOT_IMPLEMENTED and self.command:
            self._wrong_method("GET, HEAD, POST")
            return
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._refuse(code, message or phrase)

    def _guard(self) -> bool:
        if not host_allowed(self.headers.get("Host")):
            self._refuse(403, "The sandbox only answers on http://127.0.0.1 or http://localhost.")
            return False
        return True

    def _same_origin(self) -> bool:
        origin = self.headers.get("Origin")
        if origin is None:
            return self.headers.get("Sec-Fetch-Site") in (None, "same-origin", "none")
        parts = urlsplit(origin)
        port = self.server.server_address[1]
        try:
            return parts.scheme == "http" and host_allowed(parts.netloc) and parts.port == port
        except ValueError:  # a port out of range, e.g. http://127.0.0.1:99999
            return False

    # ----------------------------------------------------------------- GET

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._guard():
            return
        url = urlsplit(self.path)
        if url.path in ("/", "/index.html"):
            body = page.index_html(PEOPLE).encode("utf-8")
            self._send(200, body, "text/html; charset=utf-8")
        elif url.path in POST_PATHS:
            self._wrong_method("POST")
        elif url.path.startswith("/static/"):
            self._static(url.path[len("/static/") :])
        elif url.path == "/api/state":
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            self._call(
                lambda: self.server.sandbox.state(
                    query.get("user", ""),
                    query.get("conv", ""),
                    query.get("thread") or None,
                    query.get("since") or None,
                )
            )
        else:
            self._refuse(404, "not found")

    def _static(self, name: str) -> None:
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
        # Only plain file names of known types: no path traversal, no surprises.
        if "/" in name or "\\" in name or name.startswith(".") or suffix not in STATIC_TYPES:
            self._refuse(404, "not found")
            return
        resource = resources.files("bot.sandbox").joinpath("static", name)
        if not resource.is_file():
            self._refuse(404, "not found")
            return
        self._send(200, resource.read_bytes(), STATIC_TYPES[suffix], cache="no-cache")

    # ----------------------------------------------------------------- POST

    def do_POST(self) -> None:
        if not self._guard():
            return
        if not self._same_origin():
            self._refuse(403, "Cross-site requests are not accepted.")
            return
        path = urlsplit(self.path).path
        if path not in POST_PATHS:
            if path in GET_PATHS or path.startswith("/static/"):
                self._wrong_method("GET, HEAD")
            else:
                self._refuse(404, "not found")
            return
        media = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if media != "application/json":
            self._refuse(415, "Send JSON (Content-Type: application/json).")
            return
        declared = (self.headers.get("Content-Length") or "").strip()
        if not declared:
            self._refuse(411, "Content-Length required.")
            return
        if not is_digits(declared):  # int() would also take "-5", "+5", "1_0" and "٣"
            self._refuse(400, f"Content-Length must be a number of bytes, not {declared[:20]!r}.")
            return
        length = int(declared)
        if length == 0:
            self._refuse(400, "Send a JSON object as the request body.")
            return
        if length > MAX_BODY:
            self._refuse(413, f"Request body too large (at most {MAX_BODY} bytes).")
            return
        try:
            raw = self.rfile.read(length)
        except TimeoutError:
            self._refuse(408, "The request body did not arrive in time.")
            return
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self._refuse(400, "Malformed JSON.")
            return
        except RecursionError:
            self._refuse(400, "Malformed JSON: nested too deeply.")
            return
        if not isinstance(body, dict):
            self._refuse(400, "Expected a JSON object.")
            return
        try:
            check_text(body)  # such text could never reach the bot the way Slack sends it
        except NotText:
            self._refuse(400, "The text is not valid Unicode (it holds a lone surrogate).")
            return
        route = self._routes().get(path)
        if route is None:
            self._refuse(404, "not found")
            return
        self._call(lambda: route(body))

    def _routes(self) -> dict[str, Callable[[JsonDict], JsonDict]]:
        sandbox = self.server.sandbox
        return {
            "/api/send": lambda b: sandbox.send(
                _str(b, "user"), _str(b, "conv"), _str(b, "text"), _str(b, "thread_ts") or None
            ),
            "/api/action": lambda b: sandbox.act(_str(b, "user"), b),
            "/api/view/submit": lambda b: sandbox.submit_view(
                _str(b, "user"), _str(b, "view_id"), b.get("values")
            ),
            "/api/view/close": lambda b: sandbox.close_view(
                _str(b, "user"), _str(b, "view_id"), everything=b.get("all") is True
            ),
            "/api/open": lambda b: sandbox.open_conversation(_str(b, "user"), _str(b, "conv")),
            "/api/clock": lambda b: sandbox.advance(_str(b, "step")),
        }

    def _call(self, fn: Callable[[], JsonDict]) -> None:
        try:
            result = fn()
        except SandboxError as e:
            self._json(e.status, {"ok": False, "error": str(e)})
            return
        except Exception as e:
            log.exception("sandbox request failed")
            self._json(500, {"ok": False, "error": f"The sandbox hit a bug: {type(e).__name__}"})
            return
        self._json(200, result)


class SandboxWeb:
    """The page server for one Sandbox; binds on construction so a busy port fails early."""

    def __init__(self, port: int = 0) -> None:
        self._server = _Server((HOST, port), _Handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, sandbox: Sandbox) -> SandboxWeb:
        self._server.sandbox = sandbox
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="leadbot-sandbox-web",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
