"""One ``ast.parse`` at a time per process, on the Pythons whose AST conversion is not thread-safe.

CPython 3.11 keeps the depth counter of its AST-to-object conversion in the interpreter, not in the
call (python/cpython#106905).  When a garbage collection during one thread's ``ast.parse`` runs a
finalizer that lets another thread in (a socket or a database connection closing releases the GIL),
and that thread parses too, the first one ends with ``SystemError: AST constructor recursion depth
mismatch``.  Vestnik's processes parse from several threads without asking: every traceback that
3.11 formats parses the failing line to place its ``^^^^`` marks (``traceback``), so two threads
logging an exception at once can lose a log record, or fail whatever was formatting it.  The tests
saw it in an app's setup (pytest's assertion rewriting parses too).

:func:`install` wraps ``ast.parse`` in a re-entrant lock: threads take turns, and a finalizer that
parses inside the same thread's parse (it nests, so the counter still balances) does not deadlock.
Installed by every Vestnik process as it sets up logging (``shared/logs.py``) and by the test suite, never on
import: a CRM importing ``vestnik.outbox`` keeps its own ``ast`` untouched.
"""

from __future__ import annotations

import ast
import functools
import sys
import threading
from typing import Any

#: the Pythons where the counter is shared between threads
AFFECTED = sys.version_info < (3, 13)

_lock = threading.RLock()


def install() -> bool:
    """Serialise ``ast.parse`` in this process (once; a no-op where the bug is fixed).  True if installed."""
    if not AFFECTED or getattr(ast.parse, "__vestnik_serialised__", False):
        return False
    ast.parse = serialised(ast.parse)
    return True


def serialised(parse: Any) -> Any:
    @functools.wraps(parse)
    def parse_in_turn(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return parse(*args, **kwargs)

    parse_in_turn.__vestnik_serialised__ = True  # type: ignore[attr-defined]
    return parse_in_turn
