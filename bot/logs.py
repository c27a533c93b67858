"""Logging set-up. Lead contact details never reach the logs, at any level.

Our own code logs lead ids only. Libraries are the risk: slack_sdk and Bolt log whole request
bodies at DEBUG, so they are held at INFO whatever LOG_LEVEL says, and a last-line filter masks
anything shaped like an email address or a phone number in every record that is written.
"""

from __future__ import annotations

import logging
import re
from typing import TextIO

# Libraries whose DEBUG output includes payloads (message text, form bodies, SQL parameters).
CHATTY = ("slack_sdk", "slack_bolt", "leadbot.bolt", "urllib3", "waitress")
# SQLAlchemy logs every statement at INFO (with result rows at DEBUG): warnings only.
QUIET = ("sqlalchemy", "alembic", "apscheduler.executors")
EMAIL = re.compile(r"[^\s@<>|,;:\"'(){}\[\]]+@[^\s@<>|,;:\"'(){}\[\]]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"\+?\d[\d\s().-]{5,}\d")


def redact(text: str) -> str:
    text = EMAIL.sub("[email]", text)
    return PHONE.sub(
        lambda m: "[phone]" if sum(c.isdigit() for c in m.group()) >= 7 else m.group(), text
    )


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # Exception texts can quote data; keep the type and traceback lines, mask the rest.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
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
    return handler
