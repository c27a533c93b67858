"""The `/lead` text grammar and the lead validation shared with the new-lead modal.

Pure functions, no I/O and no logging: lead contact details must never reach a log, so errors
are returned as values and it is up to the caller what to show (and to whom).

Values are stored exactly as typed apart from three things: surrounding whitespace is stripped,
control characters are removed (notes keep newlines and tabs), and a few fields are normalised
(priority and persona to their canonical keys, event without its leading `#`). Mentions, links,
emoji and the like are valid data; escaping them for display is the renderer's job.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

FIELDS: tuple[str, ...] = (
    "name",
    "email",
    "phone",
    "company",
    "title",
    "priority",
    "event",
    "territory",
    "persona",
    "notes",
)

# Priority is not here: it is checked against the list of priorities instead.
MAX_LENGTHS: dict[str, int] = {
    "name": 200,
    "email": 254,  # RFC 5321's limit on a forward path
    "phone": 40,
    "company": 200,
    "title": 200,
    "event": 200,
    "territory": 200,
    "persona": 200,
    "notes": 10_000,
}

DEFAULT_PRIORITIES: tuple[str, ...] = ("hot", "warm", "cold")
PHONE_MIN_DIGITS = 7
PHONE_MAX_DIGITS = 20
_QUOTE_MAX = 40  # long values are cut in messages: they are read on a phone

USAGE = """\
*Submit a lead:* `/lead` on its own opens a form, or type the fields separated by commas.
• Typed fields are read by their shape: an email address, a phone number, a priority \
(`hot`, `warm` or `cold`; `warm` if you leave it out) and an `#event`. The first other field \
is the name, the next the company, the rest are notes.
• Or label them as `key: value`: name, email, phone, company, title, priority, event, \
territory, persona, notes. `notes:` takes the rest of the text, commas and all.
• A lead needs a name and an email or a phone so sales can reach them.
• Mistyped something? `/lead edit 12` opens the form filled in with lead #12 (its number is \
on your receipt) to correct it.
Example: `/lead Jane Doe, jane@acme.example, Acme Corp, +1 415 555 0100, hot, #SaaStr2026, \
wants an API demo`"""


@dataclass(frozen=True)
class LeadInput:
    """A validated lead; optional fields are None when absent, never ""."""

    name: str
    email: str | None = None
    phone: str | None = None
    company: str | None = None
    title: str | None = None
    priority: str = "warm"
    event: str | None = None
    territory: str | None = None
    persona: str | None = None
    notes: str | None = None


@dataclass(frozen=True)
class FieldError:
    """One problem with one field; `message` is the whole sentence to show the person."""

    field: str  # always one of FIELDS, so the modal can attach it to its input block
    value: str
    message: str


@dataclass(frozen=True)
class ParseResult:
    """Either a lead (no errors) or the errors (no lead)."""

    lead: LeadInput | None
    errors: tuple[FieldError, ...] = ()

    def __post_init__(self) -> None:
        if (self.lead is None) == (not self.errors):
            raise ValueError("ParseResult needs exactly one of a lead or errors")

    @property
    def ok(self) -> bool:
        return self.lead is not None


_HELP_WORDS = frozenset({"help", "-h", "--help"})

# A known key at the start of a field; any other word before a colon is plain text.
_KEYED = re.compile(r"\s*([A-Za-z]+)\s*:(.*)", re.DOTALL)
# Slack's autolinks, e.g. <mailto:jane@acme.example|jane@acme.example>; the label is optional.
_WRAPPED = re.compile(r"<(?:mailto|tel):([^<>|]*)(?:\|([^<>]*))?>", re.IGNORECASE)
# Slack markup (<@U123>, <!channel>, <#C1|x>, <https://x|y>) is data even with an `@` inside;
# a bare <jane@acme.example> is not markup, so it still reads as an (invalid) email.
_MARKUP = re.compile(r"<(?:[@#!]|[A-Za-z][A-Za-z0-9+.\-]*:)[^<>]*>")
_PHONE_SHAPE = re.compile(r"\+?[0-9 ().\-]+")
_EVENT_PREFIX = re.compile(r"^[#\s]+")


def is_help(text: str) -> bool:
    """True for `help`, `-h` or `--help`, in any case, with any surrounding whitespace."""
    return text.strip().lower() in _HELP_WORDS


def slack_unescape(text: str) -> str:
    """Undo Slack's three escapes; `&amp;` last so `&amp;lt;` stays the literal text `&lt;`."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def normalize_email(email: str) -> str:
    """Lower case without whitespace: the key for spotting the same person twice."""
    return "".join(email.split()).lower()


def normalize_phone(phone: str) -> str:
    """Digits only, so `+1 (415) 555-0100` and `14155550100` compare equal."""
    return "".join(c for c in phone if "0" <= c <= "9")


MIN_PHONE_DIGITS = 7  # fewer digits (an extension, a typo) would match unrelated people


def contact_keys(email: str | None, phone: str | None) -> tuple[str | None, str | None]:
    """(email_norm, phone_norm) as stored on a lead for duplicate detection; None when absent."""
    email_norm = normalize_email(email) if email else ""
    phone_norm = normalize_phone(phone) if phone else ""
    return (email_norm or None, phone_norm if len(phone_norm) >= MIN_PHONE_DIGITS else None)


def parse_lead_text(
    text: str,
    *,
    priorities: Sequence[str] = DEFAULT_PRIORITIES,
    default_priority: str = "warm",
    personas: Sequence[str] | None = None,
) -> ParseResult:
    """Parse the text of `/lead ...` (already unescaped) into a validated lead or errors."""
    _check_choices(priorities, default_priority)
    priority_words = {p.lower() for p in priorities}
    found: dict[str, list[str]] = {field: [] for field in FIELDS}
    plain: list[tuple[str, str]] = []  # (value, value as notes), in the order typed
    keyed_notes: str | None = None

    # Notes keep newlines and tabs, so those are only removed field by field below.
    text = _remove_controls(text, keep="\n\t")
    for start, segment in _segments(text):
        value = _clean(segment)
        if not value:
            continue
        keyed = _KEYED.fullmatch(value)
        key = keyed.group(1).lower() if keyed else ""
        if keyed and key in FIELDS:
            if key == "notes":
                # Only the key, spaces, tabs and newlines come before it: this is the key's colon.
                keyed_notes = text[start + segment.index(":") + 1 :]
                break
            value = keyed.group(2).strip()
            if key in ("email", "phone"):
                value = _unwrap(value)
            elif key == "event":
                value = _normalize_event(value)
            if value:
                found[key].append(value)
            continue
        value = _unwrap(value)
        kind = _shape(value, priority_words)
        if kind == "event":
            value = _normalize_event(value)
            if value:
                found[kind].append(value)
        elif kind:
            found[kind].append(value)
        elif value:
            plain.append((value, _unwrap(_clean(segment, keep="\n\t"))))

    errors: list[FieldError] = []
    duplicated: set[str] = set()
    for field in FIELDS:
        first, *others = found[field] or [""]
        for other in others:
            duplicated.add(field)
            message = f"{field}: given twice ({_quote(first)} and {_quote(other)}); keep one"
            errors.append(_error(field, other, message))

    # Plain fields fill whichever of name and company were not given as `key: value`.
    raw: dict[str, str | None] = {field: values[0] for field, values in found.items() if values}
    notes: list[str] = []
    for value, as_notes in plain:
        slot = next((field for field in ("name", "company") if field not in raw), None)
        if slot:
            raw[slot] = value
        else:
            notes.append(as_notes)
    if keyed_notes is not None:
        notes.append(_clean(keyed_notes, keep="\n\t"))
    raw["notes"] = ", ".join(note for note in notes if note)

    result = _validate(
        raw,
        priorities=priorities,
        default_priority=default_priority,
        personas=personas,
        from_text=True,
    )
    errors.extend(e for e in result.errors if e.field not in duplicated)
    if errors:
        return ParseResult(None, tuple(sorted(errors, key=lambda e: FIELDS.index(e.field))))
    return result


def validate_fields(
    raw: Mapping[str, str | None],
    *,
    priorities: Sequence[str] = DEFAULT_PRIORITIES,
    default_priority: str = "warm",
    personas: Sequence[str] | None = None,
) -> ParseResult:
    """Validate one value per field (e.g. from the modal); None or "" means not given."""
    _check_choices(priorities, default_priority)
    return _validate(
        raw,
        priorities=priorities,
        default_priority=default_priority,
        personas=personas,
        from_text=False,
    )


def format_lead_text(lead: LeadInput) -> str:
    """The canonical `/lead` text for a lead: every field keyed, notes last (they take the rest)."""
    parts = [
        f"{field}: {value}"
        for field in FIELDS
        if field != "notes" and (value := getattr(lead, field)) is not None
    ]
    if lead.notes is not None:
        parts.append(f"notes: {lead.notes}")
    return ", ".join(parts)


def _validate(
    raw: Mapping[str, str | None],
    *,
    priorities: Sequence[str],
    default_priority: str,
    personas: Sequence[str] | None,
    from_text: bool,
) -> ParseResult:
    values: dict[str, str] = {}
    errors: list[FieldError] = []
    for field in FIELDS:
        value = raw.get(field)
        value = _clean(value, keep="\n\t" if field == "notes" else "") if value else ""
        if field == "event":
            value = _normalize_event(value)
        if value:
            values[field] = value
            error = _check(field, value, priorities, personas)
            if error:
                errors.append(error)

    if "name" not in values:
        hint = "the first plain field is the name" if from_text else "who is the lead?"
        errors.append(_error("name", "", f"name: missing — {hint}"))
    if "email" not in values and "phone" not in values:
        # Reported on email so the modal can show it under an input block.
        message = "email or phone: give at least one so sales can reach them"
        errors.append(_error("email", "", message))
    if errors:
        return ParseResult(None, tuple(sorted(errors, key=lambda e: FIELDS.index(e.field))))

    priority = _canonical(values.get("priority", default_priority), priorities)
    persona = values.get("persona")
    if persona is not None and personas is not None:
        persona = _canonical(persona, personas)
    lead = LeadInput(
        name=values["name"],
        email=values.get("email"),
        phone=values.get("phone"),
        company=values.get("company"),
        title=values.get("title"),
        priority=priority or default_priority,
        event=values.get("event"),
        territory=values.get("territory"),
        persona=persona,
        notes=values.get("notes"),
    )
    return ParseResult(lead, ())


def _check(
    field: str, value: str, priorities: Sequence[str], personas: Sequence[str] | None
) -> FieldError | None:
    """The one error (if any) for a cleaned, non-empty value."""
    if field == "priority":
        if _canonical(value, priorities) is None:
            message = f"priority: {_quote(value)} is not one of {_list(priorities)}"
            return _error(field, value, message)
        return None
    limit = MAX_LENGTHS[field]
    if len(value) > limit:
        return _error(field, value, f"{field}: too long ({len(value)} characters; at most {limit})")
    if field == "email" and not _is_email(value):
        return _error(field, value, f"email: {_quote(value)} is not a valid email address")
    if field == "phone":
        if not _PHONE_SHAPE.fullmatch(value):
            return _error(field, value, f"phone: {_quote(value)} is not a valid phone number")
        digits = len(normalize_phone(value))
        if not PHONE_MIN_DIGITS <= digits <= PHONE_MAX_DIGITS:
            message = (
                f"phone: {_quote(value)} has {digits} digits; a phone number has "
                f"{PHONE_MIN_DIGITS} to {PHONE_MAX_DIGITS}"
            )
            return _error(field, value, message)
    if field == "persona" and personas is not None and _canonical(value, personas) is None:
        return _error(field, value, f"persona: {_quote(value)} is not one of {_list(personas)}")
    return None


def _shape(value: str, priority_words: set[str]) -> str | None:
    """Which field an unkeyed value is, by its shape; None for plain text."""
    if "@" in _MARKUP.sub("", value):
        return "email"
    if _looks_like_phone(value):
        return "phone"
    if value.lower() in priority_words:
        return "priority"
    if value.startswith("#"):
        return "event"
    return None


def _looks_like_phone(value: str) -> bool:
    return bool(_PHONE_SHAPE.fullmatch(value)) and len(normalize_phone(value)) >= PHONE_MIN_DIGITS


def _is_email(value: str) -> bool:
    if value.count("@") != 1 or any(c.isspace() or c in ",<>" for c in value):
        return False
    local, domain = value.split("@")
    labels = domain.split(".")
    return bool(local) and len(labels) > 1 and all(labels)


def _unwrap(value: str) -> str:
    """`<mailto:a|label>` or `<tel:n|label>` to what was typed: the label, else the target."""
    match = _WRAPPED.fullmatch(value)
    if not match:
        return value
    target, label = match.group(1).strip(), (match.group(2) or "").strip()
    return label or target


def _normalize_event(value: str) -> str:
    # Every leading `#` and space goes, so that this is idempotent (`# #x` -> `x`).
    return _EVENT_PREFIX.sub("", value)


def _segments(text: str) -> Iterator[tuple[int, str]]:
    """The comma-separated fields of `text` with their start offsets."""
    start = 0
    for segment in text.split(","):
        yield start, segment
        start += len(segment) + 1


def _remove_controls(text: str, keep: str = "") -> str:
    """`text` without Unicode's control characters (category Cc), except those in `keep`."""
    return _controls(keep).sub("", text)


@functools.cache
def _controls(keep: str) -> re.Pattern[str]:
    # Category Cc is exactly U+0000–U+001F and U+007F–U+009F (tests/test_parsing.py checks it):
    # one regex pass instead of a unicodedata lookup per character, which was ~4% of a /lead.
    wanted = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0)) if chr(c) not in keep]
    return re.compile("[" + "".join(re.escape(c) for c in wanted) + "]")


def _clean(value: str, keep: str = "") -> str:
    # Controls go first so that a NUL cannot shield whitespace from strip().
    return _remove_controls(value, keep).strip()


def _canonical(value: str, choices: Sequence[str]) -> str | None:
    lowered = value.lower()
    return next((choice for choice in choices if choice.lower() == lowered), None)


def _check_choices(priorities: Sequence[str], default_priority: str) -> None:
    # A policy mistake, not user input: fail loudly rather than accept every lead as invalid.
    if _canonical(default_priority, priorities) is None:
        raise ValueError("default_priority must be one of priorities")


def _list(choices: Sequence[str]) -> str:
    return ", ".join(choices) if choices else "(none configured)"


def _quote(value: str) -> str:
    if len(value) > _QUOTE_MAX:
        value = value[: _QUOTE_MAX - 1] + "…"
    return f'"{value}"'


def _error(field: str, value: str, message: str) -> FieldError:
    # Messages go to a screen: tabs and newlines become spaces, other controls disappear.
    message = _remove_controls(message, keep="\n\t").replace("\n", " ").replace("\t", " ")
    return FieldError(field, value, message)
