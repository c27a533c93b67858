"""The HTTP endpoint as Slack (and a load balancer) reach it."""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
import urllib.request
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_bolt import App

from bot import server as server_module
from bot.delivery import make_web_client
from bot.executor import TrackingExecutor
from bot.server import Server
from bot.slack_emulator import SlackEmulator
from bot.slack_sim import SlackSim
from models import NEW, make_engine
from tests.conftest import MARKETER, REP_A, SECRET, Bot, leads_locked

EXAMPLE = "Jane Doe, jane@acme.example, Acme Corp, hot, #SaaStr2026"


def test_forged_signature_is_rejected_and_stores_nothing(bot: Bot) -> None:
    response = bot.sim.slash_command(EXAMPLE, user_id=MARKETER, secret="not-the-secret")
    assert response.status == 401
    bot.settle()
    assert bot.leads() == []
    assert not bot.slack.calls_to("chat.postMessage")


def test_stale_signature_outside_replay_window_is_rejected(bot: Bot) -> None:
    six_minutes_ago = int(time.time()) - 6 * 60
    response = bot.sim.slash_command(EXAMPLE, user_id=MARKETER, timestamp=six_minutes_ago)
    assert response.status == 401
    bot.settle()
    assert bot.leads() == []


def test_unsigned_request_is_rejected(bot: Bot) -> None:
    response = bot.sim.raw(
        b"command=%2Flead&text=Jane", "application/x-www-form-urlencoded", sign=False
    )
    assert response.status == 401
    assert bot.leads() == []


def test_healthz_answers_when_app_and_database_are_up(bot: Bot) -> None:
    url = bot.server.url.replace("/slack/events", "/healthz")
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200
        assert b'"ok": true' in r.read()


def test_ack_does_not_wait_for_slack(bot: Bot) -> None:
    """Slack gives 3 seconds: the command is answered while chat.postMessage still hangs."""
    gate = bot.slack.hold("chat.postMessage")  # Slack does not answer until released
    bot.sim.timeout = 2.5  # a client that gives up like Slack would
    try:
        response = bot.sim.slash_command(EXAMPLE, user_id=MARKETER)
        assert response.status == 200
        assert "Lead #1" in response.json()["text"]
        # The lead was stored before anything was posted.
        [lead] = bot.leads()
        assert lead.card_ts is None
        assert bot.slack.calls_to("chat.postMessage") == []  # still held at this point
    finally:
        gate.release()
    bot.settle()
    assert bot.lead(lead.id).card_ts  # and once Slack answers, the card is on the lead


def test_card_post_failure_is_recorded_and_told_to_the_submitter(bot: Bot) -> None:
    bot.slack.fail("chat.postMessage", error="not_in_channel")
    response = bot.submit(EXAMPLE)
    assert response.status == 200
    [lead] = bot.leads()
    assert lead.card_ts is None and lead.card_error == "not_in_channel"
    # Retrying cannot fix it: one attempt, then the submitter hears what to do.
    attempts = [c for c in bot.slack.calls_to("chat.postMessage") if c.args["channel"] != MARKETER]
    assert len(attempts) == 1
    [note] = bot.slack.dms(MARKETER)
    assert "could not be posted" in note.text and "/invite" in note.text


def test_contact_details_never_reach_the_logs_even_at_debug(bot: Bot) -> None:
    import logging

    from tests.test_security import logged as log_of

    with log_of("DEBUG") as stream:
        bot.submit("Jane Doe, jane.private@acme.example, +1 415 555 0199, Acme Corp, hot")
        [lead] = bot.leads()
        bot.slack.fail("chat.postMessage", error="channel_not_found")  # an error path too
        bot.sim.block_action(
            "U0REPAAAA1",
            "lead_claim",
            f"{lead.id}:1",
            channel_id=lead.card_channel,
            message_ts=lead.card_ts,
        )
        bot.settle()
        logging.getLogger("slack_sdk").debug("body: email=jane.private@acme.example")
        logging.getLogger("leadbot").warning("oops %s", "+1 415 555 0199")
    logged = stream.getvalue()
    assert "lead 1 submitted" in logged and "lead 1 claimed" in logged  # by id, not by name
    assert "jane.private" not in logged
    assert "555 0199" not in logged and "5550199" not in logged


def test_the_form_opens_after_the_ack(bot: Bot) -> None:
    """`/lead` alone is answered at once; views.open (held here, as a slow Slack) follows."""
    gate = bot.slack.hold("views.open")
    bot.sim.timeout = 5  # were the ack waiting for views.open, this would time out
    try:
        response = bot.sim.slash_command("", user_id=MARKETER)
        assert response.status == 200
        assert gate.arrived.wait(5)  # the form is on its way, after the answer
        assert bot.slack.modals == {}
    finally:
        gate.release()
    bot.settle()
    [modal] = bot.slack.modals.values()
    assert modal["callback_id"] == "lead_new"


def test_a_click_is_acked_before_the_database_decides(bot: Bot) -> None:
    """Claim is answered while the leads table is locked; the claim lands once it is free."""
    bot.submit(EXAMPLE)
    [lead] = bot.leads()
    with leads_locked(bot.services.engine, "EXCLUSIVE") as holder:  # reads still go
        response = bot.sim.block_action(
            REP_A,
            "lead_claim",
            f"{lead.id}:1",
            channel_id=lead.card_channel,
            message_ts=lead.card_ts,
        )
        assert response.status == 200
        # Answered while the database was still locked: the claim itself is not written yet.
        assert holder.is_alive() and bot.lead(lead.id).status == NEW
    bot.settle()
    assert bot.lead(lead.id).owner_id == REP_A


def test_after_ack_threads_are_running_before_the_first_request() -> None:
    """The pools that acks hand work to (services.work, services.notes) start their threads when
    built: a pool that starts one per submit makes the first burst's acks wait for each new
    thread to get the GIL."""
    pool = TrackingExecutor(max_workers=3, name="leadbot-probe")
    try:
        running = [t.name for t in threading.enumerate() if t.name.startswith("leadbot-probe")]
        assert len(running) == 3, running
    finally:
        pool.shutdown(wait=True)


def test_the_server_is_ready_for_its_first_request_when_built(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every worker thread already waits for work, so a first request is not queued; it was
    logged as "Task queue depth is 1" when the machine was busy (seen in `leadbot demo`)."""
    app = App(token="xoxb-test", signing_secret=SECRET, token_verification_enabled=False)
    engine = make_engine("sqlite://")
    app.leadbot = SimpleNamespace(engine=engine)  # type: ignore[attr-defined]  # for /healthz
    with caplog.at_level(logging.WARNING, logger="waitress.queue"):
        server = Server(app, threads=8)
        try:
            dispatcher = server._server.task_dispatcher  # type: ignore[union-attr]
            assert dispatcher.active_count == 0 and len(dispatcher.threads) == 8
            server.start()
            url = f"http://127.0.0.1:{server.port}/healthz"
            with urllib.request.urlopen(url, timeout=5) as response:
                assert response.status == 200
        finally:
            server.stop()
            engine.dispose()
    assert not [r for r in caplog.records if r.name == "waitress.queue"]


def _stoppable_app(slack: SlackEmulator) -> App:
    app = App(
        client=make_web_client("xoxb-test", slack.url),
        signing_secret=SECRET,
        token_verification_enabled=False,
        process_before_response=True,
    )
    app.leadbot = SimpleNamespace(engine=make_engine("sqlite://"))  # type: ignore[attr-defined]
    return app


def _wait_until_refusing(server: Server) -> None:
    """Return once the server's listening socket is closed."""
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
        except (ConnectionRefusedError, ConnectionResetError):  # reset: one in the backlog
            return
        except TimeoutError:
            # A connect caught by the close itself gets no answer at all; the next is refused.
            pass
        assert time.monotonic() < deadline, "still taking connections while stopping"
        time.sleep(0.01)


def _signed_command(server: Server, command: str) -> tuple[bytes, bytes]:
    """The head and body of a signed slash command, as Slack writes it on the wire."""
    body = urlencode(
        {"command": command, "text": "x", "user_id": MARKETER, "team_id": "T0001"}
    ).encode()
    ts = str(int(time.time()))
    head = (
        "POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        f"X-Slack-Request-Timestamp: {ts}\r\n"
        f"X-Slack-Signature: {SlackSim(server.url, SECRET).signature(body, ts)}\r\n\r\n"
    ).encode()
    return head, body


def _read_answer(conn: socket.socket) -> bytes:
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_stopping_server_answers_the_requests_under_way_and_takes_no_new_ones(
    slack: SlackEmulator,
) -> None:
    """Ctrl-C or SIGTERM (a deploy) must not swallow an answer: a /lead already saved whose
    receipt never went out looks failed to its marketer."""
    app = _stoppable_app(slack)
    under_way, finish = threading.Event(), threading.Event()

    @app.command("/slow")
    def slow(ack: Any) -> None:
        under_way.set()
        finish.wait(10)
        ack("done")

    server = Server(app, threads=4).start()
    sim = SlackSim(server.url, SECRET)
    answers: list[Any] = []
    request = threading.Thread(
        target=lambda: answers.append(sim.slash_command("x", user_id=MARKETER, command="/slow"))
    )
    stopping = threading.Thread(target=server.stop, kwargs={"drain": 10.0})
    try:
        request.start()
        assert under_way.wait(5)
        stopping.start()
        _wait_until_refusing(server)  # the listening socket closes first
        assert stopping.is_alive()  # waiting for the request under way
        finish.set()
        request.join(10)
        stopping.join(10)
        assert not stopping.is_alive()
        [answer] = answers
        assert (answer.status, answer.body) == (200, "done")
    finally:
        finish.set()
        if not stopping.is_alive() and not stopping.ident:
            server.stop()
        app.leadbot.engine.dispose()  # type: ignore[attr-defined]


def test_a_worker_still_finishing_after_stop_wakes_no_closed_loop(slack: SlackEmulator) -> None:
    """A worker that outlives the loop (stop without drain) ends its task by pulling the loop's
    trigger, as waitress does after every request. The trigger's pipe must still be open then:
    closed with the loop, the pull failed with EBADF (a rare failure of the first-request test),
    or wrote into whatever file had reused the descriptor."""
    app = _stoppable_app(slack)
    under_way, finish = threading.Event(), threading.Event()
    pulls: list[BaseException | None] = []
    server = Server(app, threads=2)
    trigger = server._server.trigger  # type: ignore[union-attr]

    @app.command("/slow")
    def slow(ack: Any) -> None:
        under_way.set()
        finish.wait(10)
        try:
            trigger.pull_trigger()  # what waitress's worker does once its task is done
            pulls.append(None)
        except OSError as e:
            pulls.append(e)
        ack("done")

    server.start()
    sim = SlackSim(server.url, SECRET)
    answers: list[object] = []

    def send() -> None:
        try:
            answers.append(sim.slash_command("x", user_id=MARKETER, command="/slow"))
        except OSError as e:  # stopped without drain: the connection is closed unanswered
            answers.append(e)

    request = threading.Thread(target=send)
    stopping = threading.Thread(target=server.stop)
    try:
        request.start()
        assert under_way.wait(5)
        stopping.start()
        assert server._thread is not None
        server._thread.join(5)
        assert not server._thread.is_alive()  # the loop is over; the worker is not
        finish.set()
        request.join(10)
        stopping.join(10)
        assert not stopping.is_alive()
        assert pulls == [None]
        assert trigger._closed  # and closed once the worker was done
        assert len(answers) == 1
    finally:
        finish.set()
        app.leadbot.engine.dispose()  # type: ignore[attr-defined]


def test_a_stopping_server_answers_a_request_whose_rest_is_still_arriving(
    slack: SlackEmulator,
) -> None:
    """Slack sent the whole request; that only its first bytes had arrived when the stop came
    is no reason to drop it."""
    app = _stoppable_app(slack)
    app.command("/quick")(lambda ack: ack("done"))
    server = Server(app, threads=4).start()
    head, body = _signed_command(server, "/quick")
    stopping = threading.Thread(target=server.stop, kwargs={"drain": 10.0})
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(head + body[:10])
            deadline = time.monotonic() + 5
            while not any(  # the server has read the part sent so far
                getattr(c, "request", None) is not None
                for c in list(server._server._map.values())  # type: ignore[union-attr]
            ):
                assert time.monotonic() < deadline, "the server never read the request's head"
                time.sleep(0.01)
            stopping.start()
            _wait_until_refusing(server)
            conn.sendall(body[10:])
            answer = _read_answer(conn)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"done"), answer
        stopping.join(10)
        assert not stopping.is_alive()
    finally:
        if stopping.ident:
            stopping.join(10)
        else:
            server.stop()
        app.leadbot.engine.dispose()  # type: ignore[attr-defined]


def test_a_request_sent_but_not_yet_read_is_under_way_however_old_its_connection() -> None:
    """On a loaded machine the loop may take more than a second to read a request from a
    connection it accepted: stopping must wait for it all the same, as for any request."""
    mine, client = socket.socketpair()
    mine.setblocking(False)  # as waitress keeps its sockets
    long_ago = time.time() - 60
    channel = SimpleNamespace(
        socket=mine,
        requests=[],
        total_outbufs_len=0,
        request=None,
        creation_time=long_ago,
        last_activity=long_ago,
    )
    try:
        assert not server_module._under_way(channel)  # idle, nothing sent: not waited for
        client.sendall(b"POST /slack/events HTTP/1.1\r\n")
        assert server_module._under_way(channel)
        assert mine.recv(100).startswith(b"POST")  # only peeked at: the bytes are all there
        assert not server_module._under_way(channel)
        client.close()
        assert not server_module._under_way(channel)  # the client is gone: nothing owed
    finally:
        mine.close()
        client.close()


def test_a_stopping_server_answers_a_connection_it_had_not_accepted_yet(
    slack: SlackEmulator,
) -> None:
    """A connection the kernel completed while the server was busy sits in the listen backlog
    with its request; closing the listening socket would reset it unanswered."""
    app = _stoppable_app(slack)
    app.command("/quick")(lambda ack: ack("done"))
    server = Server(app, threads=4).start()
    head, body = _signed_command(server, "/quick")
    loop_held, release = threading.Event(), threading.Event()
    stopping = threading.Thread(target=server.stop, kwargs={"drain": 10.0})

    def hold_the_loop_then_stop_listening() -> None:
        # Runs in waitress's loop thread, as stop() runs its first step: while it is held,
        # a new connection can only wait in the backlog.
        loop_held.set()
        release.wait(10)
        server._stop_listening()

    try:
        server._server.trigger.pull_trigger(hold_the_loop_then_stop_listening)  # type: ignore[union-attr]
        assert loop_held.wait(5)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(head + body)
            # connect() can return before the server's kernel has queued the connection for
            # accept() (its half of the handshake runs later on a loaded machine); closed
            # before then, it would be reset, which no server can prevent. Readable: queued.
            listening: Any = server._server.socket  # type: ignore[union-attr]
            assert select.select([listening], [], [], 5)[0], "never queued for accept()"
            release.set()
            _wait_until_refusing(server)
            stopping.start()
            answer = _read_answer(conn)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"done"), answer
        stopping.join(10)
        assert not stopping.is_alive()
    finally:
        release.set()
        if stopping.ident:
            stopping.join(10)
        else:
            server.stop()
        app.leadbot.engine.dispose()  # type: ignore[attr-defined]


class _WatchedLock:
    """A lock that says when someone starts waiting for it while it is held."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.waited = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if blocking and self._lock.locked():
            self.waited.set()
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_the_loop_waits_for_a_worker_writing_its_answer_instead_of_going_round_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """waitress's loop only tried the answer's lock and, with a worker holding it, went round
    again at once, ~14 times per request under the ack benchmark's load. leadbot's connection
    waits for the lock (briefly) and then sends what the worker wrote."""
    lock = _WatchedLock()
    sent: list[bool] = []
    channel = SimpleNamespace(
        outbuf_lock=threading.Condition(lock),  # type: ignore[arg-type]
        total_outbufs_len=10,
        adj=SimpleNamespace(outbuf_high_watermark=16_777_216),
        _flush_some=lambda do_close=True: sent.append(do_close),
    )
    # Long enough for a loaded machine to run the worker; the server waits 5 ms.
    monkeypatch.setattr(server_module, "LOCK_WAIT", 10.0)
    lock.acquire()  # a worker writing its answer

    def worker_finishes() -> None:
        if lock.waited.wait(timeout=5):  # the loop waits for it
            lock.release()

    worker = threading.Thread(target=worker_finishes)
    worker.start()
    server_module._Channel._flush_some_if_lockable(channel)  # type: ignore[arg-type]
    worker.join()
    assert lock.waited.is_set(), "the loop did not wait for the worker's lock"
    assert sent == [True]  # and then sent the answer itself
