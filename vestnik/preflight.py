"""Start-up that tells the truth: before a process starts its work, it checks its database and broker.

A problem no retry can fix is said once, clearly, and the process exits 2
(its supervisor shows it failed instead of a service that loops quietly):

- the database does not exist, or refuses the user or password;
- RabbitMQ refuses the credentials, or the user may not use the vhost;
- a Vestnik queue exists with other arguments (a classic queue from before
  Vestnik declared quorum queues: docs/operations.md says how to move).

An outage is expected now and then (a server restarting, the stack starting
in any order): then the process waits and retries with a visible backoff
(each attempt logged with ``retry_in_s``) until the server answers or the
process is stopped.  Bad settings never get here: ``load_settings`` has
already named the variable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from vestnik.shared.config import Settings
from vestnik.shared.db import is_postgres, normalise_url, safe_url
from vestnik.shared.errors import VestnikError

log = logging.getLogger("vestnik.startup")

#: SQLSTATEs that no retry fixes: no such database, bad password, no such role, not allowed to connect
FATAL_SQLSTATES = {"3D000": "the database does not exist", "28P01": "the password was refused",
                   "28000": "the user may not connect (no such role, or pg_hba.conf refuses it)"}


class StartupError(VestnikError):
    """A service cannot start; the message says why and what to do."""


def database_problem(settings: Settings) -> tuple[bool, str] | None:
    """None when the database answers; else (fatal, what is wrong)."""
    if not is_postgres(settings.database_url):
        return None  # SQLite: a file, created on first use
    import psycopg

    where = safe_url(settings.database_url)
    conninfo = normalise_url(settings.database_url).replace("postgresql+psycopg://", "postgresql://")
    try:
        psycopg.connect(conninfo, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        text = " ".join(str(exc).split())  # psycopg's message spans lines
        state = getattr(getattr(exc, "diag", None), "sqlstate", None)
        for code, meaning in FATAL_SQLSTATES.items():
            if state == code or (code == "3D000" and "does not exist" in text and "database" in text) or (
                    code == "28P01" and "password authentication failed" in text):
                return True, f"PostgreSQL at {where}: {meaning} ({text})"
        return False, f"PostgreSQL at {where} does not answer ({text or repr(exc)})"
    return None


def broker_problem(settings: Settings, queues: list[str]) -> tuple[bool, str] | None:
    """None when RabbitMQ takes the credentials and Vestnik's queues; else (fatal, what is wrong)."""
    if settings.embedded:
        return None
    import pika
    from dramatiq.errors import ConnectionClosed

    from vestnik.shared.amqp import VestnikRabbitmqBroker, node_parameters

    where = safe_url(settings.broker_url)
    nodes = node_parameters(settings.broker_url, "startup", timeout_s=5)
    try:
        pika.BlockingConnection(nodes).close()
    except (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError) as exc:
        return True, f"RabbitMQ at {where} refused the credentials of user {nodes[0].credentials.username!r} ({exc!r})"
    except pika.exceptions.ProbableAccessDeniedError as exc:
        return True, (f"RabbitMQ at {where}: user {nodes[0].credentials.username!r} may not use virtual host "
                      f"{nodes[0].virtual_host!r} (create it and grant permissions) ({exc!r})")
    except pika.exceptions.AMQPError as exc:
        return False, f"RabbitMQ at {where} does not answer ({type(exc).__name__}: {exc})"
    broker = VestnikRabbitmqBroker(url=settings.broker_url, component="startup", middleware=[],
                                   delivery_limit=settings.broker_delivery_limit)
    try:
        for queue in queues:
            broker.declare_queue(queue, ensure=True)
    except (pika.exceptions.ChannelClosedByBroker, ConnectionClosed) as exc:
        cause = exc.__cause__ or exc
        text = str(getattr(cause, "reply_text", "") or cause)
        if "PRECONDITION_FAILED" in text or getattr(cause, "reply_code", None) == 406:
            return True, (f"RabbitMQ at {where}: a queue of Vestnik's exists with other arguments ({text}); "
                          "classic queues from an older version must be moved to quorum queues: see "
                          "docs/operations.md, 'Moving from classic queues'")
        return False, f"RabbitMQ at {where} closed the channel ({text})"
    finally:
        broker.close()
    return None


def wait_for_services(settings: Settings, component: str, *, queues: list[str] | None = None,
                      stop: threading.Event | None = None, max_backoff_s: float = 30.0, wait: bool = True) -> None:
    """Return when the database (and, with ``queues``, the broker) is usable; raise StartupError when
    it never will be; retry an outage with a growing, logged backoff.  ``wait=False`` (the web app,
    whose ``/readyz`` reports an outage itself; the workers, whose Dramatiq reconnects and retries with
    its own backoff): check once, fail only on what no retry fixes."""
    checks: list[Callable[[], tuple[bool, str] | None]] = [lambda: database_problem(settings)]
    if queues is not None:
        checks.append(lambda: broker_problem(settings, queues))
    stop = stop or threading.Event()
    backoff_s = 1.0
    while not stop.is_set():
        problems = [p for p in (check() for check in checks) if p is not None]
        fatal = [message for is_fatal, message in problems if is_fatal]
        if fatal:
            for message in fatal:
                log.error("cannot start: %s", message, extra={"action": "startup.failed", "component": component})
            raise StartupError(f"vestnik {component} cannot start: " + "; ".join(fatal))
        if not problems or not wait:
            for _, message in problems:
                log.warning("%s; starting anyway (it retries on its own)", message,
                            extra={"action": "startup.degraded", "component": component})
            return
        for _, message in problems:
            log.warning("%s; retrying in %.0f s", message, backoff_s,
                        extra={"action": "startup.waiting", "component": component, "retry_in_s": backoff_s})
        stop.wait(backoff_s)
        backoff_s = min(backoff_s * 2, max_backoff_s)
