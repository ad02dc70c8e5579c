"""``vestnik-client`` as a CRM installs it: its own wheel, built from client/, into a fresh virtual
environment with nothing of Vestnik's (no SQLAlchemy, pydantic, Flask...), only the CRM's driver."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import text

from vestnik.shared.db import make_engine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client_wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("client-wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(ROOT / "client")], check=True, capture_output=True, timeout=300)
    (found,) = out.glob("vestnik_client-*.whl")
    return found


def test_the_wheel_holds_the_package_and_the_registry_and_requires_nothing(client_wheel):
    with zipfile.ZipFile(client_wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {n.split("/", 1)[0] for n in names if not n.endswith(".dist-info") and ".dist-info/" not in n} \
        == {"vestnik_client"}
    assert "vestnik_client/registry.json" in names
    assert "Requires-Dist" not in metadata


def test_a_fresh_environment_with_only_psycopg_emits_in_its_transaction(client_wheel, tmp_path, pg_url):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    with zipfile.ZipFile(client_wheel) as zf:
        zf.extractall(site)  # a wheel's install is its unpacking into site-packages
    # The CRM's own driver: psycopg only, linked from the test environment (nothing else of it is visible).
    import psycopg
    import psycopg_binary
    import typing_extensions

    for module in (psycopg, psycopg_binary):
        (site / module.__name__).symlink_to(Path(module.__file__).parent)
    (site / "typing_extensions.py").symlink_to(typing_extensions.__file__)
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    probe = """
import importlib, sys
import psycopg, vestnik_client
from vestnik_client import InvalidEvent, emit
for name in ("sqlalchemy", "pydantic", "flask", "vestnik", "django"):
    try:
        importlib.import_module(name)
        sys.exit(f"{name} is importable: the environment is not clean")
    except ImportError:
        pass
try:
    emit(None, "lesson_cancelled", recipients="1,2", data={})
except InvalidEvent as exc:
    print("refused:", exc.problems[0])
with psycopg.connect(sys.argv[1]) as conn:
    print("id:", emit(conn, "lesson_cancelled", recipients=[1], data={"lesson_title": "X",
                                                                      "starts_at": "2026-11-25T16:00:00+03:00"}))
"""
    done = subprocess.run([str(python), "-I", "-c", probe, dsn], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    refused, emitted = done.stdout.strip().splitlines()
    assert refused == "refused: data.lesson_title: required"
    engine = make_engine(pg_url)
    with engine.connect() as conn:
        ids = conn.execute(text("SELECT id FROM outbox_events")).scalars().all()
    engine.dispose()
    assert emitted == f"id: {ids[0]}" and len(ids) == 1
