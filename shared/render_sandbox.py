"""The render budget that cannot be bypassed: templates that could do real work render in a child process.

The checks inside the Jinja sandbox (``rendering.py``) look at values after
they are built and at the clock between steps; a template that repeats a
string in a list and then turns the list into text built 1.9 GB in one C
call before any check ran.  So a template is either

- *linear* (:func:`is_linear`): text, variables, ``{% if %}``, comparisons,
  a few filters whose output is at most a small multiple of their input, at
  most one small loop over the event's data (``{% for k, v in stats.items() %}``)
  and no nested loops, calls, assignments, macros or repetition operators.  Its render
  does work proportional to the template and the event data, and it renders
  in the caller's process as before (the shipped templates are all linear, so
  delivery pays nothing);
- or anything else, which renders in a child process of a small pool, under
  ``RLIMIT_AS`` (``MAX_MEMORY_MB`` more than the child had before the render)
  and a CPU-time budget (``MAX_CPU_S``: a profiling timer stops the render,
  ``RLIMIT_CPU`` kills the child if C code ignores the timer).  A render that
  runs out fails with a :class:`TemplateError` naming the budget; the child
  survives or is replaced, and the calling worker or web process never holds
  more than the rendered text (at most ``rendering.MAX_OUTPUT_CHARS``).

Children are started lazily (``python -m vestnik.shared.render_sandbox``, a
fresh interpreter: never a fork of a threaded worker), reused for every
render, and several jobs go to a child in one message (:func:`render_many`,
which ``compose`` uses for a subject and body).  A child exits when its
parent's pipe closes.  The limits are Linux's (``/proc`` and ``RLIMIT_AS``);
elsewhere a child still keeps a render's memory out of the caller.
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import pickle
import queue
import resource
import selectors
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateSyntaxError, nodes

#: memory a render may add to its child process
MAX_MEMORY_MB = 64
#: CPU time one render may use in its child
MAX_CPU_S = 1.0
#: wall time the caller waits for one job before it gives up on the child (a starved or stopped
#: child: the CPU budget is what stops a template; this only keeps a caller from waiting forever)
MAX_WAIT_S = 60.0
#: children per process (each serves one render at a time; callers queue for a free one)
POOL_SIZE = 2
#: AST nodes a template may have and still render in the caller's process
MAX_LINEAR_NODES = 2000

#: Filters whose output is at most their input's size (or a small constant), and which take
#: no argument that scales anything (date's pattern and money's currency are short text).
_SAME_SIZE_FILTERS = frozenset({
    "upper", "lower", "title", "capitalize", "trim", "length", "count", "first", "last", "int", "float", "round",
    "abs", "default", "d", "truncate", "wordcount", "safe", "string", "date", "money",
})
#: Filters that grow their input by a bounded factor (escaping, quoting): one per expression.
_GROWING_FILTERS = frozenset({"e", "escape", "urlencode", "tojson", "join"})
#: The most operands one expression may concatenate (``a ~ b ~ c``, ``a + b``).
_MAX_OPERANDS = 8


# ------------------------------------------------------------------ which templates need a child


class _NotLinear(Exception):
    pass


#: AST nodes the body of the one loop a linear template may have (each runs once per data item)
MAX_LOOP_BODY_NODES = 60


def is_linear(ast: nodes.Template) -> bool:
    """True when the template's work is bounded by its size and its data (see the module docstring)."""
    try:
        count = [0]
        loops = [0]
        for node in ast.body:
            _statement(node, count, loops)
    except _NotLinear:
        return False
    return True


def _count(counter: list[int]) -> None:
    counter[0] += 1
    if counter[0] > MAX_LINEAR_NODES:
        raise _NotLinear


def _statement(node: nodes.Node, counter: list[int], loops: list[int]) -> None:
    _count(counter)
    if isinstance(node, nodes.Output):
        for child in node.nodes:
            if not isinstance(child, nodes.TemplateData):
                _expression(child, counter, growing=0)
    elif isinstance(node, nodes.If):
        _expression(node.test, counter, growing=0)
        for child in (*node.body, *node.elif_, *node.else_):
            _statement(child, counter, loops)
    elif isinstance(node, nodes.For) and _data_loop(node):
        loops[0] += 1
        if loops[0] > 1 or node.recursive:
            raise _NotLinear  # nested or repeated loops multiply the work
        body = [0]
        for child in (*node.body, *node.else_):
            _statement(child, body, loops)
        if body[0] > MAX_LOOP_BODY_NODES:
            raise _NotLinear
        counter[0] += body[0]
    else:
        raise _NotLinear  # assignments, macros, blocks, includes...


def _data_loop(node: nodes.For) -> bool:
    """``for x in data.items`` or ``for k, v in data.items()``: once per item of the event's data."""
    target_ok = all(isinstance(n, nodes.Name) for n in node.target.find_all(nodes.Name)) and isinstance(
        node.target, nodes.Name | nodes.Tuple)
    source = node.iter
    if isinstance(source, nodes.Call) and isinstance(source.node, nodes.Getattr) and not (
            source.args or source.kwargs or source.dyn_args or source.dyn_kwargs):
        source = source.node.node if source.node.attr in ("items", "keys", "values") else None
    return target_ok and node.test is None and isinstance(source, nodes.Name | nodes.Getattr) and (
        not isinstance(source, nodes.Name) or source.name not in ("range", "lipsum", "cycler", "joiner"))


def _expression(node: nodes.Node, counter: list[int], growing: int) -> None:
    _count(counter)
    if isinstance(node, nodes.Const | nodes.TemplateData):
        if isinstance(node, nodes.Const) and isinstance(node.value, str | bytes) and len(node.value) > 200:
            raise _NotLinear  # a long constant is a template's way to build big values
        return
    if isinstance(node, nodes.Name):
        if node.ctx != "load":
            raise _NotLinear
        return
    if isinstance(node, nodes.Getattr):
        _expression(node.node, counter, growing)
        return
    if isinstance(node, nodes.Getitem):
        _expression(node.node, counter, growing)
        arg = node.arg
        if isinstance(arg, nodes.Slice):
            for part in (arg.start, arg.stop, arg.step):
                if part is not None:
                    _expression(part, counter, 0)
        else:
            _expression(arg, counter, 0)
        return
    if isinstance(node, nodes.Filter | nodes.Test):
        if isinstance(node, nodes.Filter):
            if node.name in _GROWING_FILTERS:
                growing += 1
                if growing > 1 or (node.name == "join" and not _short_constant_args(node)):
                    raise _NotLinear
            elif node.name not in _SAME_SIZE_FILTERS:
                raise _NotLinear
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            raise _NotLinear
        if node.node is not None:
            _expression(node.node, counter, growing)
        for arg in (*node.args, *(kw.value for kw in node.kwargs)):
            _expression(arg, counter, 0)
        return
    if isinstance(node, nodes.Concat | nodes.Add | nodes.Sub):
        operands = _operands(node)
        if len(operands) > _MAX_OPERANDS:
            raise _NotLinear
        for operand in operands:
            _expression(operand, counter, growing)
        return
    if isinstance(node, nodes.And | nodes.Or):
        _expression(node.left, counter, 0)
        _expression(node.right, counter, 0)
        return
    if isinstance(node, nodes.Not | nodes.Neg | nodes.Pos):
        _expression(node.node, counter, 0)
        return
    if isinstance(node, nodes.Compare):
        _expression(node.expr, counter, 0)
        for operand in node.ops:
            _expression(operand.expr, counter, 0)
        return
    if isinstance(node, nodes.CondExpr):
        for part in (node.test, node.expr1, node.expr2):
            if part is not None:
                _expression(part, counter, growing)
        return
    raise _NotLinear  # calls, ``*``, ``%``, ``**``, ``//``, list and dict literals...


def _operands(node: nodes.Node) -> list[nodes.Node]:
    if isinstance(node, nodes.Concat):
        return [o for child in node.nodes for o in _operands(child)]
    if isinstance(node, nodes.Add | nodes.Sub):
        return _operands(node.left) + _operands(node.right)
    return [node]


def _short_constant_args(node: nodes.Filter) -> bool:
    return not node.kwargs and all(isinstance(a, nodes.Const) and isinstance(a.value, str) and len(a.value) <= 16
                                   for a in node.args)


@functools.lru_cache(maxsize=1024)
def needs_child(source: str) -> bool:
    """Whether ``source`` must render in a child process (cached: templates change rarely)."""
    from vestnik.shared.rendering import parse

    try:
        ast = parse(source)
    except TemplateSyntaxError:
        return False  # fails at once wherever it renders, naming the line
    return not is_linear(ast)


# ------------------------------------------------------------------ the pool (caller's side)


@dataclass(frozen=True)
class Job:
    source: str
    context: Mapping[str, Any]
    html_mode: bool
    locale: str


@dataclass(frozen=True)
class Outcome:
    """A job's rendered text, or the reason it failed."""

    text: str | None = None
    error: str | None = None


_FRAME = struct.Struct(">I")


class _Child:
    """One render process and its pipes."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "vestnik.shared.render_sandbox"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=env, close_fds=True)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]

    def send(self, jobs: Sequence[Job]) -> None:
        payload = pickle.dumps([(j.source, dict(j.context), j.html_mode, j.locale) for j in jobs])
        assert self.proc.stdin is not None
        self.proc.stdin.write(_FRAME.pack(len(payload)) + payload)
        self.proc.stdin.flush()

    def receive(self, timeout_s: float) -> Outcome | None:
        """The next job's outcome; None if the child died or stayed silent past ``timeout_s``."""
        if not self.selector.select(timeout_s):
            return None
        assert self.proc.stdout is not None
        header = self.proc.stdout.read(_FRAME.size)
        if len(header) < _FRAME.size:
            return None
        (size,) = _FRAME.unpack(header)
        kind, value = pickle.loads(self.proc.stdout.read(size))  # noqa: S301 - our own child's answer
        return Outcome(text=value) if kind == "ok" else Outcome(error=value)

    def death(self) -> str:
        """Why the child stopped answering, for the failed job's reason."""
        self.kill()
        code = self.proc.returncode
        if code in (-signal.SIGXCPU, -signal.SIGKILL) or code == 128 + signal.SIGXCPU:
            return f"the template used more than {MAX_CPU_S:g} s of CPU time (the render budget)"
        if code is None or code == 0:
            return f"the template's render did not finish within {MAX_WAIT_S:g} s"
        return f"the template's render process stopped ({_describe(code)}); the render budget is " \
               f"{MAX_MEMORY_MB} MB and {MAX_CPU_S:g} s"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a zombie the kernel will reap
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        self.selector.close()


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class Pool:
    """Up to ``size`` render children, shared by the threads of one process."""

    def __init__(self, size: int = POOL_SIZE) -> None:
        self.size = size
        self.pid = os.getpid()
        self._idle: queue.LifoQueue[_Child] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._started = 0
        self.replaced = 0  # children killed or dead and replaced (for tests and logs)

    def _take(self) -> _Child:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._started < self.size:
                self._started += 1
                try:
                    return _Child()
                except OSError:
                    self._started -= 1
                    raise
        return self._idle.get(timeout=MAX_WAIT_S * 2)

    def _give_back(self, child: _Child | None) -> None:
        if child is None:
            with self._lock:
                self._started -= 1
            return
        self._idle.put(child)

    def render(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Render each job in a child; a job that kills its child fails alone, the rest go on."""
        outcomes: list[Outcome] = []
        while len(outcomes) < len(jobs):
            try:
                child: _Child | None = self._take()
            except (OSError, queue.Empty) as exc:
                reason = f"no render process available ({type(exc).__name__}); the template was not rendered"
                return outcomes + [Outcome(error=reason)] * (len(jobs) - len(outcomes))
            try:
                child.send(jobs[len(outcomes):])  # type: ignore[union-attr]
                while len(outcomes) < len(jobs):
                    outcome = child.receive(MAX_WAIT_S)  # type: ignore[union-attr]
                    if outcome is None:
                        outcomes.append(Outcome(error=child.death()))  # type: ignore[union-attr]
                        self.replaced += 1
                        child = None
                        break
                    outcomes.append(outcome)
            except (OSError, EOFError, pickle.PickleError) as exc:
                if child is not None:
                    child.kill()
                    child = None
                    self.replaced += 1
                outcomes.append(Outcome(error=f"the render process failed: {type(exc).__name__}"))
            finally:
                self._give_back(child)
        return outcomes

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().kill()
            except queue.Empty:
                return


_POOL: Pool | None = None
_POOL_LOCK = threading.Lock()


def pool() -> Pool:
    """This process's pool (a new one after a fork: children and pipes are never shared)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():
            _POOL = Pool()
        return _POOL


@atexit.register
def _close_pool() -> None:
    if _POOL is not None and _POOL.pid == os.getpid():
        _POOL.close()


# ------------------------------------------------------------------ the child


class CpuBudgetExceeded(BaseException):  # noqa: N818 - a signal, like KeyboardInterrupt
    """Raised by the CPU timer in a child; a BaseException, so no ``except Exception`` swallows it."""


def _on_cpu_timer(signum: int, frame: Any) -> None:
    raise CpuBudgetExceeded


def _vm_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _render_one(job: tuple[str, dict[str, Any], bool, str]) -> tuple[str, str]:
    from vestnik.shared.errors import TemplateError
    from vestnik.shared.rendering import render_here

    source, context, html_mode, locale = job
    vm = _vm_bytes()
    _, hard_as = resource.getrlimit(resource.RLIMIT_AS)
    _, hard_cpu = resource.getrlimit(resource.RLIMIT_CPU)
    try:
        if vm is not None:
            resource.setrlimit(resource.RLIMIT_AS, (vm + MAX_MEMORY_MB * 2**20, hard_as))
        # Backstop for C code that never returns to the interpreter: the kernel kills the child.
        resource.setrlimit(resource.RLIMIT_CPU, (math.ceil(_cpu_s() + MAX_CPU_S + 2), hard_cpu))
        signal.setitimer(signal.ITIMER_PROF, MAX_CPU_S)
        try:
            return "ok", render_here(source, context, html_mode=html_mode, locale=locale)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
    except CpuBudgetExceeded:
        return "error", f"the template used more than {MAX_CPU_S:g} s of CPU time (the render budget)"
    except MemoryError:
        return "error", f"the template needed more than {MAX_MEMORY_MB} MB of memory (the render budget)"
    except TemplateError as exc:
        return "error", str(exc)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (hard_as, hard_as))


def _child_main() -> int:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a killed render leaves no core file
    signal.signal(signal.SIGPROF, _on_cpu_timer)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent; the closed pipe ends us
    import vestnik.shared.rendering  # noqa: F401 - loaded once, before any budget applies

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the pipe
    while True:
        header = inp.read(_FRAME.size)
        if len(header) < _FRAME.size:
            return 0  # the parent is gone
        (size,) = _FRAME.unpack(header)
        jobs = pickle.loads(inp.read(size))  # noqa: S301 - from our own parent
        for job in jobs:
            try:
                answer = pickle.dumps(_render_one(job))
            except MemoryError:  # pragma: no cover - the limit is lifted before pickling
                answer = pickle.dumps(("error", f"the template needed more than {MAX_MEMORY_MB} MB of memory"))
            out.write(_FRAME.pack(len(answer)) + answer)
            out.flush()


if __name__ == "__main__":
    sys.exit(_child_main())
