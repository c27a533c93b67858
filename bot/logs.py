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
# Phone numbers in the shapes leadbot accepts (bot/parsing.py): at least 7 digits (any script's:
# full-width, Arabic-Indic) with spaces, `( ) . - /` between them, in ASCII or full-width, no-break
# and thin spaces, Unicode dashes; perhaps a `+` first and an extension (`ext. 12`, `x12`, `#12`)
# after. Group 1 is the number. Possessive: read once from where it starts, no backtracking.
# The lookahead lets the engine skip to a possible first character (3x faster on digitless text).
_SEP = r"[ \t().\-/\u00a0\u2007\u2009\u202f\u3000\u2010-\u2013\u2212\uff08\uff09\uff0d\uff0e\uff0f]"
PHONE = re.compile(
    rf"(?=[(\uff08+\uff0b\d])([(\uff08]?[+\uff0b]?[(\uff08]?\d(?:{_SEP}*+\d){{6,}}+)"
    rf"(?:{_SEP}*+(?i:ext(?:ension|n)?\.?|x|[#\uff03])[ \t]*+:?[ \t]*+\d{{1,7}}+)?"
)
PHONE_MIN_DIGITS = 7  # as bot/parsing.py: fewer is no phone number leadbot takes
PHONE_MAX_DIGITS = 20  # nor more, without a space: a longer run of digits is an id
# Run as a whole, separated by spaces from the rest of a match, these are not phone numbers. ASCII
# digits only: nobody's log writes an address or a date in full-width digits, people's phones do.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_NOT_A_PHONE = re.compile(
    rf"(?:{_OCTET}\.){{3}}{_OCTET}(?:/[0-9]{{1,2}})?"  # IPv4; no leading 0, a phone's trunk prefix
    r"|(?:19|20)[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"  # ISO date
    r"|[0-9]{9,10}\.[0-9]{6}"  # Slack message timestamp: says which message a line is about
    r"|[0-9]{8}(?:-[0-9]{4}){3}-[0-9]{12}"  # UUID, all digits
)
# A version, x.y.z[.w] without leading zeros: a US phone with dots (1.415.555.0100) has a group
# of four, a French one (06.12.34.56.78) a leading zero. Real versions have fewer than 7 digits:
# this only keeps readable several in a row (`1.21.2 3.33.4`), never one match on its own.
_VERSION = re.compile(r"(?:0|[1-9][0-9]?)\.(?:0|[1-9][0-9]?)(?:\.(?:0|[1-9][0-9]{0,2})){1,2}")
# Where a number is an id by what precedes it: `lead 1234567`, `lead #1234567`, `lead_id=…`.
_ID_BEFORE = re.compile(r"(?i)(?:\blead|\bleads|_ids?|\bpid)[\"']?[ \t]*[#:=]?[ \t]*[\"'#]?$")
_ID_MAX_DIGITS = 8  # 100 million leads is out of reach; 9 and 10 digits are many a national number
# The seconds of a time (14:00:00.123456) follow `HH:MM:`.
_TIME_BEFORE = re.compile(r"[0-9]:[0-5][0-9]:$")
_SECONDS = re.compile(r"[0-5][0-9](?:[.,][0-9]+)?")
_UUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
# What an id glues to its digits: hex letters (digests, UUIDs), `_` (`s_1764…`), a capital (Slack's
# C0123456789) or a permalink's lone p (p1764…). Not any letter: `Tél4155550100`, `Handy4155…`.
_HEX_LETTERS = frozenset("abcdefABCDEF")
_CAPITALS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Glued to a number, these words make it a phone all the same (`TEL4155550100`, `0100cell`).
_PHONE_WORD_BEFORE = re.compile(
    r"(?i)(?:tel|tele|tlf|phone|fone|fon|ph|mobile|mobil|mob|cell|handy|fax|call|whatsapp|nr|no)_?$"
)
_PHONE_WORD_AFTER = re.compile(r"(?i)ext|cell|call|fax|direct|desk")
# Slack's ids (C0123456789, U0REP00001): a whole argument of this shape cannot be a phone number.
SLACK_ID = re.compile(r"[ABCDEFGTUW][A-Z0-9]{7,}")
# Arguments of these types are ids, counts, times and durations, never contact details.
SAFE_ARGS = (int, float, datetime, date, timedelta)


def redact(text: str) -> str:
    """`text` with email addresses and phone numbers masked as [email] and [phone]."""
    if "@" in text:  # the email pattern costs more than this test, and most lines have no `@`
        text = EMAIL.sub("[email]", text)
    return PHONE.sub(_mask_phone, text)


def _mask_phone(match: re.Match[str]) -> str:
    """[phone] for a run of at least 7 digits, unless what it holds, or what it is glued to, makes
    it something else. Privacy wins ties: a run a person could have typed as a phone (with a `+`,
    or with spaces between pieces that are not each an address, a date, a timestamp, a version)
    is masked whole.

    A bare run of digits is the hard case: `lead 1234567`, a pid and a phone typed without spaces
    look alike. Of 7 to 20 digits it is masked unless a lead id's word precedes it (and it has at
    most 8 digits) or it is part of an id (see _in_an_id). Longer, it is no phone
    leadbot takes. An epoch time in seconds (10 digits) is masked: it is a US phone's length."""
    found = match.group()
    if "+" in found[:2] or "\uff0b" in found[:2]:
        return "[phone]"
    text, start, end = match.string, match.start(), match.end()
    pieces = match.group(1).split()
    if len(pieces) == 1 and _in_an_id(text, start, end, pieces[0]):
        return found
    last = len(pieces) - 1
    for i, piece in enumerate(pieces):
        bare = piece.strip("()\uff08\uff09")
        if _NOT_A_PHONE.fullmatch(bare) or not any(c.isdecimal() for c in bare):
            continue
        if last and _VERSION.fullmatch(bare):
            continue
        if i == 0 and _context_says_not_a_phone(text, start, bare):
            continue
        # The hour of `2026-11-30 14:00` (the match stops at the colon).
        if i == last and len(bare) <= 2 and text.startswith(":", end) and bare.isascii():
            continue
        return "[phone]"
    return found


def _in_an_id(text: str, start: int, end: int, piece: str) -> bool:
    """Whether a run without spaces is part of a longer id: glued to what ids glue to digits (a
    Slack id C0123456789, a hex digest, `s_1764…`, a permalink's p1764…, 20261130T140000Z), inside
    a UUID, or longer than any phone."""
    if len(piece) > PHONE_MAX_DIGITS and sum(c.isdecimal() for c in piece) > PHONE_MAX_DIGITS:
        return True
    if start and piece[0] not in "(\uff08" and _glued_before(text, start):
        return True
    if end < len(text) and _glued_after(text, end):
        return True
    # A UUID is 36 characters: look no further, or a line of many numbers takes quadratic time.
    around = max(0, start - 36), end + 36
    if text.find("-", *around) >= 0:
        for uuid in _UUID.finditer(text, *around):
            if uuid.start() < end and start < uuid.end():
                return True
    return False


def _glued_before(text: str, start: int) -> bool:
    before = text[start - 1]
    if not (before == "_" or before in _HEX_LETTERS or before in _CAPITALS):
        permalink = before == "p" and (start == 1 or not text[start - 2].isalpha())
        if not permalink:
            return False
    return not _PHONE_WORD_BEFORE.search(text, max(0, start - 9), start)


def _glued_after(text: str, end: int) -> bool:
    after = text[end]
    if after in _HEX_LETTERS:
        return not _PHONE_WORD_AFTER.match(text, end)
    return after == "T" and text[end + 1 : end + 2].isdigit()  # 20261130T140000Z


def _context_says_not_a_phone(text: str, start: int, piece: str) -> bool:
    """Whether what precedes a match's first piece makes it no phone: a lead id after `lead`, or
    the seconds of a time."""
    before = max(0, start - 12)
    lead_id = piece.isascii() and piece.isdigit() and len(piece) <= _ID_MAX_DIGITS
    if lead_id and _ID_BEFORE.search(text, before, start):
        return True
    return bool(_TIME_BEFORE.search(text, before, start)) and bool(_SECONDS.fullmatch(piece))


def _redact_arg(arg: object) -> object:
    if isinstance(arg, str) and not SLACK_ID.fullmatch(arg):
        return redact(arg)
    return arg


class RedactingFilter(logging.Filter):
    """Masks contact details in every record. Our own records (a template and arguments) are
    redacted part by part, so the ids they carry as numbers stay readable whatever precedes
    them: masked as one text, `outbox item 1234567` reads "outbox item [phone]". Anything else
    is redacted as the text it formats to."""

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
