"""Fixtures shared by the integration tests."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from sqlalchemy.engine import make_url


@pytest.fixture
def psql(pg_url):
    """Run SQL through the psql binary; return (exit code, stdout, stderr)."""
    binary = shutil.which("psql")
    if binary is None:
        pytest.skip("psql is not installed")
    url = make_url(pg_url)

    def run(sql: str) -> tuple[int, str, str]:
        done = subprocess.run(
            [binary, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", url.host, "-p", str(url.port or 5432),
             "-U", url.username, "-d", url.database],
            input=sql, capture_output=True, text=True, timeout=120)
        return done.returncode, done.stdout.strip(), done.stderr.strip()

    return run
