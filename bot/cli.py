"""`leadbot` command line: serve, socket, migrate, copy-db, jobs, manifest, demo."""

from __future__ import annotations

import argparse
import gc
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bot import __version__
from bot.affinity import pin_process
from bot.settings import SERVE_REQUIRES, Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger("leadbot")


class StartupError(Exception):
    """Start-up cannot go on; str() is one line for a person."""


class Interrupted(StartupError):
    """Ctrl-C stopped a command part-way; str() says what was left, in one line.
    The exit status is 130, as a shell gives a command ended by SIGINT."""


INTERRUPTED_EXIT = 130


# Slack's answers that mean the token itself is wrong. Anything else (an outage, a rate limit,
# an internal error) is trouble on Slack's side: telling the operator to replace a good token
# would send them the wrong way.
TOKEN_REFUSALS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
        "missing_scope",
        "no_permission",
        "team_access_not_granted",
    }
)


# What slack_sdk puts in `error` for an answer that is not JSON; the rest is the body, which
# may be a whole HTML page: never echoed.
_NOT_JSON = "Received a response in a non-JSON format"
API_URL_FIX = "it should end in /api/, like https://slack.com/api/"


def _slack_refused(
    setting: str, method: str, response: Any, fix: str, api_url: str
) -> StartupError:
    """The line for a Slack API error at start-up: the token, the URL, or Slack's own trouble."""
    status = getattr(response, "status_code", None)
    raw = str(response.get("error") or "")
    not_json = raw.startswith(_NOT_JSON)
    error = "" if not_json else raw
    error = error or f"HTTP {status}"
    if error in TOKEN_REFUSALS:
        return StartupError(f"{setting}: Slack did not accept it ({error}) — {fix}")
    # Slack's Web API answers every method it has with JSON, a 404 never: a 404, or a page that
    # is not JSON, came from something else at SLACK_API_URL (its /api/ left off, say), and
    # blaming Slack sent the operator to wait for an outage that was not there.
    if status == 404 or (not_json and (status is None or status < 500)):
        what = f"HTTP {status}" if status is not None else "an answer"
        return StartupError(
            f"SLACK_API_URL: {api_url} answered {method} with {what} that is not Slack's API "
            f"— the URL is wrong: {API_URL_FIX}"
        )
    if not_json:  # a 5xx page: a proxy on the way, or Slack's edge in an outage
        return StartupError(
            f"SLACK_API_URL: {api_url} answered {method} with HTTP {status} and a page that is "
            f"not Slack's JSON — check SLACK_API_URL ({API_URL_FIX}); if it is right, Slack or "
            "a proxy on the way is in trouble: try again shortly"
        )
    if status not in (None, 200) and str(status) not in error:
        error += f", HTTP {status}"
    return StartupError(
        f"Slack answered {method} with {error}: trouble on Slack's side, not with {setting} — "
        "try again shortly"
    )


def _logging(settings: Settings) -> None:
    from bot.logs import configure_logging

    configure_logging(settings.log_level, sys.stderr)


def open_database(
    settings: Settings,
    *,
    migrate_sqlite: bool = True,
    create_sqlite: bool = True,
    setting: str = "DATABASE_URL",
) -> Engine:
    """Connect, and make sure the schema is current (embedded SQLite migrates itself).
    `setting` is what the errors name: the sandbox's database comes from --db. Without
    `create_sqlite`, a SQLite file that does not exist is refused rather than made: a command
    run from cron in another directory would otherwise work on a new, empty database."""
    from sqlalchemy.exc import SQLAlchemyError

    from bot import db
    from models import make_engine

    url = settings.sqlalchemy_url
    path = db.sqlite_file(url)
    if path is not None and not path.exists():
        if not create_sqlite:
            raise StartupError(no_sqlite_database(path, setting))
        log.info("there is no database at %s: making a new, empty one", str(path))
    engine = make_engine(url)
    try:
        current = db.current_revision(engine)  # also proves the database answers
        if current == db.HEAD:
            pass  # the usual start: no migration, no Alembic
        elif engine.dialect.name == "sqlite" and migrate_sqlite:
            db.upgrade(engine)  # one at a time, with any other start or migrate (its lock)
        else:
            db.check_known(current)  # "run leadbot migrate" cannot help with a newer schema
            raise StartupError(
                f"{setting}: the schema is out of date (at {current or 'empty'}, needs "
                f"{db.HEAD}) — run `leadbot migrate` first"
            )
    except SQLAlchemyError as e:
        engine.dispose()
        raise _unusable(e, setting) from None
    except (db.UnknownRevision, db.MigrationBusy) as e:
        engine.dispose()
        raise StartupError(f"{setting}: {e}") from None
    except BaseException:
        engine.dispose()
        raise
    return engine


def no_sqlite_database(path: Path, setting: str = "DATABASE_URL") -> str:
    return (
        f"{setting}: there is no database at {str(path)!r} — run leadbot from the directory "
        f"that holds it, or set {setting} to its absolute path, like sqlite:////srv/leadbot/"
        "leadbot.db"
    )


def describe_database(settings: Settings) -> str:
    """Which database this is, for the start-up line: a SQLite file's absolute path, or the
    server and database without user name or password. (Not as a URL with `user:***@host`:
    the log's filter reads that as an email address and masks the host too.)"""
    from bot import db

    url = settings.sqlalchemy_url
    path = db.sqlite_file(url)
    if path is not None:
        return str(path)
    if url.get_backend_name() == "sqlite":
        return str(url.database)
    where = f"{url.host or 'localhost'}:{url.port or 5432}/{url.database}"
    return f"postgresql://{where}" + (f" (user {url.username})" if url.username else "")


def describe_policy(settings: Settings) -> str:
    from bot.policy import BUILT_IN

    source = settings.policy.source
    return "built-in policy" if source == BUILT_IN else f"policy {Path(source).resolve()}"


def _unusable(e: Exception, setting: str = "DATABASE_URL") -> StartupError:
    """The database cannot be opened or does not answer: the driver's first line says why."""
    cause = getattr(e, "orig", None) or e
    return StartupError(
        f"{setting}: cannot use the database ({type(e).__name__}: "
        f"{(str(cause).splitlines() or [''])[0][:160]})"
    )


# PostgreSQL error classes (SQLSTATE's first two characters) whose messages name schema
# objects, locks or resources, never a row's values: class 22 (data exceptions) quotes the
# value it could not take, 23 (constraints) and P0 (raised by SQL code) may carry row data.
_PG_PLAIN_CLASSES = frozenset({"08", "25", "40", "42", "53", "54", "55", "57", "58"})
# Failures a re-run may get past: a lock, a timeout, a lost connection, a deadlock.
_PG_TRANSIENT = ("08", "40", "55P03", "57")
_SQLITE_TRANSIENT = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED"})


def _migration_failure(e: Exception) -> tuple[str, bool]:
    """What a failed migration says about itself, and whether running it again may succeed.
    The driver's message only where it cannot carry lead data (the Privacy rule)."""
    cause = getattr(e, "orig", None) or e
    name = type(cause).__name__
    if hasattr(cause, "sqlstate"):  # psycopg
        sqlstate = cause.sqlstate
        if not isinstance(sqlstate, str):  # no answer from the server: the connection failed
            return name, True
        transient = sqlstate.startswith(_PG_TRANSIENT)
        diag = getattr(cause, "diag", None)
        primary = getattr(diag, "message_primary", None)  # without DETAIL, which has rows
        if sqlstate[:2] in _PG_PLAIN_CLASSES and primary:
            return f"{name}: {primary.splitlines()[0][:160]}", transient
        return name, transient
    errorname = getattr(cause, "sqlite_errorname", None)
    if isinstance(errorname, str):
        # SQLite's own messages name tables, columns and constraints, not values.
        first = (str(cause).splitlines() or [""])[0][:160]
        return f"{name}: {first}", errorname in _SQLITE_TRANSIENT
    # Python raised it (a migration's own code), whose message may hold anything.
    return name, False


BOT_TOKEN_FIX = "copy the Bot User OAuth Token (xoxb-…) from the app's page (README, step 2)"


def _build(settings: Settings, *, create_sqlite: bool = True):
    from slack_bolt.error import BoltError
    from slack_sdk.errors import SlackApiError, SlackClientError

    from bot.app import build_services, create_app

    if mismatch := settings.zone_mismatch():
        log.warning(mismatch)
    engine = open_database(settings, create_sqlite=create_sqlite)
    services = build_services(settings, engine=engine)
    try:
        app = create_app(settings, services=services)
    except (BoltError, SlackApiError) as e:
        # Bolt wraps auth.test's SlackApiError in a BoltError that only says "token is invalid".
        api_error = e if isinstance(e, SlackApiError) else e.__context__
        if isinstance(api_error, SlackApiError):
            raise _slack_refused(
                "SLACK_BOT_TOKEN",
                "auth.test",
                api_error.response,
                BOT_TOKEN_FIX,
                settings.slack_api_url,
            ) from None
        raise StartupError(
            f"SLACK_BOT_TOKEN: Slack did not accept it ({e})".splitlines()[0]
        ) from None
    except (SlackClientError, OSError) as e:
        raise _unreachable(settings, e) from None
    return app, services


def _unreachable(settings: Settings, e: Exception) -> StartupError:
    return StartupError(
        f"SLACK_API_URL: cannot reach Slack at {settings.slack_api_url} ({type(e).__name__})"
    )


# Young-generation size for the cyclic collector. Python's 700 makes a collection every ~25
# requests, each walking that many scattered objects; ten times fewer, a few ms each, costs
# less than half as much CPU (bench/HISTORY.md).
GC_YOUNG_THRESHOLD = 7_000


def _settle_heap() -> None:
    """Before serving: keep what start-up built out of the cyclic collector's full passes. The
    app, its modules and caches live as long as the process; a full pass walked all of them
    again (~150 ms) every few thousand requests. Refcounting still frees them as usual."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def _run_until_stopped(run: Callable[[], object], services: Any, scheduler: Any) -> int:
    """Run the front end until Ctrl-C or SIGTERM, then finish the work already answered and
    stop the jobs and the outbox worker."""
    _settle_heap()
    # SIGTERM is how systemd, Docker and Kubernetes stop a process; Python's default for it
    # exits on the spot, dropping clicks that were acked but not yet written.
    main = threading.current_thread() is threading.main_thread()
    if main:
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        run()
    except KeyboardInterrupt:
        pass
    finally:
        if main:  # a second SIGTERM while finishing up ends the process at once
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        log.info("stopping: finishing the work already answered")
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        # Clicks already answered finish their work (and queue its messages) before the outbox
        # stops; what the outbox leaves pending, the next process delivers.
        services.work.wait_idle(5)
        services.outbox.stop()
        # Close the database connections now, not in the exit's collection, which skips the
        # frozen start-up heap: SQLite checkpoints and removes its WAL when the last one closes.
        services.engine.dispose()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.scheduler import start_background
    from bot.server import Server

    settings = load_settings(require=SERVE_REQUIRES)
    placed = pin_process(settings.pin_cpu)  # before any thread starts: threads inherit it
    _logging(settings)
    app, services = _build(settings)
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    # Listening comes before the jobs and the outbox start: if it cannot, nothing has.
    try:
        server = Server(app, host=host, port=port, threads=settings.web_threads)
    except (OSError, ValueError) as e:  # the port taken or privileged, no such address here
        why = e.strerror if isinstance(e, OSError) and e.strerror else "not an address here"
        raise StartupError(
            f"HOST, PORT: cannot listen on {host}:{port} ({why}) — set HOST to an address of "
            "this machine (0.0.0.0: all of them) and PORT to a free port, or use --host / --port"
        ) from None
    scheduler = start_background(services, with_scheduler=not args.no_scheduler)
    log.info(
        "leadbot %s serving on http://%s:%s/slack/events (%d threads, %s, scheduler %s); "
        "database %s, %s",
        __version__,
        host,
        server.port,
        settings.web_threads,
        placed.describe(),
        "off" if scheduler is None else "on",
        describe_database(settings),
        describe_policy(settings),
    )
    return _run_until_stopped(server.serve_forever, services, scheduler)


def cmd_socket(args: argparse.Namespace) -> int:
    from slack_sdk.errors import SlackApiError, SlackClientError

    from bot.scheduler import start_background
    from bot.socket_mode import Handler, keep_alive

    settings = load_settings(require=(*SERVE_REQUIRES, "SLACK_APP_TOKEN"))
    if not settings.slack_app_token.startswith("xapp-"):
        raise SettingsError("SLACK_APP_TOKEN: expected an app-level token starting with xapp-")
    placed = pin_process(settings.pin_cpu)
    _logging(settings)
    app, services = _build(settings)
    handler = Handler(app, settings.slack_app_token)
    # Connected before the jobs start, so a refused token is one line, not a traceback. The
    # first URL is asked for here, where the client would log its own error before ours.
    try:
        opened = app.client.apps_connections_open(app_token=settings.slack_app_token)
    except SlackApiError as e:
        raise _slack_refused(
            "SLACK_APP_TOKEN",
            "apps.connections.open",
            e.response,
            "generate one with the connections:write scope (README, step 4)",
            settings.slack_api_url,
        ) from None
    except (SlackClientError, OSError) as e:
        raise _unreachable(settings, e) from None
    handler.client.wss_uri = url = str(opened["url"])
    try:
        handler.connect()
        # slack_sdk logs a refused handshake and returns, leaving its monitor to retry forever.
        refused = None if handler.client.is_connected() else "the WebSocket handshake was refused"
    except (SlackClientError, OSError) as e:
        refused = type(e).__name__
    if refused:
        handler.close()
        # Only the host: the rest of the URL is a one-time ticket.
        raise StartupError(
            f"cannot open Slack's Socket Mode connection to {urlsplit(url).netloc} ({refused})"
            " — if this network lets no WebSocket out, use HTTP mode: `leadbot serve` (README)"
        )
    keep_alive(handler.client)
    scheduler = start_background(services, with_scheduler=not args.no_scheduler)
    # Which database and policy: a new, empty SQLite file made by a start in the wrong
    # directory, or a policy file not found, shows here at once.
    log.info(
        "leadbot %s connected in Socket Mode (%s); database %s, %s",
        __version__,
        placed.describe(),
        describe_database(settings),
        describe_policy(settings),
    )

    def run() -> None:
        try:
            # Not one endless wait: SIGTERM may land on another thread, and the handler only
            # runs (raising KeyboardInterrupt here) once this thread wakes up.
            while True:
                time.sleep(0.2)
        finally:
            # No new requests while the answered work finishes: Slack sends them to the app's
            # other connections. In the background: the client's close waits out its socket's
            # read timeout (3 s), and the finishing need not wait for that.
            threading.Thread(target=handler.close, name="socket-close", daemon=True).start()

    return _run_until_stopped(run, services, scheduler)


def cmd_migrate(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from bot import db
    from models import make_engine

    settings = load_settings()
    url = settings.sqlalchemy_url
    # A new SQLite file is made and migrated (that is how a SQLite deployment may start, in an
    # init container before the first `serve`), and the line says so, with its path: run from
    # the wrong directory, that line shows it.
    path = db.sqlite_file(url)
    new_file = path is not None and not path.exists()
    engine = make_engine(url)
    try:
        # A database that cannot be opened (no such file or server, not a database) is named
        # as such, not as a migration that failed half-way; nor is a newer leadbot's schema.
        db.check_known(db.current_revision(engine))
    except SQLAlchemyError as e:
        engine.dispose()
        raise _unusable(e) from None
    except db.UnknownRevision as e:
        engine.dispose()
        raise StartupError(f"DATABASE_URL: {e}") from None
    except KeyboardInterrupt:
        engine.dispose()
        raise Interrupted("interrupted before migrating; nothing was changed") from None
    try:
        before, after = db.upgrade(engine, waiting=_say)
    except db.MigrationBusy as e:
        raise StartupError(f"DATABASE_URL: {e} (the schema is at {_reached(engine)})") from None
    except db.UnknownRevision as e:  # a newer leadbot migrated it while this one waited
        raise StartupError(f"DATABASE_URL: {e}") from None
    except KeyboardInterrupt:
        raise _migrate_interrupted(engine) from None
    except Exception as e:
        if _after_interrupt(e):
            raise _migrate_interrupted(engine) from None
        # Each migration commits on its own: say how far it got. A re-run goes on from there,
        # but only gets past a lock or a lost connection, not a table in the way.
        cause, transient = _migration_failure(e)
        then = (
            "run `leadbot migrate` again"
            if transient
            else "a re-run fails the same way until that is fixed"
        )
        raise StartupError(
            f"DATABASE_URL: migration failed ({cause}); the schema is at {_reached(engine)}, "
            f"with every migration before the failed one kept: {then}"
        ) from None
    finally:
        engine.dispose()
    made = f" (a new SQLite database: {path})" if new_file and before != after else ""
    if before == after:
        print(f"database schema is up to date ({after}){made}")
    else:
        print(f"database schema migrated from {before or 'empty'} to {after}{made}")
    return 0


def _migrate_interrupted(engine: Engine) -> Interrupted:
    # Each migration commits on its own, or is rolled back: the next run goes on from here.
    return Interrupted(
        f"interrupted: the schema is at {_reached(engine)}; run `leadbot migrate` again to finish"
    )


def _after_interrupt(error: BaseException) -> bool:
    """Whether `error` was raised while a Ctrl-C was being handled: the statement it cut short
    leaves its connection unusable, and the clean-up on the way out (Alembic resetting
    lock_timeout after an index build) fails on that, hiding the KeyboardInterrupt."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _say(line: str) -> None:
    """A line of progress for the person at the terminal (stdout keeps the result)."""
    print(f"leadbot: {line}", file=sys.stderr, flush=True)


def _reached(engine: Engine) -> str:
    """The revision the schema is at, after a failed or interrupted upgrade, on a new
    connection: one left inside the interrupted statement is closed (rolled back) first."""
    from bot import db

    engine.dispose()
    try:
        return db.current_revision(engine) or "empty"
    except Exception:
        return "unknown"


def cmd_copy_db(args: argparse.Namespace) -> int:
    from bot.copydb import copy_database

    settings = load_settings()  # only DATABASE_URL: no Slack needed to copy
    copied = copy_database(settings, args.target, say=lambda line: print(line, flush=True))
    total = sum(copied.counts.values())
    print(
        f"copied {total:,} rows in {len(copied.counts)} tables in {copied.seconds:.1f}s "
        "— point DATABASE_URL at it and start leadbot"
    )
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from jobs import JOBS

    if args.jobs_command == "list":
        for job in JOBS.values():
            print(f"{job.name:<10} every {int(job.every.total_seconds())}s  {job.description}")
        return 0
    if args.name not in JOBS:
        raise StartupError(f"jobs run: unknown job {args.name!r} — one of {', '.join(JOBS)}")
    settings = load_settings(require=SERVE_REQUIRES)
    _logging(settings)
    try:
        # Never a new SQLite file: cron runs in $HOME, where a pass on a new, empty database
        # did nothing and said all was well.
        _, services = _build(settings, create_sqlite=False)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {args.name} did not start; run it again") from None
    running = args.name
    try:
        if args.name == "digest" and args.force:
            from jobs import digest

            print(digest.run(services, force=True))
        else:
            print(JOBS[args.name].run(services))
        if args.name != "outbox":
            # Whatever the pass queued goes out now; cron deployments have no worker thread.
            running = "outbox"
            print(f"outbox: {services.outbox.drain()}")
    except KeyboardInterrupt:
        raise _stopped_part_way(running, services) from None
    return 0


def _stopped_part_way(what: str, services: Any) -> Interrupted:
    """After Ctrl-C in a pass. Each step of a pass commits on its own (a reminder marked sent
    with its message queued, say): what was done is kept, and the next pass picks up the rest.
    The outbox starts no more deliveries; one in flight is let finish (and recorded), as the
    exit waits for its thread, unless a second Ctrl-C ends the process at once."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # stop() cancels the deliveries not started, then waits for those in flight: not here.
    threading.Thread(target=services.outbox.stop, name="outbox-stop", daemon=True).start()
    main = threading.main_thread()
    busy = any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate())
    then = " (letting the Slack call in flight finish; Ctrl-C again to stop at once)"
    return Interrupted(
        f"interrupted: {what} stopped part-way; what it did is kept, run `leadbot jobs run "
        f"{what}` again" + (then if busy else "")
    )


def cmd_forget(args: argparse.Namespace) -> int:
    from bot.privacy import check_address, forget_person

    check_address(args.email)
    settings = load_settings(require=SERVE_REQUIRES)
    _logging(settings)
    # Never a new SQLite file: "forgot 0 leads" from a new, empty database in the wrong
    # directory, while the real one still held the person.
    _, services = _build(settings, create_sqlite=False)
    print(forget_person(services, args.email))
    print(f"outbox: {services.outbox.drain()}")
    return 0


def cmd_manifest(args: argparse.Namespace) -> int:
    from bot.manifest import manifest_yaml

    sys.stdout.write(manifest_yaml(args.url))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    return run_demo()


def cmd_sandbox(args: argparse.Namespace) -> int:
    path = _sandbox_db(args.db)
    try:
        from bot.sandbox import run_sandbox

        # Opened (and migrated) here, so a file that is no database, or a newer leadbot's, is
        # one line naming --db rather than a traceback from inside the sandbox's start.
        open_database(
            Settings(database_url=f"sqlite:///{path.as_posix()}"), setting="--db"
        ).dispose()
        return run_sandbox(port=args.port, db=str(path), open_browser=not args.no_browser)
    except KeyboardInterrupt:
        # Ctrl-C before serving (serving handles its own): each migration either committed or
        # rolled back, so the next start goes on from there.
        print("\nleadbot: sandbox stopped before it started", file=sys.stderr)
        return 130


def _sandbox_db(text: str) -> Path:
    """sandbox --db: a SQLite file's path, its folder made if need be."""
    example = "like --db sandbox.db"
    if not text.strip():
        raise StartupError(f"--db: empty — name a SQLite file, {example}")
    if "://" in text or text.startswith("sqlite:"):
        raise StartupError(f"--db: {text!r} is a URL — --db takes a file's path, {example}")
    if text == ":memory:":
        raise StartupError(f"--db: ':memory:' would keep nothing — name a file, {example}")
    if "?" in text or "%" in text:  # the sandbox's SQLite URL would read them as options
        raise StartupError(f"--db: {text!r} — a file name with ? or % is not supported here")
    path = Path(text).resolve()
    if path.is_dir():
        raise StartupError(
            f"--db: {text!r} is a folder — name a file in it, like --db {Path(text) / 'sandbox.db'}"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        why = "a file has that name" if isinstance(e, FileExistsError) else e.strerror
        raise StartupError(f"--db: cannot make the folder {str(path.parent)!r} ({why})") from None
    return path


def _port(text: str) -> int:
    """A --port argument: a bad one is a usage error, not a traceback from bind()."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port: use 1 to 65535")
    return port


# A host name's characters once IDNA-encoded (xn--…); underscores occur in real DNS names.
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


def _public_url(text: str) -> str:
    """manifest --url: Slack sends its requests to https URLs only. What is refused is refused
    here, with the reason: anything accepted must also be a URL Slack can call, whole."""
    example = "like https://leadbot.example.com"
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise argparse.ArgumentTypeError(f"{text!r} has a space or control character in it")
    try:
        parts = urlsplit(text)
    except ValueError as e:  # "Invalid IPv6 URL", …
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL ({e}) — {example}") from None
    try:
        port = parts.port  # parsed only when asked for: out of range, or not a number
    except ValueError:
        port = 0
    if port == 0:
        raise argparse.ArgumentTypeError(f"{text!r} has a bad port: use 1 to 65535, or none")
    if parts.scheme != "https":
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an https URL — Slack sends requests only to https, {example}"
        )
    # The endpoint is the URL plus /slack/events: after a query or a fragment, that would be
    # part of them, not of the path.
    if "?" in text or "#" in text:
        which = "a query (?…)" if "?" in text.split("#")[0] else "a fragment (#…)"
        raise argparse.ArgumentTypeError(f"{text!r} has {which}; give the base URL only, {example}")
    if "@" in parts.netloc:  # Slack sends no credentials, and the manifest is shared
        raise argparse.ArgumentTypeError(
            f"{text!r} has a user name or password in it; give the base URL only, {example}"
        )
    if "[" not in parts.netloc:  # urlsplit has checked a bracketed IPv6 address already
        try:
            host = (parts.hostname or "").encode("idna").decode("ascii")
        except UnicodeError:
            host = ""
        if not _HOST_NAME.fullmatch(host):
            named = f" ({parts.hostname!r})" if parts.hostname else ""
            raise argparse.ArgumentTypeError(f"{text!r} has no valid host name{named} — {example}")
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="leadbot", description="Hands event leads from field marketing to sales in Slack."
    )
    p.add_argument("--version", action="version", version=f"leadbot {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP endpoint and the scheduler")
    serve.add_argument("--host", help="address to listen on (default HOST or 0.0.0.0)")
    serve.add_argument("--port", type=_port, help="port (default PORT or 3000)")
    serve.add_argument("--no-scheduler", action="store_true", help="don't run jobs in-process")
    serve.set_defaults(func=cmd_serve)

    socket = sub.add_parser("socket", help="connect in Socket Mode (needs SLACK_APP_TOKEN)")
    socket.add_argument("--no-scheduler", action="store_true", help="don't run jobs in-process")
    socket.set_defaults(func=cmd_socket)

    sub.add_parser("migrate", help="upgrade the database schema (idempotent)").set_defaults(
        func=cmd_migrate
    )

    copy_db = sub.add_parser(
        "copy-db",
        help="copy every row from DATABASE_URL into a new, empty database (SQLite to PostgreSQL)",
        description="Copy every row of the database DATABASE_URL names into TARGET_URL, which "
        "must hold none of leadbot's data; its schema is migrated first. Stop leadbot first.",
    )
    copy_db.add_argument(
        "target", metavar="TARGET_URL", help="postgresql://user@host/db or sqlite:///file.db"
    )
    copy_db.set_defaults(func=cmd_copy_db)

    jobs = sub.add_parser("jobs", help="list jobs or run one pass of a job now")
    # metavar: with no subcommand, argparse names what it missed by it ("jobs_command" without)
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="{list,run}")
    jobs_sub.add_parser("list", help="list the jobs")
    run = jobs_sub.add_parser("run", help="run one pass of a job now")
    run.add_argument("name", help="job name (see `leadbot jobs list`)")
    run.add_argument("--force", action="store_true", help="digest: send now even if not due")
    jobs.set_defaults(func=cmd_jobs)

    forget = sub.add_parser(
        "forget", help="erase one person's data (GDPR): their leads, events and card contents"
    )
    forget.add_argument("email", help="the person's email address (case and spaces ignored)")
    forget.set_defaults(func=cmd_forget)

    manifest = sub.add_parser("manifest", help="print the Slack app manifest (YAML)")
    manifest.add_argument(
        "--url", type=_public_url, help="public base URL for HTTP mode; omit for Socket Mode"
    )
    manifest.set_defaults(func=cmd_manifest)

    sub.add_parser("demo", help="run the whole loop against a built-in fake Slack").set_defaults(
        func=cmd_demo
    )
    sandbox = sub.add_parser("sandbox", help="try leadbot in a browser, no Slack workspace needed")
    sandbox.add_argument("--port", type=_port, default=3000, help="web page port (default 3000)")
    sandbox.add_argument("--db", default="sandbox.db", help="SQLite file (default sandbox.db)")
    sandbox.add_argument("--no-browser", action="store_true", help="don't open a browser")
    sandbox.set_defaults(func=cmd_sandbox)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (SettingsError, StartupError) as e:
        from bot.logs import stop_logging

        stop_logging()  # what the libraries logged on the way comes first; our line is the last
        print(f"leadbot: {e}", file=sys.stderr)
        return INTERRUPTED_EXIT if isinstance(e, Interrupted) else 2
    except KeyboardInterrupt:
        # Anywhere a command has no line of its own for it (loading settings, say): one line,
        # not a traceback.
        from bot.logs import stop_logging

        stop_logging()
        print("\nleadbot: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT


if __name__ == "__main__":
    # `python -m bot.cli`: run the module as `bot.cli` too, so that the StartupError raised by
    # modules that import it (bot.copydb) is the class main() catches, not a twin's.
    from bot.cli import main as imported_main

    sys.exit(imported_main())
