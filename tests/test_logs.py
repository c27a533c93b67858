"""The log writer: a background thread that writes queued records in batches, redacted."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator

import pytest

from bot.logs import configure_logging, stop_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    configure_logging("INFO", out)
    try:
        yield out
    finally:
        stop_logging()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def test_every_record_is_written_in_each_threads_order(stream: io.StringIO) -> None:
    log = logging.getLogger("leadbot.test")

    def burst(t: int) -> None:
        for i in range(250):
            log.info("thread %d line %d", t, i)

    threads = [threading.Thread(target=burst, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop_logging()  # writes out what is still queued
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1000
    for t in range(4):
        mine = [line.rsplit(" ", 1)[1] for line in lines if f"thread {t} line" in line]
        assert mine == [str(i) for i in range(250)]
    assert all(" INFO leadbot.test: thread " in line for line in lines)


def test_an_exception_is_written_with_its_traceback_and_without_contact_details(
    stream: io.StringIO,
) -> None:
    log = logging.getLogger("leadbot.test")
    try:
        raise ValueError("no lead for jane.private@acme.example, +1 415 555 0199")
    except ValueError as e:
        log.error("lead %s failed: %s", 7, type(e).__name__, exc_info=e)
    stop_logging()
    logged = stream.getvalue()
    assert "lead 7 failed: ValueError" in logged
    assert "Traceback (most recent call last):" in logged and "[email]" in logged
    assert "jane.private" not in logged and "555 0199" not in logged


def test_records_logged_after_a_restart_go_to_the_new_stream(stream: io.StringIO) -> None:
    logging.getLogger("leadbot.test").warning("first")
    again = io.StringIO()
    configure_logging("INFO", again)  # e.g. the CLI configuring twice: the old writer flushes
    logging.getLogger("leadbot.test").warning("second")
    stop_logging()
    assert "first" in stream.getvalue() and "second" not in stream.getvalue()
    assert "second" in again.getvalue()


def test_a_record_that_fails_to_format_does_not_stop_later_lines(
    stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging, "raiseExceptions", False)  # as in production: no stderr dump
    log = logging.getLogger("leadbot.test")
    log.warning("broken %d", "not a number")  # the message cannot be formatted
    log.warning("after the broken one")
    stop_logging()
    assert "after the broken one" in stream.getvalue()


def test_ids_counts_and_slack_timestamps_stay_readable_while_contact_details_are_masked(
    stream: io.StringIO,
) -> None:
    log = logging.getLogger("leadbot.test")
    # A seven-digit lead id is shaped like a phone number; as an argument it is known to be one.
    log.info("lead %s claimed", 1234567)
    log.info("card for lead %s posted in %s at %s", 2345678, "C0123456789", "1700000000.000100")
    log.info("posted message ts=1700000123.000200")  # a library's line: one formatted text
    log.info("note: %s", "call +1 415 555 0199 or jane.private@acme.example")
    log.info("%s wrote 4155550199 in %s", "U0MKT00001", "jane.private@acme.example")
    log.info("%(who)s", {"who": "+1 415 555 0199"})  # mapping arguments: redacted as one text
    stop_logging()
    lines = [line.split(": ", 1)[1] for line in stream.getvalue().splitlines()]
    assert lines == [
        "lead 1234567 claimed",
        "card for lead 2345678 posted in C0123456789 at 1700000000.000100",
        "posted message ts=1700000123.000200",
        "note: call [phone] or [email]",
        "U0MKT00001 wrote [phone] in [email]",
        "[phone]",
    ]
