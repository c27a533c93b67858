"""The sandbox page server's JSON API under bad or unusual input, over real HTTP.

Every refusal is a 4xx with a JSON sentence the page can show; nothing is a 500, a dropped
connection, a hung thread or a half-done action. The sandbox runs in-process on a free port with
a throwaway database.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from bot.sandbox import RunningSandbox, start_sandbox, web
from bot.sandbox.workspace import MARKETER


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    running = start_sandbox(tmp_path_factory.mktemp("sandbox") / "sandbox.db", timezone="UTC")
    yield running
    running.stop()


def request(
    sandbox: RunningSandbox,
    method: str,
    path: str,
    body: bytes | dict[str, Any] | None = None,
    **headers: str,
) -> tuple[int, dict[str, Any], http.client.HTTPResponse]:
    """One request on a fresh connection; (status, JSON body, response)."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    sent = {"Host": f"127.0.0.1:{sandbox.web.port}"}
    if body is not None:
        sent["Content-Type"] = "application/json"
    sent.update(headers)
    conn = http.client.HTTPConnection("127.0.0.1", sandbox.web.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else {}, response
    finally:
        conn.close()


def raw_exchange(sandbox: RunningSandbox, data: bytes) -> bytes:
    """Send bytes as they are and read the whole answer (the server closes after refusing)."""
    with socket.create_connection(("127.0.0.1", sandbox.web.port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def state(sandbox: RunningSandbox, user: str, conv: str) -> dict[str, Any]:
    status, body, _ = request(sandbox, "GET", f"/api/state?user={user}&conv={conv}")
    assert status == 200, body
    return body


def test_lone_surrogate_is_refused_before_it_reaches_the_bot(sandbox: RunningSandbox) -> None:
    # What JSON.stringify sends for a lone surrogate; it cannot be encoded for the bot.
    for text in ("/lead \\ud800 Doe, x@y.example", "hello \\udfff"):
        body = f'{{"user": "{MARKETER}", "conv": "dm", "text": "{text}"}}'.encode()
        status, answer, _ = request(sandbox, "POST", "/api/send", body)
        assert status == 400 and "not valid Unicode" in answer["error"], answer
    # Other odd but valid text goes through: NUL, an RTL override, a 10,000-character message.
    for text in ("a\x00b", "\u202eevil", "x" * 10_000):
        status, answer, _ = request(
            sandbox, "POST", "/api/send", {"user": MARKETER, "conv": "dm", "text": text}
        )
        assert (status, answer) == (200, {"ok": True})


def test_a_lone_slash_is_an_unknown_command(sandbox: RunningSandbox) -> None:
    status, answer, _ = request(
        sandbox, "POST", "/api/send", {"user": MARKETER, "conv": "dm", "text": "/"}
    )
    assert (status, answer) == (200, {"ok": True})
    assert "/ is not a valid command" in state(sandbox, MARKETER, "dm")["main_html"]


def test_a_double_submitted_form_makes_one_lead(sandbox: RunningSandbox) -> None:
    sb = sandbox.sandbox
    request(sandbox, "POST", "/api/send", {"user": MARKETER, "conv": "dm", "text": "/lead"})
    view_id = state(sandbox, MARKETER, "dm")["modal"]["view_id"]
    values = {
        "name": {"name_input": "Dee Double"},
        "email": {"email_input": "dee@double.example"},
        "company": {"company_input": "Twice Inc"},
    }
    before = sb.leads_in_db()
    start = threading.Barrier(4)
    answers: list[tuple[int, dict[str, Any]]] = []

    def submit() -> None:
        start.wait()
        status, answer, _ = request(
            sandbox,
            "POST",
            "/api/view/submit",
            {"user": MARKETER, "view_id": view_id, "values": values},
        )
        answers.append((status, answer))

    clicks = [threading.Thread(target=submit) for _ in range(4)]
    for t in clicks:
        t.start()
    for t in clicks:
        t.join()

    assert sb.leads_in_db() == before + 1
    statuses = sorted(status for status, _ in answers)
    # The others were refused while it ran (409) or found it closed after it ran (400).
    assert statuses[0] == 200 and set(statuses[1:]) <= {400, 409}, answers
    assert state(sandbox, MARKETER, "dm")["modal"] is None


def test_reply_to_a_thread_that_is_not_there_is_refused(sandbox: RunningSandbox) -> None:
    send = {"user": MARKETER, "conv": "dm", "text": "a reply"}
    status, answer, _ = request(sandbox, "POST", "/api/send", {**send, "thread_ts": "123.456"})
    assert status == 400 and answer["error"] == "That thread is not in this conversation."
    assert "a reply" not in state(sandbox, MARKETER, "dm")["main_html"]
    # A real parent takes the reply into its thread.
    request(sandbox, "POST", "/api/send", {**send, "text": "the parent"})
    html = state(sandbox, MARKETER, "dm")["main_html"]
    parent_ts = re.findall(r'data-ts="([^"]+)"', html)[-1]
    status, answer, _ = request(sandbox, "POST", "/api/send", {**send, "thread_ts": parent_ts})
    assert (status, answer) == (200, {"ok": True})
    shown = request(sandbox, "GET", f"/api/state?user={MARKETER}&conv=dm&thread={parent_ts}")[1]
    assert "a reply" in shown["thread_html"]


def test_other_methods_get_405_in_json(sandbox: RunningSandbox) -> None:
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        status, answer, response = request(sandbox, method, "/api/send", b"{}")
        assert status == 405 and method in answer["error"], (method, answer)
        assert response.getheader("Allow") == "GET, HEAD, POST"
        assert response.getheader("X-Frame-Options") == "DENY"
    status, answer, response = request(sandbox, "GET", "/api/send")
    assert (status, response.getheader("Allow")) == (405, "POST"), answer
    status, answer, response = request(sandbox, "POST", "/api/state", {"user": MARKETER})
    assert (status, response.getheader("Allow")) == (405, "GET, HEAD"), answer
    assert request(sandbox, "POST", "/api/nothing", {})[0] == 404


def test_the_stdlibs_own_refusals_are_json_too(sandbox: RunningSandbox) -> None:
    answer = raw_exchange(sandbox, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414") and b"application/json" in head
    assert json.loads(body)["ok"] is False


@pytest.mark.parametrize(
    ("length", "status", "says"),
    [("0", 400, "Send a JSON object"), ("-5", 400, "number of bytes"), ("1_0", 400, "number")],
)
def test_content_length_that_is_no_size_is_400(
    sandbox: RunningSandbox, length: str, status: int, says: str
) -> None:
    got, answer, _ = request(
        sandbox, "POST", "/api/clock", b'{"step": "15m"}', **{"Content-Length": length}
    )
    assert got == status and says in answer["error"], answer


def test_origin_with_an_impossible_port_is_refused(sandbox: RunningSandbox) -> None:
    status, answer, _ = request(
        sandbox, "POST", "/api/clock", {"step": "15m"}, Origin="http://127.0.0.1:99999"
    )
    assert status == 403 and "Cross-site" in answer["error"]


def test_deeply_nested_json_is_400(sandbox: RunningSandbox) -> None:
    body = b'{"user": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    assert len(body) <= web.MAX_BODY
    status, answer, _ = request(sandbox, "POST", "/api/send", body)
    assert status == 400 and "nested too deeply" in answer["error"]


def test_a_body_that_never_arrives_gets_408_not_a_stuck_thread(
    sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web._Handler, "timeout", 0.2)
    head = (
        f"POST /api/clock HTTP/1.1\r\nHost: 127.0.0.1:{sandbox.web.port}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{}"
    )
    answer = raw_exchange(sandbox, head.encode())
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert b"did not arrive in time" in answer
