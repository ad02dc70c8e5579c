"""What ``pip install .`` puts into a CRM's environment: one package, ``vestnik``.

The repository keeps the design card's folders (``shared/``, ``workers/``, ...);
``pyproject.toml`` maps each to a subpackage of ``vestnik``.  These tests build
the real wheel, install it into a fresh virtual environment and import from it,
so a folder left out of the mapping or a module still importing an old
top-level name fails here rather than in a CRM.
"""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
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
                   "vestnik/migrations/script.py.mako", "vestnik/migrations/versions/0001_initial_schema.py"):
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
