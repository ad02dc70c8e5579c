"""gunicorn's logs in Vestnik's format, without bearer secrets.

A sign-in link (``/me/login/t/<token>``) works once, but until it is used the
token in its path signs its holder in; gunicorn logs request lines and
Referer headers verbatim.  ``vestnik web`` therefore runs gunicorn with
:class:`RedactingLogger`, which masks such tokens in every logged field.

The same class gives gunicorn's error log and access log Vestnik's formatter
and secret filter (``vestnik.shared.logs``): with ``VESTNIK_LOG_FORMAT=json``
each request is one JSON line with its fields (``method``, ``path``,
``status``, ``duration_ms``, ...), like every other process's lines.
This module is imported by gunicorn only (``logger_class``).
"""

from __future__ import annotations

import re
from typing import Any

SECRET_IN_PATH = re.compile(r"(/me/login/t/)[^\s/?#\"]+")
MASK = "••••"


def redact(text: str) -> str:
    return SECRET_IN_PATH.sub(rf"\g<1>{MASK}", text)


def _logger_class() -> type:
    from gunicorn.glogging import Logger

    class RedactingLogger(Logger):
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            from vestnik.shared.config import load_settings, secrets_of
            from vestnik.shared.logs import RedactSecrets, vestnik_formatter

            settings = load_settings()
            self._json = settings.log_format == "json"
            for logger in (self.error_log, self.access_log):
                for handler in logger.handlers:
                    handler.setFormatter(vestnik_formatter(settings))
                    handler.addFilter(RedactSecrets(secrets_of(settings)))

        def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
            found = super().atoms(resp, req, environ, request_time)
            return {key: redact(value) if isinstance(value, str) else value for key, value in found.items()}

        def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
            if not getattr(self, "_json", False) or not self.cfg.accesslog:
                super().access(resp, req, environ, request_time)
                return
            atoms = self.atoms(resp, req, environ, request_time)
            path = atoms["U"] + (f"?{atoms['q']}" if atoms["q"] else "")
            self.access_log.info("%s %s %s", atoms["m"], path, atoms["s"], extra={
                "action": "web.request", "method": atoms["m"], "path": path, "status": int(atoms["s"]),
                "duration_ms": round(request_time.total_seconds() * 1000, 1), "bytes": atoms["B"],
                "remote": atoms["h"], "user_agent": atoms["a"]})

    return RedactingLogger


def __getattr__(name: str) -> Any:
    # Built on first access, so importing this module never needs gunicorn.
    if name == "RedactingLogger":
        cls = _logger_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
