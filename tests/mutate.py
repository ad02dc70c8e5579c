"""``make mutate``: mutation testing of the core pure modules with mutmut 3, one module at a time.

Each module is mutated with only its own fast unit tests (listed in
``MODULES``), so a surviving mutant means those tests miss a change, not that
some slow integration test might catch it.  The tests import ``vestnik.*``
(the installed names of ``shared/``, ``workers/``, ``webapp/``); mutmut names a
module after its path, so each run works in a scratch tree under
``var/mutate/<module>/`` laid out as the installed package
(``vestnik/shared/bounds.py``) with ``tests/`` beside it, and a
``[tool.mutmut]`` section written for that module.  The repository itself is
never touched, and a clean clone needs nothing but ``make mutate``.

Mutants that no test can kill because they change nothing observable are
listed, each with its reason, in ``docs/testing.md`` (the table under
"Equivalent mutants"); the kill rate is over the others.  The run prints one
line per module and every surviving mutant, and fails when a module is under
``TARGET`` or a listed equivalent no longer exists (the code moved: look again).

    .venv/bin/python -m tests.mutate                 # every module
    .venv/bin/python -m tests.mutate shared/bounds.py
    .venv/bin/python -m tests.mutate --show vestnik.shared.bounds.x_integer__mutmut_3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "var" / "mutate"
DOC = ROOT / "docs" / "testing.md"
TARGET = 0.85
#: the repository's folders as the installed package's subpackages (pyproject.toml's package-dir)
PACKAGE_DIRS = {"vestnik": "vestnik", "shared": "vestnik/shared", "outbox": "vestnik/outbox",
                "workers": "vestnik/workers", "webapp": "vestnik/webapp", "migrations": "vestnik/migrations"}


@dataclass(frozen=True)
class Module:
    path: str  # in the repository
    tests: tuple[str, ...]  # its fast unit tests
    functions: tuple[str, ...] = ("*",)  # which functions' mutants count (globs on the mangled name)

    @property
    def dotted(self) -> str:
        folder, _, rest = self.path.partition("/")
        return "vestnik." + folder + "." + rest.removesuffix(".py").replace("/", ".")

    @property
    def staged(self) -> str:
        folder, _, rest = self.path.partition("/")
        return f"{PACKAGE_DIRS[folder]}/{rest}"

    @property
    def patterns(self) -> list[str]:
        return [f"{self.dotted}.{f}" for f in self.functions]


MODULES = (
    Module("workers/retry.py", ("tests/unit/test_retry.py",)),
    # Both backends: the Redis one runs on a private redis-server (tests/conftest.py), a fraction of a second.
    Module("workers/limits.py", ("tests/unit/test_limits.py", "tests/unit/test_limits_details.py",
                                 "tests/integration/test_limits_backends.py")),
    Module("shared/events.py", ("tests/unit/test_registry.py", "tests/unit/test_events.py")),
    Module("shared/wire.py", ("tests/unit/test_registry.py", "tests/unit/test_wire.py", "tests/unit/test_events.py")),
    Module("webapp/signatures.py", ("tests/unit/test_signatures.py",)),
    Module("shared/bounds.py", ("tests/unit/test_bounds.py", "tests/unit/test_bounds_messages.py")),
    # The render budget's checks (which templates may render in process), not the child-process pool.
    Module("shared/render_sandbox.py", ("tests/unit/test_render_checks.py",),
           functions=("x_is_linear_*", "x__count_*", "x__statement_*", "x__data_loop_*", "x__expression_*",
                      "x__operands_*", "x__short_constant_args_*", "x_needs_child_*")),
)

KILLED = {1, 3}
SURVIVED = {0}
TIMEOUT = {36, -24, 24, 152, 255}


def stage(module: Module) -> Path:
    """A scratch tree for one module: the package as installed, the tests, a [tool.mutmut] for this module."""
    where = WORK / module.path.replace("/", "_").removesuffix(".py")
    if where.exists():
        shutil.rmtree(where)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "static", "templates")
    for folder, target in PACKAGE_DIRS.items():
        shutil.copytree(ROOT / folder, where / target, ignore=ignore)
    shutil.copytree(ROOT / "tests", where / "tests", ignore=ignore)
    shutil.copytree(ROOT / "client", where / "client", ignore=ignore)  # the registry tests read its registry.json
    shutil.copy2(ROOT / "setup.cfg", where / "setup.cfg")
    tests = ", ".join(json.dumps(t) for t in module.tests)
    (where / "pyproject.toml").write_text(f"""[tool.mutmut]
source_paths = ["vestnik"]
also_copy = ["client"]
only_mutate = [{json.dumps(module.staged)}]
pytest_add_cli_args_test_selection = [{tests}]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:xdist", "-o", "addopts=", "--timeout=300"]
use_git_change_detection = false
""", encoding="utf-8")
    return where


def run(module: Module, children: int) -> dict[str, int | None]:
    where = stage(module)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [str(Path(sys.executable).with_name("mutmut")), "run", "--max-children", str(children), *module.patterns]
    print(f"== {module.path}: {' '.join(cmd[1:])} (in {where.relative_to(ROOT)})", flush=True)
    proc = subprocess.run(cmd, cwd=where, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = where / "mutmut.log"
    log.write_text(proc.stdout, encoding="utf-8")
    meta = where / "mutants" / (module.staged + ".meta")
    if not meta.exists():
        raise SystemExit(f"{module.path}: mutmut made no results (exit {proc.returncode}); see {log}\n"
                         + proc.stdout[-3000:])
    results = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    if proc.returncode != 0 and all(v is None for v in results.values()):
        raise SystemExit(f"{module.path}: mutmut stopped before testing a mutant (exit {proc.returncode}); "
                         f"see {log}\n" + proc.stdout[-3000:])
    return {k: v for k, v in results.items() if any(_match(k, p) for p in module.patterns)}


def _match(name: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatch(name, pattern)


def equivalents() -> dict[str, str]:
    """Mutant name -> reason, from docs/testing.md's table of equivalent mutants."""
    found: dict[str, str] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\|\s*`(vestnik\.[^`]+__mutmut_\d+)`\s*\|\s*(.+?)\s*\|\s*$", line)
        if match:
            found[match[1]] = match[2]
    return found


def report(module: Module, results: dict[str, int | None], known: dict[str, str]) -> tuple[bool, str]:
    mine = {k: v for k, v in known.items() if k.startswith(module.dotted + ".")}
    gone = sorted(set(mine) - set(results))
    counted = {k: v for k, v in results.items() if k not in mine}
    killed = [k for k, v in counted.items() if v in KILLED or v in TIMEOUT]
    survived = sorted(k for k, v in counted.items() if v in SURVIVED)
    other = sorted(k for k, v in counted.items() if v not in KILLED | SURVIVED | TIMEOUT)
    rate = len(killed) / len(counted) if counted else 1.0
    line = (f"{module.path:28} {len(results):4} mutants, {len(mine):3} equivalent, {len(killed):4} killed, "
            f"{len(survived):3} survived, {len(other):3} other: {rate:6.1%} of non-equivalent killed")
    print(line, flush=True)
    for name in survived:
        print(f"    survived: {name}")
    for name in other:
        print(f"    {results[name]}: {name}")
    for name in gone:
        print(f"    listed as equivalent in docs/testing.md but no longer made: {name}")
    return rate >= TARGET and not gone, line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="repository paths (default: every module in MODULES)")
    parser.add_argument("--children", type=int, default=1, help="mutants tested at once (the machine is shared)")
    parser.add_argument("--show", metavar="MUTANT", help="print one mutant's diff (after a run of its module)")
    args = parser.parse_args()
    if args.show:
        module = next(m for m in MODULES if args.show.startswith(m.dotted + "."))
        return subprocess.call([str(Path(sys.executable).with_name("mutmut")), "show", args.show],
                               cwd=WORK / module.path.replace("/", "_").removesuffix(".py"))
    chosen = [m for m in MODULES if not args.modules or m.path in args.modules]
    unknown = set(args.modules) - {m.path for m in MODULES}
    if unknown:
        parser.error(f"not a mutated module: {', '.join(sorted(unknown))} (see MODULES in tests/mutate.py)")
    known = equivalents()
    ok, lines = True, []
    for module in chosen:  # one at a time: the machine is shared
        passed, line = report(module, run(module, args.children), known)
        ok = ok and passed
        lines.append(line)
    print("\n".join(["", f"summary (target: at least {TARGET:.0%} of non-equivalent mutants killed per module)",
                     *lines]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
