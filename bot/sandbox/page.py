"""The sandbox page's fragments around Block Kit: the shell, sidebar, message list, thread pane,
Home tab and modal frame. All text from payloads goes through `render_html` or `html.escape`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from importlib import resources
from typing import TYPE_CHECKING, Any

from bot.sandbox.render_html import (
    render_message_html,
    render_mrkdwn_html,
    render_view_html,
)

if TYPE_CHECKING:
    from bot.sandbox.workspace import Item, Person


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


@dataclass(frozen=True)
class RenderContext:
    users: Mapping[str, str]
    channels: Mapping[str, str]
    me: str
    tz: tzinfo
    people: Mapping[str, Person]
    bot_user_id: str


@dataclass(frozen=True)
class SidebarEntry:
    key: str  # the page's conversation key: a channel id or "dm"
    label: str
    kind: str  # "channel" | "dm"
    unread: int


def static_text(name: str) -> str:
    return resources.files("bot.sandbox").joinpath("static", name).read_text(encoding="utf-8")


def index_html(people: Sequence[Person]) -> str:
    """The page shell; everything inside it is filled in by /api/state."""
    options = "".join(
        f'<option value="{_e(p.id)}">{_e(p.real_name)} — {_e(p.role)}</option>' for p in people
    )
    return static_text("index.html").replace("<!--people-->", options)


def clock_label(now: datetime, tz: tzinfo) -> str:
    local = now.astimezone(tz)
    return f"{local:%a %d %b} · {local:%H:%M}"


# --- sidebar and headers ---------------------------------------------------------------------


def sidebar_html(entries: Sequence[SidebarEntry], active: str) -> str:
    def item(key: str, icon: str, label: str, unread: int, badge: bool, extra: str = "") -> str:
        cls = "side-item"
        if key == active:
            cls += " active"
        if unread:
            cls += " unread"
        count = f'<span class="side-badge">{unread}</span>' if unread and badge else ""
        return (
            f'<button type="button" class="{cls}" data-open-conv="{_e(key)}">'
            f'<span class="side-icon">{icon}</span><span class="side-label">{_e(label)}</span>'
            f"{extra}{count}</button>"
        )

    channels = [e for e in entries if e.kind == "channel"]
    dms = [e for e in entries if e.kind == "dm"]
    app = '<span class="app-badge">APP</span>'
    out = ['<div class="side-section">Channels</div>']
    out += [item(e.key, "#", e.label, e.unread, badge=False) for e in channels]
    out.append('<div class="side-section">Direct messages</div>')
    out += [
        item(e.key, '<span class="mini-avatar av-bot">lb</span>', e.label, e.unread, True, app)
        for e in dms
    ]
    out.append('<div class="side-section">Apps</div>')
    out.append(item("home", "⌂", "leadbot Home", 0, badge=False))
    return "".join(out)


def channel_header_html(conv: str, label: str, topic: str) -> str:
    if conv == "dm":
        return (
            '<div class="conv-title"><span class="mini-avatar av-bot">lb</span> leadbot '
            '<span class="app-badge">APP</span></div>'
            '<div class="conv-tabs"><button type="button" class="conv-tab" '
            'data-open-conv="home">Home</button><span class="conv-tab active">Messages</span></div>'
        )
    topic_html = f'<div class="conv-topic">{_e(topic)}</div>' if topic else ""
    return f'<div class="conv-title"># {_e(label)}</div>{topic_html}'


def home_header_html() -> str:
    return (
        '<div class="conv-title"><span class="mini-avatar av-bot">lb</span> leadbot '
        '<span class="app-badge">APP</span></div>'
        '<div class="conv-tabs"><span class="conv-tab active">Home</span>'
        '<button type="button" class="conv-tab" data-open-conv="dm">Messages</button></div>'
    )


def intro_html(conv: str, channel_name: str | None, commands: Sequence[Mapping[str, str]]) -> str:
    """The top of a conversation, with a short guide where it helps a first-time visitor."""
    first = commands[0] if commands else {"command": "/lead", "usage_hint": ""}
    example = f"{first['command']} {first.get('usage_hint') or ''}".strip()
    if conv == "dm":
        return (
            '<div class="intro"><div class="intro-title">leadbot</div>'
            "<p>This is your conversation with leadbot. It writes to you here when a rep claims "
            "your lead, with the contact details of a lead you claimed, and with the managers' "
            "digest.</p></div>"
        )
    name = channel_name or conv
    lines = {
        "events": (
            f"<p>This is the very beginning of <b>#{_e(name)}</b>. Field marketers post leads "
            "here after a conversation at the booth.</p>"
            '<ol class="intro-steps">'
            f"<li>As <b>Maya Field</b> (field marketer) type <code>{_e(example)}</code> below "
            f"— or just <code>{_e(first['command'])}</code> for the form.</li>"
            "<li>Switch to <b>Sam Rivera</b> (sales rep) at the top right, open <b>#leads</b> "
            "and click <b>Claim</b>. Both of you get a DM.</li>"
            "<li>Use the clock (+15 min, +1 hour, Next morning) to watch reminders, "
            "escalations to <b>Jordan Lee</b> (manager) and the morning digest.</li></ol>"
        ),
        "leads": (
            f"<p>This is the very beginning of <b>#{_e(name)}</b>. leadbot posts a claim card "
            "here for every new lead; the first rep to click <b>Claim</b> owns it. Reminders "
            "go in the card's thread.</p>"
        ),
    }
    body = lines.get(name, f"<p>This is the very beginning of <b>#{_e(name)}</b>.</p>")
    return f'<div class="intro"><div class="intro-title"># {_e(name)}</div>{body}</div>'


# --- messages --------------------------------------------------------------------------------


def _author(user: str | None, ctx: RenderContext) -> tuple[str, str, str, bool]:
    """(name, avatar text, avatar class, is an app)."""
    if user == ctx.bot_user_id:
        return "leadbot", "lb", "av-bot", True
    if user == "USLACKBOT":
        return "Slackbot", "sb", "av-slackbot", False
    person = ctx.people.get(user or "")
    if person is not None:
        index = list(ctx.people).index(person.id)
        return person.real_name, person.initials, f"av-{index}", False
    return user or "someone", "?", "av-other", False


def _time_html(at: datetime, tz: tzinfo, cls: str = "msg-time") -> str:
    local = at.astimezone(tz)
    # The page re-formats it in the viewer's own time zone, like Slack.
    return (
        f'<time class="{cls}" data-epoch="{int(at.timestamp())}" '
        f'title="{_e(f"{local:%A, %d %B %Y at %H:%M}")}">{local:%H:%M}</time>'
    )


def message_html(
    item: Item,
    ctx: RenderContext,
    *,
    replies: tuple[int, datetime] | None = None,
    in_thread: bool = False,
) -> str:
    name, initials, avatar, is_app = _author(item.user, ctx)
    content = render_message_html(
        {"text": item.text, "blocks": item.blocks, "attachments": item.attachments},
        users=ctx.users,
        channels=ctx.channels,
        me=ctx.me,
    )
    classes = ["msg"]
    if item.ephemeral_for:
        classes.append("ephemeral")
    if f"<@{ctx.me}>" in f"{item.text}{item.blocks}":
        classes.append("mentions-me")
    badge = '<span class="app-badge">APP</span>' if is_app else ""
    edited = '<span class="msg-edited">(edited)</span>' if item.edited and item.local else ""
    eph = (
        '<div class="eph-note"><span aria-hidden="true">👁</span> Only visible to you</div>'
        if item.ephemeral_for
        else ""
    )
    thread_link = ""
    if replies and not in_thread:
        count, last = replies
        noun = "reply" if count == 1 else "replies"
        thread_link = (
            f'<button type="button" class="thread-link" data-thread="{_e(item.ts)}">'
            f'<span class="mini-avatar av-bot">lb</span><b>{count} {noun}</b>'
            f'<span class="thread-last">Last reply {_time_html(last, ctx.tz, "reply-time")}'
            "</span></button>"
        )
    return (
        f'<div class="{" ".join(classes)}" id="msg-{_e(item.ts)}" '
        f'data-channel="{_e(item.channel)}" data-ts="{_e(item.ts)}">'
        f'<div class="avatar {avatar}" aria-hidden="true">{_e(initials)}</div>'
        '<div class="msg-main">'
        f'<div class="msg-meta"><span class="msg-author">{_e(name)}</span>{badge}'
        f"{_time_html(item.at, ctx.tz)}{edited}</div>"
        f'{eph}<div class="msg-content">{content}</div>{thread_link}'
        "</div></div>"
    )


def _day(at: datetime, tz: tzinfo) -> str:
    local = at.astimezone(tz)
    return f"{local:%A, %B} {local.day}"


def messages_html(
    items: Sequence[Item],
    ctx: RenderContext,
    *,
    intro: str,
    replies: Mapping[str, tuple[int, datetime]],
    top: Sequence[Item],
) -> str:
    out = [intro]
    day = None
    for item in top:
        today = _day(item.at, ctx.tz)
        if today != day:
            out.append(f'<div class="day-divider"><span>{_e(today)}</span></div>')
            day = today
        out.append(message_html(item, ctx, replies=replies.get(item.ts)))
    return "".join(out)


def thread_html(thread: Sequence[Item], parent_ts: str, label: str, ctx: RenderContext) -> str:
    parent = [i for i in thread if i.ts == parent_ts]
    replies = [i for i in thread if i.ts != parent_ts]
    noun = "reply" if len(replies) == 1 else "replies"
    where = "leadbot" if label == "leadbot" else f"# {label}"
    return (
        '<div class="thread-head"><div><b>Thread</b> '
        f'<span class="thread-where">{_e(where)}</span></div>'
        '<button type="button" class="thread-close" data-close-thread aria-label="Close thread">'
        "×</button></div>"
        '<div class="thread-body">'
        + "".join(message_html(i, ctx, in_thread=True) for i in parent)
        + f'<div class="thread-count">{len(replies)} {noun}</div>'
        + "".join(message_html(i, ctx, in_thread=True) for i in replies)
        + "</div>"
    )


# --- views -----------------------------------------------------------------------------------


def modal_html(
    view: Mapping[str, Any], ctx: RenderContext, *, errors: Mapping[str, str], depth: int
) -> str:
    return render_view_html(
        view, users=ctx.users, channels=ctx.channels, me=ctx.me, errors=errors, depth=depth
    )


def home_html(view: Mapping[str, Any] | None, ctx: RenderContext, events_id: str) -> str:
    if view is None:
        note = render_mrkdwn_html(
            "leadbot has not published a Home tab yet. When it calls `views.publish`, the view "
            "shows here.\nMeanwhile, open *Messages* to see what leadbot sent you, or type "
            f"`/lead` in <#{events_id}>.",
            channels=ctx.channels,
        )
        icon = '<div class="home-icon">⌂</div>'
        return f'<div class="home-view home-empty">{icon}<p>{note}</p></div>'
    return render_view_html(view, users=ctx.users, channels=ctx.channels, me=ctx.me)
