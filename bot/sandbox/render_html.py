"""Block Kit and mrkdwn → HTML for the sandbox page, rendered on the server.

Safety rule: every string that came from a payload reaches the page through `html.escape`; the
only markup in the output is what this module writes itself, and links are limited to http(s)
and mailto. Interactive elements carry what the page sends back (action_id, block_id, value) as
data-* attributes; the page's JavaScript only inserts these fragments and wires clicks.

Rendering is generic and best effort: an unknown block or element shows as a grey note instead
of failing, so new bot features appear without changes here.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bot.sandbox.blockkit import all_options, block_key
from bot.slack_emulator import PERMALINK_HOST

__all__ = [
    "EMOJI",
    "render_blocks_html",
    "render_message_html",
    "render_mrkdwn_html",
    "render_plain_html",
    "render_view_html",
    "safe_url",
]

# Slack escapes exactly these three in text it sends; anything else ("&copy;") stays literal.
_ENTITY = re.compile(r"&(lt|gt|amp);")
_ENTITIES = {"lt": "<", "gt": ">", "amp": "&"}
# Slack never puts a raw "<" or ">" inside a token (they would be escaped).
_TOKEN = re.compile(r"<([^<>]*)>")
_CODE_BLOCK = re.compile(r"```(.*?)```", re.S)
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]*?\S)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_(?=\S)([^_\n]*?\S)_(?![\w_])")
_STRIKE = re.compile(r"(?<![\w~])~(?=\S)([^~\n]*?\S)~(?![\w~])")
_EMOJI = re.compile(r":([a-z0-9_+\-]+):")
# Private-use characters stand in for already-rendered HTML while the text around is formatted;
# they are stripped from input so a payload cannot forge one.
_HOLD_OPEN, _HOLD_CLOSE = "\ue000", "\ue001"
_HELD = re.compile(f"{_HOLD_OPEN}(\\d+){_HOLD_CLOSE}")
_PERMALINK = re.compile(
    re.escape(PERMALINK_HOST) + r"/archives/([A-Z0-9]+)/p(\d{10})(\d{6})(?:\?thread_ts=([\d.]+))?"
)
_LINK_SCHEMES = ("http", "https", "mailto")

EMOJI = {
    "+1": "👍",
    "-1": "👎",
    "alarm_clock": "⏰",
    "bell": "🔔",
    "bulb": "💡",
    "calendar": "📅",
    "chart_with_upwards_trend": "📈",
    "clap": "👏",
    "email": "📧",
    "eyes": "👀",
    "fire": "🔥",
    "hourglass": "⌛",
    "heavy_check_mark": "✔️",
    "information_source": "ℹ️",
    "leftwards_arrow_with_hook": "↩️",
    "mega": "📣",
    "memo": "📝",
    "moneybag": "💰",
    "partly_sunny": "⛅",
    "phone": "☎️",
    "raised_hands": "🙌",
    "rocket": "🚀",
    "smile": "😄",
    "snowflake": "❄️",
    "sparkles": "✨",
    "star": "⭐",
    "sun_small_cloud": "🌤️",
    "sunny": "☀️",
    "tada": "🎉",
    "thumbsup": "👍",
    "trophy": "🏆",
    "warning": "⚠️",
    "wave": "👋",
    "white_check_mark": "✅",
    "x": "❌",
}


@dataclass
class _Ctx:
    users: Mapping[str, str]
    channels: Mapping[str, str]
    me: str | None = None
    errors: Mapping[str, str] = field(default_factory=dict)
    ids: Iterator[int] = field(default_factory=itertools.count)


def _ctx(
    users: Mapping[str, str] | None,
    channels: Mapping[str, str] | None,
    me: str | None = None,
    errors: Mapping[str, str] | None = None,
) -> _Ctx:
    return _Ctx(users or {}, channels or {}, me, errors or {})


# --- small helpers: every payload value goes through one of these ------------------------------


def _e(value: Any) -> str:
    return html.escape(_s(value), quote=True)


def _s(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return ""
    if isinstance(value, int | float):
        return str(value)
    return ""


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _unescape(text: str) -> str:
    # One pass, so "&amp;lt;" becomes the literal "&lt;" rather than "<".
    return _ENTITY.sub(lambda m: _ENTITIES[m[1]], text)


def _no_holds(text: str) -> str:
    return text.replace(_HOLD_OPEN, "\ufffd").replace(_HOLD_CLOSE, "\ufffd")


def _data(**attrs: Any) -> str:
    """` data-x="…"` attributes, escaped; None values are left out."""
    parts = []
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "1" if value else None
            if value is None:
                continue
        parts.append(f' data-{key.replace("_", "-")}="{_e(value)}"')
    return "".join(parts)


def _emoji(escaped: str) -> str:
    return _EMOJI.sub(lambda m: EMOJI.get(m[1], m[0]), escaped)


def safe_url(url: str, schemes: Sequence[str] = _LINK_SCHEMES) -> str | None:
    """The URL if its scheme is allowed (never javascript:, data:...), else None."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in schemes:
        return None
    if parts.scheme.lower() != "mailto" and not parts.netloc:
        return None
    return url.strip()


# --- mrkdwn ----------------------------------------------------------------------------------


def _mrkdwn(text: Any, ctx: _Ctx) -> str:
    raw = _no_holds(_s(text))
    held: list[str] = []

    def hold(fragment: str) -> str:
        held.append(fragment)
        return f"{_HOLD_OPEN}{len(held) - 1}{_HOLD_CLOSE}"

    raw = _CODE_BLOCK.sub(
        lambda m: hold(f'<pre class="mk-pre">{_e(_unescape(m[1].strip(chr(10))))}</pre>'), raw
    )
    raw = _CODE_SPAN.sub(lambda m: hold(f'<code class="mk-code">{_e(_unescape(m[1]))}</code>'), raw)
    raw = _TOKEN.sub(lambda m: hold(_token(m[1], ctx)), raw)

    # A raw ">" starts a quote line; an escaped "&gt;" is a literal character.
    parts: list[tuple[bool, str]] = []
    for line in raw.split("\n"):
        quoted = line.startswith(">")
        body = _inline(line[1:].removeprefix(" ") if quoted else line)
        if quoted and parts and parts[-1][0]:
            parts[-1] = (True, parts[-1][1] + "<br>" + body)
        else:
            parts.append((quoted, body))
    out = ""
    for i, (quoted, body) in enumerate(parts):
        if quoted:
            out += f'<blockquote class="mk-quote">{body}</blockquote>'
        else:
            out += ("<br>" if i and not parts[i - 1][0] else "") + body
    return _HELD.sub(lambda m: held[int(m[1])], out)


def _inline(raw: str) -> str:
    text = html.escape(_unescape(raw), quote=True)
    text = _BOLD.sub(r"<b>\1</b>", text)
    text = _ITALIC.sub(r"<i>\1</i>", text)
    text = _STRIKE.sub(r"<s>\1</s>", text)
    return _emoji(text)


def _token(body: str, ctx: _Ctx) -> str:
    target, _, label = body.partition("|")
    label = _unescape(label)
    if target.startswith("@"):
        return _user_html(target[1:], label, ctx)
    if target.startswith("#"):
        return _channel_html(target[1:], label, ctx)
    if target.startswith("!"):
        return _special_html(target[1:], label, ctx)
    return _link_html(_unescape(target), label) or _e(f"<{_unescape(body)}>")


def _user_html(user_id: str, label: str, ctx: _Ctx) -> str:
    name = _s(ctx.users.get(user_id)) or label.removeprefix("@") or user_id
    me = " mention-me" if ctx.me and user_id == ctx.me else ""
    return f'<span class="mention{me}"{_data(user=user_id)}>@{_e(name)}</span>'


def _channel_html(channel_id: str, label: str, ctx: _Ctx) -> str:
    name = _s(ctx.channels.get(channel_id)) or label.removeprefix("#") or channel_id
    return f'<a href="#" class="channel-link"{_data(open_conv=channel_id)}>#{_e(name)}</a>'


def _special_html(command: str, label: str, ctx: _Ctx) -> str:
    name, _, arg = command.partition("^")
    if name in ("here", "channel", "everyone"):
        return f'<span class="mention mention-broadcast">@{_e(name)}</span>'
    if name == "subteam":
        shown = (label or arg).removeprefix("@") or arg
        return f'<span class="mention">@{_e(shown)}</span>'
    if name == "date":
        stamp, _, rest = arg.partition("^")
        fmt, _, link = rest.partition("^")
        return _date_html(stamp, _unescape(fmt), _unescape(link), label)
    return _e(label or f"<!{command}>")


def _date_html(stamp: str, fmt: str, link: str, fallback: str) -> str:
    """A date the page formats in the viewer's browser time zone (the fallback until then)."""
    try:
        epoch = int(float(stamp))
    except ValueError:
        return _e(fallback)
    inner = (
        f'<time class="slack-date"{_data(epoch=epoch, format=fmt or "{date_short} {time}")}>'
        f"{_e(fallback)}</time>"
    )
    url = safe_url(link) if link else None
    if url:
        return f'<a href="{_e(url)}" target="_blank" rel="noopener noreferrer">{inner}</a>'
    return inner


def _link_html(url: str, label: str) -> str | None:
    internal = _PERMALINK.match(url)
    if internal:
        # Links to messages in this workspace open them in the sandbox instead of slack.com.
        channel, secs, micros, thread = internal.groups()
        ts = f"{int(secs)}.{micros}"
        return (
            f'<a href="#" class="permalink"{_data(open_conv=channel, ts=ts, thread=thread)}>'
            f"{_e(label or url)}</a>"
        )
    safe = safe_url(url)
    if safe is None:
        return None
    shown = label or safe.removeprefix("mailto:")
    return f'<a href="{_e(safe)}" target="_blank" rel="noopener noreferrer">{_e(shown)}</a>'


def render_mrkdwn_html(
    text: str,
    *,
    users: Mapping[str, str] | None = None,
    channels: Mapping[str, str] | None = None,
    me: str | None = None,
) -> str:
    """Slack mrkdwn (as an app sends it: &, <, > escaped) → safe HTML.

    Bold, italic, strike, code, quotes, links (http/https/mailto only), `<@U…>` as names,
    `<#C…>` as channel links, `<!here>`-style broadcasts and `<!date^…>` (formatted by the
    page in the viewer's time zone). Escaped text such as `&lt;!channel&gt;` stays literal.
    """
    return _mrkdwn(text, _ctx(users, channels, me))


def render_plain_html(text: str, *, emoji: bool = True) -> str:
    """A plain_text object: shown literally (escaped), `:emoji:` codes and line breaks kept."""
    escaped = html.escape(_s(text), quote=True)
    return (_emoji(escaped) if emoji else escaped).replace("\n", "<br>")


# --- text objects ----------------------------------------------------------------------------


def _text(obj: Any, ctx: _Ctx) -> str:
    if isinstance(obj, Mapping):
        if obj.get("type") == "mrkdwn":
            return _mrkdwn(obj.get("text"), ctx)
        return render_plain_html(_s(obj.get("text")), emoji=obj.get("emoji") is not False)
    return render_plain_html(_s(obj))


def _plain(obj: Any) -> str:
    """The raw string of a text object (for attributes such as placeholder and title)."""
    return _s(_map(obj).get("text")) if isinstance(obj, Mapping) else _s(obj)


# --- elements --------------------------------------------------------------------------------


def _ids(element: Mapping[str, Any], block_id: str) -> dict[str, Any]:
    return {
        "action_id": _s(element.get("action_id")),
        "block_id": block_id,
        "type": _s(element.get("type")),
    }


def _confirm(confirm: Any, ctx: _Ctx) -> str:
    """A confirm dialog's content, hidden next to its control; the page shows it on click."""
    c = _map(confirm)
    if not c:
        return ""
    ok_style = " bk-btn-danger" if c.get("style") == "danger" else " bk-btn-primary"
    return (
        '<div class="bk-confirm" hidden>'
        f'<div class="confirm-title">{_text(c.get("title"), ctx) or "Are you sure?"}</div>'
        f'<div class="confirm-text">{_text(c.get("text"), ctx)}</div>'
        '<div class="confirm-actions">'
        f'<button type="button" class="bk-btn" data-confirm-deny>'
        f"{_text(c.get('deny'), ctx) or 'Cancel'}</button>"
        f'<button type="button" class="bk-btn{ok_style}" data-confirm-ok>'
        f"{_text(c.get('confirm'), ctx) or 'Yes'}</button>"
        "</div></div>"
    )


def _button(element: Mapping[str, Any], block_id: str, ctx: _Ctx) -> str:
    style = element.get("style")
    cls = {"primary": " bk-btn-primary", "danger": " bk-btn-danger"}.get(_s(style), "")
    url = safe_url(_s(element.get("url"))) if element.get("url") else None
    attrs = _data(
        **_ids(element, block_id),
        value=element.get("value") if isinstance(element.get("value"), str) else None,
        url=url,
        dispatch=True,
        confirm=bool(element.get("confirm")),
    )
    label = _text(element.get("text"), ctx) or "Button"
    button = f'<button type="button" class="bk-btn{cls}"{attrs}>{label}</button>'
    return f'<span class="bk-el">{button}{_confirm(element.get("confirm"), ctx)}</span>'


def _option_html(option: Mapping[str, Any], selected: set[str]) -> str:
    value = _s(option.get("value"))
    chosen = " selected" if value in selected else ""
    return f'<option value="{_e(value)}"{chosen}>{_e(_plain(option.get("text")))}</option>'


def _select(
    element: Mapping[str, Any], block_id: str, ctx: _Ctx, *, dispatch: bool, state: bool
) -> str:
    kind = _s(element.get("type"))
    multi = kind.startswith("multi_")
    selected: set[str] = set()
    if isinstance(element.get("initial_option"), Mapping):
        selected.add(_s(element["initial_option"].get("value")))
    selected |= {_s(_map(o).get("value")) for o in _list(element.get("initial_options"))}
    for key in ("initial_user", "initial_conversation", "initial_channel"):
        if isinstance(element.get(key), str):
            selected.add(element[key])
    for key in ("initial_users", "initial_conversations", "initial_channels"):
        selected |= {_s(v) for v in _list(element.get(key))}
    options: list[str] = []
    placeholder = _plain(element.get("placeholder")) or "Select an item"
    if not multi:
        chosen = "" if selected else " selected"
        options.append(f'<option value=""{chosen}>{_e(placeholder)}</option>')
    if kind.endswith("static_select"):
        options += [_option_html(o, selected) for o in _list(element.get("options"))]
        for group in _list(element.get("option_groups")):
            inner = "".join(_option_html(o, selected) for o in _list(_map(group).get("options")))
            label = _e(_plain(_map(group).get("label")))
            options.append(f'<optgroup label="{label}">{inner}</optgroup>')
    elif kind.endswith("users_select"):
        options += [_option_html(_id_option(u, n), selected) for u, n in ctx.users.items()]
    elif kind.endswith(("conversations_select", "channels_select")):
        options += [_option_html(_id_option(c, f"#{n}"), selected) for c, n in ctx.channels.items()]
    else:  # external selects load options from the app; the sandbox cannot ask for them
        return _unsupported(f"{kind} (options loaded from the app)")
    attrs = _data(**_ids(element, block_id), dispatch=dispatch, state=state)
    aria = f' aria-label="{_e(placeholder)}"'
    return (
        f'<select class="bk-select"{" multiple" if multi else ""}{aria}{attrs}>'
        f"{''.join(options)}</select>{_confirm(element.get('confirm'), ctx)}"
    )


def _id_option(value: str, name: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": name}, "value": value}


def _overflow(element: Mapping[str, Any], block_id: str, ctx: _Ctx) -> str:
    items = []
    for option in all_options(element):
        url = safe_url(_s(option.get("url"))) if option.get("url") else None
        attrs = _data(
            **_ids(element, block_id), value=_s(option.get("value")), url=url, dispatch=True
        )
        items.append(
            f'<button type="button" class="bk-menu-item"{attrs}>'
            f"{_text(option.get('text'), ctx)}</button>"
        )
    return (
        '<details class="bk-overflow"><summary class="bk-btn bk-overflow-btn" '
        'aria-label="More actions">⋯</summary>'
        f'<div class="bk-menu">{"".join(items)}</div></details>'
    )


def _text_input(
    element: Mapping[str, Any], block_id: str, ctx: _Ctx, *, dispatch: bool, dom_id: str
) -> str:
    kind = _s(element.get("type"))
    attrs = _data(**_ids(element, block_id), dispatch=dispatch, state=True)
    placeholder = _plain(element.get("placeholder"))
    extra = f' id="{_e(dom_id)}"'
    if placeholder:
        extra += f' placeholder="{_e(placeholder)}"'
    max_length = element.get("max_length")
    if isinstance(max_length, int) and not isinstance(max_length, bool):
        extra += f' maxlength="{max_length}"'
    value = _s(element.get("initial_value"))
    if kind == "plain_text_input" and element.get("multiline"):
        return f'<textarea class="bk-input-el" rows="4"{extra}{attrs}>{_e(value)}</textarea>'
    input_type = {"email_text_input": "email", "url_text_input": "url", "number_input": "number"}
    itype = input_type.get(kind, "text")
    if kind == "number_input" and element.get("is_decimal_allowed"):
        extra += ' step="any"'
    return (
        f'<input class="bk-input-el" type="{itype}" value="{_e(value)}"{extra}{attrs}'
        ' autocomplete="off">'
    )


def _choices(element: Mapping[str, Any], block_id: str, ctx: _Ctx, *, dispatch: bool) -> str:
    kind = _s(element.get("type"))
    radio = kind == "radio_buttons"
    picked = (
        {_s(_map(element.get("initial_option")).get("value"))}
        if radio
        else {_s(_map(o).get("value")) for o in _list(element.get("initial_options"))}
    )
    group = f"g{next(ctx.ids)}"
    rows = []
    for option in _list(element.get("options")):
        o = _map(option)
        value = _s(o.get("value"))
        checked = " checked" if value in picked and value else ""
        itype = "radio" if radio else "checkbox"
        desc = o.get("description")
        desc_html = f'<span class="bk-choice-desc">{_text(desc, ctx)}</span>' if desc else ""
        rows.append(
            f'<label class="bk-choice"><input type="{itype}" name="{group}" '
            f'value="{_e(value)}"{checked}><span>{_text(o.get("text"), ctx)}{desc_html}</span>'
            "</label>"
        )
    attrs = _data(**_ids(element, block_id), dispatch=dispatch, state=True)
    return f'<div class="bk-choices"{attrs}>{"".join(rows)}</div>'


def _picker(element: Mapping[str, Any], block_id: str, *, dispatch: bool, dom_id: str) -> str:
    kind = _s(element.get("type"))
    itype, value = {
        "datepicker": ("date", _s(element.get("initial_date"))),
        "timepicker": ("time", _s(element.get("initial_time"))),
        "datetimepicker": ("datetime-local", ""),
    }[kind]
    attrs = _data(**_ids(element, block_id), dispatch=dispatch, state=True)
    return (
        f'<input class="bk-input-el bk-picker" type="{itype}" id="{_e(dom_id)}" '
        f'value="{_e(value)}"{attrs}>'
    )


def _image_el(element: Mapping[str, Any], cls: str) -> str:
    alt = _s(element.get("alt_text")) or "image"
    url = safe_url(_s(element.get("image_url")), ("http", "https"))
    if url is None:
        return f'<span class="{cls} bk-img-missing" title="{_e(alt)}">🖼</span>'
    return (
        f'<img class="{cls}" src="{_e(url)}" alt="{_e(alt)}" loading="lazy" '
        'referrerpolicy="no-referrer">'
    )


def _unsupported(what: str) -> str:
    return f'<span class="bk-unsupported">[{_e(what)} is not shown in the sandbox]</span>'


def _element(
    element: Any,
    block_id: str,
    ctx: _Ctx,
    *,
    dispatch: bool = True,
    dom_id: str | None = None,
) -> str:
    el = _map(element)
    kind = _s(el.get("type"))
    dom_id = dom_id or f"bk-{next(ctx.ids)}"
    if kind in ("button", "workflow_button"):
        return _button(el, block_id, ctx)
    if kind == "overflow":
        return _overflow(el, block_id, ctx)
    if kind.endswith("_select"):
        return _select(el, block_id, ctx, dispatch=dispatch, state=True)
    if kind in ("plain_text_input", "email_text_input", "url_text_input", "number_input"):
        return _text_input(el, block_id, ctx, dispatch=dispatch, dom_id=dom_id)
    if kind == "rich_text_input":
        rich = {**el, "type": "plain_text_input", "multiline": True}
        html_ = _text_input(rich, block_id, ctx, dispatch=dispatch, dom_id=dom_id)
        return html_.replace('data-type="plain_text_input"', 'data-type="rich_text_input"', 1)
    if kind in ("checkboxes", "radio_buttons"):
        return _choices(el, block_id, ctx, dispatch=dispatch)
    if kind in ("datepicker", "timepicker", "datetimepicker"):
        return _picker(el, block_id, dispatch=dispatch, dom_id=dom_id)
    if kind == "image":
        return _image_el(el, "bk-img-el")
    if kind in ("mrkdwn", "plain_text"):
        return _text(el, ctx)
    return _unsupported(kind or "element")


# --- blocks ----------------------------------------------------------------------------------


def _section(block: Mapping[str, Any], bid: str, ctx: _Ctx) -> str:
    body = ""
    if block.get("text"):
        body += f'<div class="bk-text">{_text(block.get("text"), ctx)}</div>'
    fields = [f'<div class="bk-field">{_text(f, ctx)}</div>' for f in _list(block.get("fields"))]
    if fields:
        body += f'<div class="bk-fields">{"".join(fields)}</div>'
    accessory = block.get("accessory")
    side = ""
    if isinstance(accessory, Mapping):
        if accessory.get("type") == "image":
            side = _image_el(accessory, "bk-accessory-img")
        else:
            side = _element(accessory, bid, ctx)
        side = f'<div class="bk-accessory">{side}</div>'
    return f'<div class="bk-main">{body}</div>{side}'


def _context(block: Mapping[str, Any], ctx: _Ctx) -> str:
    parts = []
    for element in _list(block.get("elements")):
        el = _map(element)
        if el.get("type") == "image":
            parts.append(_image_el(el, "bk-context-img"))
        else:
            parts.append(f"<span>{_text(el, ctx)}</span>")
    return "".join(parts)


def _image_block(block: Mapping[str, Any], ctx: _Ctx) -> str:
    title = block.get("title")
    head = f'<div class="bk-image-title">{_text(title, ctx)}</div>' if title else ""
    return head + _image_el(block, "bk-image")


def _input(block: Mapping[str, Any], bid: str, ctx: _Ctx) -> str:
    dom_id = f"bk-{next(ctx.ids)}"
    optional = block.get("optional") is True
    label = _text(block.get("label"), ctx) or "Input"
    opt = ' <span class="bk-optional">(optional)</span>' if optional else ""
    element = _map(block.get("element"))
    control = _element(
        element, bid, ctx, dispatch=block.get("dispatch_action") is True, dom_id=dom_id
    )
    hint = block.get("hint")
    hint_html = f'<div class="bk-hint">{_text(hint, ctx)}</div>' if hint else ""
    error = ctx.errors.get(bid)
    error_html = f'<div class="bk-error" role="alert">{_e(error)}</div>' if error else ""
    return (
        f'<label class="bk-label" for="{_e(dom_id)}">{label}{opt}</label>'
        f"{control}{hint_html}{error_html}"
    )


def _rich_style(text: str, style: Mapping[str, Any]) -> str:
    out = html.escape(text, quote=True).replace("\n", "<br>")
    for key, tag in (("code", "code"), ("bold", "b"), ("italic", "i"), ("strike", "s")):
        if style.get(key):
            out = f"<{tag}>{out}</{tag}>"
    return out


def _rich_inline(element: Any, ctx: _Ctx) -> str:
    el = _map(element)
    kind = el.get("type")
    if kind == "text":
        return _rich_style(_s(el.get("text")), _map(el.get("style")))
    if kind == "link":
        return _link_html(_s(el.get("url")), _s(el.get("text"))) or _e(el.get("url"))
    if kind == "user":
        return _user_html(_s(el.get("user_id")), "", ctx)
    if kind == "channel":
        return _channel_html(_s(el.get("channel_id")), "", ctx)
    if kind == "usergroup":
        return f'<span class="mention">@{_e(el.get("usergroup_id"))}</span>'
    if kind == "broadcast":
        return f'<span class="mention mention-broadcast">@{_e(el.get("range") or "here")}</span>'
    if kind == "emoji":
        name = _s(el.get("name"))
        return EMOJI.get(name, f":{_e(name)}:")
    if kind == "date":
        return _date_html(
            _s(el.get("timestamp")), _s(el.get("format")), _s(el.get("url")), _s(el.get("fallback"))
        )
    return _e(el.get("text"))


def _rich_part(part: Any, ctx: _Ctx) -> str:
    p = _map(part)
    kind = p.get("type")
    if kind == "rich_text_list":
        tag = "ol" if p.get("style") == "ordered" else "ul"
        items = "".join(f"<li>{_rich_part(item, ctx)}</li>" for item in _list(p.get("elements")))
        return f'<{tag} class="mk-list">{items}</{tag}>'
    inline = "".join(_rich_inline(e, ctx) for e in _list(p.get("elements")))
    if kind == "rich_text_preformatted":
        return f'<pre class="mk-pre">{inline}</pre>'
    if kind == "rich_text_quote":
        return f'<blockquote class="mk-quote">{inline}</blockquote>'
    return f"<div>{inline}</div>"


def _block(block: Mapping[str, Any], index: int, ctx: _Ctx) -> str:
    kind = _s(block.get("type"))
    bid = block_key(block, index)
    if kind == "header":
        inner = f'<div class="bk-header-text">{_text(block.get("text"), ctx)}</div>'
    elif kind == "section":
        inner = _section(block, bid, ctx)
    elif kind == "context":
        inner = _context(block, ctx)
    elif kind == "divider":
        return '<hr class="bk-divider">'
    elif kind == "actions":
        inner = "".join(_element(e, bid, ctx) for e in _list(block.get("elements")))
    elif kind == "image":
        inner = _image_block(block, ctx)
    elif kind == "input":
        inner = _input(block, bid, ctx)
    elif kind == "rich_text":
        inner = "".join(_rich_part(p, ctx) for p in _list(block.get("elements")))
    else:
        inner = _unsupported(f"{kind or 'unknown'} block")
    error = " has-error" if kind == "input" and bid in ctx.errors else ""
    required = kind == "input" and block.get("optional") is not True
    attrs = _data(block_id=bid, required=required)
    return f'<div class="bk-block bk-{_e(kind or "unknown")}{error}"{attrs}>{inner}</div>'


def _blocks(blocks: Any, ctx: _Ctx) -> str:
    out = []
    for index, block in enumerate(_list(blocks)):
        if not isinstance(block, Mapping):
            out.append(_unsupported("malformed block"))
            continue
        try:
            out.append(_block(block, index, ctx))
        except Exception:
            # One odd block must not hide the rest of the message.
            out.append(_unsupported(f"{_s(block.get('type')) or 'unknown'} block"))
    return "".join(out)


def render_blocks_html(
    blocks: Sequence[Mapping[str, Any]],
    *,
    users: Mapping[str, str] | None = None,
    channels: Mapping[str, str] | None = None,
    me: str | None = None,
    errors: Mapping[str, str] | None = None,
) -> str:
    """A list of Block Kit blocks → HTML. `errors` ({block_id: message}) marks input fields."""
    return _blocks(blocks, _ctx(users, channels, me, errors))


def _attachments(attachments: Any, ctx: _Ctx) -> str:
    out = []
    for raw in _list(attachments):
        att = _map(raw)
        color = _s(att.get("color")).lstrip("#")
        # The stripe colour is a data attribute the page turns into a style, never raw CSS.
        colour = color if re.fullmatch(r"[0-9a-fA-F]{6}", color) else None
        body = ""
        if att.get("pretext"):
            body += f'<div class="att-pretext">{_mrkdwn(att.get("pretext"), ctx)}</div>'
        inner = _blocks(att.get("blocks"), ctx)
        if not inner:
            for key in ("author_name", "title", "text"):
                if att.get(key):
                    inner += f'<div class="att-{key}">{_mrkdwn(att.get(key), ctx)}</div>'
            for f in _list(att.get("fields")):
                f = _map(f)
                inner += (
                    f'<div class="bk-field"><b>{_e(f.get("title"))}</b><br>'
                    f"{_mrkdwn(f.get('value'), ctx)}</div>"
                )
            if att.get("footer"):
                inner += f'<div class="att-footer">{_mrkdwn(att.get("footer"), ctx)}</div>'
        if not inner and att.get("fallback"):
            inner = _mrkdwn(att.get("fallback"), ctx)
        out.append(f'{body}<div class="attachment"{_data(color=colour)}>{inner}</div>')
    return "".join(out)


def render_message_html(
    message: Mapping[str, Any],
    *,
    users: Mapping[str, str] | None = None,
    channels: Mapping[str, str] | None = None,
    me: str | None = None,
) -> str:
    """A message's content: its blocks when they render to something, else its mrkdwn text;
    then any legacy attachments."""
    ctx = _ctx(users, channels, me)
    msg = _map(message)
    body = _blocks(msg.get("blocks"), ctx) if _list(msg.get("blocks")) else ""
    if not body:
        body = f'<div class="bk-text">{_mrkdwn(msg.get("text"), ctx)}</div>'
    return body + _attachments(msg.get("attachments"), ctx)


def render_view_html(
    view: Mapping[str, Any],
    *,
    users: Mapping[str, str] | None = None,
    channels: Mapping[str, str] | None = None,
    me: str | None = None,
    errors: Mapping[str, str] | None = None,
    depth: int = 1,
) -> str:
    """A modal (title bar, blocks, Close/Submit) or an App Home view (blocks only).

    `depth` > 1 means the modal was pushed over another: its close button says "Back".
    """
    ctx = _ctx(users, channels, me, errors)
    v = _map(view)
    view_id = _s(v.get("id"))
    body = _blocks(v.get("blocks"), ctx)
    if v.get("type") == "home":
        return f'<div class="home-view"{_data(view_id=view_id)}>{body}</div>'
    title = _text(v.get("title"), ctx) or "App"
    close_label = _text(v.get("close"), ctx) or ("Back" if depth > 1 else "Cancel")
    submit = v.get("submit")
    has_inputs = any(_map(b).get("type") == "input" for b in _list(v.get("blocks")))
    if not submit and has_inputs:
        submit = {"type": "plain_text", "text": "Submit"}
    submit_html = ""
    if submit:
        disabled = " disabled" if v.get("submit_disabled") is True else ""
        submit_html = (
            f'<button type="button" class="bk-btn bk-btn-primary" data-view-submit{disabled}>'
            f"{_text(submit, ctx)}</button>"
        )
    label = _e(_plain(v.get("title")))
    return (
        f'<div class="modal" role="dialog" aria-modal="true" aria-label="{label}"'
        f"{_data(view_id=view_id)}>"
        '<div class="modal-head">'
        f'<span class="modal-icon">lb</span><h2 class="modal-title">{title}</h2>'
        '<button type="button" class="modal-x" data-view-close="all" aria-label="Close">×</button>'
        "</div>"
        f'<form class="modal-body" novalidate>{body}</form>'
        '<div class="modal-foot">'
        f'<button type="button" class="bk-btn" data-view-close="one">{close_label}</button>'
        f"{submit_html}</div></div>"
    )
