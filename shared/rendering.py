"""Rendering: the one sandboxed Jinja2 environment Vestnik uses.

Templates are written by admins and fed with data from the CRM and clients, so
both sides are untrusted: templates render in Jinja2's immutable sandbox (no
attribute access to Python internals, no mutation), HTML outputs (email HTML,
Telegram HTML) autoescape every variable, and output size is bounded.

Times in event data are ISO 8601 strings with an offset; they reach templates
as :class:`LocalTime`, which prints in the client's time zone and language
("25 ноября, 16:00").  ``{{ starts_at|date('d MMMM yyyy') }}`` takes a Babel
pattern; ``{{ amount|money(currency) }}`` formats money.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_datetime
from babel.numbers import format_currency
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, nodes, pass_context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from shared.errors import TemplateError

MAX_OUTPUT_CHARS = 100_000
DEFAULT_DATETIME_PATTERN = {"ru": "d MMMM, HH:mm", "en": "d MMMM, HH:mm"}

#: The tags Telegram's HTML parse mode accepts (Bot API "HTML style").
TELEGRAM_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "code", "pre",
     "blockquote", "tg-emoji"}
)


@dataclass(frozen=True)
class LocalTime:
    """An aware time shown in one client's zone and language."""

    value: datetime
    locale: str
    tz: str

    def local(self) -> datetime:
        return self.value.astimezone(_zone(self.tz))

    def format(self, pattern: str | None = None) -> str:
        pattern = pattern or DEFAULT_DATETIME_PATTERN.get(self.locale, "d MMMM, HH:mm")
        return format_datetime(self.local(), pattern, locale=self.locale)

    def __str__(self) -> str:
        return self.format()

    def isoformat(self) -> str:
        return self.local().isoformat()


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _date_filter(value: Any, pattern: str | None = None) -> str:
    if isinstance(value, LocalTime):
        return value.format(pattern)
    return str(value)


@pass_context
def _money_filter(ctx: Any, value: Any, currency: str = "RUB") -> str:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    try:
        return format_currency(amount, str(currency), locale=ctx.get("_locale", "ru"))
    except Exception:  # noqa: BLE001 - unknown currency code: show plainly
        return f"{amount} {currency}"


class _Env(ImmutableSandboxedEnvironment):
    """Sandbox; ``range`` is capped so a template cannot loop for ever."""

    def __init__(self, *, html_mode: bool) -> None:
        # trim_blocks stays off: it ate the "\n" right after "{% if reason %}", and Telegram texts
        # (which keep line breaks) lost every optional line's break.
        super().__init__(autoescape=html_mode, undefined=StrictUndefined, trim_blocks=False, lstrip_blocks=True)
        self.globals = {"range": _bounded_range}
        self.filters["date"] = _date_filter
        self.filters["money"] = _money_filter


def _bounded_range(*args: int) -> range:
    r = range(*args)
    if len(r) > 1000:
        raise SecurityError("range() is limited to 1000 items in templates")
    return r


_HTML_ENV = _Env(html_mode=True)
_TEXT_ENV = _Env(html_mode=False)


def check_syntax(source: str) -> set[str]:
    """Parse a template; return the variable names it reads.  Raises TemplateError."""
    try:
        ast = _HTML_ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"line {exc.lineno}: {exc.message}") from None
    from jinja2 import meta

    names = set(meta.find_undeclared_variables(ast))
    # Names bound inside the template (for loops, set) are not inputs.
    for node in ast.find_all((nodes.For, nodes.Assign)):
        for target in node.target.find_all(nodes.Name) if hasattr(node, "target") else ():
            names.discard(target.name)
    return names - set(_HTML_ENV.globals)


def render(source: str, context: Mapping[str, Any], *, html_mode: bool, locale: str = "ru") -> str:
    """Render one template string; any failure becomes a TemplateError with a reason."""
    env = _HTML_ENV if html_mode else _TEXT_ENV
    try:
        template = env.from_string(source)
        out = template.render({**context, "_locale": locale})
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error at line {exc.lineno}: {exc.message}") from None
    except UndefinedError as exc:
        raise TemplateError(f"template uses an undefined variable: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateError(f"template blocked by the sandbox: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any other error is the template's, named for the admin
        raise TemplateError(f"template failed: {type(exc).__name__}: {exc}") from None
    if len(out) > MAX_OUTPUT_CHARS:
        raise TemplateError(f"rendered text is {len(out)} characters; the limit is {MAX_OUTPUT_CHARS}")
    return out


def build_context(
    data: Mapping[str, Any], *, datetime_fields: set[str], locale: str, tz: str, client: Mapping[str, Any]
) -> dict[str, Any]:
    """Template variables: the client's fields, then the event data with times localised."""
    ctx: dict[str, Any] = dict(client)
    for name, value in data.items():
        if name in datetime_fields and isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                ctx[name] = value
                continue
            ctx[name] = LocalTime(parsed, locale, tz) if parsed.tzinfo else value
        else:
            ctx[name] = value
    return ctx


# ------------------------------------------------------------ HTML helpers


class _TextExtractor(HTMLParser):
    """HTML email body -> its plain-text alternative (links kept as 'text (url)')."""

    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "ul", "ol"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._href: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "li":
            self.parts.append("\n- ")
        elif tag in self._BLOCK:
            self.parts.append("\n")
        if tag == "a":
            self._href.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href:
            href = self._href.pop()
            if href and href.startswith(("http://", "https://", "mailto:")):
                self.parts.append(f" ({href})")
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(source: str) -> str:
    parser = _TextExtractor()
    parser.feed(source)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


class _TelegramSanitizer(HTMLParser):
    """Keep only the tags Telegram accepts; escape everything else as text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.out.append("\n")
            return
        if tag not in TELEGRAM_TAGS:
            return
        kept = ""
        if tag == "a":
            href = dict(attrs).get("href") or ""
            if not href.startswith(("http://", "https://", "tg://")):
                return  # javascript: and friends are dropped with the tag
            kept = f' href="{html.escape(href, quote=True)}"'
        elif tag == "span" and dict(attrs).get("class") == "tg-spoiler":
            kept = ' class="tg-spoiler"'
        elif tag == "span":
            return
        elif tag in ("code", "pre") and dict(attrs).get("class", "") and str(dict(attrs)["class"]).startswith(
            "language-"
        ):
            kept = f' class="{html.escape(str(dict(attrs)["class"]), quote=True)}"'
        self.out.append(f"<{tag}{kept}>")
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.open:
            while self.open:
                top = self.open.pop()
                self.out.append(f"</{top}>")
                if top == tag:
                    break

    def handle_data(self, data: str) -> None:
        self.out.append(html.escape(data, quote=False))

    def result(self) -> str:
        while self.open:
            self.out.append(f"</{self.open.pop()}>")
        return "".join(self.out)


def telegram_html(source: str) -> str:
    """Rendered template -> HTML that Telegram's parser accepts (unknown tags dropped)."""
    parser = _TelegramSanitizer()
    parser.feed(source)
    parser.close()
    return parser.result().strip()


def unknown_telegram_tags(source: str) -> set[str]:
    """Tags in a template body that Telegram would reject (for validation at save)."""
    return {t.lower() for t in re.findall(r"</?\s*([a-zA-Z][\w-]*)", source)} - TELEGRAM_TAGS - {"br"}
