"""Health endpoints for load balancers and orchestrators.

- ``/healthz``: the process is alive and serving (no I/O): restart me if not.
- ``/readyz``: I can do my job: the database answers and its schema is the one
  this code expects.  A web process that cannot reach its database, or runs
  ahead of ``vestnik db upgrade`` during a deploy, is taken out of rotation
  (503) instead of answering 500s.  The broker and Redis are checked and
  reported too, but do not make the web unready: nothing the web serves
  needs them (webhooks and the admin write to the database; the relay and
  workers use the broker and the limiter), and taking the admin offline
  during a RabbitMQ outage would only hide the outage from the people who
  must see it.  Alert on ``vestnik_broker_up`` instead.

Answers name the part that failed and the exception's class, never its text:
driver errors can carry host names, users, even URLs.  The full error goes to
the log, where secrets are redacted (``shared/logs.py``).
"""

from __future__ import annotations

import functools
import logging

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from vestnik.shared.migrate import MIGRATIONS_DIR
from vestnik.webapp import get_settings
from vestnik.webapp.db import session_factory

log = logging.getLogger("vestnik.web.health")

bp = Blueprint("health", __name__)


@functools.cache
def expected_revisions() -> frozenset[str]:
    """The Alembic head(s) this code was written against (read once per process)."""
    from alembic.config import Config  # imported late: loading Alembic costs start-up time
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return frozenset(ScriptDirectory.from_config(cfg).get_heads())


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    checks: dict[str, str] = {}
    try:
        with session_factory()() as session:
            session.execute(text("SELECT 1"))
            checks["database"] = "ok"
            checks["schema"] = _schema_check(session)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        log.warning("readiness check failed", exc_info=True, extra={"action": "web.not_ready"})
        checks.setdefault("database", f"unreachable ({type(exc).__name__})")
        checks.setdefault("schema", "unknown" if checks["database"] != "ok" else f"error ({type(exc).__name__})")
    ready = all(value == "ok" for value in checks.values())
    settings = get_settings()
    if not settings.embedded:
        checks["broker"] = _broker_check(settings.broker_url)
    if settings.redis_url:
        checks["redis"] = _redis_check(settings.redis_url)
    return jsonify(status="ready" if ready else "unavailable", checks=checks), 200 if ready else 503


def _broker_check(url: str) -> str:
    import pika

    try:
        from vestnik.shared.amqp import node_parameters

        pika.BlockingConnection(node_parameters(url, "web-readyz", timeout_s=2)).close()
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"unreachable ({type(exc).__name__})"


def _redis_check(url: str) -> str:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        client.close()
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"unreachable ({type(exc).__name__})"


def _schema_check(session) -> str:
    try:
        current = set(session.scalars(text("SELECT version_num FROM alembic_version")))
    except Exception:  # noqa: BLE001 - the table is missing: never migrated
        session.rollback()
        return "not migrated (run: vestnik db upgrade)"
    expected = expected_revisions()
    if current == expected:
        return "ok"
    return f"at {','.join(sorted(current)) or 'nothing'}, expected {','.join(sorted(expected))}"
