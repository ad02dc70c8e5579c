"""A CRM's client ids to the keys of Vestnik's ``clients`` rows, at the edges.

Events, the API and ``vestnik-client`` accept a client id as the CRM has it:
an integer or a string of up to 64 characters (``shared/wire.py``).  Inside,
a client is a row key.  Until the client identity migration, the key *is* the
CRM's integer id, so an integer (or its decimal text, without leading zeros)
resolves to itself and any other id names no client: it is reported as an
unknown client, like an integer Vestnik has not been told about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from vestnik.shared.wire import BIGINT_MAX

_DECIMAL = re.compile(r"[1-9][0-9]{0,18}")


def client_key(client_id: Any) -> int | None:
    """The row key for one CRM id, or None when no row can have it."""
    if isinstance(client_id, bool):
        return None
    if isinstance(client_id, int):
        return client_id if 1 <= client_id <= BIGINT_MAX else None
    if isinstance(client_id, str) and _DECIMAL.fullmatch(client_id) and int(client_id) <= BIGINT_MAX:
        return int(client_id)
    return None


def client_keys(client_ids: Iterable[Any]) -> tuple[list[int], list[Any]]:
    """(row keys, ids that name no row), each de-duplicated in order."""
    keys: dict[int, None] = {}
    unresolved: dict[str, Any] = {}
    for client_id in client_ids:
        key = client_key(client_id)
        if key is None:
            unresolved.setdefault(str(client_id), client_id)
        else:
            keys.setdefault(key, None)
    return list(keys), list(unresolved.values())
