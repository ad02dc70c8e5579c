"""shared/locales.py: one list of locales, how spellings are read, the fallback order; and every text a
person reads exists in every supported locale."""

from __future__ import annotations

from collections import defaultdict

import pytest

from vestnik.shared import locales
from vestnik.shared.config import load_settings
from vestnik.shared.errors import ConfigError
from vestnik.shared.locales import SUPPORTED, LocaleError, chain, match, normalize, parse_fallback


def test_the_supported_locales():
    assert SUPPORTED == ("ru", "uz-latn", "en")
    assert set(locales.NAMES) == set(locales.SHORT) == set(SUPPORTED)


@pytest.mark.parametrize(("written", "stored"), [
    ("ru", "ru"), ("RU", "ru"), ("ru-RU", "ru"), ("ru_ru", "ru"), ("en_GB", "en"), ("en-us", "en"),
    ("uz-latn", "uz-latn"), ("uz_Latn", "uz-latn"), ("UZ-LATN", "uz-latn"), ("uz-Latn-UZ", "uz-latn"),
    (" uz ", "uz-latn"),
])
def test_spellings_of_a_supported_locale_are_read_as_it(written, stored):
    assert normalize(written) == stored


@pytest.mark.parametrize("written", ["uz-cyrl", "de", "", "russian", "ru-", "uz_Cyrl_UZ", "e n"])
def test_anything_else_is_refused_naming_the_value_and_the_supported_ones(written):
    assert match(written) is None
    with pytest.raises(LocaleError) as error:
        normalize(written, "locale")
    assert str(error.value).startswith("locale: ") and "supported: ru, uz-latn, en" in str(error.value)


def test_the_fallback_order():
    fallback = parse_fallback("uz-latn:ru,ru:en")
    assert fallback == {"uz-latn": ("ru",), "ru": ("en",)}
    assert chain("uz-latn", fallback, "ru") == ("uz-latn", "ru", "en")
    assert chain("uz_Latn", parse_fallback("uz-latn:en"), "ru") == ("uz-latn", "en", "ru")
    assert chain("en", {}, "uz-latn") == ("en", "uz-latn", "ru")
    assert chain("de", fallback, "ru")[:3] == ("de", "ru", "en")  # an unsupported locale still ends in text
    assert parse_fallback("uz-latn:en:ru") == {"uz-latn": ("en", "ru")}


@pytest.mark.parametrize(("text", "says"), [
    ("uz-latn", "expected locale:fallback"), ("uz-latn:de", "not a supported locale"),
    ("ru:ru", "cannot fall back to itself"), ("ru:en,ru:uz", "given twice"),
])
def test_a_bad_fallback_setting_stops_the_start_naming_the_variable(text, says):
    with pytest.raises(ConfigError) as error:
        load_settings({"VESTNIK_LOCALE_FALLBACK": text})
    assert "VESTNIK_LOCALE_FALLBACK" in str(error.value) and says in str(error.value)


def test_the_default_locale_must_be_supported():
    assert load_settings({"VESTNIK_DEFAULT_LOCALE": "uz-latn"}).default_locale == "uz-latn"
    with pytest.raises(ConfigError, match="VESTNIK_DEFAULT_LOCALE"):
        load_settings({"VESTNIK_DEFAULT_LOCALE": "de"})


def test_every_shipped_template_exists_in_every_locale():
    from vestnik.shared.seeds import DEFAULTS

    have = defaultdict(set)
    for d in DEFAULTS:
        have[(d.code, d.channel)].add(d.locale)
    assert {pair: found for pair, found in have.items() if found != set(SUPPORTED)} == {}


def test_every_word_of_the_profile_bot_unsubscribe_and_sign_in_exists_in_every_locale():
    import importlib

    from vestnik.shared import unsubscribe
    from vestnik.webapp import unsubscribe as unsubscribe_page
    from vestnik.webapp.profile.i18n import STRINGS
    from vestnik.workers import bot

    messenger = importlib.import_module("vestnik.webapp.profile.messenger")
    catalogues = {**{f"profile.{k}": v for k, v in STRINGS.items()},
                  **{f"bot.{k}": v for k, v in bot._WORDS.items()},
                  **{f"unsubscribe.{k}": v for k, v in unsubscribe_page.WORDS.items()},
                  "unsubscribe button": unsubscribe._LABEL, "sign-in email": messenger._LINK_EMAIL,
                  "sign-in code": messenger._CODE_TELEGRAM}
    assert {name: sorted(words) for name, words in catalogues.items() if set(words) != set(SUPPORTED)} == {}


def test_uzbek_is_written_with_the_modifier_letters_not_quotes():
    """oʻ, gʻ take U+02BB and the tutuq belgisi U+02BC; an ASCII quote or a typographic one is a typo."""
    from vestnik.shared.seeds import DEFAULTS
    from vestnik.webapp.profile.i18n import STRINGS
    from vestnik.workers import bot

    texts = [d.body + (d.subject or "") + d.name for d in DEFAULTS if d.locale == "uz-latn"]
    texts += [w["uz-latn"] for w in (*STRINGS.values(), *bot._WORDS.values())]
    wrong = [t for t in texts if any(f"{c}{q}" in t.lower() for c in "og" for q in ("'", "‘", "’", "`"))]
    assert wrong == []
