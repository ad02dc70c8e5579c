"""One database session per request.

Views call :func:`get_session`; the first call in a request opens a session
from the app's factory and keeps it on ``flask.g``; the app's teardown closes
it, rolling back anything the view did not commit.  So a view that raises
half-way leaves nothing behind, and no session outlives its request or
crosses threads (the session lives in the request context, not in a
thread-local registry that a pooled thread could reuse).

Views commit explicitly (``get_session().commit()``): a CRM-style view
changes its rows, calls ``emit`` and commits once, and the reader sees that
one commit in the code.
"""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.orm import Session, sessionmaker

_EXTENSION = "vestnik_db"


def init_app(app: Flask, factory: sessionmaker[Session]) -> None:
    """Attach a session factory to ``app`` and close each request's session at teardown."""
    app.extensions[_EXTENSION] = factory
    app.teardown_appcontext(_close_session)


def session_factory(app: Flask | None = None) -> sessionmaker[Session]:
    """The app's session factory (for work outside a request, e.g. health checks)."""
    return (app or current_app).extensions[_EXTENSION]


def get_session() -> Session:
    """The current request's session, opened on first use."""
    session: Session | None = g.get("_vestnik_db")
    if session is None:
        session = session_factory()()
        g._vestnik_db = session
    return session


def _close_session(exc: BaseException | None) -> None:
    session: Session | None = g.pop("_vestnik_db", None)
    if session is not None:
        session.close()  # rolls back whatever was not committed
