"""docs/security.md states the limits the code enforces: each figure is read from the constant it names."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
from datetime import timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
#: a limits row: | what | figure ... | `vestnik.module.NAME` or `...NAME["key"]` or `...Settings.field` |
ROW = re.compile(r"^\|\s*(?P<what>[^|]+?)\s*\|\s*(?P<limit>[^|]+?)\s*\|\s*`(?P<ref>vestnik\.[^`]+)`\s*\|\s*$")

#: every limit the doc must state (a row dropped from the doc fails here, not silently)
EXPECTED = {
    "vestnik.webapp.MAX_CONTENT_LENGTH",
    "vestnik.webapp.webhooks.MAX_BODY_BYTES",
    "vestnik.webapp.api.events.MAX_BODY_BYTES",
    "vestnik.webapp.api.clients.MAX_BODY_BYTES",
    "vestnik.webapp.api.events.MAX_IDEMPOTENCY_KEY_CHARS",
    "vestnik.webapp.boundaries.MAX_FIELD_CHARS",
    "vestnik.webapp.boundaries.MAX_FIELD_NAME_CHARS",
    "vestnik.webapp.signatures.WINDOW_S",
    "vestnik.workers.bot.MAX_TELEGRAM_ID",
    "vestnik.shared.bounds.MAX_BIGINT",
    "vestnik.shared.bounds.MAX_AMOUNT_DIGITS",
    "vestnik.shared.bounds.MAX_AMOUNT_SCALE",
    "vestnik.shared.bounds.MIN_YEAR",
    "vestnik.shared.bounds.MAX_YEAR",
    "vestnik.shared.wire.MAX_TEXT_CHARS",
    "vestnik.shared.wire.INT_MAX",
    'vestnik.shared.events.LIMITS["recipients_max"]',
    'vestnik.shared.events.LIMITS["data_max_bytes"]',
    'vestnik.shared.events.LIMITS["send_at_max_ahead_days"]',
    'vestnik.shared.events.LIMITS["send_at_max_past_days"]',
    "vestnik.webapp.admin.auth.MAX_FAILED_LOGINS",
    "vestnik.webapp.admin.auth.LOCKOUT",
    "vestnik.shared.config.Settings.client_sign_in_per_address",
    "vestnik.shared.config.Settings.client_sign_in_per_ip",
    "vestnik.shared.client_auth.MAX_CODE_ATTEMPTS",
    "vestnik.shared.config.Settings.client_token_ttl_s",
    "vestnik.shared.config.Settings.api_rate_per_min",
    "vestnik.shared.render_sandbox.MAX_MEMORY_MB",
    "vestnik.shared.render_sandbox.MAX_CPU_S",
    "vestnik.shared.rendering.MAX_OUTPUT_CHARS",
}


def rows() -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            assert match["ref"] not in found, f"{match['ref']} is stated twice"
            found[match["ref"]] = (match["what"], match["limit"])
    return found


def resolve(ref: str) -> object:
    """The value a reference names: a module constant, an item of a module's dict, or a settings default."""
    ref, _, key = ref.partition("[")
    parts = ref.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            value: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            if dataclasses.is_dataclass(value) and isinstance(value, type):
                value = {f.name: f.default for f in dataclasses.fields(value)}[name]
            else:
                value = getattr(value, name)
        if key:
            value = value[ast.literal_eval(key.rstrip("]"))]  # type: ignore[index]
        return value
    raise AssertionError(f"{ref}: no such module")


def stated(limit: str) -> int | float:
    """The figure a row states: its first number (``2097152 bytes (2 MiB)`` is 2097152), exact for integers."""
    match = re.search(r"[0-9]+(\.[0-9]+)?", limit)
    assert match, f"no number in {limit!r}"
    return float(match.group()) if match.group(1) else int(match.group())


def test_every_limit_the_code_enforces_is_stated():
    assert EXPECTED <= set(rows()), f"not in docs/security.md: {sorted(EXPECTED - set(rows()))}"


@pytest.mark.parametrize("ref", sorted(EXPECTED))
def test_each_stated_figure_is_the_codes(ref):
    what, limit = rows()[ref]
    value = resolve(ref)
    if isinstance(value, timedelta):
        value = value.total_seconds()
    assert isinstance(value, int | float), f"{ref} is {value!r}, not a number"
    assert stated(limit) == value, f"docs/security.md says {what}: {limit}; the code ({ref}) says {value}"


def test_every_row_names_a_real_constant():
    for ref, (what, limit) in rows().items():
        value = resolve(ref)
        if isinstance(value, timedelta):
            value = value.total_seconds()
        assert stated(limit) == value, f"{what}: the doc says {limit}, {ref} is {value}"


def test_the_readme_links_the_security_page():
    assert "](docs/security.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
