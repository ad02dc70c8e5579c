"""The languages Vestnik speaks to people, and the order it falls back in.

One place holds the list: shipped templates, the bot, the profile, the
unsubscribe button and page, sign-in messages, the CSV import and the admin's
template form all read :data:`SUPPORTED`.  A locale is written the way
Vestnik stores it: lower case, ``-`` between parts (``uz-latn``, Uzbek in the
Latin script, the one the flower shop's clients read).

Spellings a CRM or a spreadsheet may use (``uz_Latn``, ``UZ-LATN``, ``ru-RU``,
``en_GB``) are read as the supported locale they mean (:func:`normalize`);
anything else is refused with an error that lists what is supported.

When a template (or a word of the interface) is missing in a client's locale,
:func:`chain` says what to try next: the configured fallback
(``VESTNIK_LOCALE_FALLBACK``, e.g. ``uz-latn:ru,ru:en``: a client reading
Uzbek gets Russian, then English), then the default locale, then the others
in :data:`SUPPORTED` order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: Every locale a person may get text in, in the order the admin shows them.
SUPPORTED: tuple[str, ...] = ("ru", "uz-latn", "en")
#: The admin's languages (Flask-Babel catalogues in webapp/translations; Flask-Admin ships both).
ADMIN_LOCALES: tuple[str, ...] = ("ru", "en")
#: Each locale's name in itself (language pickers).
NAMES: dict[str, str] = {"ru": "Русский", "uz-latn": "Oʻzbekcha", "en": "English"}
#: Each locale's short label (a switch of buttons); the full name goes in its title.
SHORT: dict[str, str] = {"ru": "RU", "uz-latn": "UZ", "en": "EN"}
#: A Uzbek reader gets Russian, then English, unless VESTNIK_LOCALE_FALLBACK says otherwise.
DEFAULT_FALLBACK = "uz-latn:ru,ru:en"
#: Babel's names (dates and amounts are formatted by Babel).
_BABEL = {"ru": "ru", "uz-latn": "uz_Latn", "en": "en"}
#: Scripts and regions that change nothing for a supported locale: ru-RU is ru, uz-Latn-UZ is uz-latn.
_SHAPE = re.compile(r"^([a-z]{2})(?:-([a-z]{4}))?(?:-([a-z]{2}|[0-9]{3}))?$")
_SCRIPTS = {"uz": "latn"}  # the script a bare language code means (Uzbekistan writes Latin since 1993)


class LocaleError(ValueError):
    """A locale that is not one of :data:`SUPPORTED` (the message lists them)."""


def supported_list() -> str:
    return ", ".join(SUPPORTED)


def match(value: object) -> str | None:
    """The supported locale ``value`` means (``uz_Latn`` -> ``uz-latn``, ``ru-RU`` -> ``ru``), or None."""
    if not isinstance(value, str):
        return None
    found = _SHAPE.match(value.strip().lower().replace("_", "-"))
    if found is None:
        return None
    language, script, _region = found.groups()
    script = script or _SCRIPTS.get(language)
    locale = f"{language}-{script}" if script else language
    if locale in SUPPORTED:
        return locale
    return language if language in SUPPORTED and script is None else None


def normalize(value: object, field: str = "locale") -> str:
    """:func:`match`, or :class:`LocaleError` naming the field, the value and the supported locales."""
    locale = match(value)
    if locale is None:
        shown = repr(value[:20]) if isinstance(value, str) else type(value).__name__
        raise LocaleError(f"{field}: {shown} is not a supported locale (supported: {supported_list()})")
    return locale


def babel(locale: str) -> str:
    """Babel's name for a locale (``uz-latn`` -> ``uz_Latn``); an unknown one is passed through."""
    return _BABEL.get(locale, locale.replace("-", "_"))


def parse_fallback(text: str) -> dict[str, tuple[str, ...]]:
    """``uz-latn:ru,ru:en`` -> ``{"uz-latn": ("ru",), "ru": ("en",)}``; ``uz-latn:ru:en`` is a chain too.

    Raises :class:`LocaleError` naming the entry that is wrong.
    """
    out: dict[str, tuple[str, ...]] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        parts = [p.strip() for p in entry.split(":")]
        if len(parts) < 2 or not all(parts):
            raise LocaleError(f"{entry!r}: expected locale:fallback[:fallback...], e.g. uz-latn:ru")
        locales = [normalize(p, f"{entry!r}") for p in parts]
        if len(set(locales)) != len(locales):
            raise LocaleError(f"{entry!r}: a locale cannot fall back to itself")
        if locales[0] in out:
            raise LocaleError(f"{entry!r}: {locales[0]} is given twice")
        out[locales[0]] = tuple(locales[1:])
    return out


def chain(locale: str | None, fallback: Mapping[str, tuple[str, ...]] | None = None,
          default: str = "ru") -> tuple[str, ...]:
    """Locales to try, best first: the locale, its fallbacks (and theirs), the default, then the rest."""
    fallback = parse_fallback(DEFAULT_FALLBACK) if fallback is None else fallback
    out: list[str] = []
    for start in (match(locale) or (locale or ""), default, *SUPPORTED):  # each followed by its fallbacks
        todo = [start]
        while todo:
            current = todo.pop(0)
            if current and current not in out:
                out.append(current)
                todo = list(fallback.get(current, ())) + todo
    return tuple(out)


def pick(words: Mapping[str, str], locale: str | None,
         fallback: Mapping[str, tuple[str, ...]] | None = None) -> str:
    """The entry of ``words`` (locale -> text) for ``locale``, following :func:`chain` when it is missing."""
    for candidate in chain(locale, fallback):
        if candidate in words:
            return words[candidate]
    raise KeyError(f"no text in any of {supported_list()}")
