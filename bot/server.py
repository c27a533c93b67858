"""HTTP mode: `POST /slack/events` (Bolt) and `GET /healthz` in one WSGI app, on waitress."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.adapter.wsgi import SlackRequestHandler
from sqlalchemy import Engine, event, text
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import create_server
from waitress.task import ThreadedTaskDispatcher, WSGITask

from bot import db
from bot.app import SIGNATURE_CHECKED
from bot.request_body import MALFORMED, NotText, bolt_request
from models import make_engine

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
# On Ctrl-C or SIGTERM, how long requests already under way may take to finish and be answered.
DRAIN_SECONDS = 5.0
# While stopping, a connection accepted this recently that has sent nothing yet is waited for:
# its client connected to send a request, and the bytes may be on their way.
FRESH_CONNECTION_SECONDS = 1.0
# How long waitress's loop waits for a worker to finish writing an answer before serving the
# other connections (a worker holds the lock for microseconds, once it has the interpreter).
LOCK_WAIT = 0.005

# Open connections waitress keeps before it stops accepting more (its default is 100).
CONNECTION_LIMIT = 1000
# /healthz answers within this long whatever the database does: a check still waiting for it
# then is "not answering" (503). Kubernetes gives a probe 1 s unless told otherwise.
HEALTH_DEADLINE = 0.5
# A check's result is the answer for this long: a flood of health checks asks the database
# once a second, not once each.
HEALTH_FRESH_FOR = 1.0
# A check still waiting for the database after this long has its connection cut (its socket
# shut down), so the next one can try a new connection: a connection lost to a network black
# hole (a failover that moved the address, a dropped route) answers nothing until TCP gives up,
# about 15 minutes on Linux's defaults, and /healthz would have said 503 all that time.
HEALTH_GIVE_UP = 10.0
# Threads of their own for /healthz, so it is answered while every web thread waits on a
# database that stopped answering (it queued behind them, and timed out with them).
HEALTH_THREADS = 2
NOT_ANSWERING = "not answering"


def _header(headers: Any, name: str) -> str:
    value = headers.get(name) or ""
    return str(value[0] if isinstance(value, list) and value else value or "")


class _Handler(SlackRequestHandler):
    """Bolt's WSGI handler, parsing bodies faster (bot.request_body) and answering a body it
    cannot parse with 400 instead of a 500."""

    def dispatch(self, request: Any) -> BoltResponse:
        body, headers = request.get_body(), request.get_headers()
        # The signature before the body is parsed: a megabyte of form fields from anyone cost
        # ~80 ms of CPU to parse, for a request then refused as unsigned.
        # (An app not made by create_app, as the benchmark's baselines, has Bolt's check only.)
        check = getattr(self.app, "leadbot_signature", None)
        if check is not None:
            why = check.invalid(
                body,
                _header(headers, "x-slack-request-timestamp"),
                _header(headers, "x-slack-signature"),
            )
            if why is not None:
                log.info("refused a request: %s", why)
                return BoltResponse(status=401, body={"error": "invalid request"})
        try:
            bolt = bolt_request(body, request.query_string, headers)
            if check is not None:
                bolt.context[SIGNATURE_CHECKED] = True  # Bolt's chain need not check it again
            return self.app.dispatch(bolt)
        except MALFORMED as e:
            why = str(e) if isinstance(e, NotText) else "the payload is not valid"
            log.warning("refused a malformed request body: %s", why)
            return BoltResponse(status=400, body=f"malformed request: {why}")


class Health:
    """The database's half of /healthz: whether it answers `SELECT 1`, known within `deadline`
    seconds whatever it does.

    The query runs on a thread of its own, on a connection of its own (PostgreSQL; SQLite's
    file cannot stop answering, and its engine is the app's); the caller waits for it up to
    `deadline` and is otherwise told NOT_ANSWERING. At most one check is in flight: while one
    waits, every caller past its deadline is answered at once, and no thread or connection
    piles up behind a frozen server. A result is reused for `fresh_for` seconds. The state's
    changes are logged, once each (it was a WARNING per check: one a second, or more, for as
    long as an outage lasted, from a load balancer alone)."""

    def __init__(
        self,
        engine: Engine,
        *,
        deadline: float = HEALTH_DEADLINE,
        fresh_for: float = HEALTH_FRESH_FOR,
        give_up: float = HEALTH_GIVE_UP,
    ) -> None:
        self.deadline = deadline
        self.fresh_for = fresh_for
        self.give_up = give_up
        self._own = engine.dialect.name != "sqlite"
        # One connection is all one check at a time needs. (engine.url, not its text: the text
        # hides the password.)
        self.engine = make_engine(engine.url, pool_size=1, max_overflow=0) if self._own else engine
        self._lock = threading.Lock()
        self._in_flight: threading.Event | None = None  # set when the check in flight ends
        self._started = 0.0
        self._result: tuple[float, str | None] | None = None  # (when, what was wrong or None)
        self._up: bool | None = None  # as last logged; None before the first check
        self._down_since = 0.0
        self._fd: int | None = None  # the socket the check in flight may be waiting on
        if self._own:
            # First among the checkout listeners: models' ping on checkout may be what waits.
            event.listen(self.engine, "checkout", self._checked_out, insert=True)
            event.listen(self.engine, "checkin", self._forget_fd)
            event.listen(self.engine, "invalidate", self._forget_fd)
            event.listen(self.engine, "close", self._forget_fd)

    def problem(self) -> str | None:
        """None when the database answered; else what is wrong, in a few words."""
        now = time.monotonic()
        with self._lock:
            if self._result is not None and now - self._result[0] < self.fresh_for:
                return self._result[1]
            if self._in_flight is None:
                self._in_flight, self._started = threading.Event(), now
                threading.Thread(
                    target=self._check, args=(self._in_flight,), name="leadbot-health", daemon=True
                ).start()
            elif now - self._started > self.give_up:
                self._cut_off()
            done, started = self._in_flight, self._started
        done.wait(max(0.0, started + self.deadline - now))
        with self._lock:
            if done.is_set():  # (set under the lock, with the result)
                assert self._result is not None
                return self._result[1]
            said = self._became(NOT_ANSWERING)
        self._say(said)
        return NOT_ANSWERING

    def _check(self, done: threading.Event) -> None:
        problem = None
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as e:
            problem = f"not reachable ({type(e).__name__})"
        with self._lock:
            self._result = (time.monotonic(), problem)
            self._in_flight = None
            # Said before done is set: before anyone is answered by it.
            self._say(self._became(problem))
            done.set()

    def _became(self, problem: str | None) -> tuple[str, Any] | None:
        """Record the state (under self._lock); what to log if it changed."""
        now = time.monotonic()
        was, self._up = self._up, problem is None
        if problem is not None and was is not False:
            self._down_since = now
            return "health check: the database is %s; /healthz answers 503", problem
        if problem is None and was is False:
            return (
                "health check: the database answers again, after %.0f s; /healthz answers 200",
                now - self._down_since,
            )
        return None

    @staticmethod
    def _say(said: tuple[str, Any] | None) -> None:
        if said is not None:
            log.warning(*said)

    def _checked_out(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        with self._lock:
            self._fd = dbapi_connection.fileno()

    def _forget_fd(self, *_: Any) -> None:
        with self._lock:
            self._fd = None

    def _cut_off(self) -> None:
        """Shut down the socket of the check in flight (under self._lock, so the connection
        cannot be closed and its descriptor reused meanwhile): its wait ends in an error, and
        the pool drops the connection. Only the socket of a connection the check holds."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        log.warning(
            "health check: no answer from the database in %.1f s; dropping its connection",
            self.give_up,
        )
        try:
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        if self._own:
            self.engine.dispose()


def _is_health_check(channel: Any) -> bool:
    """Whether the next request of a waitress connection is a GET or HEAD of /healthz (waitress
    calls add_task holding the connection's requests lock)."""
    requests = getattr(channel, "requests", None)
    request = requests[0] if requests else None
    return (
        request is not None
        and request.error is None
        and request.path == "/healthz"
        and request.command in ("GET", "HEAD")
    )


def wsgi_app(
    app: App, health: Health | None = None, deadline: db.RequestDeadline | None = None
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """`deadline`: the watch that gives a request's database work its deadline (PostgreSQL);
    requests are marked for it here, on their web thread."""
    slack = _Handler(app, path="/slack/events")
    if health is None:
        health = Health(app.leadbot.engine)  # type: ignore[attr-defined]
    timed = deadline is not None

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz" and environ.get("REQUEST_METHOD") in (
            "GET",
            "HEAD",
        ):
            problem = health.problem()
            if problem is None:
                status, body = "200 OK", {"ok": True}
            else:
                status = "503 Service Unavailable"
                body = {"ok": False, "error": "database", "detail": problem}
            data = json.dumps(body).encode()
            start_response(
                status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
            )
            return [data]
        if not timed:
            return slack(environ, start_response)
        # Bolt answers when the listener returns: all the database work done on this thread
        # until then is the request's, and what runs after the answer is on other threads.
        # The deadline counts from the request's arrival, time in waitress's queue included.
        web = db.web_request()
        web.started, web.cut = environ.get(ARRIVED) or time.monotonic(), None
        try:
            return slack(environ, start_response)
        finally:
            web.started = None

    return application


# The environ key holding when a request had fully arrived (time.monotonic()).
ARRIVED = "leadbot.arrived"


class _Parser(HTTPRequestParser):
    """waitress's request parser, noting when the whole request had arrived: a request's
    database deadline (bot.db.RequestDeadline) counts from then, not from when a web thread was
    free to take it, which under a frozen database is the deadline of the requests before it."""

    arrived: float | None = None

    def received(self, data: bytes) -> int:
        taken: int = super().received(data)
        if self.completed and self.arrived is None:
            self.arrived = time.monotonic()
        return taken


class _Task(WSGITask):
    def get_environment(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environment()
        environ[ARRIVED] = getattr(self.request, "arrived", None)
        return environ


class _Channel(HTTPChannel):
    """waitress's connection, waiting for its answer's lock instead of spinning on it.

    A worker thread writes its answer into the connection's buffer under a lock and sends it
    itself. waitress's loop, seeing bytes in the buffer, only tries that lock, and when the
    worker holds it goes round again at once: the socket is writable, so select() returns at
    once too. Under load the worker holding the lock is often waiting for the interpreter lock,
    which the spinning loop keeps taking: the loop went round ~14 times per request in the ack
    benchmark (bare Bolt: once or twice). Blocking on the lock for a moment hands the
    interpreter to the worker, which is then done in microseconds."""

    parser_class = _Parser
    task_class = _Task

    def _flush_some_if_lockable(self, do_close: bool = True) -> None:
        if self.outbuf_lock.acquire(timeout=LOCK_WAIT):
            try:
                self._flush_some(do_close=do_close)
                if self.total_outbufs_len < self.adj.outbuf_high_watermark:
                    self.outbuf_lock.notify()
            finally:
                self.outbuf_lock.release()


def _under_way(channel: Any) -> bool:
    """Whether a connection still owes its client an answer. A channel holds its requests
    until their answers are written, then its unsent bytes until they are sent; a request
    partly received is under way too, as is a connection just accepted whose bytes may not
    have been read yet. Idle keep-alive connections are none of these."""
    if getattr(channel, "requests", None) or getattr(channel, "total_outbufs_len", 0):
        return True
    if getattr(channel, "request", None) is not None:
        return True
    if _has_unread_bytes(channel):
        # Sent, not read yet: on a loaded machine the loop may not have got to it, however
        # long ago the connection was accepted.
        return True
    created = getattr(channel, "creation_time", None)
    return (
        created is not None
        and channel.last_activity == created
        and time.time() - created < FRESH_CONNECTION_SECONDS
    )


def _has_unread_bytes(channel: Any) -> bool:
    sock = getattr(channel, "socket", None)
    if not isinstance(sock, socket.socket):  # the loop's trigger is a pipe: no client there
        return False
    try:
        # waitress's sockets are non-blocking already; MSG_DONTWAIT where it exists, to be sure.
        return bool(sock.recv(1, socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)))
    except OSError:  # nothing waiting (EAGAIN), or the connection is gone
        return False


def create_waitress(
    application: Callable[[dict[str, Any], StartResponse], Iterable[bytes]],
    *,
    host: str,
    port: int,
    threads: int,
) -> Any:
    """waitress as leadbot runs it (the benchmark's baselines too, so they compare apps)."""
    server = create_server(
        application,
        host=host,
        port=port,
        threads=threads,
        # Slack's payloads are small; a cap keeps a hostile client from filling memory.
        max_request_body_size=1_048_576,
        ident="leadbot",
        clear_untrusted_proxy_headers=True,
        # waitress takes 100 connections and closes an idle one after 120 s: 100 clients
        # sending their headers a byte at a time held every Slack request off. More room, and
        # poll(2), as select(2) cannot watch past descriptor 1023. (A buffering proxy in front
        # is the real answer: README, Exposure.)
        connection_limit=CONNECTION_LIMIT,
        asyncore_use_poll=True,
    )
    server.channel_class = _Channel
    return server


class Server:
    """A waitress server that can run in a thread (tests, demo) or in the foreground (serve)."""

    def __init__(
        self, app: App, *, host: str = "127.0.0.1", port: int = 0, threads: int = 16
    ) -> None:
        engine = app.leadbot.engine  # type: ignore[attr-defined]
        self.health = Health(engine)
        # A query a request waits for past its deadline has its connection cut (PostgreSQL).
        self.request_deadline = db.RequestDeadline.watch(engine)
        self._server = create_waitress(
            wsgi_app(app, self.health, self.request_deadline),
            host=host,
            port=port,
            threads=threads,
        )
        self._thread: threading.Thread | None = None
        # /healthz on threads of its own; everything else on waitress's.
        self._health_threads = ThreadedTaskDispatcher()
        self._health_threads.set_thread_count(HEALTH_THREADS)
        web = self._server.task_dispatcher  # type: ignore[union-attr]

        def add_task(channel: Any) -> None:
            (self._health_threads if _is_health_check(channel) else web).add_task(channel)

        self._server.add_task = add_task  # type: ignore[union-attr]
        self._wait_for_workers()

    def _dispatchers(self) -> tuple[Any, ...]:
        return (self._server.task_dispatcher, self._health_threads)  # type: ignore[union-attr]

    def _wait_for_workers(self, timeout: float = 2.0) -> None:
        """Return once every worker thread waits for work. waitress counts a thread as busy
        until it first gets there, so a request sooner (a busy machine, a client that connects
        at once) was queued and logged "Task queue depth is 1": a false alarm, and stderr
        noise in `leadbot demo`."""
        deadline = time.monotonic() + timeout
        for dispatcher in self._dispatchers():
            while time.monotonic() < deadline:
                with dispatcher.lock:
                    if dispatcher.active_count <= 0:
                        break
                time.sleep(0.001)

    @property
    def port(self) -> int:
        return int(self._server.effective_port)  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def serve_forever(self, drain: float = DRAIN_SECONDS) -> None:
        """Serve until Ctrl-C or SIGTERM, then stop as `stop(drain)` does. waitress's own run()
        ends its loop at once, so a /lead committed in that moment got no receipt and looked
        failed to its marketer."""
        self.start()
        assert self._thread is not None
        try:
            # The loop runs in its thread. Short waits, not one endless join: SIGTERM may land
            # on another thread, and its handler (raising KeyboardInterrupt here) runs only once
            # this thread wakes up. An endless join could sleep through it until SIGKILL.
            while self._thread.is_alive():
                self._thread.join(0.2)
        except KeyboardInterrupt:
            log.info("stopping: no new connections; answering the requests under way")
            self.stop(drain=drain)

    def start(self) -> Server:
        self._thread = threading.Thread(target=self._server.run, name="leadbot-http", daemon=True)
        self._thread.start()
        return self

    def stop(self, drain: float = 0.0) -> None:
        """Close every connection and end the loop. With `drain`, first stop taking connections
        and give the requests under way up to `drain` seconds to finish and be answered."""
        if self._thread is not None and self._thread.is_alive():
            # Close sockets inside waitress's own loop thread: closing them from here while it
            # polls is a race (EBADF in poll). The loop ends once its socket map is empty.
            trigger = self._server.trigger  # type: ignore[union-attr]
            if drain > 0:
                trigger.pull_trigger(self._stop_listening)
                self._wait_until_answered(drain)
            trigger.pull_trigger(self._close_all)
            self._thread.join(timeout=5)
        else:
            self._close_all()
        for dispatcher in self._dispatchers():
            dispatcher.shutdown()
        self.health.close()
        if self.request_deadline is not None:
            self.request_deadline.close()
        # Only now: a worker ends each task by pulling the trigger, and one still finishing
        # after the loop ended would write to a closed pipe (EBADF), or to whatever file
        # reused its descriptor.
        self._server.trigger.close()  # type: ignore[union-attr]

    def _stop_listening(self) -> None:
        server: Any = self._server
        if not server.accepting:
            return
        # Connections the kernel completed but waitress has not accepted yet hold requests their
        # clients already sent: take them in, or closing the socket resets them unanswered.
        for _ in range(server.adj.backlog):
            before = len(server._map)
            server.handle_accept()
            if len(server._map) == before:
                break
        # The base class's close: the listening socket only. The server's own close() also
        # closes the trigger, which the loop still needs to send the answers under way.
        wasyncore.dispatcher.close(server)

    def _wait_until_answered(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._idle_seen_from_the_loop(min(1.0, max(0.0, deadline - time.monotonic()))):
                return
            time.sleep(0.01)

    def _idle_seen_from_the_loop(self, timeout: float) -> bool:
        """Whether nothing is under way, as seen in waitress's loop thread between two of its
        reads. Seen from this thread, a read could be half done, its bytes taken off the socket
        and its request not queued yet: the connection looked idle, was closed, and its client
        got no answer (a test caught it once in a CI run)."""
        seen: list[bool] = []
        looked = threading.Event()

        def look() -> None:
            try:
                running = False
                for dispatcher in self._dispatchers():
                    with dispatcher.lock:
                        running = running or dispatcher.active_count > 0 or bool(dispatcher.queue)
                channels = list(self._server._map.values())  # type: ignore[union-attr]
                seen.append(not running and not any(_under_way(c) for c in channels))
            finally:
                looked.set()

        self._server.trigger.pull_trigger(look)  # type: ignore[union-attr]
        return looked.wait(timeout) and seen == [True]

    def _close_all(self) -> None:
        """Close the listening socket and every connection, and take the trigger out of the
        loop's map (the loop ends once the map is empty) without closing its pipe yet."""
        server: Any = self._server
        # The base class's close: the listening socket only (the server's own closes the
        # trigger's pipe too).
        wasyncore.dispatcher.close(server)
        for channel in list(server._map.values()):
            if channel is not server.trigger:
                channel.close()
        server.trigger.del_channel()
