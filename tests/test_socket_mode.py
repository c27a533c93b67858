"""`leadbot socket` as deployed: a subprocess connected to the emulator's Socket Mode WebSocket.

The README starts new teams on Socket Mode, so it gets the same end-to-end proof as `serve`:
requests arrive as Slack's envelopes over the socket and the acks are read back from it.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import Engine, func, select

from bot.slack_emulator import SlackEmulator
from bot.slack_sim import SocketSim
from bot.socket_mode import closed_by_peer
from models import Lead
from models import make_sessionmaker as sessions_for
from tests.conftest import (
    LEADS_CHANNEL,
    MARKETER,
    REP_A,
    TEAM,
    Bot,
    needs_tgkill,
    sigterm_to_a_worker_thread,
)
from tests.test_affinity import _cpus_of_every_thread, _free_cpus, linux_smp
from tests.test_hostile import _DEEP, _paths, _real_requests, _with
from tests.test_outbox import EXAMPLE, _bot_env, _free_port

APP_TOKEN = "xapp-1-A0LEADBOT-1-secret"


def _socket_env(database_url: str, slack: SlackEmulator) -> dict[str, str]:
    return {**_bot_env(database_url, slack), "SLACK_APP_TOKEN": APP_TOKEN, "LOG_LEVEL": "INFO"}


@contextmanager
def _connected(
    env: dict[str, str], slack: SlackEmulator, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], SocketSim, Path]]:
    """`leadbot socket`, connected: the process, a client speaking Slack's side of the socket,
    its log. Killed on the way out if the test left it running."""
    log = tmp_path / "socket.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "socket"],
            env=env,
            cwd=tmp_path,  # no stray .env
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not slack.socket_links:
            assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"never connected:\n{log.read_text()}"
            time.sleep(0.02)
        link = slack.socket_link()
        yield proc, SocketSim(link, team_id=TEAM, response_url_for=slack.response_url), log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_lead_and_its_claim_go_through_socket_mode(
    database_url: str, engine: Engine, slack: SlackEmulator, tmp_path: Path
) -> None:
    with _connected(_socket_env(database_url, slack), slack, tmp_path) as (_proc, sim, log):
        receipt = sim.slash_command(EXAMPLE, user_id=MARKETER)
        assert receipt.status == 200, log.read_text()
        assert receipt.json()["response_type"] == "ephemeral"
        assert "Lead #1" in receipt.json()["text"]
        card = slack.wait_for("chat.postMessage", lambda c: c.args["channel"] == LEADS_CHANNEL)[0]
        assert "Jane Doe" in str(card.args["blocks"])

        clicked = sim.block_action(REP_A, "lead_claim", "1:1", channel_id=LEADS_CHANNEL)
        assert clicked.status == 200 and clicked.body == ""  # a bare ack, as over HTTP
        slack.wait_for("chat.update", lambda c: f"<@{REP_A}>" in str(c.args["blocks"]))

        assert "/lead" in sim.slash_command("help", user_id=MARKETER).json()["text"]
        assert slack.calls_to("apps.connections.open")[0].token == APP_TOKEN
    with sessions_for(engine)() as s:
        lead = s.get(Lead, 1)
        assert lead is not None and lead.owner_id == REP_A


def test_a_bad_lead_over_the_socket_is_refused_with_the_problem_named(
    database_url: str, engine: Engine, slack: SlackEmulator, tmp_path: Path
) -> None:
    with _connected(_socket_env(database_url, slack), slack, tmp_path) as (_proc, sim, _log):
        answer = sim.slash_command("Jane Doe, not-an-email, Acme, boiling", user_id=MARKETER)
        assert answer.status == 200
        assert answer.json()["text"].startswith("❌ Not saved")
    with sessions_for(engine)() as s:
        assert s.scalar(select(func.count()).select_from(Lead)) == 0


def test_an_envelope_of_the_wrong_shape_is_acknowledged_and_changes_nothing(
    database_url: str, engine: Engine, slack: SlackEmulator, tmp_path: Path
) -> None:
    """Bolt's handler let an empty `actions` list raise out unacknowledged, and left a refused
    one unacknowledged too, and Slack sends an envelope with no answer again; `serve`
    answers the same bodies 400."""
    with _connected(_socket_env(database_url, slack), slack, tmp_path) as (_proc, sim, log):
        payload = {"type": "block_actions", "team": {"id": TEAM}, "user": {"id": REP_A}}
        claim = [{"action_id": "lead_claim", "value": "1:1", "type": "button"}]
        for odd in ({"actions": ""}, {"actions": []}, {"actions": claim, "user": REP_A}):
            body = urlencode([("payload", json.dumps({**payload, **odd}))])
            answer = sim.raw(body.encode(), "application/x-www-form-urlencoded")
            assert (answer.status, answer.body) == (200, ""), log.read_text()
        assert "Lead #1" in sim.slash_command(EXAMPLE, user_id=MARKETER).json()["text"]
        deadline = time.monotonic() + 10  # logs are written in batches every 50 ms
        while log.read_text().count("refused a malformed interactive envelope") < 2 or (
            "refused a block_actions payload not from a Slack user" not in log.read_text()
        ):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        assert "Traceback" not in log.read_text()
    with sessions_for(engine)() as s:
        assert s.scalar(select(func.count()).select_from(Lead)) == 1


def test_every_envelope_of_a_wrong_shape_is_acknowledged(
    bot: Bot, database_url: str, slack: SlackEmulator, tmp_path: Path
) -> None:
    """The HTTP sweep's requests (tests/test_hostile.py), each top- and second-level field of
    their payloads replaced by a value of each kind or left out, as envelopes: each is
    acknowledged, and nothing in leadbot fails or logs an error. Over the socket a payload
    is JSON as it stands, so a command's fields can be lists or objects, which no form body
    carries."""
    kinds = {"form": "slash_commands", "payload": "interactive", "json": "events_api"}
    originals = _real_requests(bot)  # by the in-process app, on the same database and Slack
    unanswered: list[str] = []
    sent = 0
    with _connected(_socket_env(database_url, slack), slack, tmp_path) as (_proc, sim, log):
        for kind, original in originals:
            for path in [p for p in _paths(original) if len(p) <= 2]:
                for value in [*_DEEP, "\ud800"]:  # half a UTF-16 pair: no text holds it
                    if kind == "json" and path == ("type",):
                        continue  # only an event_callback travels as events_api
                    ack = sim.link.request(kinds[kind], _with(original, path, value), timeout=3)
                    sent += 1
                    if ack is None:
                        unanswered.append(f"{kind} {path} = {value!r:.20}")
        assert "Lead #" in sim.slash_command(EXAMPLE, user_id=MARKETER).json()["text"]
    text = log.read_text()
    assert not unanswered, f"{len(unanswered)} of {sent}: " + "\n".join(unanswered[:10])
    assert sent > 1000  # it did reach in
    ours = [line for line in text.splitlines() if re.search(r" ERROR (bot|handlers)\b", line)]
    assert not ours and "Traceback" not in text, text[-3000:]
    assert "refused a malformed interactive envelope" in text


def test_slack_refreshing_the_connection_moves_the_app_to_a_new_one(
    database_url: str, slack: SlackEmulator, tmp_path: Path
) -> None:
    with _connected(_socket_env(database_url, slack), slack, tmp_path) as (_proc, sim, log):
        old = sim.link
        old.refresh()
        assert old.closed.wait(15), f"the old connection stayed open:\n{log.read_text()}"
        new = slack.socket_link()
        assert new is not old
        moved = SocketSim(new, team_id=TEAM, response_url_for=slack.response_url)
        assert "Lead #1" in moved.slash_command(EXAMPLE, user_id=MARKETER).json()["text"]
        assert len(slack.calls_to("apps.connections.open")) == 2


def test_a_refused_app_token_stops_start_up_with_a_line_that_names_it(
    database_url: str, slack: SlackEmulator, tmp_path: Path
) -> None:
    slack.fail("apps.connections.open", error="invalid_auth")
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "socket"],
        env=_socket_env(database_url, slack),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "leadbot: SLACK_APP_TOKEN: Slack did not accept it (invalid_auth) — generate one with "
        "the connections:write scope (README, step 4)"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("trouble", ["no server", "HTTP 503", "no WebSocket"])
def test_slack_out_of_reach_stops_start_up_with_a_line_that_names_the_trouble(
    database_url: str, slack: SlackEmulator, tmp_path: Path, trouble: str
) -> None:
    env = _socket_env(database_url, slack)
    if trouble == "no server":
        env["SLACK_API_URL"] = url = f"http://127.0.0.1:{_free_port()}/api/"  # nothing listens
        expected = f"leadbot: SLACK_API_URL: cannot reach Slack at {url} (URLError)"
    elif trouble == "HTTP 503":
        slack.fail("apps.connections.open", status=503, times=5)  # more than slack_sdk retries
        expected = (
            "leadbot: Slack answered apps.connections.open with service_unavailable, HTTP 503: "
            "trouble on Slack's side, not with SLACK_APP_TOKEN — try again shortly"
        )
    else:  # the Web API answers; the socket's handshake is refused (an outage, or a proxy)
        slack.refuse_socket_links(times=100)
        expected = (
            f"leadbot: cannot open Slack's Socket Mode connection to 127.0.0.1:{slack.port} "
            "(the WebSocket handshake was refused) — if this network lets no WebSocket out, use "
            "HTTP mode: `leadbot serve` (README)"
        )
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "socket"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    # The line for a person comes last, after what slack_sdk logged on the way.
    assert result.stderr.splitlines()[-1] == expected, result.stderr
    assert "Traceback" not in result.stderr and "ticket" not in result.stderr


def test_sigterm_leaves_slack_and_exits_cleanly(
    database_url: str, slack: SlackEmulator, tmp_path: Path
) -> None:
    with _connected(_socket_env(database_url, slack), slack, tmp_path) as (proc, sim, log):
        assert "Lead #1" in sim.slash_command(EXAMPLE, user_id=MARKETER).json()["text"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()
        assert sim.link.closed.wait(5)
    text = log.read_text()
    assert "stopping: finishing the work already answered" in text
    assert "apscheduler" not in text, text  # its lines for each job added: noise, not news


@needs_tgkill
def test_sigterm_stops_socket_whichever_thread_it_lands_on(
    database_url: str, slack: SlackEmulator, tmp_path: Path
) -> None:
    with _connected(_socket_env(database_url, slack), slack, tmp_path) as (proc, sim, log):
        assert "Lead #1" in sim.slash_command(EXAMPLE, user_id=MARKETER).json()["text"]
        sigterm_to_a_worker_thread(proc.pid)
        assert proc.wait(15) == 0, log.read_text()
    assert "stopping: finishing the work already answered" in log.read_text()


@linux_smp
@pytest.mark.usefixtures("cpu_claims")
def test_socket_keeps_every_thread_on_one_cpu_by_default(
    database_url: str, slack: SlackEmulator, tmp_path: Path
) -> None:
    last = str(_free_cpus(1)[-1])
    env = _socket_env(database_url, slack)
    del env["PIN_CPU"]  # the default
    with _connected(env, slack, tmp_path) as (proc, sim, log):
        assert sim.slash_command("help", user_id=MARKETER).status == 200  # its workers exist
        threads = _cpus_of_every_thread(proc.pid)
        # Logs are written in batches every 50 ms; the process is killed on the way out.
        started = f"connected in Socket Mode (on CPU {last} (PIN_CPU))"
        deadline = time.monotonic() + 10
        while started not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
    # The socket's reader and workers, the outbox, the scheduler: all started after pinning.
    assert len(threads) > 5, threads
    assert set(threads.values()) == {last}, log.read_text()


@pytest.mark.parametrize("frame", [True, False], ids=["CLOSE frame", "no CLOSE frame"])
def test_a_lost_connection_is_opened_again_at_once(
    database_url: str, slack: SlackEmulator, tmp_path: Path, frame: bool
) -> None:
    """Slack's side goes away, with a CLOSE frame (its server restarts) or without one (a
    proxy ends the TCP connection). slack_sdk's client left both to its monitor: 10 s with no
    connection after a CLOSE, about a minute at 100% CPU without one. Each time, a request
    Slack sent meanwhile failed for its user."""
    with _connected(_socket_env(database_url, slack), slack, tmp_path) as (proc, _sim, log):
        for _ in range(2):  # the new connection is watched as the first was
            old = slack.socket_link()
            old.close(frame=frame)
            # Well under the monitor's 10 s: the reconnect came from leadbot noticing.
            new = slack.socket_link(timeout=5)
            assert new is not old, log.read_text()
        moved = SocketSim(new, team_id=TEAM, response_url_for=slack.response_url)
        assert "Lead #1" in moved.slash_command(EXAMPLE, user_id=MARKETER).json()["text"]
        assert proc.poll() is None


def test_the_emulator_hands_socket_urls_to_app_tokens_only(slack: SlackEmulator) -> None:
    with pytest.raises(SlackApiError) as refused:
        WebClient(token="xoxb-bot", base_url=slack.url).apps_connections_open(app_token="xoxb-bot")
    assert refused.value.response["error"] == "not_allowed_token_type"
    opened = WebClient(base_url=slack.url).apps_connections_open(app_token=APP_TOKEN)
    assert opened["url"].startswith(f"ws://127.0.0.1:{slack.port}/link/")


def _tls_pair(tmp_path: Path) -> tuple[socket.socket, socket.socket]:
    """A connected TLS client and server, with a throwaway self-signed certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make = [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
    ]
    subprocess.run(
        [*make, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    a, b = socket.socketpair()
    servers: list[socket.socket] = []
    accept = threading.Thread(
        target=lambda: servers.append(server_ctx.wrap_socket(b, server_side=True))
    )
    accept.start()
    client = client_ctx.wrap_socket(a)
    accept.join()
    return client, servers[0]


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "TLS"])
def test_closed_by_peer_tells_an_ended_connection_from_a_quiet_one(
    tmp_path: Path, tls: bool
) -> None:
    """Slack's sockets are TLS, which refuses recv flags: the check peeks under the TLS layer."""
    client, server = _tls_pair(tmp_path) if tls else socket.socketpair()
    with client, server:
        assert not closed_by_peer(client)  # open, nothing sent
        server.sendall(b"x")  # a socketpair delivers before sendall returns
        assert not closed_by_peer(client)  # open, something to read
        assert client.recv(1) == b"x"
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        assert closed_by_peer(client)
    assert not closed_by_peer(client)  # closed on our side: not the watchdog's business
