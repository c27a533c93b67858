"""leadbot as an attacker meets it: requests without the signing secret, replays, forged modal
metadata, junk sized to hurt the log writer, and what start-up and the CLI echo of a password.
Over the real interfaces (signed and unsigned HTTP to the real server, the real log pipeline,
the real CLI), as tests/test_http.py and tests/test_hostile.py are; those cover the rest."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import pytest

from bot import cli
from bot.ids import View
from bot.logs import configure_logging, stop_logging
from bot.slack_emulator import SlackEmulator
from bot.slack_sim import state_values
from tests.conftest import MARKETER, TEAM, Bot

FORM = "application/x-www-form-urlencoded"
# A lead as typed: the contact details must never reach the logs, nor the name and notes.
TYPED = "Jane Privateer, jane.private@acme.example, +1 415 555 0199, Acme Corp, notes: secret plan"


def _command_body(
    text: str = TYPED, trigger: str = "13345224609.738474920.8088930838d88f0"
) -> bytes:
    return urlencode(
        {
            "token": "verification-token",
            "team_id": TEAM,
            "team_domain": "leadbot",
            "channel_id": "C0EVENTS01",
            "channel_name": "events",
            "user_id": MARKETER,
            "user_name": "marketer",
            "command": "/lead",
            "text": text,
            "api_app_id": "A0LEADBOT1",
            "response_url": "https://hooks.slack.com/commands/T0LEADBOT/1/abc",
            "trigger_id": trigger,
        }
    ).encode()


@contextmanager
def logged(level: str = "DEBUG") -> Iterator[io.StringIO]:
    """What the real log pipeline (leadbot's handler, filter and writer thread) writes inside
    the block; readable once the block has ended."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging(level, stream)
    try:
        yield stream
    finally:
        stop_logging()  # writes out what is queued
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def _leaks(text: str) -> list[str]:
    """Pieces of TYPED (as typed, or form-encoded as Slack sends it) found in `text`."""
    pieces = ("Privateer", "jane.private", "555+0199", "555 0199", "secret+plan", "secret plan")
    return [p for p in pieces if p in text]


# --- (1) anyone on the internet ------------------------------------------------------------------


@pytest.mark.parametrize("how", ["unsigned", "wrong secret", "stale (replayed after 6 minutes)"])
def test_a_refused_request_puts_nothing_it_carried_in_the_log(bot: Bot, how: str) -> None:
    """Bolt logged a refused request's whole body at INFO: a replay, or every request while
    the server's clock is off, wrote the lead it carried (contact details form-encoded, so the
    log's email and phone masks did not see them) to the log."""
    body = _command_body()
    with logged() as log:
        if how == "unsigned":
            response = bot.sim.raw(body, FORM, sign=False)
        elif how == "wrong secret":
            response = bot.sim.raw(body, FORM, secret="not-the-secret")
        else:
            response = bot.sim.raw(body, FORM, timestamp=int(time.time()) - 6 * 60)
        bot.settle()
    assert response.status == 401
    assert bot.leads() == []
    text = log.getvalue()
    assert "refused a request" in text  # the operator still learns of it, in one line
    assert _leaks(text) == [], text
    assert "v0=" not in text  # nor the signature offered


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"},
        {"X-Slack-Request-Timestamp": "1e9", "X-Slack-Signature": "v0=00"},
        {"X-Slack-Request-Timestamp": "-1", "X-Slack-Signature": "v0=00"},
        {"X-Slack-Request-Timestamp": "9" * 5000, "X-Slack-Signature": "v0=00"},
        {"X-Slack-Request-Timestamp": "NOW", "X-Slack-Signature": "v0=\u00e9t\u00e9"},
    ],
    ids=["letters", "exponent", "negative", "5000 digits", "signature not ASCII"],
)
def test_signature_headers_of_the_wrong_shape_are_refused_as_unsigned(
    bot: Bot, headers: dict[str, str]
) -> None:
    """In Bolt they raised inside its check (`int("abc")`; `hmac.compare_digest` refuses
    non-ASCII text): the request from nobody got a 200, and the log an ERROR with a traceback."""
    headers = {k: str(int(time.time())) if v == "NOW" else v for k, v in headers.items()}
    with logged() as log:
        response = bot.sim.raw(_command_body(), FORM, headers=headers, sign=False)
        bot.settle()
    assert response.status == 401
    assert bot.leads() == []
    text = log.getvalue()
    assert "ERROR" not in text and "Traceback" not in text, text


def test_junk_in_a_log_line_costs_the_log_writer_linear_time() -> None:
    """The email mask tried a long run of address characters from each of its characters: 60 kB
    of letters in one log line held the log writer ~10 s, a megabyte the next 40 minutes, while
    every later line waited in memory."""
    junk = "a" * 60_000
    with logged("INFO") as log:
        started = time.monotonic()
        logging.getLogger("slack_bolt.App").warning("unhandled: %s", junk)
        logging.getLogger("leadbot.test").info("after the junk")
    # The block's end waits for the writer to have written everything.
    assert time.monotonic() - started < 2.0
    assert "after the junk" in log.getvalue()


# --- (3) a captured signed request ----------------------------------------------------------------


def test_a_signed_request_delivered_twice_is_acted_on_once(bot: Bot) -> None:
    """Within Slack's 5 minutes the signature check passes a captured request as often as it is
    sent: each `/lead` replay stored another lead and posted another card."""
    body = _command_body("Raj Patel, +44 20 7946 0958, Globex")
    now = int(time.time())
    first = bot.sim.raw(body, FORM, timestamp=now)
    with logged("INFO") as log:
        again = [bot.sim.raw(body, FORM, timestamp=now) for _ in range(3)]
        bot.settle()
    assert first.status == 200 and "Lead #1" in first.body
    assert [(r.status, r.body) for r in again] == [(200, "")] * 3
    assert len(bot.leads()) == 1
    assert "delivered a second time" in log.getvalue()
    # A new command with the same text (its own trigger_id, so another signature) is a new
    # submission, as it was.
    resent = _command_body("Raj Patel, +44 20 7946 0958, Globex", "13345224610.738474921.0c1d")
    other = bot.sim.raw(resent, FORM, timestamp=now + 1)
    assert other.status == 200 and "Lead #2" in other.body


# --- (2) a workspace member's crafted payloads ----------------------------------------------


class _Recorder(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.posts: list[bytes] = []


class _RecordingHandler(BaseHTTPRequestHandler):
    server: _Recorder

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.posts.append(self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    server = _Recorder()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    thread.join()
    server.server_close()


def _submit_form(bot: Bot, metadata: dict[str, Any]) -> Any:
    values = {"name": "Siobhan Forge", "email": "siobhan@initech.example", "company": "Initech"}
    return bot.sim.view_submission(
        MARKETER,
        {"callback_id": View.NEW_LEAD.value},
        state_values({k: (f"{k}_input", v) for k, v in values.items()}),
        private_metadata=json.dumps(metadata),
    )


def test_a_forged_response_url_in_the_forms_metadata_gets_no_post(
    bot: Bot, recorder: _Recorder
) -> None:
    """The form's receipt went to whatever response_url its private_metadata named, if https or
    any port on 127.0.0.1: the server POSTed where a forged submission said (a service on its
    own machine, say). Now only Slack's hooks host (or the loopback Slack SLACK_API_URL names)."""
    url = f"http://127.0.0.1:{recorder.server_address[1]}/steal"
    response = _submit_form(bot, {"response_url": url, "channel_id": "C0EVENTS01"})
    bot.settle()
    assert response.status == 200
    [lead] = bot.leads()
    assert recorder.posts == []
    # The submitter still gets the receipt, as a DM.
    [dm] = bot.slack.dms(MARKETER)
    assert f"Lead #{lead.id}" in dm.text


def test_the_forms_receipt_still_goes_to_slacks_response_url(bot: Bot) -> None:
    url = bot.slack.response_url("security-test")
    response = _submit_form(bot, {"response_url": url, "channel_id": "C0EVENTS01"})
    bot.settle()
    assert response.status == 200
    assert bot.slack.dms(MARKETER) == []
    assert any("Lead #1" in json.dumps(p.body) for p in bot.slack.responses)


# --- (8) the CLI ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://leadbot:s3cr/et@127.0.0.1:1/leadbot",
        "postgresql://leadbot@127.0.0.1:1/leadbot?password=s3cret",
    ],
    ids=["slash in the password", "password parameter"],
)
def test_copy_db_never_echoes_a_password(
    url: str,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The mask stopped at a `/`, and knew nothing of libpq's `?password=`: copy-db's refusal
    (and its "copying … to …" line) printed the password."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", url)
    capsys.readouterr()
    code = cli.main(["copy-db", url])  # the same database: refused before any connection
    out, err = capsys.readouterr()
    assert code == 2, err
    assert "is the database DATABASE_URL names" in err
    assert "s3cr" not in out + err
    assert "***" in err


def test_settings_do_not_show_secrets_in_their_repr() -> None:
    from bot.settings import load_settings

    settings = load_settings(
        {
            "SLACK_BOT_TOKEN": "xoxb-very-secret",
            "SLACK_SIGNING_SECRET": "signing-very-secret",
            "SLACK_APP_TOKEN": "xapp-very-secret",
            "LEADS_CHANNEL": "C0LEADS001",
            "DATABASE_URL": "postgresql://leadbot:pw-very-secret@db/leadbot",
        },
        dotenv_path=None,
    )
    assert "very-secret" not in repr(settings)
    assert settings.slack_bot_token == "xoxb-very-secret"  # still there to be used


# --- (5) the sandbox ---------------------------------------------------------------------------


def test_the_loopback_slack_answers_no_page_whose_name_was_rebound_to_it(
    slack: SlackEmulator,
) -> None:
    """The sandbox's loopback Slack holds what its people saw (claim DMs with contact details)
    and answered whatever Host a request named: a hostile page whose name was rebound to
    127.0.0.1 (DNS rebinding) could read it from the visitor's browser."""

    def post(host: str) -> int:
        conn = HTTPConnection("127.0.0.1", slack.port, timeout=5)
        try:
            conn.request(
                "POST",
                "/api/auth.test",
                body=b"token=xoxb-local-token",
                headers={"Host": host, "Content-Type": FORM},
            )
            return conn.getresponse().status
        finally:
            conn.close()

    assert post(f"rebound.example:{slack.port}") == 421
    assert post("rebound.example") == 421
    assert post(f"127.0.0.1:{slack.port}") == 200
    assert post(f"localhost:{slack.port}") == 200


def test_the_signature_check_can_be_asked_before_a_body_is_parsed(bot: Bot) -> None:
    """`app.leadbot_signature.invalid` for an HTTP server to refuse a request from nobody before
    parsing it (bot/server.py); stateless, so asking it does not make the request a replay."""
    check = bot.app.leadbot_signature  # type: ignore[attr-defined]
    body = _command_body("Ana Lima, ana@initech.example, Initech")
    now = str(int(time.time()))
    signature = bot.sim.signature(body, now)
    assert check.invalid(body.decode(), now, signature) is None
    assert check.invalid(body.decode(), now, "v0=" + "0" * 64) == "wrong signature"
    assert check.invalid(body.decode(), "abc", signature) == "no Slack signature"
    assert check.invalid(b"\xff\xfe", now, signature) == "wrong signature"
    assert "old" in (check.invalid(body.decode(), str(int(now) - 400), signature) or "")
    response = bot.sim.raw(body, FORM, timestamp=now)
    assert response.status == 200 and "Lead #1" in response.body


def test_an_unsigned_body_is_refused_before_it_is_parsed(bot: Bot) -> None:
    """Parsed first, a megabyte of form fields from anyone cost ~80 ms of CPU before the
    signature refused it; a body that does not parse was answered 400 for what it held."""
    broken = urlencode({"payload": "{not json"})
    assert bot.sim.raw(broken, FORM).status == 400  # signed: Slack's, and malformed
    unsigned = bot.sim.raw(broken, FORM, sign=False)
    assert unsigned.status == 401 and "malformed" not in unsigned.body


def test_slow_clients_holding_connections_do_not_lock_slack_out(bot: Bot) -> None:
    """waitress took 100 connections: 100 clients sending their headers a byte at a time
    held every Slack request off until they gave up."""
    slow = []
    try:
        for _ in range(150):
            conn = HTTPConnection("127.0.0.1", bot.server.port, timeout=5)
            conn.connect()
            assert conn.sock is not None
            conn.sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\n")  # and no more
            slow.append(conn)
        response = bot.sim.slash_command("help", user_id=MARKETER)
        assert response.status == 200
    finally:
        for conn in slow:
            conn.close()
