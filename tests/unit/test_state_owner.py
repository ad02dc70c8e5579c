"""One owner of notification state: only ``workers/notifications.py`` writes ``notifications.status``.

The walk reads every module of the package (``ast``) and finds each statement
that writes a ``status``: an attribute assignment (``n.status = ...``), a
keyword (``.values(status=...)``, ``Notification(status=...)``), a dict key
(``{"status": ...}``) or raw SQL (``UPDATE notifications SET status``).  A
statement that also names ``Notification`` or ``NotificationStatus`` writes a
notification's status; anywhere but the owner, that is a second owner.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("shared", "outbox", "workers", "webapp", "vestnik", "bench")
OWNER = "workers/notifications.py"
_RAW_SQL = re.compile(r"\bnotifications\b[^;]*\bset\b[^;]*\bstatus\b", re.IGNORECASE | re.DOTALL)


def _aliases(tree: ast.AST) -> set[str]:
    """Names that stand for the notifications table in a module: the model, and ``x = Notification.__table__``."""
    names = {"Notification"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and ast.unparse(node.value) == "Notification.__table__":
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _is_write(node: ast.AST, aliases: set[str]) -> bool:
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return (any(isinstance(t, ast.Attribute) and t.attr == "status" for t in targets)
                and "NotificationStatus" in _names_in(node.value) | {ast.unparse(node.value).split(".")[0]})
    if isinstance(node, ast.Call):
        status_kw = any(k.arg == "status" for k in node.keywords)
        func = node.func
        if status_kw and isinstance(func, ast.Name) and func.id in aliases:
            return True  # Notification(status=...)
        if status_kw and isinstance(func, ast.Attribute) and func.attr == "values":
            return bool(_names_in(func.value) & aliases)  # update(Notification)...values(status=...)
        return False
    if isinstance(node, ast.Dict):
        return any(isinstance(k, ast.Constant) and k.value == "status" for k in node.keys)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return bool(_RAW_SQL.search(node.value))
    return False


def _status_writes(path: Path) -> list[int]:
    """Lines of statements that write a notification's status."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases = _aliases(tree)
    lines = set()
    for node in ast.walk(tree):
        if not _is_write(node, aliases):
            continue
        if isinstance(node, ast.Dict):
            # a row as a dict counts when it sits in a statement on the notifications table
            owner = next((s for s in ast.walk(tree) if isinstance(s, ast.stmt)
                          and not isinstance(s, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)
                          and node in list(ast.walk(s)) and _names_in(s) & aliases), None)
            if owner is None:
                continue
        lines.add(node.lineno)
    return sorted(lines)


def _modules() -> list[Path]:
    return sorted(p for f in FOLDERS for p in (ROOT / f).rglob("*.py") if "__pycache__" not in p.parts)


def test_only_the_owner_writes_a_notifications_status():
    elsewhere = []
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        if rel == OWNER:
            continue
        elsewhere += [f"{rel}:{line}" for line in _status_writes(path)]
    assert not elsewhere, ("notification status written outside workers/notifications.py "
                           "(add a named transition there instead):\n" + "\n".join(elsewhere))


def test_the_walk_finds_the_owners_writes_and_each_kind_of_write(tmp_path):
    assert len(_status_writes(ROOT / OWNER)) >= 8  # claim, release, record, finish, cancel, retry, reap, ...
    module = tmp_path / "m.py"
    module.write_text(
        "def a(n):\n    n.status = NotificationStatus.sent.value\n"
        "def b(s):\n    s.execute(update(Notification).values(status='canceled'))\n"
        "def c(s):\n    s.add(Notification(id=1, status='pending'))\n"
        "def d(s):\n    s.execute(text('UPDATE notifications SET status = 1'))\n"
        "def e(b):\n    b.status = BroadcastStatus.running.value\n"
        "def f(e):\n    e.status = OutboxStatus.processed.value\n")
    assert _status_writes(module) == [2, 4, 6, 8]
