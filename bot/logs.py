"""Logging set-up. Lead contact details never reach the logs, at any level.

Our own code logs lead ids only. Libraries are the risk: slack_sdk and Bolt log whole request
bodies at DEBUG, so they are held at INFO whatever LOG_LEVEL says, and a last-line filter masks
anything shaped like an email address or a phone number in every record that is written.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
from datetime import date, datetime, timedelta
from logging.handlers import QueueHandler
from queue import Empty, SimpleQueue
from typing import TextIO

# Libraries whose DEBUG output includes payloads (message text, form bodies, SQL parameters).
CHATTY = ("slack_sdk", "slack_bolt", "leadbot.bolt", "urllib3", "waitress")
# SQLAlchemy logs every statement at INFO (with result rows at DEBUG), APScheduler every job it
# adds and runs (nine lines at each start): warnings only.
QUIET = ("sqlalchemy", "alembic", "apscheduler")
# The lookbehind starts a match only where a run of address characters starts: without it, a
# long run with no address in it was tried from each of its characters, each try reading to its
# end (quadratic: 30 kB of letters took 2.3 s, a megabyte the writer thread's next 40 minutes).
# It finds what it found before, as a match inside a run implies one from the run's start.
EMAIL = re.compile(
    r"(?<![^\s@<>|,;:\"'(){}\[\]])[^\s@<>|,;:\"'(){}\[\]]+@[^\s@<>|,;:\"'(){}\[\]]+\.[A-Za-z]{2,}"
)
PHONE = re.compile(r"\+?\d[\d\s().-]{5,}\d")
# A Slack message timestamp (seconds, a dot, six digits) has the digits of a phone number but
# never its shape: masked, a log line no longer says which message it was about.
SLACK_TS = re.compile(r"\d{9,10}\.\d{6}")
# Slack's ids (C0123456789, U0REP00001): a whole argument of this shape cannot be a phone number.
SLACK_ID = re.compile(r"[ABCDEFGTUW][A-Z0-9]{7,}")
# Arguments of these types are ids, counts, times and durations, never contact details.
SAFE_ARGS = (int, float, datetime, date, timedelta)


def redact(text: str) -> str:
    text = EMAIL.sub("[email]", text)
    return PHONE.sub(_mask_phone, text)


def _mask_phone(match: re.Match[str]) -> str:
    found = match.group()
    if sum(c.isdigit() for c in found) < 7 or SLACK_TS.fullmatch(found.strip()):
        return found
    return "[phone]"


def _redact_arg(arg: object) -> object:
    if isinstance(arg, str) and not SLACK_ID.fullmatch(arg):
        return redact(arg)
    return arg


class RedactingFilter(logging.Filter):
    """Masks contact details in every record. Our own records (a template and arguments) are
    redacted part by part, so the ids they carry stay readable: masked as one text, lead
    #1234567 read "lead [phone]". Anything else is redacted as the text it formats to."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and all(isinstance(a, (str, *SAFE_ARGS)) for a in args):
            record.msg = redact(str(record.msg))
            record.args = tuple(_redact_arg(a) for a in args)
        else:
            message = record.getMessage()
            cleaned = redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # Exception texts can quote data; keep the type and traceback lines, mask the rest.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class _Enqueue(QueueHandler):
    """Queues the record as it is. The stock prepare() formats and copies every record in the
    calling thread, for queues that pickle; this one stays in the process, and the writer
    formats (and redacts, exceptions included) anyway."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class _Writer(threading.Thread):
    """Writes what is queued every INTERVAL seconds, with one flush.

    logging's QueueListener blocks on the queue and so woke for every record, each wake-up
    taking the GIL from the request threads: with one log line per request under load, the
    process spent ~0.15 ms more CPU per request than with this writer (1.85 → 1.70 ms on
    SQLite). Records wait at most INTERVAL; `stop()` writes out the rest.
    """

    INTERVAL = 0.05

    def __init__(self, queue: SimpleQueue[logging.LogRecord], handler: logging.Handler) -> None:
        super().__init__(name="leadbot-log-writer", daemon=True)
        self.queue = queue
        self.handler = handler
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.INTERVAL):
            self.drain()
        self.drain()

    def drain(self) -> None:
        while True:
            try:
                record = self.queue.get_nowait()
            except Empty:
                break
            try:
                self.handler.handle(record)
            except Exception:  # a failing filter must not stop every later line
                self.handler.handleError(record)
        self.handler.flush()

    def stop(self) -> None:
        self.stopping.set()
        self.join()


class _BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that flushes when the writer has written a batch, not per record."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> QueueHandler:
    """Log to `stream` from a background thread: a request thread only queues its record.

    Writing in the calling thread made every request that logs wait for the handler's lock,
    held by whichever thread was writing (a fifth of a /lead's time under load). Records are
    redacted, formatted and written by the writer thread in batches; `stop_logging()` (also
    run at exit) writes out what is queued.
    """
    global _listener
    writer = _BufferedStreamHandler(stream)
    writer.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    writer.addFilter(RedactingFilter())
    stop_logging()
    # Neither the format nor our filter uses these: computing them per record is waste (the
    # logging HOWTO's "Optimization" section; _srcfile = None skips the caller's file and line).
    logging.logProcesses = logging.logMultiprocessing = logging.logThreads = False
    logging._srcfile = None  # type: ignore[attr-defined]
    queue: SimpleQueue[logging.LogRecord] = SimpleQueue()
    handler = _Enqueue(queue)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    floor = max(logging.INFO, logging.getLevelName(level))
    for name in CHATTY:
        logging.getLogger(name).setLevel(floor)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, floor))
    _listener = _Writer(queue, writer)
    _listener.start()
    return handler


def stop_logging() -> None:
    """Write out every queued record and stop the writer thread (idempotent)."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None


_listener: _Writer | None = None
atexit.register(stop_logging)
