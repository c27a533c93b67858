"""`leadbot demo`: the whole loop against the built-in loopback Slack, told as a story.

No workspace, token or database is needed: the bot runs in-process behind its real HTTP server,
talks to `SlackEmulator` over HTTP, stores leads in a throwaway SQLite file and reads time from a
`FakeClock`, so reminders and the digest happen in seconds. Each step prints only what changed
in the emulated workspace, rendered as text the way each person would see it in Slack.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from bot.clock import FakeClock
from bot.ids import Action
from bot.local import LocalBot, start_local_bot
from bot.slack_emulator import Message, SlackEmulator
from bot.textview import render_message, render_view

MARKETER = "U0MARKETER"
REP_A = "U0REPRICO1"
REP_B = "U0REPSAM01"
MANAGER = "U0MANAGER1"
BOT_USER = "U0LEADBOT"
EVENTS_CHANNEL = "C0EVENTS01"  # where Maya types /lead; any channel works

# Names stand in for mentions, as Slack shows them; the cast line gives the roles.
NAMES = {
    MARKETER: "Maya",
    REP_A: "Rico",
    REP_B: "Sam",
    MANAGER: "Dana",
    BOT_USER: "leadbot",
}
CAST = (
    "Maya (field marketing) works the SaaStr booth; Rico and Sam are sales reps; "
    "Dana is their manager."
)

# A Thursday afternoon at the conference; the digest goes out at 09:00 the next morning.
START = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)

FIRST_LEAD = (
    "Jane Doe, jane@acme.example, Acme Corp, +1 415 555 0100, hot, #SaaStr2026, wants an API demo"
)
SECOND_LEAD = "Tom Lee, tom@globex.example, Globex, warm, #SaaStr2026, asked about pricing"
INVALID_LEAD = "Bob, bob@nowhere"

SETTINGS = {
    "LEADS_CHANNEL": "#leads",
    "MANAGER_IDS": MANAGER,
    "REMINDER_AFTER": "30m",
    "ESCALATE_AFTER": "2",
    "DIGEST_AT": "09:00",
    "TIMEZONE": "UTC",
}

BAR = "│ "


class DemoError(RuntimeError):
    """The story did not happen as told: the bot did not do what a step expects."""


class _OutputError(Exception):
    """The story cannot be written (stdout closed, disk full...); str() says why."""


@dataclass
class _Changes:
    messages: list[tuple[str, Message]]
    views: list[dict[str, Any]] = field(default_factory=list)

    def find(self, what: str, test: Callable[[Message], bool]) -> Message:
        for _title, msg in self.messages:
            if test(msg):
                return msg
        raise DemoError(f"expected {what}, but the bot did not send it")


class _Workspace:
    """Remembers what of the emulated workspace was already shown, to print only changes."""

    def __init__(self, slack: SlackEmulator, clock: FakeClock, out: TextIO, width: int) -> None:
        self.slack = slack
        self.clock = clock
        self.out = out
        self.width = width
        # (channel, ts) → how many edits of that message were shown
        self._seen: dict[tuple[str, str], int] = {}
        self._responses = 0
        self._views = 0
        # DMs are stored per DM channel; map them back to the person they reach.
        self._dm_users = {slack.dm_channel(user): user for user in NAMES}
        self.channels = {slack.channel_id("#leads"): "leads", EVENTS_CHANNEL: "events"}

    # ------------------------------------------------------------------ printing

    def write(self, text: str = "") -> None:
        try:
            try:
                self.out.write(text + "\n")
            except UnicodeEncodeError:
                # A legacy console code page cannot show emoji; show "?" rather than crash.
                encoding = getattr(self.out, "encoding", None) or "ascii"
                self.out.write(text.encode(encoding, "replace").decode(encoding) + "\n")
        except BrokenPipeError:
            raise  # the reader left (`| head`): run_demo stops quietly
        except (OSError, ValueError) as e:  # ValueError: a closed file object
            raise _OutputError(getattr(e, "strerror", None) or str(e)) from e

    def para(self, text: str, indent: str = "") -> None:
        for line in textwrap.wrap(
            text,
            self.width,
            initial_indent=indent,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        ):
            self.write(line)

    def heading(self, number: int, title: str) -> None:
        label = f"── {number}. {title} "
        self.write()
        self.write(label + "─" * max(2, self.width - len(label)))
        when = self.clock.now()
        self.write(f"   {when:%A %H:%M} UTC")

    def command(self, who: str, text: str) -> None:
        self.write()
        self.write(f"{NAMES[who]} types:")
        self.para(f"/lead {text}".rstrip(), indent="  ")

    def shown(self, title: str, body: str) -> None:
        self.write()
        self.write(title)
        for line in body.splitlines() or [""]:
            self.write((BAR + line).rstrip())

    def _render_kw(self) -> dict[str, Any]:
        return {
            "width": self.width - len(BAR),
            "users": NAMES,
            "channels": self.channels,
            "now": self.clock.now(),
        }

    def message(self, payload: dict[str, Any]) -> str:
        return render_message(payload, **self._render_kw())

    def view(self, view: dict[str, Any]) -> str:
        return render_view(view, **self._render_kw())

    # ------------------------------------------------------------------ changes

    def _where(self, msg: Message, updated: bool) -> str:
        if msg.ephemeral_for:
            where = self.channels.get(msg.channel, msg.channel)
            return f"{self._name(msg.ephemeral_for)} sees in #{where} (only visible to you):"
        if msg.channel in self._dm_users:
            return f"DM to {self._name(self._dm_users[msg.channel])}:"
        where = "#" + self.channels.get(msg.channel, msg.channel)
        if updated:
            return f"{where} — the card is updated in place (same message):"
        if msg.thread_ts and msg.thread_ts != msg.ts:
            return f"{where}, in the card's thread:"
        return f"{where}:"

    @staticmethod
    def _name(user: str) -> str:
        return NAMES.get(user, user)

    def changes(self) -> list[tuple[str, Message]]:
        """New or edited messages since the last call, oldest first, and mark them seen."""
        found: list[tuple[str, Message]] = []
        for msg in self.slack.messages():
            key = (msg.channel, msg.ts)
            seen = self._seen.get(key)
            if seen is None or seen != msg.updated_count:
                found.append((self._where(msg, updated=seen is not None), msg))
                self._seen[key] = msg.updated_count
        return found

    def show_changes(self) -> _Changes:
        """Print everything that changed: messages, response_url posts and opened forms."""
        found = _Changes(self.changes())
        for title, msg in found.messages:
            payload = msg.to_dict()
            if msg.thread_ts and msg.thread_ts != msg.ts:
                # The title already says "in the thread"; textview's own thread marker is
                # added after wrapping and would overflow the line width.
                payload.pop("thread_ts", None)
            self.shown(title, self.message(payload))
        responses = self.slack.responses
        for post in responses[self._responses :]:
            if isinstance(post.body, dict):
                self.shown(
                    "Reply to the slash command (only visible to you):", self.message(post.body)
                )
        self._responses = len(responses)
        calls = self.slack.calls_to("views.open")
        found.views = [c.args.get("view") or {} for c in calls[self._views :] if c.ok]
        self._views = len(calls)
        for view in found.views:
            self.shown("A form opens:", self.view(view))
        return found


def _button_value(card: Message, action_id: str) -> str:
    for block in card.blocks or []:
        for element in block.get("elements") or []:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return str(element["value"])
    raise DemoError(f"the card has no {action_id} button")


def _story(bot: LocalBot, ws: _Workspace) -> None:
    slack, sim, clock = bot.slack, bot.sim, bot.clock
    leads_id = slack.channel_id("#leads")
    dm = {user: slack.dm_channel(user) for user in NAMES}

    def slash(text: str, user: str = MARKETER) -> dict[str, Any]:
        response = sim.slash_command(text, user_id=user, channel_id=EVENTS_CHANNEL)
        bot.settle()
        if response.status != 200:
            raise DemoError(f"/lead {text!r} answered HTTP {response.status}")
        return response.json() or {}

    def click(user: str, card: Message, value: str) -> None:
        response = sim.block_action(user, Action.CLAIM.value, value, message=card)
        bot.settle()
        if response.status != 200:
            raise DemoError(f"the Claim click answered HTTP {response.status}")

    ws.para("leadbot demo: the whole loop on a built-in fake Slack, no workspace needed.")
    ws.write()
    ws.para(CAST)
    ws.para(
        "Everything below is the real bot: signed requests to its HTTP endpoint, Block Kit "
        "rendered as text, a throwaway database and a fake clock."
    )

    # 1. The inline form: the receipt is the slash command's own HTTP answer.
    ws.heading(1, "Maya submits a lead at the SaaStr booth")
    ws.command(MARKETER, FIRST_LEAD)
    receipt = slash(FIRST_LEAD)
    ws.shown(f"{NAMES[MARKETER]} sees (only visible to you):", ws.message(receipt))
    found = ws.show_changes()
    card = found.find("the claim card in #leads", lambda m: m.channel == leads_id)
    ws.write()
    ws.para("(No email or phone on the public card: only the rep who claims it gets them.)")

    # 2. Help.
    ws.heading(2, "Maya asks for help")
    ws.command(MARKETER, "help")
    ws.shown(f"{NAMES[MARKETER]} sees (only visible to you):", ws.message(slash("help")))
    ws.show_changes()

    # 3. A lead the bot cannot use is refused, naming the field and the value.
    ws.heading(3, "A typo: the email has no domain")
    ws.command(MARKETER, INVALID_LEAD)
    ws.shown(f"{NAMES[MARKETER]} sees (only visible to you):", ws.message(slash(INVALID_LEAD)))
    ws.show_changes()

    # 4. No text opens the modal (views.open on the loopback Slack).
    ws.heading(4, "/lead on its own opens a form")
    ws.command(MARKETER, "")
    slash("")
    if not ws.show_changes().views:
        raise DemoError("expected the /lead form to open")
    ws.write()
    ws.para("(Submitting it runs the same checks as the typed form; Maya cancels it here.)")

    # 5. First click wins.
    clock.advance(timedelta(minutes=7))
    ws.heading(5, "Rico claims Jane's lead seven minutes later")
    ws.write()
    ws.write("Rico clicks [Claim] on the card in #leads.")
    first_value = _button_value(card, Action.CLAIM.value)
    click(REP_A, card, first_value)
    found = ws.show_changes()
    found.find("the updated card", lambda m: m.channel == leads_id and m.ts == card.ts)
    found.find("Rico's DM with the contact details", lambda m: m.channel == dm[REP_A])
    found.find("Maya's DM", lambda m: m.channel == dm[MARKETER])

    # 6. The late click changes nothing and says who owns the lead.
    clock.advance(timedelta(minutes=1))
    ws.heading(6, "Sam clicks Claim a minute too late")
    ws.write()
    ws.write("Sam clicks [Claim] on the card as his screen still shows it.")
    click(REP_B, card, first_value)
    found = ws.show_changes()
    found.find("Sam's 'already claimed' note", lambda m: m.ephemeral_for == REP_B)

    # 7. Nobody claims the second lead: reminders in the thread, then the managers.
    clock.advance(timedelta(minutes=2))
    ws.heading(7, "A second lead that nobody claims")
    ws.command(MARKETER, SECOND_LEAD)
    ws.shown(f"{NAMES[MARKETER]} sees (only visible to you):", ws.message(slash(SECOND_LEAD)))
    ws.show_changes()
    ws.write()
    ws.para(
        "The reminders job runs every 30 seconds in production (or from cron with "
        "`leadbot jobs run reminders`). Here the fake clock jumps ahead 30 minutes at a time."
    )
    for _ in range(3):
        clock.advance(timedelta(minutes=30))
        summary = bot.run_job("reminders")
        ws.write()
        ws.para(f"{clock.now():%H:%M} — reminders job: {summary}")
        if not ws.show_changes().messages:
            raise DemoError(f"the reminders job sent nothing ({summary})")
    escalations = slack.dms(MANAGER)
    if not escalations or "/archives/" not in (escalations[-1].text or ""):
        raise DemoError("expected an escalation DM to the manager with a link to the card")

    # 8. The digest: once a day at DIGEST_AT in TIMEZONE.
    clock.set(START.replace(hour=9, minute=0) + timedelta(days=1))
    ws.heading(8, "Next morning: Dana's daily digest")
    summary = bot.run_job("digest")
    ws.write()
    ws.para(f"{clock.now():%H:%M} — digest job (DIGEST_AT=09:00 UTC): {summary}")
    found = ws.show_changes()
    found.find("the digest DM", lambda m: m.channel == dm[MANAGER])

    ws.write()
    ws.write("─" * ws.width)
    ws.para(
        'That\'s the loop. Next: connect a real workspace — see "Connect a Slack workspace" '
        "in the README; `leadbot manifest` prints the Slack app manifest to create the app in "
        "one step."
    )


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    """Only the story on stdout: records below WARNING are dropped; the rest go to stderr (or to
    whatever handlers the caller already installed, e.g. pytest's)."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("leadbot demo: %(levelname)s %(name)s: %(message)s"))
    # Keep any handlers already there (pytest's capture, say) but raise the bar for all of them.
    root.setLevel(logging.WARNING)
    if not saved_handlers:
        root.addHandler(handler)
    try:
        yield
    finally:
        root.setLevel(saved_level)
        if not saved_handlers:
            root.removeHandler(handler)


def _stop(bot: LocalBot) -> None:
    """Stop the bot even when its listeners are stuck (LocalBot.stop stops everything)."""
    with contextlib.suppress(TimeoutError):
        bot.stop()


def run_demo(out: TextIO | None = None, *, width: int = 78) -> int:
    """Run the demo story, printing to `out` (default: sys.stdout at call time) lines of at most
    `width` characters; returns 0, or 1 with one line on stderr when the story cannot be written.

    Everything it starts (loopback Slack, the bot's server and threads, a temp directory with
    the database) is stopped and removed before it returns, also when it fails.
    """
    if out is None:
        out = sys.stdout
    if out is None:  # `leadbot demo >&-`: Python starts without a sys.stdout at all
        return _cannot_write("stdout is closed")
    width = max(width, 40)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(_quiet_logging())
            tmp = Path(tempfile.mkdtemp(prefix="leadbot-demo-"))
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)
            slack = SlackEmulator().start()
            stack.callback(slack.stop)
            clock = FakeClock(START)
            bot = start_local_bot(
                f"sqlite:///{tmp / 'demo.db'}", slack, clock, SETTINGS, migrate=True
            )
            stack.callback(_stop, bot)
            _story(bot, _Workspace(slack, clock, out, width))
            if slack.internal_errors:
                raise DemoError("the loopback Slack failed: " + slack.internal_errors[-1])
        try:
            out.flush()
        except BrokenPipeError:
            raise
        except (OSError, ValueError) as e:  # buffered output often fails only here (ENOSPC)
            raise _OutputError(getattr(e, "strerror", None) or str(e)) from e
    except BrokenPipeError:
        # `leadbot demo | head`: the reader has gone, so stop quietly like other CLI tools.
        _detach_stdout(out)
    except _OutputError as e:
        # What is still buffered would fail again, with a traceback, at interpreter exit.
        _detach_stdout(out)
        return _cannot_write(str(e))
    return 0


def _cannot_write(reason: str) -> int:
    if sys.stderr is not None:
        print(f"leadbot demo: cannot write the story to stdout: {reason}", file=sys.stderr)
    return 1


def _detach_stdout(out: TextIO) -> None:
    """Point a closed stdout pipe at /dev/null so the interpreter's final flush can't fail."""
    if out is not sys.stdout:
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
