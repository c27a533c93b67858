"""`leadbot sandbox`: the whole product in a browser, no Slack workspace needed.

One process runs the bot (its real HTTP endpoint, signature checks included), the loopback
Slack the tests use, and a web page on http://127.0.0.1 that looks and behaves like a small
Slack workspace. Files:

- `workspace.py` — people, channels, what each person sees; turns clicks into signed payloads;
- `render_html.py` — Block Kit and mrkdwn → escaped HTML, on the server;
- `blockkit.py` — finding elements and building Slack's action/state objects;
- `page.py` — the page's fragments (sidebar, messages, threads, Home, modal frame);
- `web.py` — the stdlib HTTP server for the page and its JSON API;
- `static/` — the shell, stylesheet and the small script that polls and wires clicks.
"""

from __future__ import annotations

import errno
import logging
import signal
import sys
import threading
import webbrowser
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bot.sandbox.web import SandboxWeb
from bot.sandbox.workspace import PEOPLE, Person, Sandbox, SandboxError

__all__ = [
    "PEOPLE",
    "Person",
    "RunningSandbox",
    "Sandbox",
    "SandboxError",
    "run_sandbox",
    "start_sandbox",
]


@dataclass
class RunningSandbox:
    sandbox: Sandbox
    web: SandboxWeb

    @property
    def url(self) -> str:
        return self.web.url

    def stop(self) -> None:
        self.web.stop()
        self.sandbox.stop()


def start_sandbox(
    db: str | Path,
    *,
    port: int = 0,
    timezone: str | None = None,
    start: datetime | None = None,
) -> RunningSandbox:
    """Start the bot, the loopback Slack and the page (port 0 picks a free one)."""
    web = SandboxWeb(port)  # bind first: a busy port should fail before anything starts
    try:
        sandbox = Sandbox(db, timezone=timezone, start=start)
    except BaseException:
        web.stop()
        raise
    web.start(sandbox)
    return RunningSandbox(sandbox, web)


def run_sandbox(port: int = 3000, db: str = "sandbox.db", open_browser: bool = True) -> int:
    """`leadbot sandbox`: serve until Ctrl-C, then stop cleanly."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The bot's own log lines are the interesting ones; migrations need not narrate.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        running = start_sandbox(db, port=port)
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            print(
                f"leadbot sandbox: cannot listen on 127.0.0.1:{port} ({e.strerror}) — "
                f"try another port, e.g. --port {port + 1}",
                file=sys.stderr,
            )
            return 2
        raise
    stop = threading.Event()
    previous = None
    # Everything after start-up sits in the try, so Ctrl-C at any moment still stops cleanly.
    try:
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        _banner(running)
        if open_browser:
            try:
                webbrowser.open(running.url)
            except Exception as e:  # no browser is fine: the URL is printed above
                print(f"  (could not open a browser: {e})")
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        print("\nStopping the sandbox…", flush=True)
        running.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _banner(running: RunningSandbox) -> None:
    sandbox = running.sandbox
    print(f"leadbot sandbox is running at {running.url}")
    print(
        f"  database {sandbox.db_path} · time zone {sandbox.timezone_name} · "
        "Slack is emulated in this process; nothing leaves your machine."
    )
    earlier = sandbox.leads_in_db()
    if earlier:
        print(
            f"  {earlier} lead(s) from an earlier run are in the database; their Slack messages "
            "were not kept. Delete the file for a clean start."
        )
    print("  Press Ctrl-C to stop.", flush=True)
