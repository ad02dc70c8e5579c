"""``vestnik web``: the app under gunicorn, configured from code.

Why gunicorn, and why from code: a production WSGI server with worker
processes that are restarted when they die, graceful reloads on SIGHUP and
graceful stops on SIGTERM, started by the same ``vestnik`` entry point and
the same Settings as every other process (no separate config file to drift).

Each worker process builds its own app (and so its own database pool) after
the fork: connections are never shared across processes.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from vestnik.shared.config import Settings
from vestnik.shared.errors import VestnikError
from vestnik.shared.logs import configure_logging


def worker_count(cpus: int | None = None) -> int:
    """``2 * cores + 1``, capped at 4: the web app mostly waits on the database.

    Scale out by adding web containers rather than one big process tree.
    """
    cpus = cpus or os.cpu_count() or 1
    return min(2 * cpus + 1, 4)


def gunicorn_options(settings: Settings, host: str, port: int) -> dict[str, Any]:
    return {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": settings.web_workers or worker_count(),
        "worker_class": "gthread",
        "threads": 4,
        "timeout": 30,
        "graceful_timeout": 20,
        "keepalive": 5,
        # Recycle workers now and then so a slow leak never becomes an outage.
        "max_requests": 2000,
        "max_requests_jitter": 200,
        "accesslog": "-",
        "logger_class": "vestnik.webapp.access_log.RedactingLogger",  # no sign-in tokens in access logs
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "proc_name": "vestnik-web",
    }


def serve(settings: Settings, *, host: str, port: int) -> int:
    """Run until SIGTERM/SIGINT; return the exit code gunicorn stopped with."""
    from vestnik.webapp import require_secret_key

    # Fail in the foreground, naming the variable, not later in every worker.
    require_secret_key(settings)
    try:
        from gunicorn.app.base import BaseApplication
    except ImportError:
        raise VestnikError(
            "gunicorn is not installed; install it (pip install 'gunicorn>=22') "
            "or use `vestnik demo` for a local single-process run"
        ) from None

    configure_logging(settings)

    class VestnikWeb(BaseApplication):
        def load_config(self) -> None:
            for key, value in gunicorn_options(settings, host, port).items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            from vestnik.webapp import create_app

            configure_logging(settings)
            return create_app(settings)

    try:
        VestnikWeb().run()
    except SystemExit as stop:  # gunicorn ends with sys.exit()
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    return 0
