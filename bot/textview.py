"""Render Slack messages and views (Block Kit as plain dicts) as readable terminal text.

``leadbot demo`` uses this to print, step by step, what each person would see in Slack.
Rendering is best effort by design: a payload with missing keys or odd types still renders
as much as it can, because a demo that crashes on one bad block shows nothing at all.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

__all__ = ["render_blocks", "render_message", "render_mrkdwn", "render_view"]

DEFAULT_WIDTH = 72
# Below this, wrapping turns most messages into one word per line.
MIN_WIDTH = 20

THREAD_PREFIX = "↳ (in thread) "

# Hardcoded rather than strftime("%B") so output doesn't depend on the process locale.
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# Slack escapes exactly these three; anything else (e.g. "&copy;") is shown literally.
_ENTITY_RE = re.compile(r"&(lt|gt|amp);")
_ENTITIES = {"lt": "<", "gt": ">", "amp": "&"}
# Slack never puts a raw "<" or ">" inside a token (they'd be escaped), so this can't overrun.
_TOKEN_RE = re.compile(r"<([^<>]*)>")
_DATE_TOKEN_RE = re.compile(r"\{(\w+)\}")

_AGO_UNITS = (
    (365 * 86400, "year"),
    (30 * 86400, "month"),
    (86400, "day"),
    (3600, "hour"),
    (60, "minute"),
)

_TEXT_INPUTS = frozenset({"plain_text_input", "email_text_input", "url_text_input", "number_input"})
_LIST_BULLETS = ("•", "◦", "▪")


@dataclass(frozen=True)
class _Ctx:
    users: Mapping[str, str]
    channels: Mapping[str, str]
    tz: tzinfo
    now: datetime
    width: int


def _make_ctx(users: Any, channels: Any, tz: Any, now: Any, width: Any = DEFAULT_WIDTH) -> _Ctx:
    zone = tz if isinstance(tz, tzinfo) else UTC
    if not isinstance(now, datetime):
        now = datetime.now(zone)
    elif now.tzinfo is None:
        # A naive "now" is taken to be wall-clock time in the rendering zone.
        now = now.replace(tzinfo=zone)
    if isinstance(width, bool) or not isinstance(width, int):
        width = DEFAULT_WIDTH
    return _Ctx(
        users=users if isinstance(users, Mapping) else {},
        channels=channels if isinstance(channels, Mapping) else {},
        tz=zone,
        now=now,
        width=max(width, MIN_WIDTH),
    )


# --- coercion helpers: every payload value goes through one of these --------------------------


def _s(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return ""


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _unescape(text: str) -> str:
    # One pass, so "&amp;lt;" becomes the literal "&lt;" rather than "<".
    return _ENTITY_RE.sub(lambda m: _ENTITIES[m[1]], text)


# --- mrkdwn ----------------------------------------------------------------------------------


def _mrkdwn(text: Any, ctx: _Ctx) -> str:
    raw = _s(text)
    out: list[str] = []
    pos = 0
    for match in _TOKEN_RE.finditer(raw):
        out.append(_unescape(raw[pos : match.start()]))
        out.append(_token(match[1], ctx))
        pos = match.end()
    out.append(_unescape(raw[pos:]))
    # Unescaping piecewise (never the joined result) keeps names from `users`/`channels`
    # verbatim and stops escaped text like "&lt;!channel&gt;" from becoming a mention.
    return "".join(out)


def _token(body: str, ctx: _Ctx) -> str:
    target, _, label = body.partition("|")
    label = _unescape(label)
    if target.startswith("@"):
        return _user(target[1:], label, ctx)
    if target.startswith("#"):
        return _channel(target[1:], label, ctx)
    if target.startswith("!"):
        return _special(target[1:], label, ctx)
    return _link(_unescape(target), label) or _unescape(f"<{body}>")


def _user(user_id: str, label: str, ctx: _Ctx) -> str:
    name = label or _s(ctx.users.get(user_id)) or user_id
    return "@" + (name.removeprefix("@") or user_id)


def _channel(channel_id: str, label: str, ctx: _Ctx) -> str:
    name = label or _s(ctx.channels.get(channel_id)) or channel_id
    return "#" + (name.removeprefix("#") or channel_id)


def _special(command: str, label: str, ctx: _Ctx) -> str:
    name, _, arg = command.partition("^")
    if name in ("here", "channel", "everyone"):
        return "@" + name
    if name == "subteam":
        return "@" + ((label or arg).removeprefix("@") or arg)
    if name == "date":
        stamp, _, rest = arg.partition("^")
        fmt, _, link = rest.partition("^")
        return _format_date(stamp, _unescape(fmt), _unescape(link), label, ctx)
    return label or "@" + name


def _link(url: str, label: str) -> str:
    shown = url.removeprefix("mailto:")
    if label and label not in (url, shown):
        return f"{label} ({shown})"
    return shown


# --- dates -----------------------------------------------------------------------------------


def _format_date(stamp: Any, fmt: str, link: str, fallback: str, ctx: _Ctx) -> str:
    try:
        when = datetime.fromtimestamp(int(float(_s(stamp))), ctx.tz)
    except (ValueError, OverflowError, OSError):
        return fallback
    if not fmt:
        return fallback or _date_token("date_short", when, ctx) + " " + _clock(when, secs=False)

    def replace(match: re.Match[str]) -> str:
        rendered = _date_token(match[1], when, ctx)
        return match[0] if rendered is None else rendered

    text = _DATE_TOKEN_RE.sub(replace, fmt)
    return f"{text} ({link})" if link else text


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _clock(when: datetime, *, secs: bool) -> str:
    # 12-hour like Slack's default; seconds only when the token asks for them.
    hour = when.hour % 12 or 12
    seconds = f":{when.second:02d}" if secs else ""
    return f"{hour}:{when.minute:02d}{seconds} {'AM' if when.hour < 12 else 'PM'}"


def _date_token(token: str, when: datetime, ctx: _Ctx) -> str | None:
    if token == "date_num":
        return f"{when.year:04d}-{when.month:02d}-{when.day:02d}"
    if token == "time":
        return _clock(when, secs=False)
    if token == "time_secs":
        return _clock(when, secs=True)
    if token == "ago":
        return _ago(when, ctx.now)
    base = token.removesuffix("_pretty")
    if base not in ("date", "date_short", "date_long"):
        return None
    if token.endswith("_pretty"):
        today = ctx.now.astimezone(ctx.tz).date()
        relative = {0: "today", -1: "yesterday", 1: "tomorrow"}.get((when.date() - today).days)
        if relative:
            return relative
    month = _MONTHS[when.month - 1]
    if base == "date_short":
        return f"{month[:3]} {when.day}, {when.year}"
    long_date = f"{month} {_ordinal(when.day)}, {when.year}"
    if base == "date_long":
        return f"{_WEEKDAYS[when.weekday()]}, {long_date}"
    return long_date


def _ago(when: datetime, now: datetime) -> str:
    seconds = (now - when).total_seconds()
    span = abs(seconds)
    if span < 60:
        return "just now"
    for size, unit in _AGO_UNITS:
        if span >= size:
            count = int(span // size)
            amount = f"{count} {unit}{'' if count == 1 else 's'}"
            return f"{amount} ago" if seconds > 0 else f"in {amount}"
    return "just now"  # unreachable: the minute unit always matches once span >= 60


# --- layout helpers --------------------------------------------------------------------------


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    """Wrap each line of `text` on its own so existing newlines survive."""
    out: list[str] = []
    in_code = False
    for line in text.split("\n"):
        fences = line.count("```")
        if in_code or fences:
            # Re-flowing code would change its meaning; show it verbatim.
            out.append(indent + line)
        else:
            body = line.lstrip(" ")
            lead = indent + line[: len(line) - len(body)]
            wrapped = textwrap.wrap(
                body,
                width=max(width, len(lead) + 10),
                initial_indent=lead,
                subsequent_indent=lead,
                # URLs and ids must stay copy-pasteable, so never split a word.
                break_long_words=False,
                break_on_hyphens=False,
            )
            out.extend(wrapped or [""])
        if fences % 2:
            in_code = not in_code
    return out


def _flow(items: Sequence[str], width: int, sep: str = "  ") -> list[str]:
    """Lay out whole items (buttons etc.) left to right, breaking lines only between them."""
    lines: list[str] = []
    current = ""
    for item in items:
        if not item:
            continue
        candidate = f"{current}{sep}{item}" if current else item
        if current and len(candidate) > width:
            lines.append(current)
            current = item
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def _columns(fields: Sequence[str], width: int) -> list[str]:
    gap = 2
    col = (width - gap) // 2
    if any(len(line) > col for field in fields for line in field.split("\n")):
        return [line for field in fields for line in _wrap(field, width)]
    out: list[str] = []
    for i in range(0, len(fields), 2):
        left = fields[i].split("\n")
        right = fields[i + 1].split("\n") if i + 1 < len(fields) else []
        for row in range(max(len(left), len(right))):
            lhs = left[row] if row < len(left) else ""
            rhs = right[row] if row < len(right) else ""
            out.append((lhs.ljust(col + gap) + rhs).rstrip())
    return out


def _tidy(lines: Sequence[str]) -> str:
    """No trailing spaces, no leading/trailing blank lines, never two blank lines in a row."""
    out: list[str] = []
    for raw in "\n".join(lines).split("\n"):
        line = raw.rstrip()
        if line or (out and out[-1]):
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)


# --- Block Kit -------------------------------------------------------------------------------


def _text(obj: Any, ctx: _Ctx) -> str:
    """A Block Kit text object; only type "mrkdwn" gets mrkdwn treatment."""
    if isinstance(obj, Mapping):
        text = _s(obj.get("text"))
        return _mrkdwn(text, ctx) if obj.get("type") == "mrkdwn" else text
    return _s(obj)


def _option_text(option: Any, ctx: _Ctx) -> str:
    return _text(_map(option).get("text"), ctx)


def _select_label(el: Mapping[str, Any], ctx: _Ctx) -> str:
    chosen: list[str] = []
    if el.get("initial_option"):
        chosen.append(_option_text(el.get("initial_option"), ctx))
    chosen += [_option_text(o, ctx) for o in _list(el.get("initial_options"))]
    for key in ("initial_user", "initial_users"):
        ids = el.get(key)
        chosen += [_user(_s(u), "", ctx) for u in ([ids] if isinstance(ids, str) else _list(ids))]
    for key in (
        "initial_channel",
        "initial_channels",
        "initial_conversation",
        "initial_conversations",
    ):
        ids = el.get(key)
        chosen += [
            _channel(_s(c), "", ctx) for c in ([ids] if isinstance(ids, str) else _list(ids))
        ]
    chosen = [c for c in chosen if c.strip("@#")]
    return ", ".join(chosen) or _text(el.get("placeholder"), ctx) or "Select"


def _choices(el: Mapping[str, Any], ctx: _Ctx) -> list[str]:
    radio = el.get("type") == "radio_buttons"
    initial = [_map(el.get("initial_option"))] if radio else _list(el.get("initial_options"))
    picked = {_s(_map(o).get("value")) for o in initial} - {""}
    out = []
    for option in _list(el.get("options")):
        on = _s(_map(option).get("value")) in picked
        box = ("(•)" if on else "( )") if radio else ("[x]" if on else "[ ]")
        out.append(f"{box} {_option_text(option, ctx)}")
    return out


def _text_input(el: Mapping[str, Any], ctx: _Ctx) -> str:
    value = _s(el.get("initial_value"))
    if value:
        return value
    placeholder = _text(el.get("placeholder"), ctx)
    return f"____ ({placeholder})" if placeholder else "____"


def _element(el: Any, ctx: _Ctx, *, accessory: bool = False) -> str:
    """One interactive or context element as a single short line."""
    if not isinstance(el, Mapping):
        return _s(el)
    kind = _s(el.get("type"))
    if kind in ("button", "workflow_button"):
        label = _text(el.get("text"), ctx) or "button"
        style = el.get("style")
        if accessory:
            out = f"[{label}]"
        elif style == "primary":
            out = f"[*{label}*]"
        elif style == "danger":
            out = f"[!{label}!]"
        else:
            out = f"[ {label} ]"
    elif kind == "overflow":
        out = "[⋯]"
    elif kind.endswith("_select"):
        out = f"[{_select_label(el, ctx)} ▾]"
    elif kind == "datepicker":
        out = f"[date: {_s(el.get('initial_date')) or _text(el.get('placeholder'), ctx) or '—'}]"
    elif kind == "timepicker":
        out = f"[time: {_s(el.get('initial_time')) or _text(el.get('placeholder'), ctx) or '—'}]"
    elif kind == "datetimepicker":
        stamp = el.get("initial_date_time")
        shown = _format_date(stamp, "{date_short} {time}", "", "—", ctx) if stamp else "—"
        out = f"[date & time: {shown}]"
    elif kind in ("checkboxes", "radio_buttons"):
        out = "  ".join(_choices(el, ctx))
    elif kind in _TEXT_INPUTS:
        out = _text_input(el, ctx)
    elif kind == "rich_text_input":
        out = _rich_text(_map(el.get("initial_value")), ctx) or _text_input({}, ctx)
    elif kind == "image":
        out = f"[image: {_s(el.get('alt_text')) or 'image'}]"
    elif kind in ("mrkdwn", "plain_text"):
        out = _text(el, ctx)
    else:
        out = f"[{kind or 'element'}]"
    if isinstance(el.get("confirm"), Mapping):
        out += " (asks to confirm)"
    return out


def _header(block: Mapping[str, Any], ctx: _Ctx) -> list[str]:
    lines = _wrap(_text(block.get("text"), ctx), ctx.width)
    longest = max((len(line) for line in lines), default=0)
    return [*lines, "=" * longest] if longest else []


def _section(block: Mapping[str, Any], ctx: _Ctx) -> list[str]:
    lines: list[str] = []
    text = _text(block.get("text"), ctx)
    if text:
        lines += _wrap(text, ctx.width)
    fields = [f for f in (_text(f, ctx) for f in _list(block.get("fields"))) if f]
    if fields:
        lines += _columns(fields, ctx.width)
    accessory = block.get("accessory")
    if isinstance(accessory, Mapping):
        lines += _wrap(_element(accessory, ctx, accessory=True), ctx.width)
    return lines


def _context(block: Mapping[str, Any], ctx: _Ctx) -> list[str]:
    parts = [_element(el, ctx) for el in _list(block.get("elements"))]
    joined = " · ".join(p for p in parts if p)
    # Indented to read as secondary text, the way Slack greys out context.
    return _wrap(joined, ctx.width, indent="  ") if joined else []


def _actions(block: Mapping[str, Any], ctx: _Ctx) -> list[str]:
    return _flow([_element(el, ctx) for el in _list(block.get("elements"))], ctx.width)


def _image(block: Mapping[str, Any], ctx: _Ctx) -> list[str]:
    title = _text(block.get("title"), ctx)
    alt = _s(block.get("alt_text")) or title or "image"
    return [*(_wrap(title, ctx.width) if title else []), f"[image: {alt}]"]


def _input(block: Mapping[str, Any], ctx: _Ctx) -> list[str]:
    label = _text(block.get("label"), ctx) or "(no label)"
    if block.get("optional") is True:
        label += " (optional)"
    el = _map(block.get("element"))
    if el.get("type") in ("checkboxes", "radio_buttons"):
        # One option per line reads like a form; inline they blur together.
        lines = [*_wrap(f"{label}:", ctx.width), *(f"  {c}" for c in _choices(el, ctx))]
    else:
        value = _element(el, ctx) if el else "____"
        lines = _wrap(f"{label}: {value}", ctx.width)
    hint = _text(block.get("hint"), ctx)
    if hint:
        lines += _wrap(hint, ctx.width, indent="  ")
    return lines


def _rich_inline(el: Any, ctx: _Ctx) -> str:
    el = _map(el)
    kind = el.get("type")
    if kind == "text":
        text = _s(el.get("text"))
        style = _map(el.get("style"))
        core = text.strip()
        if not core:
            return text
        # Mirror the mrkdwn markers so rich text and mrkdwn look the same in the terminal.
        if style.get("code"):
            core = f"`{core}`"
        for key, mark in (("bold", "*"), ("italic", "_"), ("strike", "~")):
            if style.get(key):
                core = f"{mark}{core}{mark}"
        # Markers hug the words, as Slack requires, with surrounding spaces kept outside.
        start, end = len(text) - len(text.lstrip()), len(text.rstrip())
        return text[:start] + core + text[end:]
    if kind == "link":
        return _link(_s(el.get("url")), _s(el.get("text")))
    if kind == "user":
        return _user(_s(el.get("user_id")), "", ctx)
    if kind == "channel":
        return _channel(_s(el.get("channel_id")), "", ctx)
    if kind == "usergroup":
        return "@" + _s(el.get("usergroup_id"))
    if kind == "broadcast":
        return "@" + (_s(el.get("range")) or "here")
    if kind == "emoji":
        return f":{_s(el.get('name'))}:"
    if kind == "date":
        return _format_date(
            el.get("timestamp"),
            _s(el.get("format")),
            _s(el.get("url")),
            _s(el.get("fallback")),
            ctx,
        )
    return _s(el.get("text")) or _s(el.get("value"))


def _rich_part(part: Any, ctx: _Ctx) -> str:
    part = _map(part)
    kind = part.get("type")
    inline = "".join(_rich_inline(e, ctx) for e in _list(part.get("elements")))
    if kind == "rich_text_list":
        depth = part.get("indent") if isinstance(part.get("indent"), int) else 0
        depth = max(depth, 0)
        offset = part.get("offset") if isinstance(part.get("offset"), int) else 0
        items = []
        for number, item in enumerate(_list(part.get("elements")), start=offset + 1):
            if part.get("style") == "ordered":
                marker = f"{number}."
            else:
                marker = _LIST_BULLETS[depth % len(_LIST_BULLETS)]
            items.append(f"{'  ' * depth}{marker} {_rich_part(item, ctx)}")
        return "\n".join(items)
    if kind == "rich_text_preformatted":
        return f"```\n{inline}\n```"
    if kind == "rich_text_quote":
        return "\n".join(f"> {line}" for line in inline.split("\n"))
    return inline


def _rich_text(block: Mapping[str, Any], ctx: _Ctx) -> str:
    text = ""
    for part in _list(block.get("elements")):
        rendered = _rich_part(part, ctx)
        if text and rendered and not text.endswith("\n"):
            # Each top-level rich text element starts on its own line in Slack.
            text += "\n"
        text += rendered
    return text.rstrip("\n")


def _block(block: Mapping[str, Any], ctx: _Ctx) -> list[str]:
    kind = _s(block.get("type"))
    if kind == "header":
        return _header(block, ctx)
    if kind == "section":
        return _section(block, ctx)
    if kind == "context":
        return _context(block, ctx)
    if kind == "divider":
        return ["-" * ctx.width]
    if kind == "actions":
        return _actions(block, ctx)
    if kind == "image":
        return _image(block, ctx)
    if kind == "input":
        return _input(block, ctx)
    if kind == "rich_text":
        text = _rich_text(block, ctx)
        return _wrap(text, ctx.width) if text else []
    return [f"[unsupported block: {kind or '?'}]"]


def _blocks(blocks: Any, ctx: _Ctx) -> list[str]:
    if not isinstance(blocks, list | tuple):
        return []
    lines: list[str] = []
    for block in blocks:
        if not isinstance(block, Mapping):
            lines.append(f"[unsupported block: {type(block).__name__}]")
            continue
        try:
            lines += _block(block, ctx)
        except Exception:
            # The contract is "never raise": flag the block and keep rendering the rest.
            lines.append(f"[unrenderable block: {_s(block.get('type')) or '?'}]")
    return lines


def _fallback(text: Any, ctx: _Ctx) -> list[str]:
    return _wrap(_mrkdwn(text, ctx), ctx.width)


def _attachments(attachments: Any, ctx: _Ctx) -> list[str]:
    """Legacy attachments, drawn behind a "| " bar like Slack's coloured stripe."""
    inner = _Ctx(ctx.users, ctx.channels, ctx.tz, ctx.now, max(ctx.width - 2, MIN_WIDTH))
    lines: list[str] = []
    for raw in _list(attachments):
        att = _map(raw)
        if att.get("pretext"):
            lines += _fallback(att.get("pretext"), ctx)
        body = _blocks(att.get("blocks"), inner)
        if not body:
            for key in ("author_name", "title", "text"):
                if att.get(key):
                    body += _fallback(att.get(key), inner)
            for field in _list(att.get("fields")):
                field = _map(field)
                body += _fallback(f"*{_s(field.get('title'))}* {_s(field.get('value'))}", inner)
            if att.get("footer"):
                body += _wrap(_mrkdwn(att.get("footer"), inner), inner.width, indent="  ")
        if not body and att.get("fallback"):
            body = _fallback(att.get("fallback"), inner)
        lines += [f"| {line}" for line in body]
    return lines


# --- public API ------------------------------------------------------------------------------


def render_mrkdwn(
    text: str,
    *,
    users: Mapping[str, str] | None = None,
    channels: Mapping[str, str] | None = None,
    tz: tzinfo = UTC,
    now: datetime | None = None,
) -> str:
    """Resolve Slack mrkdwn tokens (mentions, links, dates, entities) to plain text.

    Emphasis markers (`*bold*`, `_italic_`, `~strike~`) and code spans are left as they are.
    """
    return _mrkdwn(text, _make_ctx(users, channels, tz, now))


def render_blocks(
    blocks: Sequence[Mapping[str, Any]],
    *,
    fallback_text: str = "",
    width: int = DEFAULT_WIDTH,
    users: Mapping[str, str] | None = None,
    channels: Mapping[str, str] | None = None,
    tz: tzinfo = UTC,
    now: datetime | None = None,
) -> str:
    """Render a list of Block Kit blocks; uses `fallback_text` when they render to nothing."""
    ctx = _make_ctx(users, channels, tz, now, width)
    return _tidy(_blocks(blocks, ctx)) or _tidy(_fallback(fallback_text, ctx))


def render_message(
    message: Mapping[str, Any],
    *,
    fallback_text: str = "",
    width: int = DEFAULT_WIDTH,
    users: Mapping[str, str] | None = None,
    channels: Mapping[str, str] | None = None,
    tz: tzinfo = UTC,
    now: datetime | None = None,
) -> str:
    """Render a chat message payload: its blocks when present, else its `text`."""
    ctx = _make_ctx(users, channels, tz, now, width)
    msg = _map(message)
    text = msg.get("text") if _s(msg.get("text")) else fallback_text
    lines = _blocks(msg.get("blocks"), ctx)
    if not _tidy(lines):
        lines = _fallback(text, ctx)
    lines += _attachments(msg.get("attachments"), ctx)
    body = _tidy(lines)
    thread_ts = _s(msg.get("thread_ts"))
    # A reply being posted has thread_ts but no ts yet; a parent has thread_ts == ts.
    if thread_ts and thread_ts != _s(msg.get("ts")):
        body = THREAD_PREFIX + body
    return body


def render_view(
    view: Mapping[str, Any],
    *,
    fallback_text: str = "",
    width: int = DEFAULT_WIDTH,
    users: Mapping[str, str] | None = None,
    channels: Mapping[str, str] | None = None,
    tz: tzinfo = UTC,
    now: datetime | None = None,
) -> str:
    """Render a modal or App Home view: title bar, blocks, then the close/submit buttons."""
    ctx = _make_ctx(users, channels, tz, now, width)
    v = _map(view)
    kind = _s(v.get("type"))
    is_modal = kind == "modal" or (
        kind != "home" and any(key in v for key in ("title", "submit", "close"))
    )
    title = _text(v.get("title"), ctx) or ("App Home" if kind == "home" else "")
    lines: list[str] = []
    if title:
        lines += [*_wrap(title, ctx.width), "=" * ctx.width]
    body = _blocks(v.get("blocks"), ctx)
    lines += body if _tidy(body) else _fallback(fallback_text, ctx)
    if is_modal:
        # Slack always offers a close button on modals and labels it "Cancel" by default.
        close = _text(v.get("close"), ctx) or "Cancel"
        submit = _text(v.get("submit"), ctx)
        lines += ["", *_flow([f"[ {close} ]", f"[*{submit}*]" if submit else ""], ctx.width)]
    return _tidy(lines)
