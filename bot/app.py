"""The app factory: no global App; each caller (server, socket, tests, demo) builds its own."""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import slack_bolt
from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_bolt.middleware import Middleware
from slack_bolt.middleware.request_verification import RequestVerification
from slack_sdk import WebClient
from sqlalchemy import Engine

from bot import flows
from bot.access import ClaimAccess
from bot.clock import Clock, DeliveryTime, SystemClock
from bot.delivery import Slack, make_web_client
from bot.executor import TrackingExecutor
from bot.ids import is_digits, is_slack_id
from bot.outbox import Outbox
from bot.request_body import MALFORMED
from bot.services import Services
from bot.settings import Settings
from models import make_engine, make_sessionmaker

log = logging.getLogger(__name__)


class _NoUnusedTokenWarning(logging.Filter):
    """Drops Bolt's start-up warning that SLACK_BOT_TOKEN "will be unused": Bolt reads the
    variable itself and warns whenever a client is given too, yet the client carries that very
    token. A warning in every clean start teaches operators to ignore warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


_BOLT_CODE = os.path.dirname(slack_bolt.__file__) + os.sep
# leadbot's packages that run inside a request: bot/ and its siblings handlers/ and models/.
_OUR_CODE = tuple(
    os.path.join(os.path.dirname(os.path.dirname(__file__)), name) + os.sep
    for name in ("bot", "handlers", "models")
)


def _raised_by_bolt(error: BaseException) -> bool:
    """Whether `error` was raised in Bolt's own code with none of leadbot's on the way, as when
    Bolt's matchers or middleware read a payload Slack would not have shaped so. Through a
    listener of ours (even into Bolt, say a wrong argument to ack) it would be a bug of ours."""
    files = []
    tb = error.__traceback__
    while tb is not None:
        files.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    return (
        bool(files)
        and files[-1].startswith(_BOLT_CODE)
        and not any(f.startswith(_OUR_CODE) for f in files)
    )


BOLT_LOG = logging.getLogger("leadbot.bolt")
BOLT_LOG.addFilter(_NoUnusedTokenWarning())

# Bolt's mode; bench/baseline_app.py builds the bare-Bolt baseline with the same one.
PROCESS_BEFORE_RESPONSE = True
WORK_THREADS = 4
# Private notes wait on Slack, not on the CPU: 16 in flight told 99 losers of one card in
# 2.3 s with Slack at 300 ms (4 took 7.7 s), with no change to that stampede's ack p99.
NOTE_THREADS = 16


def build_services(
    settings: Settings,
    *,
    client: WebClient | None = None,
    engine: Engine | None = None,
    clock: Clock | None = None,
    delivery_time: DeliveryTime | None = None,
) -> Services:
    engine = engine or make_engine(settings.sqlalchemy_url)
    timeout = max(1, int(settings.slack_timeout.total_seconds()))
    client = client or make_web_client(
        settings.slack_bot_token, settings.slack_api_url, timeout=timeout
    )
    sessions = make_sessionmaker(engine)
    clock = clock or SystemClock()
    outbox = Outbox(
        sessions,
        # The outbox schedules its own retries, so its client must not block on them.
        Slack(
            make_web_client(
                settings.slack_bot_token, settings.slack_api_url, timeout=timeout, retries=False
            )
        ),
        posts_per_second=settings.posts_per_second,
        # Longer than any one call can take, so a live holder never loses its lease.
        lease=max(timedelta(seconds=30), 3 * settings.slack_timeout),
        delivery_time=delivery_time,
        clock=clock.now,
        first_reminder=lambda lead, now: flows.claim_due(settings, lead, now),
        on_card_failed=flows.tell_submitter_card_failed,
    )
    slack = Slack(client)
    notes = TrackingExecutor(max_workers=NOTE_THREADS, name="leadbot-notes")
    return Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        slack=slack,
        clock=clock,
        outbox=outbox,
        # The sales group is read again in the background, with the private notes' threads.
        access=ClaimAccess(settings, slack, clock=clock, background=notes),
        notes=notes,
        # After-ack work is a transaction or two each; more threads than this only compete with
        # the web threads for the GIL (100 clicks on one card: ack p99 ~260 ms with 8, ~200 ms
        # with 4, on PostgreSQL), and keeping up needs few: claims go in batches on one of
        # them (handlers.actions.CLAIM_BATCH).
        work=TrackingExecutor(max_workers=WORK_THREADS, name="leadbot-work"),
    )


# Set in a request's context by bot.server once it has checked the signature itself.
SIGNATURE_CHECKED = "leadbot_signature_checked"
# Slack's replay window: a request whose timestamp is further from now than this is refused.
REPLAY_WINDOW = 300
# Signatures remembered to refuse a second delivery of one signed request inside the window.
# Only validly signed requests are remembered, so only Slack's own traffic fills it.
SEEN_MAX = 100_000
# Seconds between WARNINGs about requests with a wrong signature (each is also an INFO line).
WRONG_SIGNATURE_EVERY = 60
WRONG_SIGNATURE = (
    "refused a request with a wrong signature: if Slack sent it, SLACK_SIGNING_SECRET is not "
    "the app's Signing Secret (Basic Information page of the Slack app); said at most once a "
    "minute"
)


class _SignatureCheck(RequestVerification):
    """Bolt's signature check (slack_sdk's SignatureVerifier: HMAC-SHA256 of `v0:{ts}:{body}`,
    compared with hmac.compare_digest, Slack's 5-minute window), with three differences:

    - a refusal is logged as one short line. Bolt's logs the whole body at INFO: a request
      refused as stale (a replay, a server clock off by minutes) put the lead it carried in the
      log, and a megabyte of junk from anyone on the internet went to the log writer;
    - timestamp and signature headers of the wrong shape are refused (401) like a wrong
      signature. In Bolt they raised (`int("abc")`, `compare_digest` of non-ASCII text): a 200
      and an ERROR with a traceback, for a request from nobody;
    - a signed request delivered a second time inside the window (a captured request replayed)
      is acknowledged and dropped: it had its effect the first time. Per process: a replay to
      another process behind the same balancer is left to the handlers' own idempotence (a
      claim's first click wins; an Events API event is stored once, `_first_time`; a `/lead`
      or lead form is stored once per request, its key unique in the database, and the replay
      answered with the lead stored the first time: bot.leads.lead_insert).
    """

    def __init__(self, signing_secret: str) -> None:
        super().__init__(signing_secret, base_logger=BOLT_LOG)
        self._seen: dict[str, int] = {}
        self._order: deque[tuple[int, str]] = deque()
        self._lock = threading.Lock()
        self._warned: float | None = None  # when the last wrong-signature WARNING was written

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse:
        if self._can_skip(req.mode, req.body):  # Socket Mode: Slack's own WebSocket
            return next()
        timestamp = req.headers.get("x-slack-request-timestamp", [""])[0] or ""
        signature = req.headers.get("x-slack-signature", [""])[0] or ""
        # bot.server checks it before parsing the body, and says so.
        if not req.context.get(SIGNATURE_CHECKED):
            why = self.invalid(req.raw_body, timestamp, signature)
            if why is not None:
                log.info("refused a request: %s", why)
                return self._build_error_response()
        if self._replayed(signature, int(timestamp)):
            log.warning("refused a signed request delivered a second time (a replay)")
            return BoltResponse(status=200, body="")
        return next()

    def invalid(self, raw_body: str | bytes, timestamp: str, signature: str) -> str | None:
        """Why a request with this body and these X-Slack-Request-Timestamp and X-Slack-Signature
        headers is not Slack's, or None if it is. Parses nothing and reads no request state, so
        an HTTP server can ask before it parses a body (the replay check stays in process()); a
        wrong signature is also logged as a WARNING naming the setting, once a minute at most."""
        if not (is_digits(timestamp) and len(timestamp) <= 12 and signature.isascii()):
            return "no Slack signature"
        skew = int(self.verifier.clock.now()) - int(timestamp)
        if abs(skew) > REPLAY_WINDOW:
            # Either a replay or this machine's clock is off (then every request is refused).
            age = f"{skew} s old" if skew > 0 else f"{-skew} s in the future"
            return f"its timestamp is {age} (Slack allows 300 s)"
        try:
            if self.verifier.is_valid(raw_body, timestamp, signature):
                return None
        except UnicodeDecodeError:  # bytes that are not UTF-8: nothing Slack signed
            pass
        self._wrong_signature()
        return "wrong signature"

    def _wrong_signature(self) -> None:
        # Every request from Slack refused this way, with only an INFO line per request, looked
        # like a quiet bot: the first is a WARNING naming the setting, then one a minute at
        # most (anyone on the internet can send a bad signature as often as they like).
        now = self.verifier.clock.now()
        with self._lock:
            if self._warned is not None and 0 <= now - self._warned < WRONG_SIGNATURE_EVERY:
                return
            self._warned = now
        log.warning(WRONG_SIGNATURE)

    def _replayed(self, signature: str, timestamp: int) -> bool:
        """Whether `signature` was seen before; remembers it until its window closes."""
        now = int(self.verifier.clock.now())
        with self._lock:
            order, seen = self._order, self._seen
            while order and (order[0][0] + REPLAY_WINDOW < now or len(order) > SEEN_MAX):
                _, old = order.popleft()
                seen.pop(old, None)
            if signature in seen:
                return True
            seen[signature] = timestamp
            order.append((timestamp, signature))
            return False


def _first_time(services: Services, event_id: str) -> bool:
    """Record an Events API event id; False if it was already recorded (a retry)."""
    from sqlalchemy.exc import IntegrityError

    from models import ProcessedEvent

    try:
        with services.sessions.begin() as s:
            s.add(ProcessedEvent(event_id=event_id[:64], at=services.clock.now()))
    except IntegrityError:
        return False
    return True


class _Gate(Middleware):
    """leadbot's checks on every request, before any listener.

    One Bolt Middleware subclass rather than three `@app.middleware` functions: for each call
    of a function middleware Bolt builds some thirty keyword arguments (say, respond, payload
    views …), ~8 µs, on every request; these checks need only the request.
    """

    def __init__(self, services: Services) -> None:
        self.services = services

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse | None:
        services, context, body = self.services, req.context, req.body
        context["leadbot"] = services
        # Every query is scoped to this workspace; a payload from another one touches nothing.
        team = context.get("team_id")
        if services.team_id and team and team != services.team_id:
            log.warning("refused a request from another workspace")
            if body.get("command"):
                return BoltResponse(
                    status=200,
                    body="This leadbot belongs to another Slack workspace; nothing was done.",
                )
            return BoltResponse(status=200, body="")
        if not _from_someone(body, team):
            # Slack always says who clicked, submitted or typed, by id: without one, a claim
            # was won by nobody; with a long one, a lead failed to store as if the database
            # were down.
            log.warning("refused a %s payload not from a Slack user", _kind(body))
            return BoltResponse(status=400, body=NOT_FROM_A_USER)
        # Slack retries events it thinks we missed (X-Slack-Retry-Num); handle each event_id once.
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if isinstance(event_id, str) and event_id and not _first_time(services, event_id):
            return BoltResponse(status=200, body="")
        return next()


NOT_FROM_A_USER = "malformed request: its user, team or channel is missing or not a Slack id"
# Payloads a person sends, whose user id the listeners act for.
_BY_SOMEONE = ("block_actions", "view_submission", "view_closed", "block_suggestion")


def _kind(body: dict[str, Any]) -> str:
    return str(body.get("type") or body.get("command") or "request")[:40]


def _from_someone(body: dict[str, Any], team: Any) -> bool:
    """False for an interaction or a command that names no user, or names its user, team or
    channel with something no Slack id looks like (a sender's mistake)."""
    team_object = body.get("team")
    teams = (team, team_object.get("id") if isinstance(team_object, dict) else None)
    if any(t is not None and not is_slack_id(t) for t in (*teams, body.get("team_id"))):
        return False
    if "command" in body:
        # A command may come from no channel; over Socket Mode its fields are JSON, so an
        # empty list or object is possible too, and one reached the INSERT as a channel.
        channel = body.get("channel_id")
        return is_slack_id(body.get("user_id")) and (channel in (None, "") or is_slack_id(channel))
    if body.get("type") in _BY_SOMEONE:
        user = body.get("user")
        return isinstance(user, dict) and is_slack_id(user.get("id"))
    return True


def create_app(
    settings: Settings,
    client: WebClient | None = None,
    *,
    services: Services | None = None,
    engine: Engine | None = None,
    clock: Clock | None = None,
) -> App:
    """Build the Bolt app wired to leadbot's handlers; `app.leadbot` holds its Services."""
    import handlers

    services = services or build_services(settings, client=client, engine=engine, clock=clock)
    signature_check = _SignatureCheck(settings.slack_signing_secret)
    app = App(
        client=services.slack.client,
        signing_secret=settings.slack_signing_secret,
        # Bolt's own check is replaced by one in the same place (see _SignatureCheck).
        request_verification_enabled=False,
        before_authorize=signature_check,
        # Bolt calls auth.test here, so a wrong token stops start-up rather than the first click.
        token_verification_enabled=True,
        # Listeners run in the web thread and Bolt answers when they return: no hand-off, and
        # none of the 10 ms polling with which Bolt's default mode waits for ack(). Listeners
        # with work after their ack hand it to services.work (handlers.common.later).
        process_before_response=PROCESS_BEFORE_RESPONSE,
        raise_error_for_unhandled_request=False,
        logger=BOLT_LOG,
        listener_executor=services.work,
    )
    auth = services.slack.client.auth_test()
    services.team_id = str(auth.get("team_id") or "")
    services.bot_user_id = str(auth.get("user_id") or "")
    services.outbox.workspace_url = str(auth.get("url") or "") or None

    app.use(_Gate(services))

    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> BoltResponse:
        # Never log the payload: it carries lead contact details. Type and kind are enough.
        kind = _kind(body)
        if isinstance(error, MALFORMED) and _raised_by_bolt(error):
            # Bolt reads Slack's payloads as Slack shapes them: one of another shape is the
            # sender's mistake (only the signing secret's holder can send one), not a bug here.
            log.warning("refused a malformed %s payload (%s in Bolt)", kind, type(error).__name__)
        else:
            log.error("handler failed on %s: %s", kind, type(error).__name__, exc_info=error)
        return BoltResponse(status=200, body="")

    app.leadbot = services  # type: ignore[attr-defined]
    # For the HTTP server, to refuse a request from nobody before parsing its body.
    app.leadbot_signature = signature_check  # type: ignore[attr-defined]
    handlers.register(app)
    app.leadbot_executor = services.work  # type: ignore[attr-defined]
    return app
