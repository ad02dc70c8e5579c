"""A CRM's client ids to the keys of Vestnik's ``clients`` rows, and back, at the edges.

A client's id is the CRM's own: an integer or a string of up to 64 characters
(``shared/wire.py``'s ``CLIENT_ID``; a UUID works).  Inside, a client is a
row key (``clients.id``, a BIGINT every other table refers to), and
``clients.crm_id`` keeps the CRM's id as text (migration 0024):

- an integer, or its canonical decimal text (``"42"``, no sign, no leading
  zero), is its own key: ``42`` and ``"42"`` are the same client, and resolving
  them needs no database (the emit and handling fast path);
- any other string (``"7f0c1b9e-..."``, ``"042"``, ``"-5"``) gets a key from a
  descending sequence of negative numbers when the client is first created,
  so it never collides with an integer id; it is found by ``crm_id`` (one
  query for a whole batch: :func:`lookup`).

Every place that shows or returns a client's id shows ``crm_id``
(:func:`shown`, :func:`crm_ids`), never a negative key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import String, any_, bindparam, case, cast, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from vestnik.shared.models import Client
from vestnik.shared.wire import BIGINT_MAX, CLIENT_ID

_DECIMAL = re.compile(r"[1-9][0-9]{0,18}")
#: PostgreSQL's sequence of keys for string ids (-1, -2, ...; migration 0024)
STRING_KEY_SEQUENCE = "clients_string_key_seq"


def client_key(client_id: Any) -> int | None:
    """The row key of an integer id (or its canonical decimal text), without the database; None for a
    string id (found by :func:`lookup`) and for what is no id at all (see :func:`valid`)."""
    if isinstance(client_id, bool):
        return None
    if isinstance(client_id, int):
        return client_id if 1 <= client_id <= BIGINT_MAX else None
    if isinstance(client_id, str) and _DECIMAL.fullmatch(client_id) and int(client_id) <= BIGINT_MAX:
        return int(client_id)
    return None


def valid(client_id: Any) -> bool:
    """Whether the value is a client id at all (the registry's rule: ``wire.CLIENT_ID``)."""
    return CLIENT_ID(client_id)


def string_id(client_id: Any) -> str | None:
    """The id as stored in ``crm_id`` when it is a string id (no integer key of its own), else None."""
    if isinstance(client_id, str) and client_key(client_id) is None and valid(client_id):
        return client_id
    return None


def crm_id_of(client_id: Any) -> str | None:
    """The ``crm_id`` a client with this id has (``42`` and ``"42"`` -> ``"42"``), None for no id."""
    key = client_key(client_id)
    return str(key) if key is not None else string_id(client_id)


def lookup(session: Session, client_ids: Iterable[Any]) -> dict[str, int]:
    """The keys of the string ids among ``client_ids`` that name a client: one query for them all, none
    when every id is an integer."""
    wanted = sorted({s for s in map(string_id, client_ids) if s is not None})
    if not wanted:
        return {}
    if session.get_bind().dialect.name == "postgresql":  # one parameter: the same SQL text for any batch
        where = Client.crm_id == any_(bindparam("crm_ids", wanted, type_=ARRAY(String)))
    else:
        where = Client.crm_id.in_(wanted)
    return {crm_id: key for crm_id, key in session.execute(select(Client.crm_id, Client.id).where(where))}


def client_keys(client_ids: Iterable[Any], session: Session | None = None, *,
                known: Mapping[str, int] | None = None) -> tuple[list[int], list[Any]]:
    """(row keys, ids that name no row), each de-duplicated in order.

    Integer ids resolve without the database.  String ids resolve through
    ``known`` (a batch's :func:`lookup`) or, given a ``session``, one
    :func:`lookup` of their own; without either they are unresolved.
    """
    client_ids = list(client_ids)
    if known is None:
        known = lookup(session, client_ids) if session is not None else {}
    keys: dict[int, None] = {}
    unresolved: dict[str, Any] = {}
    for client_id in client_ids:
        key = client_key(client_id)
        if key is None and isinstance(client_id, str):
            key = known.get(client_id)
        if key is None:
            unresolved.setdefault(str(client_id), client_id)
        else:
            keys.setdefault(key, None)
    return list(keys), list(unresolved.values())


def resolve(session: Session, client_id: Any) -> int | None:
    """The key of the client with this id, or None (no such string id, or no id at all).  An integer
    id resolves to its key whether or not the row exists."""
    key = client_key(client_id)
    if key is not None:
        return key
    return lookup(session, [client_id]).get(client_id) if string_id(client_id) else None


def new_key(session: Session) -> int:
    """A fresh key for a string id: negative, never reused (PostgreSQL's sequence; on SQLite, the embedded
    demo's single writer, one below the lowest key)."""
    if session.get_bind().dialect.name == "postgresql":
        return int(session.scalar(text(f"SELECT nextval('{STRING_KEY_SEQUENCE}')")))
    lowest = session.scalar(text("SELECT min(id) FROM clients WHERE id < 0"))
    return int(lowest or 0) - 1


def shown(key: int | None, crm_id: str | None = None) -> str | None:
    """A client's id as a person or a CRM sees it: ``crm_id`` (a positive key is its own decimal text)."""
    if key is None:
        return None
    if crm_id is not None:
        return crm_id
    return str(key) if key > 0 else f"#{key}"


def crm_ids(session: Session, keys: Iterable[int | None]) -> dict[int, str]:
    """The CRM ids of row keys, for display: positive keys without the database, negative ones in one query."""
    keys = {k for k in keys if k is not None}
    out = {k: str(k) for k in keys if k > 0}
    negative = sorted(k for k in keys if k < 0)
    if negative:
        out.update(session.execute(select(Client.id, Client.crm_id).where(Client.id.in_(negative))).all())
    return out


def shown_column(key: Any) -> Any:
    """SQL for :func:`shown` of a key column (an export's client id): a positive key's text, a negative key's
    ``crm_id`` (a subquery run only for those rows)."""
    by_crm = select(Client.crm_id).where(Client.id == key).scalar_subquery()
    return case((key < 0, by_crm), else_=cast(key, String))
