"""The house's floors: each package imports only from the floors below it.

    shared      the ground floor: config, db, models, events, rendering, messages
    outbox      emit, relay, the event message contract
    migrations  the schema's history
    workers     handling, delivery, channels, limits, scheduling, broadcasts
    webapp      the admin, the profile, the webhooks, the API
    vestnik     the composition root: the console script

The walk reads every module's source (``ast``), so an import hidden inside a
function counts as much as one at the top: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: folder -> floor; a module may import from its own floor and the ones below
FLOORS = {"shared": 0, "outbox": 1, "migrations": 1, "workers": 2, "webapp": 3, "vestnik": 4}

#: narrower rules inside a floor: (module path prefix, forbidden import prefix, why)
EXTRA_RULES = (
    ("outbox/relay.py", "vestnik.workers", "the relay publishes the outbox's own contract (outbox/contract.py)"),
)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every vestnik import in a file, wherever it sits."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("vestnik")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("vestnik"):
                found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _floor_of(module: str) -> tuple[str, int] | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "vestnik":
        return ("vestnik", FLOORS["vestnik"]) if module == "vestnik" else None
    folder = parts[1] if parts[1] in FLOORS else "vestnik"
    return folder, FLOORS[folder]


def _modules() -> list[Path]:
    return sorted(p for folder in FLOORS for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def test_the_walk_sees_every_package_folder():
    seen = {p.relative_to(ROOT).parts[0] for p in _modules()}
    assert seen == set(FLOORS)


@pytest.mark.parametrize("folder", sorted(FLOORS))
def test_no_module_imports_from_a_floor_above_its_own(folder):
    floor = FLOORS[folder]
    upward = []
    for path in (ROOT / folder).rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        for line, module in _imports(path):
            target = _floor_of(module)
            if target is not None and target[1] > floor:
                upward.append(f"{rel}:{line} imports {module} ({target[0]} is above {folder})")
            for prefix, forbidden, why in EXTRA_RULES:
                if rel.startswith(prefix) and module.startswith(forbidden):
                    upward.append(f"{rel}:{line} imports {module}: {why}")
    assert not upward, "imports against the floors:\n" + "\n".join(sorted(upward))


def test_the_walk_catches_a_lazy_upward_import(tmp_path):
    """The walk itself: an import inside a function is found, with its line."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from vestnik.workers.channels import CHANNELS\n    return CHANNELS\n")
    assert _imports(module) == [(2, "vestnik.workers.channels.CHANNELS")]
    assert _floor_of("vestnik.workers.channels.CHANNELS") == ("workers", 2)
