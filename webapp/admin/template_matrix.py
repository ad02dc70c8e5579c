"""Templates grouped by event: per event type, each message it sends (a rule step's template), as a
matrix of channel × locale, with what is missing or stale marked.

- **missing**: no active template for that code, channel and locale (the message falls back to the
  default locale, or is not sent on that channel);
- **stale**: a translation last changed before another locale of the same code and channel was
  (the other one was edited after it: it may say something this one does not).

Templates no rule uses (a broadcast's ``ANNOUNCEMENT``) are listed after the events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask_admin import expose
from sqlalchemy import select

from vestnik.shared.locales import SUPPORTED
from vestnik.shared.models import NotificationTemplate
from vestnik.webapp.admin.base import SecureView, can_write
from vestnik.webapp.db import get_session
from vestnik.workers.channels import CHANNELS
from vestnik.workers.rules import DEFAULT_RULES

#: edits this close together are one edit (templates installed together are not stale)
SAME_EDIT = timedelta(minutes=1)


@dataclass
class Cell:
    template: NotificationTemplate | None
    state: str  # "ok", "missing", "stale", "inactive", "unused" (a channel the step never uses)
    newer: str = ""  # for stale: the locale edited later


@dataclass
class Line:
    event: str
    step: str
    code: str
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)


def _lines() -> list[tuple[str, str, str, tuple[str, ...] | None]]:
    """(event, step, code, channels or None for all) for every step of every rule, then unused codes."""
    out = []
    for event_type, rule in DEFAULT_RULES.items():
        for step in rule.steps:
            if step.template_code:
                out.append((event_type, step.name, step.template_code, step.channels))
    return out


def matrix(templates: list[NotificationTemplate]) -> tuple[list[str], list[str], list[Line]]:
    channels = sorted({t.channel for t in templates} | {c for c, cls in CHANNELS.items() if cls.address_field})
    locales = sorted({t.locale for t in templates} | set(SUPPORTED))
    by_key = {(t.code, t.channel, t.locale): t for t in templates}
    wanted = _lines()
    used = {code for _, _, code, _ in wanted}
    wanted += [("", "", code, None) for code in sorted({t.code for t in templates} - used)]
    lines = []
    for event_type, step, code, only in wanted:
        line = Line(event_type, step, code)
        for ch in channels:
            latest = max((t.updated_at for (c, chn, _), t in by_key.items() if c == code and chn == ch
                          and t.is_active and t.updated_at), default=None)
            for loc in locales:
                t = by_key.get((code, ch, loc))
                if only is not None and ch not in only:
                    line.cells[(ch, loc)] = Cell(t, "unused")
                elif t is None:
                    line.cells[(ch, loc)] = Cell(None, "missing")
                elif not t.is_active:
                    line.cells[(ch, loc)] = Cell(t, "inactive")
                elif latest is not None and t.updated_at and latest - t.updated_at > SAME_EDIT:
                    newer = next(lo for (c, chn, lo), o in by_key.items()
                                 if c == code and chn == ch and o.updated_at == latest)
                    line.cells[(ch, loc)] = Cell(t, "stale", newer)
                else:
                    line.cells[(ch, loc)] = Cell(t, "ok")
        lines.append(line)
    return channels, locales, lines


class TemplatesByEventView(SecureView):
    """The Templates menu entry: the matrix; the flat list (search, filters) is one link away."""

    @expose("/")
    def index(self) -> Any:
        templates = list(get_session().scalars(select(NotificationTemplate)))
        channels, locales, lines = matrix(templates)
        counts = {s: sum(1 for ln in lines for c in ln.cells.values() if c.state == s) for s in ("missing", "stale")}
        return self.render("admin/template_matrix.html", channels=channels, locales=locales, lines=lines,
                           counts=counts, can_write=can_write())
