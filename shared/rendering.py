"""Rendering: the one sandboxed Jinja2 environment Vestnik uses.

Templates are written by admins and fed with data from the CRM and clients, so
both sides are untrusted: templates render in Jinja2's immutable sandbox (no
attribute access to Python internals, no mutation), HTML outputs (email HTML,
Telegram HTML) autoescape every variable, and links may only use web, mail,
phone and Telegram schemes (:func:`unsafe_links`).

Jinja2's sandbox stops attribute access, not work: ``{{ 'x' * 10**9 }}``, three
nested loops over ``range(1000)`` or a macro calling itself twice would hold a
worker for minutes or take gigabytes.  So a template that can do more than
print its data renders in a child process under a memory and CPU budget
(``render_sandbox.py``: the budget no template can bypass), and every render,
wherever it runs, is also bounded step by step (limits below, each failure a
TemplateError naming the limit):

- every string or list a template builds (``*``, ``+``, ``~``, ``%``, string
  methods, filters) stays within ``MAX_VALUE_CHARS``; widths and counts given
  to padding methods and filters (``center``, ``batch``...) within ``MAX_WIDTH``;
  powers and big-integer products within ``MAX_INT_BITS``;
- loop iterations and calls together within ``MAX_STEPS``, and wall time
  within ``MAX_RENDER_S`` (checked as the steps go);
- text produced (the output, captured blocks and macro bodies together)
  within ``MAX_BUFFERED_CHARS``, and the output itself within
  ``MAX_OUTPUT_CHARS``: rendering streams and stops at the limit.

Times in event data are ISO 8601 strings with an offset; they reach templates
as :class:`LocalTime`, which prints in the client's time zone and language
("25 ноября, 16:00").  ``{{ starts_at|date('d MMMM yyyy') }}`` takes a Babel
pattern; ``{{ amount|money(currency) }}`` formats money.
"""

from __future__ import annotations

import functools
import html
import math
import re
import string
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_datetime
from babel.numbers import format_currency
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from vestnik.shared import bounds, locales
from vestnik.shared.bounds import BoundsError
from vestnik.shared.errors import TemplateError

MAX_OUTPUT_CHARS = 100_000
#: the longest string or list a template may build
MAX_VALUE_CHARS = 100_000
#: the largest width or count given to a padding method or a filter (center, ljust, batch, slice...)
MAX_WIDTH = 10_000
#: the largest integer (in bits) a power or a product may make
MAX_INT_BITS = 4096
#: loop iterations plus calls in one render
MAX_STEPS = 50_000
#: text produced in one render: output, captured blocks and macro bodies together
MAX_BUFFERED_CHARS = 4 * MAX_OUTPUT_CHARS
MAX_RENDER_S = 1.0
#: the filter every ``{% for %}`` iterable goes through (added by the code generator)
BUDGET_FILTER = "_vestnik_budget"
#: the schemes a link may use (anything else, e.g. javascript: or data:, is refused)
SAFE_URL_SCHEMES = frozenset({"http", "https", "mailto", "tel", "tg"})
#: how a time reads when the template gives no pattern, per locale (Babel spells the month in each language)
DEFAULT_DATETIME_PATTERN = {"ru": "d MMMM, HH:mm", "uz-latn": "d-MMMM, HH:mm", "en": "d MMMM, HH:mm"}

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
        return _format_local(self.value, pattern, self.locale, self.tz)

    def __str__(self) -> str:
        return self.format()

    def isoformat(self) -> str:
        return self.local().isoformat()


@functools.lru_cache(maxsize=4096)
def _format_local(value: datetime, pattern: str, locale: str, tz: str) -> str:
    """Babel's formatting costs about 0.2 ms, and a batch shows the same moment to many clients."""
    return format_datetime(value.astimezone(_zone(tz)), pattern, locale=locales.babel(locale))


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
        amount = bounds.amount(value, "amount", allow_negative=True)
    except BoundsError:  # not an amount (or a 60,000-digit one from before amounts were bounded)
        return str(value)[:40]
    try:
        return format_currency(amount, str(currency), locale=locales.babel(ctx.get("_locale", "ru")))
    except Exception:  # noqa: BLE001 - unknown currency code: show plainly
        return f"{amount} {currency}"


class _Budget:
    """What one render has used so far (steps, produced text, time)."""

    __slots__ = ("deadline", "produced", "steps")

    def __init__(self) -> None:
        self.steps = 0
        self.produced = 0
        # CPU time of this thread, not the wall clock: a loaded machine does not fail honest templates.
        # The clock starts at the 512th step, where it is first looked at: reading a thread's CPU clock
        # is a system call (about a tenth of an email's render on a busy machine), and a template that
        # only prints its data (every one rendered in the worker's own process) never gets there; the
        # steps before it are each bounded in size (MAX_VALUE_CHARS).
        self.deadline: float | None = None

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise SecurityError(f"the template made more than {MAX_STEPS} loop iterations and calls")
        if self.steps % 512 == 0:
            now = time.thread_time()
            if self.deadline is None:
                self.deadline = now + MAX_RENDER_S
            elif now > self.deadline:
                raise SecurityError(f"the template ran longer than {MAX_RENDER_S} s")

    def produce(self, chars: int) -> None:
        self.produced += chars
        if self.produced > MAX_BUFFERED_CHARS:
            raise SecurityError(f"the template produced more than {MAX_BUFFERED_CHARS} characters")


#: The budget of the render in progress in this thread (None outside render(), e.g. at compile time).
_BUDGET: ContextVar[_Budget | None] = ContextVar("vestnik_render_budget", default=None)


def _step() -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.step()


def _sized(value: Any) -> Any:
    if isinstance(value, str | list | tuple) and len(value) > MAX_VALUE_CHARS:
        raise SecurityError(f"the template built a value of {len(value)} items; the limit is {MAX_VALUE_CHARS}")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise SecurityError(f"the template built an integer over {MAX_INT_BITS} bits")
    return value


def _width(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value > MAX_WIDTH:
        raise SecurityError(f"{what}: {value} is over the limit of {MAX_WIDTH}")


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_percent_format(fmt: str) -> None:
    """``'%100000000d' % 1`` would build a 100 MB string: widths are bounded, ``*`` refused."""
    for match in _PERCENT_SPEC.finditer(fmt):
        for part in match.groups():
            if part == "*":
                raise SecurityError("'*' widths are not allowed in templates")
            if part:
                _width(int(part), "format width")


def _check_brace_format(fmt: str) -> None:
    """``'{:>100000000}'.format(1)``: widths are bounded, nested ``{}`` in a format spec refused."""
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError as exc:
        raise SecurityError(f"bad format string: {exc}") from None
    for _, _, spec, _ in fields:
        if not spec:
            continue
        if "{" in spec:
            raise SecurityError("nested fields in a format spec are not allowed in templates")
        for number in re.findall(r"\d+", spec):
            _width(int(number), "format width")


def _check_str_method(text: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse string method calls whose result would be huge; may return materialised args."""
    if name in ("center", "ljust", "rjust", "zfill"):
        _width(args[0] if args else kwargs.get("width"), f"str.{name}()")
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int) and len(text) + text.count("\t") * size > MAX_VALUE_CHARS:
            raise SecurityError(f"str.expandtabs() would build more than {MAX_VALUE_CHARS} characters")
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        hits = len(text) + 1 if args[0] == "" else text.count(args[0])
        if len(text) + hits * len(args[1]) > MAX_VALUE_CHARS:
            raise SecurityError(f"str.replace() would build more than {MAX_VALUE_CHARS} characters")
    elif name == "join" and args:
        items = list(args[0])
        total = len(text) * max(len(items) - 1, 0) + sum(len(i) for i in items if isinstance(i, str))
        if total > MAX_VALUE_CHARS:
            raise SecurityError(f"str.join() would build more than {MAX_VALUE_CHARS} characters")
        return (items, *args[1:])
    elif name in ("format", "format_map"):
        _check_brace_format(text)
    return args


#: Filters whose numeric arguments are widths or counts (the others' numbers are data: format(150000)).
_SIZED_FILTERS = frozenset({"center", "indent", "wordwrap", "truncate", "batch", "slice"})


def _guard_filter(name: str, func: Any) -> Any:
    """A built-in filter with bounded arguments and a bounded result."""
    offset = 1 if getattr(func, "jinja_pass_arg", None) else 0  # context / environment comes first

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _step()
        value, extra = (args[offset] if len(args) > offset else None), args[offset + 1:]
        if name in _SIZED_FILTERS:
            for arg in (*extra, *kwargs.values()):
                _width(arg, f"the {name} filter")
        if name == "sum" and not isinstance(kwargs.get("start", extra[1] if len(extra) > 1 else 0), int | float):
            raise SecurityError("the sum filter adds numbers only")
        if name == "format" and isinstance(value, str):
            _check_percent_format(value)
        if name == "indent" and isinstance(value, str):
            width = kwargs.get("width", extra[0] if extra else 4)
            pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
            if len(value) + (value.count("\n") + 1) * pad > MAX_VALUE_CHARS:
                raise SecurityError(f"the indent filter would build more than {MAX_VALUE_CHARS} characters")
        if name == "replace" and isinstance(value, str) and len(extra) >= 2:
            _check_str_method(value, "replace", tuple(str(e) for e in extra[:2]), {})
        if name == "join" and value is not None and not isinstance(value, str):
            args = (*args[:offset], list(value), *extra)
            _sized(args[offset])
        return _sized(func(*args, **kwargs))

    return guarded


@pass_context  # pass_context: never folded into a constant at compile time
def _budget_iter(context: Any, iterable: Any) -> Iterator[Any]:
    """The iterable of a ``{% for %}``, counted against the render's step budget."""
    budget = _BUDGET.get()
    if budget is None:
        yield from iterable
        return
    for item in iterable:
        budget.step()
        yield item


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator with three hooks: loops count steps, buffers and ``~`` count size."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        original = node.iter
        node.iter = nodes.Filter(original, BUDGET_FILTER, [], [], None, None, lineno=original.lineno)
        try:
            super().visit_For(node, frame)
        finally:
            node.iter = original

    def visit_Filter(self, node: nodes.Filter, frame: Frame) -> None:
        if node.name != BUDGET_FILTER:
            super().visit_Filter(node, frame)
            return
        # Added during code generation, after Jinja collected the filters a template uses: looked up directly.
        self.write(f"environment.filters[{BUDGET_FILTER!r}](context, ")
        self.visit(node.node, frame)
        self.write(")")

    def buffer(self, frame: Frame) -> None:
        # Captured blocks ({% set %}...{% endset %}, {% filter %}, macro bodies) write into a list
        # that counts what goes in, so a loop cannot build gigabytes inside a capture.
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.bounded_buffer()")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.sized(")
        super().visit_Concat(node, frame)
        self.write(")")


class _BoundedBuffer(list):
    def append(self, item: Any) -> None:
        budget = _BUDGET.get()
        if budget is not None and isinstance(item, str):
            budget.produce(len(item))
        super().append(item)

    def extend(self, items: Iterable[Any]) -> None:
        items = tuple(items)
        budget = _BUDGET.get()
        if budget is not None:
            budget.produce(sum(len(i) for i in items if isinstance(i, str)))
        super().extend(items)


class _Env(ImmutableSandboxedEnvironment):
    """Sandbox with bounded work and size (see the module docstring); ``range`` is capped too."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+", "//"})

    def __init__(self, *, html_mode: bool) -> None:
        # trim_blocks stays off: it ate the "\n" right after "{% if reason %}", and Telegram texts
        # (which keep line breaks) lost every optional line's break.
        super().__init__(autoescape=html_mode, undefined=StrictUndefined, trim_blocks=False, lstrip_blocks=True)
        self.globals = {"range": _bounded_range}
        self.filters["date"] = _date_filter
        self.filters["money"] = _money_filter
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.filters[BUDGET_FILTER] = _budget_iter

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _step()
        numbers = (int, float)
        if operator == "**" and isinstance(left, numbers) and isinstance(right, numbers):
            if abs(left) > 1 and right > 0 and right * math.log2(abs(left)) > MAX_INT_BITS:
                raise SecurityError(f"the power is over {MAX_INT_BITS} bits")
        elif operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and (
                        len(seq) * times > MAX_VALUE_CHARS):
                    raise SecurityError(f"repeating builds more than {MAX_VALUE_CHARS} items")
            if isinstance(left, int) and isinstance(right, int) and (
                    left.bit_length() + right.bit_length() > MAX_INT_BITS):
                raise SecurityError(f"the product is over {MAX_INT_BITS} bits")
        elif operator == "%" and isinstance(left, str):
            _check_percent_format(left)
        return _sized(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's
        _step()
        target = getattr(__obj, "__wrapped__", __obj)  # str.format comes wrapped by the sandbox
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):
            args = _check_str_method(owner, getattr(target, "__name__", ""), args, kwargs)
        return _sized(super().call(__context, __obj, *args, **kwargs))

    # Called by the generated code (see _BoundedCodeGenerator).

    def bounded_buffer(self) -> list[Any]:
        return _BoundedBuffer()

    def sized(self, value: Any) -> Any:
        return _sized(value)


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


@functools.lru_cache(maxsize=512)
def variables_read(source: str) -> tuple[str, ...] | None:
    """The context names a template source reads (None when it does not parse): two renders of
    one source whose values of these names are equal give the same text."""
    from jinja2 import meta

    try:
        return tuple(sorted(meta.find_undeclared_variables(_HTML_ENV.parse(source))))
    except Exception:  # noqa: BLE001 - rendering reports the error itself
        return None


def parse(source: str) -> nodes.Template:
    """The template's syntax tree (TemplateSyntaxError if it has none)."""
    return _HTML_ENV.parse(source)


@functools.lru_cache(maxsize=512)
def _compile(source: str, html_mode: bool) -> Any:
    """Compiling is most of a render's cost and templates change rarely: keep the last 512.
    A compiled template is immutable and safe to share between threads; a source that does
    not compile raises and is not cached."""
    return (_HTML_ENV if html_mode else _TEXT_ENV).from_string(source)


def render(source: str, context: Mapping[str, Any], *, html_mode: bool, locale: str = "ru") -> str:
    """Render one template string within the render budget; any failure is a TemplateError with a reason."""
    [text] = render_many([(source, context, html_mode)], locale=locale)
    if isinstance(text, TemplateError):
        raise text
    return text


def render_many(jobs: Sequence[tuple[str, Mapping[str, Any], bool]], *, locale: str = "ru"
                ) -> list[str | TemplateError]:
    """Render several (source, context, html_mode) jobs; each result is the text or its TemplateError.

    Templates that only print their data render here; the others go to a render
    process together, in one message (``render_sandbox.py``).
    """
    from vestnik.shared import render_sandbox

    results: list[str | TemplateError | None] = [None] * len(jobs)
    isolated: list[int] = []
    for i, (source, context, html_mode) in enumerate(jobs):
        if render_sandbox.needs_child(source):
            isolated.append(i)
            continue
        try:
            results[i] = render_here(source, context, html_mode=html_mode, locale=locale)
        except TemplateError as exc:
            results[i] = exc
    if isolated:
        outcomes = render_sandbox.pool().render(
            [render_sandbox.Job(jobs[i][0], _portable(jobs[i][1]), jobs[i][2], locale) for i in isolated])
        for i, outcome in zip(isolated, outcomes, strict=True):
            results[i] = outcome.text if outcome.error is None else TemplateError(outcome.error)
    return results  # type: ignore[return-value]


def _portable(context: Mapping[str, Any]) -> dict[str, Any]:
    """The context as plain values a render process can receive (unpicklable values shown as text)."""
    import pickle

    out: dict[str, Any] = {}
    for name, value in context.items():
        try:
            pickle.dumps(value)
            out[name] = value
        except Exception:  # noqa: BLE001 - e.g. a callable from a caller: the child gets its text
            out[name] = str(value)
    return out


def render_here(source: str, context: Mapping[str, Any], *, html_mode: bool, locale: str = "ru") -> str:
    """Render in this process (the step-by-step limits only); any failure becomes a TemplateError."""
    budget = _Budget()
    token = _BUDGET.set(budget)
    try:
        template = _compile(source, html_mode)
        parts: list[str] = []
        size = 0
        # Streamed, so a template that would print gigabytes stops at the limit instead.
        for chunk in template.generate({**context, "_locale": locale}):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise _TooLong()
            parts.append(chunk)
        out = "".join(parts)
    except _TooLong:
        raise TemplateError(f"rendered text is longer than {MAX_OUTPUT_CHARS} characters (the limit)") from None
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error at line {exc.lineno}: {exc.message}") from None
    except UndefinedError as exc:
        raise TemplateError(f"template uses an undefined variable: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateError(f"template blocked by the sandbox: {exc}") from None
    except MemoryError:
        raise  # the render process's budget: reported by render_sandbox, never as a template error
    except Exception as exc:  # noqa: BLE001 - any other error is the template's, named for the admin
        raise TemplateError(f"template failed: {type(exc).__name__}: {exc}") from None
    finally:
        _BUDGET.reset(token)
    return out


class _TooLong(Exception):
    pass


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


#: A tag :func:`_replay` reads itself: a name, then attributes whose values are quoted (or absent).
_PLAIN_TAG = re.compile(r"""<([a-zA-Z][a-zA-Z0-9]*)((?:\s+[a-zA-Z_:][-a-zA-Z0-9_:.]*"""
                        r"""(?:\s*=\s*(?:"[^"<>]*"|'[^'<>]*'))?)*)\s*(/?)>|</([a-zA-Z][a-zA-Z0-9]*)\s*>""")
_PLAIN_ATTR = re.compile(r"""([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"<>]*)"|'([^'<>]*)'))?""")
#: elements whose content HTMLParser reads as raw text: a source with one goes to HTMLParser
_RAW_TEXT = frozenset({"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes",
                       "noscript", "plaintext"})


def _replay(parser: HTMLParser, source: str) -> None:
    """Feed ``source`` to ``parser``'s handlers.  A rendered message is plain markup (tags with quoted
    attributes, text, entities), which one regular expression reads in a fraction of HTMLParser's
    time (about 15 us against 45 us for an email body); anything else (comments, declarations, a bare
    ``<``, unquoted attributes, raw-text elements) goes through HTMLParser itself, and
    ``tests/unit/test_html_replay.py`` holds both to the same events."""
    events: list[tuple[int, str, Any]] = []
    at = 0
    find, match = source.find, _PLAIN_TAG.match
    while True:
        lt = find("<", at)
        if lt < 0:
            if at < len(source):
                events.append((0, source[at:], None))
            break
        tag = match(source, lt)
        if tag is None:
            parser.feed(source)
            parser.close()
            return
        if lt > at:
            events.append((0, source[at:lt], None))
        name = tag.group(1)
        if name is not None:
            name = name.lower()
            if name in _RAW_TEXT:
                parser.feed(source)
                parser.close()
                return
            attrs = [(a.group(1).lower(), None if a.group(2) is None and a.group(3) is None
                      else html.unescape(a.group(2) if a.group(2) is not None else a.group(3)))
                     for a in _PLAIN_ATTR.finditer(tag.group(2))] if tag.group(2) else []
            events.append((1, name, attrs))
            if tag.group(3):
                events.append((2, name, None))  # <br/>: a start and an end, as HTMLParser reports it
        else:
            events.append((2, tag.group(4).lower(), None))
        at = tag.end()
    for kind, value, attrs in events:
        if kind == 0:
            parser.handle_data(html.unescape(value) if "&" in value else value)
        elif kind == 1:
            parser.handle_starttag(value, attrs)
        else:
            parser.handle_endtag(value)


_TRAILING_BLANKS = re.compile(r"[ \t]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")


def html_to_text(source: str) -> str:
    parser = _TextExtractor()
    _replay(parser, source)
    text = _TRAILING_BLANKS.sub("\n", "".join(parser.parts))
    return _BLANK_LINES.sub("\n\n", text).strip()


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


class _LinkFinder(HTMLParser):
    _URL_ATTRS = frozenset({"href", "src", "action", "formaction", "xlink:href", "background", "poster", "srcset",
                            "data"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.bad: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in self._URL_ATTRS and value and not url_is_safe(value):
                self.bad.append(value)


def url_is_safe(url: str) -> bool:
    """True for relative URLs and the schemes in SAFE_URL_SCHEMES.

    Browsers ignore whitespace and control characters inside a scheme
    (``java&#9;script:``), so they are removed before looking.
    """
    compact = re.sub(r"[\x00-\x20\x7f]+", "", html.unescape(url)).lower()
    scheme = re.match(r"([a-z][a-z0-9+.\-]*):", compact)
    return scheme is None or scheme.group(1) in SAFE_URL_SCHEMES


#: Every name in _LinkFinder._URL_ATTRS contains one of these: a text without any has no link to check.
#: (IGNORECASE also matches the few non-ASCII letters that fold to these, which only makes it look more.)
_URL_ATTR_HINT = re.compile("href|src|action|background|poster|data", re.IGNORECASE)


def unsafe_links(source: str) -> list[str]:
    """The URLs in rendered HTML (href, src, ...) whose scheme is not allowed (javascript:, data:, vbscript:...)."""
    if not _URL_ATTR_HINT.search(source):
        return []  # parsing the HTML costs about 0.1 ms, and most notifications carry no link
    finder = _LinkFinder()
    _replay(finder, source)
    return finder.bad


def refuse_unsafe_links(source: str) -> str:
    """``source`` unchanged, or TemplateError naming the first link with a refused scheme."""
    bad = unsafe_links(source)
    if bad:
        shown = bad[0][:60]
        raise TemplateError(f"link {shown!r} refused: only {', '.join(sorted(SAFE_URL_SCHEMES))} links are allowed")
    return source


def telegram_html(source: str) -> str:
    """Rendered template -> HTML that Telegram's parser accepts (unknown tags dropped)."""
    parser = _TelegramSanitizer()
    parser.feed(source)
    parser.close()
    return parser.result().strip()


def unknown_telegram_tags(source: str) -> set[str]:
    """Tags in a template body that Telegram would reject (for validation at save)."""
    return {t.lower() for t in re.findall(r"</?\s*([a-zA-Z][\w-]*)", source)} - TELEGRAM_TAGS - {"br"}
