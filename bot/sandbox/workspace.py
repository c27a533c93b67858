"""The sandbox workspace: seeded people and channels on top of the loopback Slack (the same Web API
emulator the tests use) and the real bot behind its signed HTTP endpoint.

Everything a person does on the page becomes the request Slack would send (a slash command, a
block_actions or view_submission payload, signed) to the bot's `/slack/events`; everything the
bot does lands in the emulator's store, and `state()` turns that store into what one person
sees. The workspace keeps only what Slack's client would: ephemeral replies to commands, the
modal stack of each person, what they have read, and messages people typed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slack_sdk import WebClient

from bot.clock import FakeClock
from bot.local import LocalBot, start_local_bot
from bot.sandbox import page
from bot.sandbox.blockkit import (
    BlockKitError,
    action_for,
    find_element,
    is_empty,
    iter_elements,
    view_state,
)
from bot.slack_emulator import Call, Message, ResponsePost, SlackEmulator
from bot.slack_sim import Response, slack_escape

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]
SLACKBOT = "USLACKBOT"
REQUIRED_FIELD = "Please complete this required field."


@dataclass(frozen=True)
class Person:
    id: str
    handle: str
    real_name: str
    role: str

    @property
    def initials(self) -> str:
        return "".join(part[0] for part in self.real_name.split()[:2]).upper()


# Ids follow Slack's shape (U + A-Z0-9) so settings such as MANAGER_IDS accept them.
PEOPLE: tuple[Person, ...] = (
    Person("U0SBXMKT01", "maya", "Maya Field", "Field marketer"),
    Person("U0SBXREPA1", "sam", "Sam Rivera", "Sales rep"),
    Person("U0SBXREPB1", "alex", "Alex Chen", "Sales rep"),
    Person("U0SBXMGR01", "jordan", "Jordan Lee", "Sales manager"),
)
MARKETER, REP_A, REP_B, MANAGER = (p.id for p in PEOPLE)
LEADS_CHANNEL = "#leads"
CHANNELS: tuple[tuple[str, str], ...] = (
    ("events", "Field marketing — type /lead here right after a conversation at the booth"),
    ("leads", "Claim cards from leadbot land here; the first rep to click Claim owns the lead"),
    ("general", "Company-wide announcements and chatter"),
)
CLOCK_STEPS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1)}


class SandboxError(Exception):
    """A request the page made cannot be done; str() is a sentence for the person and `status`
    the HTTP status the page gets (409 when it conflicts with something still going on)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Item:
    """One message as the page shows it, from the emulator's store or kept by the page."""

    channel: str
    ts: str
    key: tuple[int, int, int, int]  # display order
    text: str = ""
    blocks: list[Any] | None = None
    attachments: list[Any] | None = None
    user: str | None = None
    ephemeral_for: str | None = None
    thread_ts: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    local: bool = False
    edited: bool = False

    @property
    def is_reply(self) -> bool:
        return bool(self.thread_ts) and self.thread_ts != self.ts

    def payload_message(self) -> JsonDict:
        """The `message` object Slack puts in interaction payloads."""
        out: JsonDict = {"type": "message", "text": self.text, "user": self.user, "ts": self.ts}
        if self.blocks is not None:
            out["blocks"] = self.blocks
        if self.attachments is not None:
            out["attachments"] = self.attachments
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        return out


def _ts_key(ts: str) -> tuple[int, int]:
    secs, _, frac = ts.partition(".")
    try:
        return int(secs), int((frac + "000000")[:6])
    except ValueError:
        return 0, 0


def local_timezone_name() -> str:
    """The machine's IANA zone when it can be found (so "next morning" means here), else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        link = os.readlink("/etc/localtime")
        if "zoneinfo/" in link:
            candidates.append(link.split("zoneinfo/", 1)[1])
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    for name in candidates:
        if not name:
            continue
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        return name
    return "UTC"


def manifest_features() -> tuple[list[dict[str, str]], set[str]]:
    """The bot's slash commands and subscribed bot events, read from its Slack app manifest,
    so a new command or event shows up in the sandbox without changes here."""
    from bot.manifest import manifest_yaml

    text = manifest_yaml("http://127.0.0.1/slack/events")
    commands: list[dict[str, str]] = []
    pattern = r"-\s*command:\s*(/\S+)(.*?)(?=\n\s*-\s*command:|\n\S|\Z)"
    for match in re.finditer(pattern, text, re.S):

        def field_of(name: str, body: str = match[2]) -> str:
            found = re.search(rf"\b{name}:\s*(.+)", body)
            return found[1].strip().strip("\"'") if found else ""

        commands.append(
            {
                "command": match[1],
                "description": field_of("description"),
                "usage_hint": field_of("usage_hint"),
            }
        )
    events: set[str] = set()
    section = re.search(r"bot_events:\s*\n((?:\s+-\s*\S+\s*\n?)+)", text)
    if section:
        events = set(re.findall(r"-\s*(\S+)", section[1]))
    return commands or [{"command": "/lead", "description": "", "usage_hint": ""}], events


class Sandbox:
    """A small Slack workspace with the bot installed, all in this process."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        timezone: str | None = None,
        start: datetime | None = None,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.db_path = Path(db_path).resolve()
        self.timezone_name = timezone or local_timezone_name()
        self.tz = ZoneInfo(self.timezone_name)
        self.slack = SlackEmulator().start()
        try:
            for person in PEOPLE:
                self.slack.set_user(
                    person.id,
                    name=person.handle,
                    real_name=person.real_name,
                    tz=self.timezone_name,
                    profile={"display_name": person.real_name, "title": person.role},
                )
            self.clock = FakeClock(start or datetime.now(UTC).replace(microsecond=0))
            env = {
                "LEADS_CHANNEL": LEADS_CHANNEL,
                "MANAGER_IDS": MANAGER,
                # Not read by the bot yet; set so a sales-team feature finds its people.
                "SALES_IDS": f"{REP_A},{REP_B}",
                "REMINDER_AFTER": "30m",
                "ESCALATE_AFTER": "2",
                "DIGEST_AT": "09:00",
                "TIMEZONE": self.timezone_name,
                **dict(overrides or {}),
            }
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            self.bot: LocalBot = start_local_bot(
                f"sqlite:///{self.db_path.as_posix()}", self.slack, self.clock, env, migrate=True
            )
        except BaseException:
            self.slack.stop()
            raise
        self.settings = self.bot.services.settings
        self.people = {p.id: p for p in PEOPLE}
        self.channel_ids = {name: self.slack.channel_id(f"#{name}") for name, _ in CHANNELS}
        self.topics = {self.channel_ids[name]: topic for name, topic in CHANNELS}
        self.channel_names = {cid: name for name, cid in self.channel_ids.items()}
        self.user_names = {p.id: p.real_name for p in PEOPLE}
        self.user_names[self.slack.bot_user_id] = "leadbot"
        self.user_names[SLACKBOT] = "Slackbot"
        sim = self.bot.sim
        sim.user_names.update({p.id: p.handle for p in PEOPLE})
        sim.channel_names.update(self.channel_names)
        self.commands, self.events = manifest_features()
        # The workspace's own calls into the emulator (applying response_action: update,
        # replace_original...) use a token of their own so they are told apart in the call log.
        self.ui = WebClient(token="xoxb-sandbox-workspace", base_url=self.slack.url, timeout=5)
        self._lock = threading.RLock()
        self._seq = itertools.count(1)
        self._local: dict[tuple[str, str], Item] = {}
        self._first_seen: dict[tuple[str, str], datetime] = {}
        self._emulated: list[Message] = []
        self._max_ts = (0, 0)
        self._synced: tuple[int, int] = (-1, -1)
        self._calls_seen = 0
        self._responses_seen = 0
        self._stacks: dict[str, list[str]] = {}
        self._submitting: set[str] = set()  # views whose view_submission is in flight
        self._triggers: dict[str, str] = {}
        self._response_ctx: dict[str, JsonDict] = {}
        self._errors: dict[str, tuple[str, dict[str, str]]] = {}
        self._read: dict[tuple[str, str], tuple[int, int, int, int]] = {}
        self._local_version = 0
        self._sync()

    # ----------------------------------------------------------------- lifecycle

    def stop(self) -> None:
        try:
            self.bot.stop()
        except Exception as e:  # stopping must go on: the emulator still needs closing
            log.warning("bot did not stop cleanly: %s", e)
        self.slack.stop()

    def leads_in_db(self) -> int:
        from sqlalchemy import func, select

        from models import Lead

        with self.bot.services.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(Lead)) or 0)

    # ----------------------------------------------------------------- ids and lookups

    def person(self, user_id: Any) -> Person:
        found = self.people.get(str(user_id or ""))
        if found is None:
            raise SandboxError("Pick a person first.")
        return found

    def channel_for(self, user_id: str, conv: str) -> str:
        """The channel id behind a page conversation key: a channel id, "dm" or "home"."""
        if conv == "dm":
            return self.slack.dm_channel(user_id)
        if conv == "home":
            raise SandboxError("The Home tab has no composer; open Messages to write to leadbot.")
        if conv in self.channel_names or self._known_channel(conv):
            return conv
        raise SandboxError("That conversation does not exist in the sandbox.")

    def _known_channel(self, channel: str) -> bool:
        return channel[:1] in ("C", "G") and any(m.channel == channel for m in self._emulated)

    def _new_ts(self) -> str:
        # Shaped like Slack's ts and unique; display order comes from Item.key, not from this.
        secs, micros = self._max_ts
        return f"{secs or int(time.time())}.{micros:06d}{next(self._seq):05d}"

    def _new_trigger(self, user_id: str) -> str:
        trigger = f"{int(time.time())}{next(self._seq):04d}.{next(self._seq)}.sandbox"
        with self._lock:
            self._triggers[trigger] = user_id
        return trigger

    def _new_response_url(self, user_id: str, channel: str, ts: str | None, ephemeral: bool) -> str:
        name = f"sandbox-{next(self._seq)}"
        with self._lock:
            self._response_ctx[name] = {
                "user": user_id,
                "channel": channel,
                "ts": ts,
                "ephemeral": ephemeral,
            }
        return self.slack.response_url(name)

    def version(self) -> str:
        stats = self.slack.stats
        return f"{stats['calls']}.{stats['responses']}.{self._local_version}"

    def _bump(self) -> None:
        with self._lock:
            self._local_version += 1

    # ----------------------------------------------------------------- following the emulator

    def _sync(self) -> None:
        """Take in what changed in the emulator: messages, modals opened, response_url posts."""
        with self._lock:
            stats = self.slack.stats
            mark = (stats["calls"], stats["responses"])
            if mark == self._synced:
                return
            self._synced = mark
            now = self.clock.now()
            self._emulated = self.slack.messages()
            for m in self._emulated:
                self._first_seen.setdefault((m.channel, m.ts), now)
                self._max_ts = max(self._max_ts, _ts_key(m.ts))
            calls = self.slack.calls
            for call in calls[self._calls_seen :]:
                self._on_call(call)
            self._calls_seen = len(calls)
            responses = self.slack.responses
            for post in responses[self._responses_seen :]:
                self._on_response(post)
            self._responses_seen = len(responses)

    def _on_call(self, call: Call) -> None:
        if call.method not in ("views.open", "views.push") or not call.ok:
            return
        trigger = str(call.args.get("trigger_id") or call.args.get("interactivity_pointer") or "")
        user = self._triggers.get(trigger)
        view = self.slack.modals.get(trigger)
        if user is None or view is None:
            return
        stack = self._stacks.setdefault(user, [])
        if call.method == "views.open":
            stack[:] = [view["id"]]
        elif len(stack) < 3:  # Slack's limit on a modal stack
            stack.append(view["id"])

    def _on_response(self, post: ResponsePost) -> None:
        ctx = self._response_ctx.get(post.name)
        body = post.body
        if ctx is None or not isinstance(body, dict):
            return
        channel, user, origin = ctx["channel"], ctx["user"], ctx["ts"]
        if origin and (body.get("delete_original") or body.get("replace_original")):
            self._apply_to_original(ctx, body)
            return
        public = body.get("response_type") == "in_channel"
        self._add_local(
            channel,
            user=self.slack.bot_user_id,
            text=str(body.get("text") or ""),
            blocks=body.get("blocks") if isinstance(body.get("blocks"), list) else None,
            attachments=body.get("attachments")
            if isinstance(body.get("attachments"), list)
            else None,
            ephemeral_for=None if public else user,
            thread_ts=str(body["thread_ts"]) if body.get("thread_ts") else None,
        )

    def _apply_to_original(self, ctx: JsonDict, body: JsonDict) -> None:
        channel, ts = ctx["channel"], ctx["ts"]
        local = self._local.get((channel, ts))
        if body.get("delete_original"):
            if local is not None:
                del self._local[(channel, ts)]
            else:
                with contextlib.suppress(Exception):
                    self.ui.chat_delete(channel=channel, ts=ts)
            return
        text = str(body.get("text") or "")
        blocks = body.get("blocks") if isinstance(body.get("blocks"), list) else None
        if local is not None:
            local.text, local.blocks, local.edited = text, blocks, True
            self._local_version += 1
            return
        with contextlib.suppress(Exception):
            self.ui.chat_update(channel=channel, ts=ts, text=text, blocks=blocks or [])

    def _add_local(
        self, channel: str, *, anchor: tuple[int, int] | None = None, **fields: Any
    ) -> Item:
        """Keep a message the page shows but the emulator does not store. It sorts after every
        emulator message known at `anchor` (default: now) and before any later one."""
        with self._lock:
            secs, micros = anchor or self._max_ts
            item = Item(
                channel=channel,
                ts=self._new_ts(),
                key=(secs, micros, 1, next(self._seq)),
                at=self.clock.now(),
                local=True,
                **fields,
            )
            self._local[(channel, item.ts)] = item
            self._local_version += 1
            return item

    def _notice(self, channel: str, user_id: str, text: str) -> None:
        """An ephemeral note from Slack itself (not the bot), like Slack's own warnings."""
        self._add_local(channel, user=SLACKBOT, text=slack_escape(text), ephemeral_for=user_id)

    def _settle(self) -> None:
        try:
            self.bot.settle(timeout=5)
        except TimeoutError:
            log.warning("the bot is still busy after 5 s; showing what is there so far")
        self._sync()

    # ----------------------------------------------------------------- what people do

    def send(self, user_id: str, conv: str, text: str, thread_ts: str | None = None) -> JsonDict:
        """The composer: a /command goes to the bot as Slack sends it; other text is a message."""
        person = self.person(user_id)
        channel = self.channel_for(person.id, conv)
        text = (text or "").strip()
        if not text:
            raise SandboxError("Type a message or a /command first.")
        if len(text) > 12000:
            raise SandboxError("That message is longer than Slack allows.")
        self._sync()
        if text.startswith("/"):
            return self._slash(person, channel, text)
        if thread_ts:
            # A reply to a message that is not there would show up as a stray top-level one.
            try:
                parent = self._item_for(person.id, channel, thread_ts)
            except SandboxError:
                raise SandboxError("That thread is not in this conversation.") from None
            thread_ts = parent.thread_ts or parent.ts
        item = self._add_local(
            channel,
            user=person.id,
            text=slack_escape(text),
            thread_ts=thread_ts or None,
        )
        self._message_event(person, item)
        return {"ok": True}

    def _message_event(self, person: Person, item: Item) -> None:
        is_dm = item.channel.startswith("D")
        wanted = "message.im" if is_dm else "message.channels"
        if wanted not in self.events:
            return
        event: JsonDict = {
            "type": "message",
            "channel": item.channel,
            "user": person.id,
            "text": item.text,
            "ts": item.ts,
            "channel_type": "im" if is_dm else "channel",
        }
        if item.thread_ts:
            event["thread_ts"] = item.thread_ts
        self.bot.sim.event(event)
        self._settle()

    def _slash(self, person: Person, channel: str, text: str) -> JsonDict:
        # `/\S*`: a lone "/" is an unknown command, as in Slack, not a crash.
        match = re.match(r"(/\S*)\s*(.*)", text, re.S)
        assert match is not None
        command, rest = match[1].lower(), match[2]
        if command not in {c["command"] for c in self.commands}:
            self._notice(
                channel,
                person.id,
                f"{command} is not a valid command. In Slack, all messages that start with "
                'the "/" character are interpreted as commands.',
            )
            return {"ok": True}
        trigger = self._new_trigger(person.id)
        url = self._new_response_url(person.id, channel, None, ephemeral=True)
        # Slack shows the command's answer before anything the bot posts while handling it.
        anchor = self._max_ts
        response = self.bot.sim.slash_command(
            rest,
            user_id=person.id,
            channel_id=channel,
            command=command,
            trigger_id=trigger,
            response_url=url,
        )
        self._command_reply(person, channel, text, command, response, anchor)
        self._settle()
        return {"ok": True}

    def _command_reply(
        self,
        person: Person,
        channel: str,
        typed: str,
        command: str,
        response: Response,
        anchor: tuple[int, int],
    ) -> None:
        """Show the slash command's immediate HTTP answer the way Slack does."""
        if response.status != 200:
            self._notice(
                channel,
                person.id,
                f'{command} failed with the error "dispatch_failed" '
                f"(the bot answered HTTP {response.status})",
            )
            return
        if not response.body.strip():
            return
        try:
            body = response.json()
        except ValueError:
            body = {"text": slack_escape(response.body)}
        if not isinstance(body, dict):
            return
        public = body.get("response_type") == "in_channel"
        if public:
            # Slack shows the invocation itself when the answer is public.
            self._add_local(channel, anchor=anchor, user=person.id, text=slack_escape(typed))
        self._add_local(
            channel,
            anchor=anchor,
            user=self.slack.bot_user_id,
            text=str(body.get("text") or ""),
            blocks=body.get("blocks") if isinstance(body.get("blocks"), list) else None,
            attachments=body.get("attachments")
            if isinstance(body.get("attachments"), list)
            else None,
            ephemeral_for=None if public else person.id,
        )

    def act(self, user_id: str, request: Mapping[str, Any]) -> JsonDict:
        """A click or a choice on a message, a modal or the Home tab → block_actions."""
        person = self.person(user_id)
        block_id = str(request.get("block_id") or "")
        action_id = str(request.get("action_id") or "")
        raw = request.get("value")
        action_ts = f"{time.time():.6f}"
        self._sync()
        trigger = self._new_trigger(person.id)
        try:
            if request.get("source") == "view":
                view = self._view_of(person.id, str(request.get("view_id") or ""))
                bid, element = find_element(view.get("blocks"), block_id, action_id)
                action = action_for(element, bid, raw, self.tz, action_ts)
                state = self._state(view, request.get("state"))
                view["state"] = {"values": state}
                response = self.bot.sim.action(
                    person.id, action, view=view, trigger_id=trigger, state=state
                )
            else:
                channel = str(request.get("channel") or "")
                ts = str(request.get("ts") or "")
                item = self._item_for(person.id, channel, ts)
                bid, element = find_element(item.blocks, block_id, action_id)
                action = action_for(element, bid, raw, self.tz, action_ts)
                ephemeral = item.ephemeral_for is not None
                url = self._new_response_url(person.id, channel, ts, ephemeral=ephemeral)
                stateful = {bid: {action_id: raw}} if "value" in request else {}
                response = self.bot.sim.action(
                    person.id,
                    action,
                    block_id=bid,
                    channel_id=channel,
                    message_ts=ts,
                    # Slack sends no `message` for ephemeral ones, only the container.
                    message=None if ephemeral else item.payload_message(),
                    ephemeral=ephemeral,
                    response_url=url,
                    trigger_id=trigger,
                    state=view_state(item.blocks or [], stateful, self.tz),
                )
        except BlockKitError as e:
            raise SandboxError(f"Nothing happened: {e}.") from None
        self._settle()
        if response.status != 200:
            # Slack shows a warning next to the element; the page says which one and why.
            return {
                "ok": False,
                "error": f"leadbot answered HTTP {response.status} to {action_id!r}",
            }
        return {"ok": True}

    def _state(self, view: Mapping[str, Any], raw: Any) -> JsonDict:
        if raw is not None and not isinstance(raw, Mapping):
            raise SandboxError("The form's values are malformed.")
        return view_state(view.get("blocks") or [], raw or {}, self.tz)

    def submit_view(self, user_id: str, view_id: str, raw_values: Any) -> JsonDict:
        """The modal's Submit button → view_submission; its response_action is applied."""
        person = self.person(user_id)
        self._sync()
        # Slack's client sends one view_submission per view at a time; a double click (or two
        # tabs) must not create the lead twice. Checked and claimed under one lock, so a second
        # submit either sees this one in flight or finds the form already closed.
        with self._lock:
            view = self._view_of(person.id, view_id, top=True)
            if view_id in self._submitting:
                raise SandboxError("That form is already being submitted.", status=409)
            self._submitting.add(view_id)
        try:
            return self._submit(person, view_id, view, raw_values)
        finally:
            with self._lock:
                self._submitting.discard(view_id)

    def _submit(self, person: Person, view_id: str, view: JsonDict, raw_values: Any) -> JsonDict:
        try:
            state = self._state(view, raw_values)
        except BlockKitError as e:
            raise SandboxError(f"The form's values are malformed: {e}.") from None
        # Slack itself refuses to send a modal with an empty required input.
        missing = {
            bid: REQUIRED_FIELD
            for bid, block, element in iter_elements(view.get("blocks"))
            if block.get("type") == "input"
            and block.get("optional") is not True
            and is_empty(state.get(bid, {}).get(str(element.get("action_id")), {}))
        }
        if missing:
            with self._lock:
                self._errors[view_id] = (str(view.get("hash")), missing)
                self._local_version += 1
            return {"ok": True, "result": "errors", "errors": missing}
        response = self.bot.sim.view_submission(
            person.id, view, state, trigger_id=self._new_trigger(person.id)
        )
        if response.status != 200:
            return {"ok": False, "error": f"leadbot answered HTTP {response.status}"}
        try:
            body = response.json()
        except ValueError:
            body = None
        result = self._apply_submission(person.id, view_id, view, body)
        self._settle()
        return result

    def _apply_submission(
        self, user_id: str, view_id: str, view: Mapping[str, Any], body: Any
    ) -> JsonDict:
        action = body.get("response_action") if isinstance(body, dict) else None
        with self._lock:
            self._errors.pop(view_id, None)
            self._local_version += 1
            stack = self._stacks.setdefault(user_id, [])
            if action == "errors":
                errors = body.get("errors") if isinstance(body.get("errors"), dict) else {}
                shown = {str(k): str(v) for k, v in errors.items()}
                self._errors[view_id] = (str(view.get("hash")), shown)
                return {"ok": True, "result": "errors", "errors": shown}
            if action == "update" and isinstance(body.get("view"), dict):
                self.ui.views_update(view_id=view_id, view=body["view"])
                return {"ok": True, "result": "update"}
            if action == "push" and isinstance(body.get("view"), dict):
                self.ui.views_push(trigger_id=self._new_trigger(user_id), view=body["view"])
                return {"ok": True, "result": "push"}
            if action == "clear":
                stack.clear()
                return {"ok": True, "result": "clear"}
            # A plain ack closes the submitted view (and anything pushed over it).
            if view_id in stack:
                del stack[stack.index(view_id) :]
            return {"ok": True, "result": "closed"}

    def close_view(self, user_id: str, view_id: str, *, everything: bool) -> JsonDict:
        """Cancel/Back closes the top view; × closes the whole stack (view_closed if asked)."""
        person = self.person(user_id)
        self._sync()
        view = self._view_of(person.id, view_id)
        with self._lock:
            stack = self._stacks.setdefault(person.id, [])
            if everything:
                stack.clear()
            elif view_id in stack:
                del stack[stack.index(view_id) :]
            self._errors.pop(view_id, None)
            self._local_version += 1
        if view.get("notify_on_close"):
            self._view_closed(person, view, cleared=everything)
            self._settle()
        return {"ok": True}

    def _view_closed(self, person: Person, view: JsonDict, *, cleared: bool) -> None:
        sim = self.bot.sim
        payload = {
            "type": "view_closed",
            "team": {"id": sim.team_id, "domain": sim.team_domain},
            "user": {
                "id": person.id,
                "username": person.handle,
                "name": person.handle,
                "team_id": sim.team_id,
            },
            "api_app_id": sim.api_app_id,
            "token": sim.verification_token,
            "view": view,
            "is_cleared": cleared,
            "enterprise": None,
            "is_enterprise_install": False,
        }
        body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))})
        sim.raw(body.encode("utf-8"), "application/x-www-form-urlencoded")

    def open_conversation(self, user_id: str, conv: str) -> JsonDict:
        """Opening the Home tab tells the bot (app_home_opened) when it subscribes to that."""
        person = self.person(user_id)
        if conv == "home" and "app_home_opened" in self.events:
            self.bot.sim.event(
                {
                    "type": "app_home_opened",
                    "user": person.id,
                    "channel": self.slack.dm_channel(person.id),
                    "tab": "home",
                }
            )
            self._settle()
        return {"ok": True}

    # ----------------------------------------------------------------- time

    def advance(self, step: str) -> JsonDict:
        """Move the bot's clock and run one pass of every scheduled job."""
        self._sync()
        if step in CLOCK_STEPS:
            self.clock.advance(CLOCK_STEPS[step])
        elif step == "morning":
            local = self.clock.now().astimezone(self.tz)
            morning = datetime.combine(local.date() + timedelta(days=1), dtime(9, 0), self.tz)
            self.clock.set(morning.astimezone(UTC))
        else:
            raise SandboxError("Unknown clock step.")
        results = self.run_jobs()
        self._bump()
        self._settle()
        return {"ok": True, "jobs": results, "now": self.clock.now().isoformat()}

    def run_jobs(self) -> list[str]:
        from jobs import JOBS

        results = []
        for name, job in JOBS.items():
            try:
                results.append(f"{name}: {job.run(self.bot.services)}")
            except Exception as e:  # one broken job must not hide what the others did
                log.exception("job %s failed", name)
                results.append(f"{name} failed: {type(e).__name__}")
        return results

    # ----------------------------------------------------------------- what one person sees

    def _item(self, m: Message) -> Item:
        return Item(
            channel=m.channel,
            ts=m.ts,
            key=(*_ts_key(m.ts), 0, 0),
            text=m.text,
            blocks=m.blocks,
            attachments=m.attachments,
            user=m.user,
            ephemeral_for=m.ephemeral_for,
            thread_ts=m.thread_ts,
            at=self._first_seen.get((m.channel, m.ts), self.clock.now()),
            edited=m.updated_count > 0,
        )

    def _items(self, channel: str, user_id: str) -> list[Item]:
        found = [self._item(m) for m in self._emulated if m.channel == channel]
        found += [i for i in self._local.values() if i.channel == channel]
        visible = [i for i in found if i.ephemeral_for in (None, user_id)]
        return sorted(visible, key=lambda i: i.key)

    def _item_for(self, user_id: str, channel: str, ts: str) -> Item:
        with self._lock:
            for item in self._items(channel, user_id):
                if item.ts == ts:
                    return item
        raise SandboxError("That message is gone.")

    def _view_of(self, user_id: str, view_id: str, *, top: bool = False) -> JsonDict:
        stack = self._stacks.get(user_id, [])
        home = self.slack.home(user_id)
        allowed = stack[-1:] if top else stack
        if view_id not in allowed and not (home and home.get("id") == view_id and not top):
            raise SandboxError("That form is no longer open.")
        view = self.slack.view(view_id)
        if view is None:
            raise SandboxError("That form is no longer open.")
        return view

    def _conversations(self, user_id: str) -> list[tuple[str, str, str]]:
        """(conv key, channel id, label) for the sidebar, channels first."""
        convs = [(cid, cid, name) for cid, name in self.channel_names.items()]
        extra = sorted(
            {m.channel for m in self._emulated if m.channel[:1] in ("C", "G")}
            - set(self.channel_names)
        )
        convs += [(cid, cid, cid) for cid in extra]
        convs.append(("dm", self.slack.dm_channel(user_id), "leadbot"))
        return convs

    def state(
        self,
        user_id: str,
        conv: str = "",
        thread_ts: str | None = None,
        since: str | None = None,
    ) -> JsonDict:
        """Everything the page shows for one person, as server-rendered fragments."""
        person = self.person(user_id)
        self._sync()
        version = self.version()
        if since and since == version:
            return {"version": version, "unchanged": True}
        if conv == self.slack.dm_channel(person.id):
            conv = "dm"  # a link to the DM channel opens the DM
        conv = conv or self.channel_ids["events"]
        with self._lock:
            return self._render_state(person, conv, thread_ts, version)

    def _render_state(
        self, person: Person, conv: str, thread_ts: str | None, version: str
    ) -> JsonDict:
        now = self.clock.now()
        convs = self._conversations(person.id)
        keys = {key for key, _, _ in convs} | {"home"}
        if conv not in keys:
            conv = self.channel_ids["events"]
        ctx = page.RenderContext(
            users=self.user_names,
            channels={**self.channel_names},
            me=person.id,
            tz=self.tz,
            people=self.people,
            bot_user_id=self.slack.bot_user_id,
        )
        sidebar = []
        for key, channel, label in convs:
            items = _top_level(self._items(channel, person.id))
            if key == conv and items:
                self._read[(person.id, channel)] = items[-1].key
            seen = self._read.get((person.id, channel))
            unread = sum(1 for i in items if seen is None or i.key > seen)
            if key == conv:
                unread = 0
            kind = "dm" if key == "dm" else "channel"
            sidebar.append(page.SidebarEntry(key, label, kind, unread))
        thread_html = ""
        modal = None
        stack = self._stacks.get(person.id, [])
        if stack:
            view = self.slack.view(stack[-1])
            if view is not None:
                view_hash, errors = self._errors.get(stack[-1], ("", {}))
                if view_hash != str(view.get("hash")):
                    errors = {}
                modal = {
                    "key": f"{view['id']}:{view.get('hash')}:{json.dumps(errors, sort_keys=True)}",
                    "view_id": view["id"],
                    "html": page.modal_html(view, ctx, errors=errors, depth=len(stack)),
                }
        if conv == "home":
            home = self.slack.home(person.id)
            main_html = page.home_html(home, ctx, self.channel_ids["events"])
            header_html = page.home_header_html()
            composer = {"enabled": False, "placeholder": ""}
        else:
            channel = self.channel_for(person.id, conv)
            items = self._items(channel, person.id)
            main_html = page.messages_html(
                items,
                ctx,
                intro=page.intro_html(conv, self.channel_names.get(channel), self.commands),
                replies=_reply_counts(items),
                top=_top_level(items),
            )
            label = self.channel_names.get(channel) or ("leadbot" if conv == "dm" else channel)
            header_html = page.channel_header_html(conv, label, self.topics.get(channel, ""))
            placeholder = "Message leadbot" if conv == "dm" else f"Message #{label}"
            composer = {"enabled": True, "placeholder": placeholder}
            if thread_ts:
                thread = [i for i in items if i.ts == thread_ts or i.thread_ts == thread_ts]
                if any(i.ts == thread_ts for i in thread):
                    thread_html = page.thread_html(thread, thread_ts, label, ctx)
        return {
            "version": version,
            "unchanged": False,
            "me": {"id": person.id, "name": person.real_name, "role": person.role},
            "conv": conv,
            "clock": {
                "epoch": int(now.timestamp()),
                "label": page.clock_label(now, self.tz),
                "tz": self.timezone_name,
            },
            "sidebar_html": page.sidebar_html(sidebar, conv),
            "header_html": header_html,
            "main_html": main_html,
            "thread_html": thread_html,
            "modal": modal,
            "composer": composer,
            "commands": self.commands,
        }


def _top_level(items: list[Item]) -> list[Item]:
    """Messages shown in the channel: replies show only in their thread, unless their parent
    is gone (an orphan, e.g. a reminder for a card from an earlier sandbox run)."""
    present = {i.ts for i in items}
    return [i for i in items if not (i.is_reply and i.thread_ts in present)]


def _reply_counts(items: list[Item]) -> dict[str, tuple[int, datetime]]:
    """{parent ts: (number of replies, time of the last one)}."""
    counts: dict[str, tuple[int, datetime]] = {}
    for i in items:
        if i.is_reply and i.thread_ts:
            n, _ = counts.get(i.thread_ts, (0, i.at))
            counts[i.thread_ts] = (n + 1, i.at)
    return counts
