"""``ast.parse`` runs one thread at a time (shared/threadsafe_ast.py: CPython 3.11's AST conversion
shares its depth counter between threads), and a parse nested in the same thread still runs."""

from __future__ import annotations

import ast
import threading

import pytest

from vestnik.shared import threadsafe_ast


def test_a_second_thread_waits_until_the_first_parse_returns():
    inside, release = threading.Event(), threading.Event()
    order: list[str] = []

    def slow_parse(source: str) -> str:
        order.append(f"start {source}")
        if source == "first":
            inside.set()
            assert release.wait(30)
        order.append(f"end {source}")
        return source

    parse = threadsafe_ast.serialised(slow_parse)
    first = threading.Thread(target=parse, args=("first",))
    first.start()
    assert inside.wait(30)
    second = threading.Thread(target=parse, args=("second",))
    second.start()
    second.join(0.2)  # it must still be waiting: a timeout here is the expected outcome, not a sleep
    assert second.is_alive() and order == ["start first"]
    release.set()
    first.join(30)
    second.join(30)
    assert order == ["start first", "end first", "start second", "end second"]


def test_a_parse_nested_in_the_same_thread_does_not_deadlock():
    def outer(source: str) -> str:  # a finalizer formatting a traceback while this thread parses
        return parse("inner") if source == "outer" else source

    parse = threadsafe_ast.serialised(outer)
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(parse("outer")))
    worker.start()
    worker.join(30)
    assert result == ["inner"]


@pytest.mark.skipif(not threadsafe_ast.AFFECTED, reason="this Python's AST conversion is thread-safe")
def test_the_test_process_and_vestniks_processes_have_it_installed():
    # tests/conftest.py installs it; configure_logging does the same in every Vestnik process
    assert getattr(ast.parse, "__vestnik_serialised__", False)
    assert threadsafe_ast.install() is False  # once only: no wrapper around the wrapper
    assert isinstance(ast.parse("x = 1"), ast.Module)
