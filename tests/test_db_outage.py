"""PostgreSQL going away under a running bot: restarted, down, hung. leadbot must recover by
itself, lose nothing, send nothing twice, and tell people the truth meanwhile.

These tests stop, start and freeze a server, so they never touch LEADBOT_TEST_DATABASE_URL's:
each module run starts a throwaway cluster of its own from the PostgreSQL binaries
(LEADBOT_PG_BINDIR, else `pg_config --bindir`, /usr/lib/postgresql/*/bin or initdb on PATH), and
skips, saying why, where there are none. The bot is the real one over signed HTTP against the
loopback Slack, as in tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Pool, event, func, select, text

from bot import db, render
from bot.clock import FakeClock, FakeDeliveryTime
from bot.slack_emulator import SlackEmulator
from handlers.common import DB_BUSY, FORM_MAY_HAVE_BEEN_SAVED
from models import Lead, OutboxItem, make_engine
from tests.conftest import LEADS_CHANNEL, MANAGER, MARKETER, REP_A, REP_B, Bot, start_bot
from tests.test_handoff import modal_state
from tests.test_outcomes import click_card, modal, new_lead, open_disqualify

EXAMPLE = "Jane Doe, jane@acme.example, +1 415 555 0100, Acme Corp, hot, #SaaStr2026"
# Slack shows "operation_timeout" for an answer later than this; a correctness bound, not speed.
SLACK_DEADLINE = 3.0
INITDB = ("--auth=trust", "--no-sync", "-E", "UTF8")
T = TypeVar("T")


def _bindir() -> Path | None:
    candidates = [os.environ.get("LEADBOT_PG_BINDIR", "")]
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        candidates.append(
            subprocess.run(
                ["pg_config", "--bindir"], capture_output=True, text=True, check=True
            ).stdout.strip()
        )
    candidates += sorted(
        (str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    initdb = shutil.which("initdb")
    candidates.append(os.path.dirname(initdb) if initdb else "")
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


@dataclass
class Cluster:
    """A PostgreSQL server of this module's own, to stop, start and freeze."""

    bindir: Path
    datadir: Path
    port: int
    as_user: list[str]  # ["runuser", "-u", "postgres", "--"] when running as root

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/leadbot"

    def ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-w", *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -F"
        self.ctl("-o", options, "-l", str(self.datadir / "server.log"), "start")

    def stop(self) -> None:
        """Down at once, connections and all (as a crash or `pg_ctl stop -m immediate`)."""
        self.ctl("-m", "immediate", "stop")

    def postmaster(self) -> int:
        return int((self.datadir / "postmaster.pid").read_text().split()[0])

    def processes(self) -> list[int]:
        """Its postmaster, then every process that postmaster started: found by parent pid,
        never by user name (the shared server's processes run as the same user)."""
        postmaster = self.postmaster()
        assert str(self.datadir) in Path(f"/proc/{postmaster}/cmdline").read_text()
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Every process of the server stopped (SIGSTOP) until the block ends: connections stay
        open and nothing on them is answered, the backends' included, as a wedged host."""
        pids = self.processes()
        try:
            for pid in pids:  # the postmaster first: it starts no backend meanwhile
                os.kill(pid, signal.SIGSTOP)
            yield
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def cut_connections(self) -> None:
        """Every connection to the bot's database closed by the server, as a restart does,
        and gone by the time this returns."""
        admin = make_engine(self.url.replace("/leadbot", "/postgres"))
        try:
            with admin.connect() as conn:
                pids = conn.scalars(
                    text(
                        "SELECT pid FROM pg_stat_activity WHERE datname = 'leadbot' "
                        "AND pid <> pg_backend_pid()"
                    )
                ).all()
                assert pids, "the bot holds no connection to cut"
                for pid in pids:  # waits (up to 5 s) until the backend has exited
                    conn.execute(text("SELECT pg_terminate_backend(:p, 5000)"), {"p": pid})
        finally:
            admin.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    bindir = _bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl); set LEADBOT_PG_BINDIR")
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root with no `postgres` user to run a throwaway cluster as")
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser to run a throwaway cluster as postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    datadir = Path(tempfile.mkdtemp(prefix="leadbot-outage-pg-"))
    if owner is not None:
        os.chown(datadir, owner.pw_uid, owner.pw_gid)
    cluster = Cluster(bindir, datadir, _free_port(), as_user)
    try:
        subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", *INITDB],
            check=True,
            capture_output=True,
            timeout=120,
        )
        cluster.start()
        db.fresh_pg_database(cluster.url.replace("/leadbot", "/postgres"), "leadbot")
        engine = make_engine(cluster.url)
        db.upgrade(engine)
        engine.dispose()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.stop()
        shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture
def pg_url(cluster: Cluster) -> str:
    """The cluster's database, empty, and its server up."""
    if not (cluster.datadir / "postmaster.pid").exists():
        cluster.start()
    engine = make_engine(cluster.url)
    with engine.begin() as conn:
        tables = "leads, lead_events, job_runs, outbox, processed_events"
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return cluster.url


@pytest.fixture
def running(pg_url: str, slack: SlackEmulator, clock: FakeClock) -> Iterator[Bot]:
    bot = start_bot(pg_url, slack, clock)
    yield bot
    bot.stop()


def _claim(bot: Bot, lead_id: int, user: str = REP_A):
    return bot.sim.block_action(user, "lead_claim", f"{lead_id}:1", channel_id=LEADS_CHANNEL)


def _healthz(bot: Bot, timeout: float = 10.0) -> int:
    try:
        url = f"http://127.0.0.1:{bot.server.port}/healthz"
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def _healthz_turns(bot: Bot, status: int, within: float = 5.0) -> None:
    """/healthz answers `status` within `within` seconds (it reuses a result for a second)."""
    deadline = time.monotonic() + within
    while _healthz(bot) != status:
        assert time.monotonic() < deadline, f"/healthz is not {status} after {within} s"
        time.sleep(0.1)


def _counts(bot: Bot) -> tuple[int, list[tuple[str, str, int, bool]]]:
    with bot.services.sessions() as s:
        leads = s.scalar(select(func.count()).select_from(Lead)) or 0
        items = s.execute(
            select(
                OutboxItem.kind, OutboxItem.status, OutboxItem.attempts, OutboxItem.lease_owner
            ).order_by(OutboxItem.id)
        ).all()
    return leads, [(k, st, a, owner is not None) for k, st, a, owner in items]


def test_the_first_request_after_a_restart_does_not_get_a_dead_connection(
    cluster: Cluster, running: Bot
) -> None:
    """The server closed every pooled connection (a restart, a failover, an idle timeout). A
    connection used within the last 5 s was handed out unchecked, and the /lead that got it
    was told the database was not answering, though it was."""
    first = running.submit(EXAMPLE)
    assert "is in" in first.json()["text"]
    cluster.cut_connections()
    second = running.sim.slash_command(
        "John Roe, john@acme.example, Acme Corp", user_id=MARKETER, channel_id="C0EVENTS01"
    )
    assert second.status == 200
    assert "Lead #2" in second.json()["text"], second.json()["text"]
    assert _claim(running, 2).status == 200
    running.settle()
    assert running.lead(2).owner_id == REP_A


def test_down_and_back(
    cluster: Cluster, running: Bot, slack: SlackEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """While the database is down people are answered in time and told nothing was saved;
    /healthz says so; the log says it once, not at every pass; and it all works again, by
    itself, once the database is back."""
    running.submit(EXAMPLE)
    caplog.set_level(logging.INFO)
    cluster.stop()
    try:
        started = time.monotonic()
        lead = running.sim.slash_command(
            "John Roe, john@acme.example, Acme Corp", user_id=MARKETER, channel_id="C0EVENTS01"
        )
        assert time.monotonic() - started < SLACK_DEADLINE
        assert lead.status == 200
        said = lead.json()["text"]
        assert "couldn't save" in said and "Nothing was stored" in said
        assert "John Roe, john@acme.example, Acme Corp" in said  # their text back
        assert "Traceback" not in said
        claim = _claim(running, 1)
        assert (claim.status, claim.body) == (200, "")
        # (Not settle(): the outbox's part of it asks the database.)
        assert running.app.leadbot_executor.wait_idle(10)  # type: ignore[attr-defined]
        assert running.services.notes.wait_idle(10)
        assert [m.text for m in slack.ephemerals(REP_A)] == [DB_BUSY]
        assert _healthz(running) == 503
        for _ in range(4):  # passes of the delivery loop, each failing
            running.services.outbox.wait_parked()
        outage = [r for r in caplog.records if r.name == "bot.outbox"]
        assert len(outage) == 1, [r.getMessage() for r in outage]
        assert outage[0].exc_info is None and "out of reach" in outage[0].getMessage()
    finally:
        cluster.start()
    _healthz_turns(running, 200)
    again = running.submit("John Roe, john@acme.example, Acme Corp")
    assert "is in" in again.json()["text"]  # (its id is not 2: a crash skips sequence values)
    assert _claim(running, 1).status == 200
    running.settle()
    assert running.lead(1).owner_id == REP_A
    assert any("outbox pass works again" in r.getMessage() for r in caplog.records)
    _, items = _counts(running)
    # Nothing from the outage, nothing half-written.
    assert [lead.name for lead in running.leads()] == ["Jane Doe", "John Roe"]
    assert all(status == "sent" and not leased for _, status, _, leased in items), items
    assert len(slack.messages(LEADS_CHANNEL)) - len(slack.ephemerals()) == 2  # one card each


def test_a_message_sent_as_the_database_goes_away_is_not_sent_again(
    cluster: Cluster, pg_url: str, slack: SlackEmulator, clock: FakeClock
) -> None:
    """Slack took the claimer's DM, but the database went away before the outbox recorded it.
    Left to its lease, the item was sent again once the database was back: the DM twice."""
    delivery = FakeDeliveryTime()
    bot = start_bot(pg_url, slack, clock, delivery_time=delivery)
    try:
        bot.submit(EXAMPLE)
        dm = slack.dm_channel(REP_A)
        gate = slack.hold("chat.postMessage", when=lambda args: args.get("channel") in (REP_A, dm))
        assert _claim(bot, 1).status == 200
        assert gate.arrived.wait(10)
        cluster.stop()
        try:
            gate.release()
            deadline = time.monotonic() + 10
            while not slack.dms(REP_A):  # Slack has it now
                assert time.monotonic() < deadline
                time.sleep(0.02)
            time.sleep(0.3)  # the outbox tries to record it, and cannot
        finally:
            cluster.start()
        delivery.advance(600)  # past any lease: one left behind is taken again
        bot.settle(30)
        assert len(slack.dms(REP_A)) == 1, [m.text for m in slack.dms(REP_A)]
        assert len(slack.dms(MARKETER)) == 1  # the submitter's "claimed" DM, once as well
        _, items = _counts(bot)
        assert all(status == "sent" and not leased for _, status, _, leased in items), items
    finally:
        bot.stop()


def test_a_hung_server_costs_a_request_seconds_not_the_hang(cluster: Cluster, running: Bot) -> None:
    """The postmaster stopped answering (SIGSTOP: a wedged server, a host under water). A
    request that had to open a connection waited for as long as that lasted, past Slack's 3 s,
    and its lead was stored after Slack had told the person it failed."""
    running.submit(EXAMPLE)
    running.services.engine.dispose()  # the next request opens a connection
    postmaster = cluster.postmaster()
    os.kill(postmaster, signal.SIGSTOP)
    thaw = threading.Timer(8.0, os.kill, (postmaster, signal.SIGCONT))
    thaw.start()
    try:
        started = time.monotonic()
        lead = running.sim.slash_command(
            "John Roe, john@acme.example, Acme Corp", user_id=MARKETER, channel_id="C0EVENTS01"
        )
        took = time.monotonic() - started
        assert lead.status == 200
        assert took < SLACK_DEADLINE, f"answered after {took:.1f} s"
        assert "couldn't save" in lead.json()["text"]
        started = time.monotonic()
        assert _healthz(running) == 503
        assert time.monotonic() - started < SLACK_DEADLINE
    finally:
        thaw.cancel()
        os.kill(postmaster, signal.SIGCONT)
    again = running.submit("John Roe, john@acme.example, Acme Corp")
    assert "is in" in again.json()["text"]
    assert [lead.name for lead in running.leads()] == ["Jane Doe", "John Roe"]


def _timed(call: Callable[[], T]) -> tuple[T, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def _health_threads() -> int:
    return sum(t.name == "leadbot-health" for t in threading.enumerate())


def test_healthz_answers_in_time_while_the_database_is_frozen(
    cluster: Cluster,
    pg_url: str,
    slack: SlackEmulator,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every process of the server stopped, and all 16 web threads waiting on it (requests
    that took a pooled connection). /healthz queued behind them, and its own SELECT waited on
    the frozen server too: no answer for as long as the freeze lasted, so a load balancer's
    probe timed out instead of reading 503. Each check also logged a WARNING."""
    bot = start_bot(pg_url, slack, clock, WEB_THREADS="16")
    try:
        bot.submit(EXAMPLE)
        assert _healthz(bot) == 200
        # Connections used a moment ago, so requests take them from the pool without a ping
        # and wait mid-query once the server freezes.
        held = [bot.services.engine.connect() for _ in range(24)]
        for conn in held:
            conn.close()
        bot.server.health.give_up = 1.5  # a check waiting this long has its connection cut
        # Web threads all waiting is the point here: not cut at their deadline meanwhile.
        assert bot.server.request_deadline is not None
        bot.server.request_deadline.deadline = 60.0
        caplog.set_level(logging.INFO, logger="bot.server")
        answers: list[int] = []
        bot.sim.timeout = 60
        with cluster.frozen():

            def lead(i: int) -> None:
                answers.append(
                    bot.sim.slash_command(
                        f"Stuck {i}, s{i}@acme.example", user_id=MARKETER, channel_id="C0EVENTS01"
                    ).status
                )

            stuck = [threading.Thread(target=lead, args=(i,)) for i in range(16)]
            for t in stuck:
                t.start()
            web = bot.server._server.task_dispatcher  # type: ignore[union-attr]
            deadline = time.monotonic() + 5
            while web.active_count < 16:
                assert time.monotonic() < deadline, f"{web.active_count} web threads busy"
                time.sleep(0.02)

            # (A result is reused for a second: the 200 from before the freeze may come back.)
            deadline = time.monotonic() + bot.server.health.fresh_for + 1
            while True:
                status, took = _timed(lambda: _healthz(bot, timeout=SLACK_DEADLINE))
                assert took < 1.0, f"{status} after {took:.2f} s"
                if status == 503:
                    break
                assert time.monotonic() < deadline, "/healthz still 200"
                time.sleep(0.1)
            flood: list[tuple[int, float]] = []
            in_flight = [_health_threads()]

            def probe() -> None:
                flood.append(_timed(lambda: _healthz(bot, timeout=SLACK_DEADLINE)))
                in_flight.append(_health_threads())

            for _ in range(3):  # past give_up: the stuck check is cut off, a new one tried
                probes = [threading.Thread(target=probe) for _ in range(20)]
                for t in probes:
                    t.start()
                for t in probes:
                    t.join()
                time.sleep(0.5)
            assert {s for s, _ in flood} == {503}
            assert max(took for _, took in flood) < 1.0, sorted(took for _, took in flood)[-3:]
            assert max(in_flight) <= 1, in_flight
            assert len(answers) == 0  # the web threads still wait
        _healthz_turns(bot, 200, within=10)
        for t in stuck:
            t.join(30)
        assert answers == [200] * 16
        said = [r.getMessage() for r in caplog.records if r.name == "bot.server"]
        assert len([m for m in said if "/healthz answers 503" in m]) == 1, said
        assert len([m for m in said if "/healthz answers 200" in m]) == 1, said
        assert len([m for m in said if "dropping its connection" in m]) == 1, said
    finally:
        bot.stop()


def test_socket_mode_rides_out_the_database_down_then_frozen(
    cluster: Cluster, pg_url: str, slack: SlackEmulator, tmp_path: Path
) -> None:
    """`leadbot socket` with the server down, then back, then frozen. Down, every envelope is
    acked at once and honestly, and it all works again without a restart. Frozen, a /lead on
    a pooled connection was acked only when the server thawed (8 s for an 8 s freeze), and
    with the client's 10 workers all waiting, the next envelopes waited for one, past Slack's
    3 s: Slack would have said the app did not respond, and stored some of the leads anyway.
    Now each is acked within the deadline, and a late answer follows on its response_url."""
    from tests.test_socket_mode import _connected, _socket_env

    with _connected(_socket_env(pg_url, slack), slack, tmp_path) as (_proc, sim, log):
        assert "Lead #1" in sim.slash_command(EXAMPLE, user_id=MARKETER).json()["text"]
        slack.wait_for("chat.postMessage", lambda c: c.args["channel"] == LEADS_CHANNEL)
        sim.timeout = SLACK_DEADLINE  # an ack later than Slack would wait is a 504
        cluster.stop()
        try:
            down = sim.slash_command("John Roe, john@acme.example, Acme", user_id=MARKETER)
            assert down.status == 200, down
            assert "couldn't save" in down.json()["text"]
            claim = sim.block_action(REP_A, "lead_claim", "1:1", channel_id=LEADS_CHANNEL)
            assert (claim.status, claim.body) == (200, "")
            slack.wait_for("chat.postEphemeral", lambda c: c.args["text"] == DB_BUSY)
        finally:
            cluster.start()
        again = sim.slash_command("John Roe, john@acme.example, Acme", user_id=MARKETER)
        assert "is in" in again.json()["text"]

        answers: dict[int, tuple[int, str]] = {}

        def lead(i: int) -> None:
            response = sim.slash_command(
                f"Frozen {i}, f{i}@acme.example",
                user_id=MARKETER,
                response_url=slack.response_url(f"frozen-{i}"),
            )
            answers[i] = (response.status, response.json()["text"] if response.ok else "")

        with cluster.frozen():
            froze = time.monotonic()
            # More at once than the client has workers (10): the last ones wait 2 s for one,
            # then 2 s for a connection (or for the thaw, on one from the pool).
            senders = [threading.Thread(target=lead, args=(i,)) for i in range(16)]
            for t in senders:
                t.start()
            for t in senders:
                t.join()
            time.sleep(max(0.0, froze + 5.0 - time.monotonic()))
        assert sorted(answers) == list(range(16))
        assert {status for status, _ in answers.values()} == {200}, answers  # 504: no ack
        late = [i for i, (_, said) in answers.items() if said.startswith("⏳")]
        assert late, answers
        told_stored = {i for i, (_, said) in answers.items() if "is in" in said}
        for i in late:  # the answer follows, once
            [post] = slack.wait_for_response(name=f"frozen-{i}", timeout=10)
            if "is in" in post.body["text"]:
                told_stored.add(i)
            else:
                assert "couldn't save" in post.body["text"], post.body
        # Stored are exactly the leads whose people were told so; one card each.
        stored = {int(name.split()[1]) for name in _lead_names(pg_url) if name.startswith("Frozen")}
        assert stored == told_stored
        assert "Lead #" in sim.slash_command(EXAMPLE, user_id=MARKETER).json()["text"]
        cards = slack.wait_for(
            "chat.postMessage",
            lambda c: c.args["channel"] == LEADS_CHANNEL,
            count=3 + len(stored),
            timeout=20,  # the outbox waits a few seconds between tries while the database is out
        )
        assert len(cards) == 3 + len(stored)
        # leadbot writes its log from a background thread in batches: the last late answer's
        # line may land a moment after Slack got the answer itself.
        deadline = time.monotonic() + 5
        while (
            log.read_text().count("through its response_url") < len(late)
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        text = log.read_text()
        assert "Traceback" not in text
        assert text.count("through its response_url") == len(late)


def _lead_names(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.scalars(select(Lead.name)))
    finally:
        engine.dispose()


# --- a database call in flight when the server stops answering (bot.db.RequestDeadline) ---------

MAY_HAVE_BEEN_SAVED = "can't tell whether it was stored"


@contextlib.contextmanager
def commits_hang(cluster: Cluster) -> Iterator[list[threading.Thread]]:
    """Every commit that wrote something waits, until the block ends, for a synchronous standby
    that does not exist (a primary whose standby went away; a commit stuck on its disk): the
    write is done and stays invisible, and its client gets no answer. Then they all complete.
    Deterministic, where a freeze catches a statement at whatever point it is."""
    admin = make_engine(cluster.url.replace("/leadbot", "/postgres"), isolation_level="AUTOCOMMIT")
    probes: list[threading.Thread] = []

    def standby(names: str) -> None:
        with admin.connect() as conn:
            conn.execute(text(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'"))
            conn.execute(text("SELECT pg_reload_conf()"))

    def probe() -> None:  # a commit that wrote something: it waits too, once it is in force
        with admin.connect() as conn:
            conn.execute(text("INSERT INTO commit_probe VALUES (now())"))

    with admin.connect() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS commit_probe (at timestamptz)"))
    standby("nobody")
    try:
        deadline = time.monotonic() + 10
        while True:  # the server applies the setting a moment after the reload
            probes.append(threading.Thread(target=probe))
            probes[-1].start()
            probes[-1].join(0.3)
            if probes[-1].is_alive():
                break
            assert time.monotonic() < deadline, "commits do not wait"
        yield probes
    finally:
        standby("")
        for t in probes:
            t.join(10)
        admin.dispose()


def _when_stored(bot: Bot, name: str, within: float = 5.0) -> list[Lead]:
    """The leads named `name`, once there is one (after `within` seconds, whatever there is)."""
    deadline = time.monotonic() + within
    while True:
        found = [lead for lead in bot.leads() if lead.name == name]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _new_lead_form(bot: Bot, name: str, email: str) -> object:
    view = {**render.lead_modal('{"channel_id": "C0EVENTS01"}'), "id": "V0CUT0001"}
    return bot.sim.view_submission(
        MARKETER,
        view,
        modal_state({"name": name, "email": email, "priority": "warm"}),
        private_metadata=view["private_metadata"],
    )


def test_a_commit_that_never_answers_is_told_may_have_been_saved(
    cluster: Cluster, running: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    """The server took the writes and never answered their commits. Each request waited for as
    long as that lasted, past Slack's 3 s: the person saw Slack's "operation_timeout", and the
    lead was stored anyway. Now each is answered within 3 s, and honestly: the write may have
    been stored (a new person's lead is one statement in autocommit; a repeat's a transaction,
    cut in its COMMIT). Once the commits complete, each lead is there once, and sending it
    again is marked as a possible duplicate, not stored silently a second time."""
    running.submit(EXAMPLE)  # Jane Doe, lead #1
    caplog.set_level(logging.INFO, logger="bot.db")
    running.sim.timeout = 10.0  # (an answer later than Slack's deadline is a failure below)
    answers: dict[str, tuple[object, float]] = {}

    def timed(key: str, call: Callable[[], object]) -> threading.Thread:
        def run() -> None:
            answers[key] = _timed(call)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    with commits_hang(cluster):
        senders = [
            timed(
                "new",
                lambda: running.sim.slash_command(
                    "John Roe, john@acme.example, Acme Corp",
                    user_id=MARKETER,
                    channel_id="C0EVENTS01",
                ),
            ),
            timed("repeat", lambda: running.sim.slash_command(EXAMPLE, user_id=MARKETER)),
            timed("form", lambda: _new_lead_form(running, "Max Moe", "max@acme.example")),
        ]
        for t in senders:
            t.join(15)
    for key, (response, took) in answers.items():
        assert took < SLACK_DEADLINE, f"{key}: answered after {took:.1f} s"
        assert response.status == 200, (key, response)  # type: ignore[attr-defined]
    for key in ("new", "repeat"):
        said = answers[key][0].json()["text"]  # type: ignore[attr-defined]
        assert MAY_HAVE_BEEN_SAVED in said and "Nothing was stored" not in said, (key, said)
        assert f"<#{LEADS_CHANNEL}>" in said
    assert "John Roe, john@acme.example, Acme Corp" in answers["new"][0].json()["text"]  # type: ignore[attr-defined]
    form = answers["form"][0].json()  # type: ignore[attr-defined]
    assert form == {"response_action": "errors", "errors": {"name": FORM_MAY_HAVE_BEEN_SAVED}}
    # The commits went through once released: each lead stored once (none lost, none doubled).
    for name in ("John Roe", "Max Moe"):
        assert len(_when_stored(running, name)) == 1, name
    jane = [lead for lead in running.leads() if lead.name == "Jane Doe"]
    assert len(jane) == 2 and jane[1].duplicate_of_id == jane[0].id
    # Sent again, as the answer allows: marked, not a silent second copy.
    again = running.submit("John Roe, john@acme.example, Acme Corp")
    assert "is in" in again.json()["text"] and "Possible duplicate" in again.json()["text"]
    deadline = running.server.request_deadline
    assert deadline is not None and deadline.cuts == 3
    said = [r.getMessage() for r in caplog.records if r.name == "bot.db"]
    # Said once, and only what is known: no answer in time, which does not make it down.
    assert len([m for m in said if "no answer within 2.2 s, a commit in flight" in m]) == 1, said
    assert not [m for m in said if "out of reach" in m], said
    # And a line per request, as much as is known, with no contact details.
    per_request = [r.getMessage() for r in caplog.records if r.name == "handlers.common"]
    maybe = "lead maybe stored: its commit got no answer within the request's deadline"
    assert len([m for m in per_request if m.startswith(maybe)]) == 3, per_request
    assert all("acme" not in m.lower() and "@" not in m for m in per_request)
    assert len([m for m in said if "works again" in m]) == 1, said
    assert all("acme" not in m.lower() and "@" not in m for m in said)


@pytest.fixture
def web_checkouts() -> Iterator[list[Any]]:
    """The connections web (waitress) threads take from any pool, noted by a listener that is
    in place before the bot starts and gone after it stops: added or removed while the outbox
    checks out a connection, it broke that checkout ("deque mutated during iteration")."""
    took: list[Any] = []

    def note(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if threading.current_thread().name.startswith("waitress"):
            took.append(dbapi_connection)

    event.listen(Pool, "checkout", note)
    yield took
    event.remove(Pool, "checkout", note)


def test_a_query_in_flight_when_the_server_freezes_is_answered_in_time(
    cluster: Cluster, web_checkouts: list[Any], running: Bot
) -> None:
    """Every process of the server stopped while a /lead's statement was on its way, on a
    pooled connection (no connect, no ping to time out). The request waited for as long as the
    freeze lasted. Now it is answered within Slack's 3 s, its connection is dropped, and the
    bot goes on as usual after the thaw; what it said matches what the server did."""
    running.submit(EXAMPLE)
    engine = running.services.engine
    # Connections used a moment ago: the next request takes one without a ping.
    pooled = [engine.connect() for _ in range(3)]
    for conn in pooled:
        conn.close()
    web_took = web_checkouts
    web_took.clear()  # the frozen request's only: the web threads are idle now
    running.sim.timeout = 10.0
    with cluster.frozen():
        response, took = _timed(
            lambda: running.sim.slash_command(
                "John Roe, john@acme.example, Acme Corp", user_id=MARKETER, channel_id="C0EVENTS01"
            )
        )
    assert response.status == 200
    assert took < SLACK_DEADLINE, f"answered after {took:.1f} s"
    said = response.json()["text"]
    assert "John Roe, john@acme.example, Acme Corp" in said  # their text back
    assert len(web_took) == 1 and web_took[0].closed  # the cut one is not used again
    # The statement reached the server before it froze: it may run after the thaw, and in
    # autocommit that stores it. The answer must have allowed for that.
    stored = _when_stored(running, "John Roe", within=3.0)
    if stored:
        assert MAY_HAVE_BEEN_SAVED in said, said
    else:
        assert MAY_HAVE_BEEN_SAVED in said or "Nothing was stored" in said, said
    again = running.submit("John Roe, john@acme.example, Acme Corp")
    assert "is in" in again.json()["text"]
    assert ("Possible duplicate" in again.json()["text"]) == bool(stored)
    fresh = running.submit("Max Moe, max@acme.example, Acme Corp")
    assert "is in" in fresh.json()["text"]
    assert len([lead for lead in running.leads() if lead.name == "John Roe"]) == len(stored) + 1


def test_work_off_the_web_threads_is_not_cut(cluster: Cluster, running: Bot) -> None:
    """A job, or work after an ack, may hold a connection longer than a web request may: only
    the web request's call is cut, theirs finish."""
    running.submit(EXAMPLE)
    engine = running.services.engine
    finished: list[str] = []

    def long_query(who: str) -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_sleep(2.8)"))
        finished.append(who)

    job = threading.Thread(target=long_query, args=("job",))
    running.sim.timeout = 10.0
    with commits_hang(cluster):
        job.start()
        running.services.work.submit(long_query, "after an ack")
        response, took = _timed(
            lambda: running.sim.slash_command(
                "John Roe, john@acme.example, Acme Corp", user_id=MARKETER, channel_id="C0EVENTS01"
            )
        )
        assert took < SLACK_DEADLINE and MAY_HAVE_BEEN_SAVED in response.json()["text"]
        job.join(10)
        assert running.services.work.wait_idle(10)
    assert sorted(finished) == ["after an ack", "job"]
    deadline = running.server.request_deadline
    assert deadline is not None and deadline.cuts == 1


@pytest.mark.parametrize("form", ["disqualify", "reassign"])
def test_an_outcome_form_cut_in_its_commit_says_it_may_have_been_saved(
    cluster: Cluster, running: Bot, form: str
) -> None:
    """A disqualify or reassign form whose COMMIT never answered was told "nothing changed",
    and then the commit went through: the rep tried again on a lead already changed. Such a
    form now says it may have been saved, and to look at the card first."""
    lead = new_lead(running)
    if form == "disqualify":
        who, field = REP_A, "outcome_reason"
        view = open_disqualify(running, lead, "trig-cut")
        values = {field: ("outcome_reason_input", "static_select", "No budget")}
    else:
        who, field = MANAGER, "new_owner"
        click_card(running, MANAGER, lead, "lead_reassign", trigger_id="trig-cut")
        view = modal(running, "trig-cut")
        values = {field: ("new_owner_input", "users_select", REP_B)}
    running.sim.timeout = 10.0
    with commits_hang(cluster):
        response, took = _timed(lambda: running.sim.view_submission(who, view, values))
    assert took < SLACK_DEADLINE, f"answered after {took:.1f} s"
    said = response.json()["errors"][field]
    assert "may have been saved" in said and "nothing changed" not in said
    # It was: once commits complete, the change is there.
    deadline = time.monotonic() + 5
    while (running.lead(lead.id).stage, running.lead(lead.id).owner_id) == (None, REP_A):
        assert time.monotonic() < deadline, "the change was not stored"
        time.sleep(0.05)


def test_requests_queued_behind_stuck_ones_are_answered_in_time_too(
    cluster: Cluster, pg_url: str, slack: SlackEmulator, clock: FakeClock
) -> None:
    """With every web thread stuck on the database, the requests waiting in the server's queue
    started their deadline only when a thread took them, 2.2 s late, and were answered past
    Slack's 3 s. The deadline now counts from a request's arrival."""
    bot = start_bot(pg_url, slack, clock, WEB_THREADS="2")
    try:
        bot.submit(EXAMPLE)
        bot.sim.timeout = 10.0
        answers: dict[str, tuple[object, float]] = {}
        names = ("John Roe", "Max Moe", "Ann Poe", "Bob Loe")

        def send(name: str) -> None:
            first = name.split()[0].lower()
            answers[name] = _timed(
                lambda: bot.sim.slash_command(
                    f"{name}, {first}@acme.example, Acme Corp",
                    user_id=MARKETER,
                    channel_id="C0EVENTS01",
                )
            )

        with commits_hang(cluster):
            senders = [threading.Thread(target=send, args=(name,)) for name in names]
            for t in senders:
                t.start()
            for t in senders:
                t.join(15)
        assert sorted(answers) == sorted(names)
        for name, (response, took) in answers.items():
            assert took < SLACK_DEADLINE, f"{name}: answered after {took:.1f} s"
            assert response.status == 200  # type: ignore[attr-defined]
        # Each answer true to what the server then did: those cut before their INSERT went out
        # (queued ones, cut as they took a connection) are not stored, once commits complete.
        said = {name: response.json()["text"] for name, (response, _) in answers.items()}  # type: ignore[attr-defined]
        maybe = {name for name in names if MAY_HAVE_BEEN_SAVED in said[name]}
        assert maybe, said  # the first two were cut in their INSERT, in autocommit
        for name in set(names) - maybe:
            assert "Nothing was stored" in said[name], said[name]
        for name in maybe:  # their INSERTs had reached the server: stored once it commits
            assert _when_stored(bot, name), name
        stored = {lead.name for lead in bot.leads()}
        assert not (set(names) - maybe) & stored, (said, stored)
    finally:
        bot.stop()
