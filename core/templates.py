"""Message templates: ``{name}`` and ``{name|fallback}`` placeholders.

A template may contain only well-formed placeholders: a stray ``{`` or ``}`` is
refused, as is a name that is neither built in nor one of the campaign's
``variables``.  Rendering substitutes every placeholder (a missing value gives
the fallback, else nothing) and strips braces from values, so no raw ``{…}`` can
reach a customer.  The HTML rendering escapes everything that is not markup we
produce ourselves.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from urllib.parse import quote
from zoneinfo import ZoneInfo

from core.errors import FieldError, Invalid

BUILTIN_VARIABLES: tuple[str, ...] = (
    "customer_name", "first_name", "business_name", "agent_name", "service_type",
    "last_visit_date", "unsubscribe_url", "booking_link",
)

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PLACEHOLDER = re.compile(r"\{\s*(" + _NAME + r")\s*(?:\|([^{}]*))?\}")
_VARIABLE_NAME = re.compile(r"^" + _NAME + r"$")
# a web address as written in a template (placeholders may be part of it)
_URL = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)]")
_WHOLE_URL = re.compile(r"https?://[^\s<>\"'{}]+")


@dataclass(frozen=True)
class Placeholder:
    name: str
    fallback: str | None
    start: int
    end: int


def placeholders(template: str) -> list[Placeholder]:
    """The placeholders of ``template``; :class:`ValueError` on a stray brace."""
    return list(_parsed(template))


# a campaign renders the same few templates for every recipient: parse each once
@lru_cache(maxsize=256)
def _parsed(template: str) -> tuple[Placeholder, ...]:
    found: list[Placeholder] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(template):
        _check_literal(template, pos, match.start())
        found.append(Placeholder(match.group(1), match.group(2), match.start(), match.end()))
        pos = match.end()
    _check_literal(template, pos, len(template))
    return tuple(found)


def _check_literal(template: str, start: int, end: int) -> None:
    for i in range(start, end):
        if template[i] in "{}":
            snippet = template[i:i + 20]
            raise ValueError(
                f"'{template[i]}' at position {i + 1} is not part of a placeholder "
                f"(near {snippet!r}); write placeholders as {{name}} or {{name|fallback}}"
            )


def check_variable_names(variables: Mapping[str, object], *, field: str = "variables") -> None:
    """Campaign variables must be plain names that do not hide a built-in one."""
    errors = []
    for key, value in variables.items():
        if not isinstance(key, str) or not _VARIABLE_NAME.match(key):
            errors.append(FieldError(f"{field}.{key}", "a variable name uses letters, digits and _ only"))
        elif key in BUILTIN_VARIABLES:
            errors.append(FieldError(f"{field}.{key}", f"'{key}' is a built-in variable and cannot be redefined"))
        elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
            errors.append(FieldError(f"{field}.{key}", "a variable's value must be text or a number"))
    if errors:
        raise Invalid(errors)


def check_template(template: str, *, field: str, extra_variables: Iterable[str] = ()) -> list[str]:
    """Refuse a malformed template or one with an unknown variable; return the names it uses."""
    try:
        found = placeholders(template)
    except ValueError as exc:
        raise Invalid(str(exc), field=field) from None
    known = set(BUILTIN_VARIABLES) | set(extra_variables)
    unknown = sorted({p.name for p in found} - known)
    if unknown:
        names = ", ".join("{" + n + "}" for n in unknown)
        raise Invalid(
            f"unknown variable {names}; known variables are "
            + ", ".join("{" + n + "}" for n in sorted(known)),
            field=field,
        )
    return [p.name for p in found]


def _value(context: Mapping[str, object], ph: Placeholder) -> str:
    raw = context.get(ph.name)
    text = "" if raw is None else str(raw)
    text = text.replace("{", "").replace("}", "").strip()
    if not text and ph.fallback is not None:
        text = ph.fallback.strip()
    return text


def render(template: str, context: Mapping[str, object]) -> str:
    """Plain-text rendering (SMS, call scripts, e-mail text part)."""
    out: list[str] = []
    pos = 0
    for ph in placeholders(template):
        out.append(template[pos:ph.start])
        out.append(_value(context, ph))
        pos = ph.end
    out.append(template[pos:])
    return "".join(out)


def render_html(
    template: str, context: Mapping[str, object], *, link: Callable[[str], str] | None = None,
    trusted: Iterable[str] = ("booking_link", "unsubscribe_url"),
) -> str:
    """E-mail HTML: the template's text and every value escaped, blank lines as paragraphs, line
    breaks kept, and links made of the URLs **written in the template** (a placeholder inside such a URL
    is filled in, URL-encoded) and of placeholders in ``trusted`` — the business's own values, such as
    its booking link — whose value is a web address.  Text that came from customer data never becomes
    a link (DESIGN §13), whatever it looks like.  ``link`` may rewrite a URL (click tracking)."""
    trusted = set(trusted)
    found = placeholders(template)

    def anchor(url: str) -> str:
        href = link(url) if link else url
        return f'<a href="{html.escape(href, quote=True)}">{html.escape(url, quote=False)}</a>'

    def text(start: int, end: int) -> str:
        out, pos = [], start
        for ph in (p for p in found if start <= p.start < end):
            out.append(html.escape(template[pos:ph.start], quote=False))
            value = _value(context, ph)
            out.append(anchor(value) if ph.name in trusted and _WHOLE_URL.fullmatch(value)
                       else html.escape(value, quote=False))
            pos = ph.end
        out.append(html.escape(template[pos:end], quote=False))
        return "".join(out)

    pieces: list[str] = []
    pos = 0
    for match in _URL.finditer(template):  # the template's own URLs, placeholders inside filled in
        start, end = match.span()
        pieces.append(text(pos, start))
        url, cursor = [], start
        for ph in (p for p in found if start <= p.start < end):
            url.append(template[cursor:ph.start])
            url.append(quote(_value(context, ph), safe=""))
            cursor = ph.end
        url.append(template[cursor:end])
        pieces.append(anchor("".join(url)))
        pos = end
    pieces.append(text(pos, len(template)))
    rendered = "".join(pieces)
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", rendered.replace("\r\n", "\n")) if p.strip()]
    return "\n".join(f"<p>{p.replace(chr(10), '<br>')}</p>" for p in paragraphs)


def first_name(customer_name: str | None) -> str | None:
    if not customer_name:
        return None
    parts = customer_name.strip().split()
    return parts[0] if parts else None


def format_visit_date(when: datetime | None, tz: str) -> str | None:
    """A date as a customer reads it: ``March 3, 2025``."""
    if when is None:
        return None
    local = when.astimezone(ZoneInfo(tz))
    return f"{local.strftime('%B')} {local.day}, {local.year}"


def build_context(
    *,
    customer_name: str | None,
    business_name: str,
    agent_name: str | None = None,
    service_type: str | None = None,
    last_visit: datetime | None = None,
    timezone: str = "UTC",
    unsubscribe_url: str | None = None,
    booking_link: str | None = None,
    variables: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """Every variable a template may use, for one customer."""
    context: dict[str, object] = dict(variables or {})
    context.update(
        customer_name=customer_name,
        first_name=first_name(customer_name),
        business_name=business_name,
        agent_name=agent_name,
        service_type=service_type,
        last_visit_date=format_visit_date(last_visit, timezone),
        unsubscribe_url=unsubscribe_url,
        booking_link=booking_link,
    )
    return context


# --- SMS length -------------------------------------------------------------------

_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SmsLength:
    characters: int
    encoding: str  # "GSM-7" or "UCS-2"
    segments: int


def sms_length(text: str) -> SmsLength:
    """How many segments ``text`` takes as one SMS (GSM-7 when it can, else UCS-2)."""
    if all(ch in _GSM7 or ch in _GSM7_EXT for ch in text):
        units = sum(2 if ch in _GSM7_EXT else 1 for ch in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)
        single, multi, encoding = 70, 67, "UCS-2"
    segments = 1 if units <= single else -(-units // multi)
    return SmsLength(characters=len(text), encoding=encoding, segments=segments if text else 0)
