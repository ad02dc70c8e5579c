"""What ``pip install .`` puts into a CRM's environment: one package, ``vestnik``.

The repository keeps the design card's folders (``shared/``, ``workers/``, ...);
``pyproject.toml`` maps each to a subpackage of ``vestnik``.  These tests build
the real wheel, install it into a fresh virtual environment and import from it,
so a folder left out of the mapping or a module still importing an old
top-level name fails here rather than in a CRM.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"vestnik": "vestnik", "shared": "vestnik.shared", "outbox": "vestnik.outbox",
           "workers": "vestnik.workers", "webapp": "vestnik.webapp", "migrations": "vestnik.migrations"}
OLD_TOP_LEVEL = re.compile(r"^\s*(from|import)\s+(shared|workers|webapp|outbox|migrations)\b", re.MULTILINE)


def _python_packages() -> set[str]:
    """Every folder of Python modules in the repository's package folders, by its installed name."""
    names = set()
    for folder, package in FOLDERS.items():
        for init in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in init.parts:
                continue
            rel = init.parent.relative_to(ROOT / folder)
            names.add(".".join([package, *rel.parts]))
    return names


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(ROOT)], check=True, capture_output=True, timeout=300)
    (found,) = out.glob("vestnik-*.whl")
    return found


def test_wheel_holds_one_top_level_package_with_every_module_folder(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"vestnik"}
    packaged = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith(".py")}
    missing = _python_packages() - packaged
    assert not missing, f"folders with modules left out of pyproject.toml's packages: {sorted(missing)}"
    # Data the web app and Alembic read at run time travel with the code.
    for needed in ("vestnik/webapp/templates/base.html", "vestnik/webapp/static/vestnik.css",
                   "vestnik/migrations/script.py.mako", "vestnik/migrations/versions/0001_initial_schema.py",
                   "vestnik/webapp/translations/ru/LC_MESSAGES/messages.mo"):
        assert needed in names


def test_installed_wheel_imports_only_under_vestnik(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)  # a wheel's install is its unpacking into site-packages
    # Vestnik's dependencies come from the test environment's site-packages, added as a plain
    # path: its .pth files (the editable install of this checkout) are not processed from there.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = """
import importlib, sys
from vestnik.outbox import emit
import vestnik, vestnik.workers.app, vestnik.webapp.server, vestnik.cli
assert vestnik.__file__.startswith(sys.argv[1]), vestnik.__file__
leaked = []
for name in ("shared", "workers", "webapp", "outbox", "migrations"):
    try:
        importlib.import_module(name)
        leaked.append(name)
    except ImportError:
        pass
print("leaked:", leaked)
"""
    result = subprocess.run([str(python), "-I", "-c", probe, str(site)], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "leaked: []"


def test_no_module_imports_an_old_top_level_name():
    offenders = []
    for path in ROOT.rglob("*.py"):
        if {".venv", "__pycache__", ".git"} & set(path.parts):
            continue
        for match in OLD_TOP_LEVEL.finditer(path.read_text(encoding="utf-8")):
            offenders.append(f"{path.relative_to(ROOT)}: {match.group(0).strip()}")
    assert not offenders, "import Vestnik's modules as vestnik.*: " + "; ".join(offenders)


# ------------------------------------------------------------------ the declared build requirement


def _declared_setuptools_minimum() -> str:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]["requires"]
    (spec,) = [r for r in requires if r.startswith("setuptools")]
    match = re.fullmatch(r"setuptools>=([\d.]+)", spec)
    assert match, f"build-system.requires should give setuptools a plain lower bound, not {spec!r}"
    return match.group(1)


@pytest.fixture(scope="module")
def clean_clone(tmp_path_factory) -> Path:
    """What a fresh clone holds: the files git tracks (as in this checkout), no build/ or *.egg-info."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, timeout=60)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    dest = tmp_path_factory.mktemp("clone") / "vestnik"
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture(scope="module")
def oldest_setuptools_env(tmp_path_factory) -> tuple[Path, str]:
    """A virtual environment whose setuptools is the lowest version pyproject.toml allows."""
    minimum = _declared_setuptools_minimum()
    env_dir = tmp_path_factory.mktemp("setuptools-min") / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"setuptools=={minimum}"], check=True,
                   timeout=300)
    return python, minimum


def _built_by(wheel_dir: Path) -> tuple[str, str]:
    (found,) = wheel_dir.glob("vestnik-*.whl")
    with zipfile.ZipFile(found) as zf:
        generator = re.search(r"^Generator: (.+)$", zf.read("vestnik-0.1.0.dist-info/WHEEL").decode(), re.M)
        license_ = re.search(r"^License-Expression: (.+)$", zf.read("vestnik-0.1.0.dist-info/METADATA").decode(),
                             re.M)
    return generator.group(1), license_.group(1) if license_ else ""


@pytest.mark.parametrize("isolation", ["without build isolation", "with build isolation"])
def test_a_clean_clone_builds_with_the_lowest_setuptools_pyproject_allows(clean_clone, oldest_setuptools_env,
                                                                          tmp_path, isolation):
    python, minimum = oldest_setuptools_env
    out = tmp_path / "wheel"
    command = [str(python), "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(clean_clone)]
    env = dict(os.environ)
    if isolation == "without build isolation":
        command.insert(4, "--no-build-isolation")  # the environment's own setuptools builds it
    else:
        # pip's isolated build environment honours constraints: pin the backend to the declared minimum.
        constraints = tmp_path / "constraints.txt"
        constraints.write_text(f"setuptools=={minimum}\n")
        env["PIP_CONSTRAINT"] = str(constraints)
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert _built_by(out) == (f"setuptools ({minimum})", "MIT")


def test_flask_sqlalchemy_stays_only_while_flask_admin_cannot_import_without_it():
    """pyproject.toml declares flask-sqlalchemy, which Vestnik never imports, for flask-admin's sake.

    When flask-admin's SQLAlchemy views import without it, this fails: drop the dependency then.
    """
    ours = [p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py")
            if re.search(r"^\s*(from|import)\s+flask_sqlalchemy", p.read_text(encoding="utf-8"), re.M)]
    assert not ours
    probe = """
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "flask_sqlalchemy":
            raise ImportError(name)
sys.meta_path.insert(0, Hide())
try:
    import flask_admin.contrib.sqla
except ImportError as exc:
    print("needs it:", exc)
else:
    print("imports without it")
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.startswith("needs it:"), result.stdout + result.stderr


def test_make_demo_installs_no_test_tools_and_passes_the_port(tmp_path):
    """`make demo` in a fresh clone: Vestnik without the test extra, on the PORT given; `make test` with it."""
    (tmp_path / "client").mkdir()
    for name in ("Makefile", "pyproject.toml", "client/pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    demo = subprocess.run(["make", "-n", "demo", "PORT=8001"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    test = subprocess.run(["make", "-n", "test"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert demo.returncode == 0 and test.returncode == 0, demo.stderr + test.stderr
    installs = [line for line in demo.stdout.splitlines() if "pip install" in line and "-e" in line]
    assert installs and all("[test]" not in line for line in installs), demo.stdout
    assert "vestnik demo --port 8001 --retry-hint 'make demo PORT={port}'" in demo.stdout
    assert any("pip install" in line and "'.[test]'" in line and "-e client/" in line
               for line in test.stdout.splitlines()), test.stdout
