"""The `/lead` text grammar and the lead validation shared with the new-lead modal.

Pure functions, no I/O and no logging: lead contact details must never reach a log, so errors
are returned as values and it is up to the caller what to show (and to whom).

Values are stored exactly as typed apart from four things: surrounding whitespace is stripped,
control characters are removed (notes keep newlines and tabs), a value of invisible characters
only (zero-width spaces, say) counts as not given, and a few fields are normalised (priority and
persona to their canonical keys, event without its leading `#`, a phone's digits and punctuation
to ASCII). Mentions, links, emoji and the like are valid data; escaping them for display is the
renderer's job.

Email and phone never go on the public card, so the grammar errs towards refusing: an unkeyed
field that holds a phone-like run of digits it cannot read as a phone, or a key one typo away from
a known key, is an error rather than a company or a note.
"""

from __future__ import annotations

import functools
import re
import unicodedata
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
PHONE_MAX_EXTENSION_DIGITS = 7
_QUOTE_MAX = 40  # long values are cut in messages: they are read on a phone


def usage(priorities: Sequence[str] = DEFAULT_PRIORITIES, default_priority: str = "warm") -> str:
    """The `/lead help` text for a policy: its priorities, its default, one in the example."""
    return _usage(tuple(priorities), default_priority)


@functools.cache
def _usage(priorities: tuple[str, ...], default_priority: str) -> str:
    default = _canonical(default_priority, priorities) or default_priority
    named = [f"`{p}`" for p in priorities]
    choices = " or ".join([", ".join(named[:-1]), named[-1]] if len(named) > 1 else named)
    example = priorities[0] if priorities else default
    return f"""\
*Submit a lead:* `/lead` on its own opens a form, or type the fields separated by commas.
• Typed fields are read by their shape: an email address, a phone number (an extension such as \
`ext. 12` is kept), a priority ({choices}; `{default}` if you leave it out) and an `#event`. The \
first other field is the name, the next the company, the rest are notes.
• Or label them as `key: value`: name, email, phone, company, title, priority, event, \
territory, persona, notes (`tel:`, `mobile:` and `cell:` mean `phone:`, `mail:` means `email:`, \
`note:` means `notes:`). `notes:` takes the rest of the text, commas and all.
• A lead needs a name and an email or a phone so sales can reach them. Email and phone never go \
on the public card, so a field that looks like a phone number I can't read is refused: label it \
`phone:`, or if it is no phone number, put it after `notes:`.
• Mistyped something? `/lead edit 12` opens the form filled in with lead #12 (its number is \
on your receipt) to correct it.
Example: `/lead Jane Doe, jane@acme.example, Acme Corp, +1 415 555 0100, {example}, #SaaStr2026, \
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

# `key: value` at the start of a field. The key may be several words (`phone number:`): a known
# key or alias (_KEYS) makes the field keyed; any other words before a colon are plain text.
_KEYED = re.compile(r"\s*([A-Za-z][A-Za-z .\-_\t\n]*):(.*)", re.DOTALL)
_KEY_SPELLING = str.maketrans("", "", " \t\n.-_")  # `E-mail`, `Tel.`, `phone number`
# Every way a key may be typed, as _KEY_SPELLING leaves it (lower case): to its field.
_KEYS: dict[str, str] = {
    **{field: field for field in FIELDS},
    **dict.fromkeys(("mail", "emailaddress"), "email"),
    **dict.fromkeys(
        (
            "tel",
            "telno",
            "telephone",
            "phoneno",
            "phonenumber",
            "mob",
            "mobile",
            "mobileno",
            "mobilenumber",
            "mobilephone",
            "cell",
            "cellno",
            "cellnumber",
            "cellphone",
        ),
        "phone",
    ),
    "note": "notes",
}
# Slack's autolinks, e.g. <mailto:jane@acme.example|jane@acme.example>; the label is optional.
_WRAPPED = re.compile(r"<(?:mailto|tel):([^<>|]*)(?:\|([^<>]*))?>", re.IGNORECASE)
# Slack markup (<@U123>, <!channel>, <#C1|x>, <https://x|y>) is data even with an `@` inside;
# a bare <jane@acme.example> is not markup, so it still reads as an (invalid) email.
_MARKUP = re.compile(r"<(?:[@#!]|[A-Za-z][A-Za-z0-9+.\-]*:)[^<>]*>")
# A phone number (in ASCII, see _ascii_phone): digits, spaces and `+ ( ) . - /`, then perhaps
# an extension (`ext. 12`, `x12`, `#12`). Group 1 is the number, group 2 the extension.
# Possessive, so that a long field which is not a phone fails in one pass.
_PHONE = re.compile(
    r"(\(?\+?[0-9 ().\-/]++)(?:(?:ext(?:ension|n)?\.?|x|#) *+:? *+"
    rf"([0-9]{{1,{PHONE_MAX_EXTENSION_DIGITS}}}+))?",
    re.IGNORECASE,
)
# Seven digits with only phone punctuation between them: what an unkeyed field that is not a
# phone must not hold, lest a number we could not read reach the card as a company or a note.
_DIGIT_RUN = re.compile(rf"(?:\d[ ().\-/+]*+){{{PHONE_MIN_DIGITS - 1}}}\d")
# A date (26.11.2026, 11/26/2026, 2026-11-26) has as many digits as a phone but is plain text.
_DATE = re.compile(
    r"(?<![\d.\-/])(?:(\d{1,2})([./-])(\d{1,2})\2(?:\d{4}|\d{2})|\d{4}([./-])(\d{1,2})\4(\d{1,2}))"
    r"(?![\d\-/]|\.\d)"
)
# Slack ids inside mentions (<@U0123456789>) are digits but no phone.
_MENTION_ID = re.compile(r"<[@#!][^<>|]*")
# Unicode's other ways to write phone punctuation: full-width, no-break and thin spaces, dashes.
_PHONE_PUNCTUATION = {
    **dict(zip("＋（）－．／＃", "+()-./#", strict=True)),
    **dict.fromkeys("\u3000\u00a0\u2007\u2009\u202f", " "),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2212", "-"),
}
# Those, and any decimal digit that is not ASCII (full-width ０-９, Arabic-Indic, ...).
_NOT_ASCII_PHONE = re.compile("[" + "".join(_PHONE_PUNCTUATION) + r"]|(?![0-9])\d")
_NOT_A_DIGIT = re.compile(r"[^0-9]+")
# What a phone's number holds besides digits (_PHONE group 1): deleted, its digits are left.
_PHONE_NOT_DIGITS = str.maketrans("", "", " ().-/+")
_BUILT_IN_PRIORITIES = frozenset(DEFAULT_PRIORITIES)
# The field a "missing" error is reported on (see _validate), by the field that would fill it.
_MISSING_ON = {"name": "name", "email": "email", "phone": "email"}
_EVENT_PREFIX = re.compile(r"^[#\s]+")
# What shows nothing on its own: format characters (zero-width space and joiner, direction
# marks, BOM), separators, combining marks, and the letters fonts draw blank.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me"})
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def is_help(text: str) -> bool:
    """True for `help`, `-h` or `--help` in any case, alone or followed by words without a
    comma (`help me`): a lead has commas, a plea for help need not."""
    words = text.split(maxsplit=1)
    return bool(words) and words[0].lower() in _HELP_WORDS and "," not in text


def slack_unescape(text: str) -> str:
    """Undo Slack's three escapes; `&amp;` last so `&amp;lt;` stays the literal text `&lt;`."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def normalize_email(email: str) -> str:
    """Lower case without whitespace: the key for spotting the same person twice."""
    return "".join(email.split()).lower()


def normalize_phone(phone: str) -> str:
    """Digits only, so `+1 (415) 555-0100` and `14155550100` compare equal."""
    return _NOT_A_DIGIT.sub("", phone)


MIN_PHONE_DIGITS = 7  # fewer digits (an extension, a typo) would match unrelated people


def contact_keys(email: str | None, phone: str | None) -> tuple[str | None, str | None]:
    """(email_norm, phone_norm) as stored on a lead for duplicate detection; None when absent.

    The phone's key is its number's digits without the extension: `+1 415 555 0100 ext. 12`
    and `+1 (415) 555-0100` are the same line, typed with and without the branch. (Two people
    behind one switchboard then look alike too; the mark is a hint, and a missed repeat of the
    same person costs more than a second look at a colleague.)"""
    email_norm = normalize_email(email) if email else ""
    phone_norm = normalize_phone(_phone_number(phone)) if phone else ""
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
    refused: list[FieldError] = []  # fields the grammar will not guess at
    # Fields whose "missing" error a refused field makes moot (it was probably meant as that).
    moot: set[str] = set()

    # Notes keep newlines and tabs, so those are only removed field by field below.
    text = _remove_controls(text, keep="\n\t")
    for start, segment in _segments(text):
        value = _clean(segment)
        if not _visible(value):
            continue
        keyed = _KEYED.fullmatch(value)
        if keyed:
            typed = keyed.group(1).strip()
            # The key as typed first: translate() costs more than the rest of a keyed field.
            key = _KEYS.get(typed.lower())
            compact = typed.translate(_KEY_SPELLING).lower() if key is None else ""
            key = key or _KEYS.get(compact)
            if key == "notes":
                # Only the key, spaces, tabs and newlines come before it: this is the key's colon.
                keyed_notes = text[start + segment.index(":") + 1 :]
                break
            if key:
                value = keyed.group(2).strip()
                if key in ("email", "phone"):
                    value = _unwrap(value)
                elif key == "event":
                    value = _normalize_event(value)
                if _visible(value):
                    found[key].append(value)
                continue
            # One word (`Titel.`, `e-mial`), not a phrase that happens to end in a colon.
            near = None if any(c.isspace() for c in typed) else _near_key(compact)
            if near:
                # `titel: CTO` would otherwise be the company, on the public card.
                message = f"{near}: {_quote(typed + ':')} is not a key; did you mean `{near}:`?"
                refused.append(_error(near, value, f"{message} If not, leave out the colon."))
                moot.add(_MISSING_ON.get(near, ""))
                continue
        value = _unwrap(value)
        kind = _shape(value, priority_words)
        if kind == "event":
            value = _normalize_event(value)
            if value:
                found[kind].append(value)
        elif kind:
            found[kind].append(value)
        elif _holds_a_phone(value):
            # Not a phone we can read, yet phone-like: never a company or a note on the card.
            message = (
                f"phone: {_quote(value)} looks like a phone number but is not one I can read; "
                "write it as `phone: …` (if it is no phone number, put it after `notes:`)"
            )
            refused.append(_error("phone", value, message))
            moot.add(_MISSING_ON["phone"])
        elif value:
            plain.append((value, _unwrap(_clean(segment, keep="\n\t"))))

    errors: list[FieldError] = refused
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
    errors.extend(
        e
        for e in result.errors
        if e.field not in duplicated and not (e.value == "" and e.field in moot)
    )
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
        if not _visible(value):
            value = ""  # zero-width spaces and the like: nothing anyone could read
        elif field == "event":
            value = _normalize_event(value)
        elif field == "phone":
            value = _ascii_phone(value)
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
        number = _PHONE.fullmatch(value)
        if not number:
            return _error(field, value, f"phone: {_quote(value)} is not a valid phone number")
        digits = _digits_in(number)
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
    lowered = value.lower()
    # A built-in priority word the policy lacks is a mistaken priority, not a company.
    if lowered in priority_words or lowered in _BUILT_IN_PRIORITIES:
        return "priority"
    if value.startswith("#"):
        return "event"
    ascii_value = _ascii_phone(value)
    number = _PHONE.fullmatch(ascii_value)
    if number and _digits_in(number) >= PHONE_MIN_DIGITS and not _is_a_date(ascii_value):
        return "phone"
    return None


def _digits_in(number: re.Match[str]) -> int:
    """How many digits a _PHONE match's number has, its extension left out."""
    return len(number.group(1).translate(_PHONE_NOT_DIGITS))


def _holds_a_phone(value: str) -> bool:
    """Whether an unkeyed field that is no phone by its shape holds a phone-like run of digits
    (`+1 415 555 0100 (mobile)`, `whatsapp +44 7700 900123`), dates and Slack ids aside."""
    value = _ascii_phone(value)
    if not _DIGIT_RUN.search(value):
        return False  # the usual answer, in one pass
    value = _MENTION_ID.sub(" ", value)
    value = _DATE.sub(lambda m: " " if _date_in_range(m) else m.group(), value)
    return bool(_DIGIT_RUN.search(value))


def _is_a_date(value: str) -> bool:
    date = _DATE.fullmatch(value)
    return bool(date) and _date_in_range(date)


def _date_in_range(date: re.Match[str]) -> bool:
    """Day and month in range: 26.11.2026 or 11/26/2026 (either order), or 2026-11-26."""
    if date.group(1):
        first, second = int(date.group(1)), int(date.group(3))
        return 1 <= min(first, second) <= 12 and max(first, second) <= 31
    month, day = int(date.group(5)), int(date.group(6))
    return 1 <= month <= 12 and 1 <= day <= 31


def _ascii_phone(value: str) -> str:
    """`value` with full-width (and other non-ASCII) digits and phone punctuation in ASCII."""
    if value.isascii():
        return value
    return _NOT_ASCII_PHONE.sub(_ascii_phone_char, value)


def _ascii_phone_char(match: re.Match[str]) -> str:
    char = match.group()
    return _PHONE_PUNCTUATION.get(char) or str(unicodedata.decimal(char))


def _phone_number(phone: str) -> str:
    """A phone without its extension (as typed when it is not a valid phone)."""
    number = _PHONE.fullmatch(_ascii_phone(phone))
    return number.group(1) if number else phone


def _near_key(word: str) -> str | None:
    """The field whose key `word` (lower case, as _KEY_SPELLING leaves it) is probably a typo
    of, or None. One edit away, two for keys of seven letters or more, a swap of neighbours
    (`titel`) counting as one; words of four letters or more only (`Re:` stays text), and
    `time:`, two edits from `title`, stays text too."""
    if len(word) < 4 or not word.isalpha():
        return None
    for field in FIELDS:
        limit = 2 if len(field) >= 7 else 1
        if abs(len(field) - len(word)) <= limit and _edits(word, field) <= limit:
            return field
    return None


def _edits(a: str, b: str) -> int:
    """Edit distance (optimal string alignment): insertions, deletions, substitutions and
    swaps of two neighbours each count one."""
    before: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            current[j] = min(
                previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] != b[j - 1])
            )
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], before[j - 2] + 1)
        before, previous = previous, current
    return previous[-1]


def _visible(value: str) -> bool:
    """Whether a cleaned value shows anything: not empty, nor only zero-width spaces and such."""
    if value.isascii():
        return bool(value)  # cleaned ASCII has no controls and no surrounding spaces
    return any(
        unicodedata.category(c) not in _INVISIBLE_CATEGORIES and c not in _BLANK_LETTERS
        for c in value
    )


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


# Last: the text is built from functions defined above. Today's policy may differ (usage()).
USAGE = usage()
