"""Running Alembic from code, so ``vestnik db upgrade`` needs no alembic.ini.

After the migrations, :func:`upgrade` rewrites the ``vestnik_registry`` table
from the event registry in ``shared/events.py``, and on PostgreSQL the
function ``vestnik_event_ok`` compiled from it (``shared/registry_sql.py``):
the SQL functions ``vestnik_emit`` and ``vestnik_upsert_client`` check against
them, so the code's definitions and the database's never drift apart (one
source, no copy).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, delete, insert

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def store_registry(conn: Connection, defaults: Mapping[str, str] | None = None) -> int:
    """Replace the ``vestnik_registry`` rows with the current registry; return how many were written.

    ``defaults`` are what a client created by ``vestnik_upsert_client`` gets
    for what it leaves out (``locale``, ``timezone``: the settings'
    ``VESTNIK_DEFAULT_LOCALE``/``VESTNIK_DEFAULT_TIMEZONE``).
    """
    from vestnik.shared.addresses import ADDRESS_FIELDS, SWITCH_FIELDS
    from vestnik.shared.events import registry_document
    from vestnik.shared.models import RegistryEntry, utcnow

    doc = registry_document()
    events = doc.pop("events")
    rows = {f"event:{name}": spec for name, spec in events.items()}
    # vestnik_emit checks a deprecated name as its new name; the alias trigger stores it under the new one
    rows.update({f"event:{old}": events[new] for old, new in doc["aliases"].items() if new in events})
    doc.pop("comment", None)
    rows.update(doc)
    rows["defaults"] = {"locale": "ru", "timezone": "Europe/Moscow", **(defaults or {})}
    # vestnik_upsert_client maps the record's fields to channels with these (migration 0014).
    rows["address_fields"] = dict(ADDRESS_FIELDS)
    rows["switch_fields"] = dict(SWITCH_FIELDS)
    now = utcnow()
    table = RegistryEntry.__table__
    conn.execute(delete(table))
    conn.execute(insert(table), [{"name": name, "document": document, "updated_at": now}
                                 for name, document in rows.items()])
    if conn.dialect.name == "postgresql":  # the SQL entry points' fast path, compiled from the same document
        from vestnik.shared.registry_sql import alias_trigger, event_ok_function

        conn.exec_driver_sql(event_ok_function(registry_document()))
        conn.exec_driver_sql(alias_trigger(registry_document()))
    return len(rows)


def upgrade(engine: Engine, revision: str = "head", *, defaults: Mapping[str, str] | None = None) -> None:
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        if revision == "head":
            store_registry(conn, defaults)
