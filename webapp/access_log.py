"""gunicorn's access log without bearer secrets.

A sign-in link (``/me/login/t/<token>``) works once, but until it is used the
token in its path signs its holder in; gunicorn logs request lines and
Referer headers verbatim.  ``vestnik web`` therefore runs gunicorn with
:class:`RedactingLogger`, which masks such tokens in every logged field.
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
        def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
            found = super().atoms(resp, req, environ, request_time)
            return {key: redact(value) if isinstance(value, str) else value for key, value in found.items()}

    return RedactingLogger


def __getattr__(name: str) -> Any:
    # Built on first access, so importing this module never needs gunicorn.
    if name == "RedactingLogger":
        cls = _logger_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
