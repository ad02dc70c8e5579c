"""Shared test fixtures.

Real services: PostgreSQL, RabbitMQ and Redis on 127.0.0.1.  On a developer's
laptop without one of them the tests that need it skip; under CI (``CI`` set)
a missing service is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator

import pytest

from tests.ahead import MadeAhead
from vestnik.shared import threadsafe_ast

# The test processes parse from several threads (tracebacks formatted by the fakes' and the app's threads,
# pytest's assertion rewriting): one parse at a time on Python 3.11 (shared/threadsafe_ast.py).
threadsafe_ast.install()

pytest_plugins = ["tests.fakes.fixtures"]

try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # the test extra is not installed: the property tests will say so
    pass
else:
    # No per-example deadline: on a loaded machine a slow example is not a failure.  Derandomized,
    # so every run tries the same examples and a failure repeats.
    _hypothesis_settings.register_profile("vestnik", deadline=None, max_examples=200, derandomize=True,
                                          database=None)
    _hypothesis_settings.load_profile("vestnik")

PG_URL = os.environ.get("VESTNIK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("VESTNIK_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
# Redis: each test process starts a redis-server of its own on a free port (tests flush it), so
# two suites on one machine, or two xdist workers, never share limiter state.  Without the
# redis-server binary, VESTNIK_TEST_REDIS_URL or the machine's Redis (database 15) is used.
REDIS_URL = os.environ.get("VESTNIK_TEST_REDIS_URL")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI requires every service)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if REDIS_URL:
        yield REDIS_URL
        return
    if shutil.which("redis-server") is None:
        require_service("Redis", "127.0.0.1", 6379)
        yield "redis://127.0.0.1:6379/15"
        return
    from tests.processes import PrivateRedis

    server = PrivateRedis()
    server.start()
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_url: str):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def amqp_url() -> str:
    require_service("RabbitMQ", "127.0.0.1", 5672)
    return AMQP_URL


# ------------------------------------------------------------------ databases
#
# PostgreSQL: the schema is migrated once into a template database; each test
# gets a fresh copy (CREATE DATABASE ... TEMPLATE), made while the test before
# ran and dropped while the test after runs (tests/ahead.py).
# SQLite: migrated once by the same Alembic scripts into a template file; each
# test gets a copy of the file in its tmp_path.

_TEMPLATE_DB = f"vestnik_tpl_{os.getpid()}"
_DB_PREFIX = f"vestnik_t{os.getpid()}_"


def _admin_engine():
    from sqlalchemy import create_engine

    return create_engine(PG_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_template():
    require_service("PostgreSQL", "127.0.0.1", 5432)
    from sqlalchemy import text

    from vestnik.shared.db import make_engine
    from vestnik.shared.migrate import upgrade

    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{_TEMPLATE_DB}"'))
        conn.execute(text(f'CREATE DATABASE "{_TEMPLATE_DB}"'))
    engine = make_engine(PG_URL.rsplit("/", 1)[0] + f"/{_TEMPLATE_DB}")
    upgrade(engine)
    engine.dispose()
    yield _TEMPLATE_DB
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{_TEMPLATE_DB}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def _pg_databases(pg_template) -> Iterator[MadeAhead]:
    from sqlalchemy import text

    admin = _admin_engine()

    def run(sql: str) -> None:
        with admin.connect() as conn:
            conn.execute(text(sql))

    def make(n: int) -> str:
        run(f'CREATE DATABASE "{_DB_PREFIX}{n}" TEMPLATE "{pg_template}"')
        return f"{_DB_PREFIX}{n}"

    databases = MadeAhead("databases", make, lambda name: run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    yield databases
    databases.close()
    with admin.connect() as conn:  # and any copy whose drop failed meanwhile
        for name in conn.execute(text("SELECT datname FROM pg_database WHERE datname LIKE :prefix"),
                                 {"prefix": _DB_PREFIX.replace("_", r"\_") + "%"}).scalars().all():
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_url(_pg_databases) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test; dropped afterwards."""
    name = _pg_databases.take()
    yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    _pg_databases.give_back(name)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory) -> str:
    from vestnik.shared.db import make_engine
    from vestnik.shared.migrate import upgrade

    path = tmp_path_factory.mktemp("sqlite-template") / "vestnik.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()  # the last connection closed: the WAL is checkpointed into the file and removed
    assert not path.with_name(path.name + "-wal").exists()
    return str(path)


@pytest.fixture
def sqlite_url(_sqlite_template, tmp_path) -> str:
    """A fresh, migrated SQLite database (a copy of the migrated template file) in the test's tmp_path."""
    path = tmp_path / "vestnik.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request) -> str:
    """Both backends: the embedded SQLite and the production PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def engine(db_url):
    from vestnik.shared.db import make_engine

    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session_factory(engine):
    from vestnik.shared.db import make_session_factory

    return make_session_factory(engine)


@pytest.fixture(scope="session")
def _amqp_vhosts(amqp_url) -> Iterator[MadeAhead]:
    import subprocess

    def make(n: int) -> str:
        vhost = f"vestnik_t{os.getpid()}_{n}"
        subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True)
        subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                       capture_output=True)
        return vhost

    vhosts = MadeAhead("vhosts", make, lambda vhost: subprocess.run(["rabbitmqctl", "delete_vhost", vhost],
                                                                      capture_output=True))
    yield vhosts
    vhosts.close()


@pytest.fixture
def amqp_vhost_url(amqp_url, _amqp_vhosts) -> Iterator[str]:
    """A fresh RabbitMQ virtual host for this test (queues of other tests never leak in); deleted afterwards."""
    vhost = _amqp_vhosts.take()
    yield amqp_url.rstrip("/") + "/" + vhost
    _amqp_vhosts.give_back(vhost)


# Browser tests: Debian's Chromium through Playwright; never a downloaded browser.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")  # module: Playwright's sync loop must not outlive its tests
def chromium():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing (CI requires the browser tests)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
