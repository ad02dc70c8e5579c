"""Nothing outside ``workers/channels/`` tests a channel's name.

Code that needs to know what a channel can do asks the registry
(``workers/channels``): its address, switch, limits, what it supports, its
template checks and its unsubscribe mechanism.  A comparison with a channel's
name (``channel == "email"``, ``name in ("telegram", ...)``, ``match``) or a
lookup in a dict keyed by channel names elsewhere is how per-channel knowledge leaks out;
this walk finds them.  The few places that are justified are listed with why.
"""

from __future__ import annotations

import ast
from pathlib import Path

from vestnik.workers.channels import CHANNELS

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("shared", "workers", "webapp", "outbox", "vestnik")
SKIPPED = ("workers/channels/",)

#: file -> why naming channels there is right
ALLOWED = {
    "shared/addresses.py": "the wire format's field names (email, telegram_chat_id, ...) per channel: "
                           "ground floor, cannot import the registry; a test holds it equal to the registry",
    "shared/seeds.py": "the shipped templates are per channel by nature; the webhook's are derived from the "
                       "email ones",
    "shared/targeting.py": "a broadcast's stored targeting flags has_telegram/has_email are part of its JSON format",
    "shared/fakes/ledger.py": "the test fakes of the providers (Bot API, SMTP) label what they received",
    "webapp/demo_sent.py": "the demo page shows what the fake Bot API and the fake SMTP server received",
    "webapp/profile/i18n.py": "translation keys of the profile's labels",
    "workers/rules.py": "the shipped rules name the channels a step goes by (configuration, like the templates)",
    "shared/events.py": "the API's example of a channels list in the OpenAPI document",
}


def _names() -> set[str]:
    return set(CHANNELS)


def _channel_constants(node: ast.AST, names: set[str]) -> list[str]:
    """Channel names among a node's string constants, directly or in a tuple/list/set."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [n for elt in node.elts for n in _channel_constants(elt, names)]
    return []


def offences(source: str, names: set[str]) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            hits = [n for part in (node.left, *node.comparators) for n in _channel_constants(part, names)]
            if hits:
                found.append((node.lineno, f"compares with {hits[0]!r}"))
        elif isinstance(node, ast.match_case):
            pattern = node.pattern
            if isinstance(pattern, ast.MatchValue) and _channel_constants(pattern.value, names):
                found.append((pattern.lineno, "matches a channel name"))
        elif isinstance(node, ast.Dict):
            # {"telegram": a, "email": b}[channel], or such a table kept in a name and looked up later:
            # a branch on the name, spelled as a dict (per-channel knowledge kept outside the channel)
            # (a record with other keys, {"email": user.email, "role": ...}, is a field named email, not a table)
            keys = [n for key in node.keys if key is not None for n in _channel_constants(key, names)]
            if keys and len(keys) == len(node.keys):
                found.append((node.lineno, f"keeps a dict keyed by channel name {keys[0]!r}"))
        elif isinstance(node, ast.arguments):
            # def f(channel="telegram"): a default that picks a channel for the caller
            for default in (*node.defaults, *(d for d in node.kw_defaults if d is not None)):
                hits = _channel_constants(default, names)
                if hits:
                    found.append((default.lineno, f"defaults to channel {hits[0]!r}"))
        elif isinstance(node, ast.Call):
            # metric.add_metric(["email"], ...): a value said of one named channel rather than of each
            for arg in (*node.args, *(k.value for k in node.keywords)):
                if isinstance(arg, (ast.List, ast.Tuple)) and _channel_constants(arg, names):
                    found.append((arg.lineno, f"passes the channel {_channel_constants(arg, names)[0]!r} by name"))
    return sorted(found)


def test_no_code_outside_the_channels_package_tests_a_channel_name():
    names = _names()
    problems = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(SKIPPED) or rel in ALLOWED:
                continue
            for line, what in offences(path.read_text(encoding="utf-8"), names):
                problems.append(f"{rel}:{line}: {what}; ask the channel registry instead")
    assert not problems, "\n".join(problems)


def test_the_allow_list_names_files_that_exist_and_gives_reasons():
    for rel, why in ALLOWED.items():
        assert (ROOT / rel).is_file(), rel
        assert len(why) > 20, rel


def test_the_walk_finds_each_kind_of_test():
    names = {"telegram", "email"}
    source = '''
if channel == "email": pass
if name in ("telegram", "sms"): pass
x = {"telegram": 1}.get(channel)
match channel:
    case "email": pass
ok = send(channel="telegram")
LIMITS = {"email": 18}
audit = {"email": user.email, "role": "admin"}
def fetch(url, channel="telegram"): pass
quota.add_metric(["email"], 100)
'''
    assert [line for line, _ in offences(source, names)] == [2, 3, 4, 6, 8, 10, 11]
