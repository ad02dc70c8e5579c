"""The audit as a person reads it: who (a name and an email, not ``admin:1``), what (a link to the
object), and what changed (``field: old → new``, not raw JSON).

Used by the audit list (``webapp/admin/extra.py``) and by each broadcast's page.  Names are read
once per request (admins are few; clients and keys are looked up as they appear).
"""

from __future__ import annotations

import json
from typing import Any

from flask import g, url_for
from markupsafe import Markup
from sqlalchemy import select
from werkzeug.routing import BuildError

from vestnik.shared import client_ids
from vestnik.shared.models import AdminUser, ApiKey, Client
from vestnik.webapp.db import get_session

#: object type -> (endpoint, argument name) of its page
OBJECT_PAGES = {
    "broadcast": ("broadcasts.details", "broadcast_id"),
    "client": ("client.details_view", "id"),
    "notification": ("notification.details_view", "id"),
    "template": ("template.edit_view", "id"),
    "outbox_event": ("outboxevent.details_view", "id"),
    "admin": None,
    "api_key": None,
}
SHOWN_CHARS = 120


def _people() -> dict[int, AdminUser]:
    if "audit_admins" not in g:
        g.audit_admins = {a.id: a for a in get_session().scalars(select(AdminUser))}
    return g.audit_admins


def _lookup(kind: str, model: Any, key: int) -> Any:
    cache = g.setdefault(f"audit_{kind}", {})
    if key not in cache:
        cache[key] = get_session().get(model, key)
    return cache[key]


def _client(crm_id: str) -> Client | None:
    """The client the audit names by the CRM's id ("client:42", "client:7f0c1b9e-..."; shared/client_ids.py)."""
    cache = g.setdefault("audit_clients", {})
    if crm_id not in cache:
        key = client_ids.resolve(get_session(), crm_id)
        cache[crm_id] = None if key is None else get_session().get(Client, key)
    return cache[crm_id]


def actor_label(actor: str | None) -> Markup:
    """``admin:1`` -> "Anna Smirnova <anna@school.test>"; ``client:5`` -> the client's name, linked."""
    kind, _, raw = (actor or "").partition(":")
    if kind == "client" and raw:
        client = _client(raw)
        if client is not None:
            return Markup('<a href="{}" title="{}">{}</a> <small class="text-muted">client</small>').format(
                url_for("client.details_view", id=client.id), actor, client.name or f"client #{client.crm_id}")
    if raw.isdigit():
        key = int(raw)
        if kind == "admin":
            person = _people().get(key)
            if person is not None:
                label = f"{person.name} <{person.email}>" if person.name else person.email
                return Markup('<span title="{}">{}</span>').format(actor, label)
        if kind == "api_key":
            api_key = _lookup("keys", ApiKey, key)
            if api_key is not None:
                return Markup('<span title="{}">API key {}</span>').format(actor, str(api_key))
    return Markup("{}").format(actor or "")


def object_link(object_type: str | None, object_id: str | None) -> Markup:
    """The object, linked to its page when it has one (a list of ids links to none)."""
    label = f"{object_type or ''} #{object_id}" if object_id else (object_type or "")
    page = OBJECT_PAGES.get(object_type or "")
    if object_type == "client" and object_id:  # named by the CRM's id; its page by the row key
        client = _client(object_id)
        object_id = None if client is None else str(client.id)
        if object_id is None:
            return Markup("{}").format(label)
    if page is None or not object_id or not object_id.lstrip("-").isdigit():
        return Markup("{}").format(label)
    endpoint, arg = page
    try:
        href = url_for(endpoint, **{arg: int(object_id)})
    except BuildError:
        return Markup("{}").format(label)
    return Markup('<a href="{}">{}</a>').format(href, label)


def _short(value: Any) -> str:
    if isinstance(value, dict) and all(not isinstance(v, dict | list) for v in value.values()):
        text = ", ".join(f"{k} {v}" for k, v in value.items()) or "none"  # {"email": 4} -> "email 4"
    elif isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        text = ", ".join(str(v) for v in value) or "none"
    else:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 1] + "…"


def details_html(details: dict[str, Any] | None) -> Markup:
    """``changes`` ({field: [before, after]}) as lines "field: before → after"; the rest as "key: value"."""
    if not details:
        return Markup("")
    lines = []
    changes = details.get("changes") if isinstance(details, dict) else None
    if isinstance(changes, dict):
        for field, pair in changes.items():
            if isinstance(pair, list | tuple) and len(pair) == 2:
                lines.append(Markup('{}: <del class="text-danger">{}</del> → <ins class="text-success">{}</ins>')
                             .format(field, _short(pair[0]), _short(pair[1])))
            else:
                lines.append(Markup("{}: {}").format(field, _short(pair)))
    rest = details.items() if isinstance(details, dict) else [("details", details)]
    for key, value in rest:
        if key != "changes":
            lines.append(Markup("{}: {}").format(key.replace("_", " "), _short(value)))
    return Markup('<ul class="list-unstyled mb-0 small">{}</ul>').format(
        Markup("").join(Markup("<li>{}</li>").format(line) for line in lines))


def install(app: Any) -> None:
    """Jinja globals for templates that show audit rows (a broadcast's page)."""
    app.jinja_env.globals.update(audit_actor=actor_label, audit_object=object_link, audit_details=details_html)
