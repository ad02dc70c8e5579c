"""A delivery ledger over the test sinks: what was expected against what the
fake Bot API and SMTP server actually received.

Each expected message is named by its channel, address and a marker that
appears once in its text (for instance a lesson title unique to the event).
``check`` counts:

- **lost**: expected, never received, and not flagged "delivery uncertain"
  in the database (an uncertain row is known to the admin; a lost one is not);
- **duplicated**: received more than once;
- **unexpected**: received, but nobody expected it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Expected:
    channel: str  # "telegram" | "email"
    address: str  # chat id or email address
    marker: str  # a string unique to this message


@dataclass
class LedgerReport:
    expected: int
    received: int
    lost: list[Expected] = field(default_factory=list)
    duplicated: list[Expected] = field(default_factory=list)
    unexpected: list[tuple[str, str, str]] = field(default_factory=list)
    uncertain: int = 0

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected)

    def __str__(self) -> str:
        return (f"expected {self.expected}, received {self.received}: lost {len(self.lost)}, "
                f"duplicated {len(self.duplicated)}, unexpected {len(self.unexpected)}, "
                f"flagged uncertain {self.uncertain}")


def received(bot_api=None, smtp_server=None) -> list[tuple[str, str, str]]:
    """(channel, address, text) of every message the sinks accepted."""
    out: list[tuple[str, str, str]] = []
    if bot_api is not None:
        out += [("telegram", m["chat_id"], m["text"]) for m in bot_api.messages()]
    if smtp_server is not None:
        for m in smtp_server.messages():
            for to in m["to"] if isinstance(m["to"], list) else [m["to"]]:
                out.append(("email", to, f"{m['subject']}\n{m['text']}"))
    return out


def check(expected: Iterable[Expected], messages: list[tuple[str, str, str]],
          uncertain: Iterable[tuple[str, str, str]] = ()) -> LedgerReport:
    """Compare; ``uncertain`` lists (channel, address, marker) of rows flagged delivery-uncertain."""
    expected = list(expected)
    flagged = set(uncertain)
    hits: Counter[Expected] = Counter()
    unexpected = []
    by_address: dict[tuple[str, str], list[Expected]] = {}
    for e in expected:
        by_address.setdefault((e.channel, e.address), []).append(e)
    for channel, address, text in messages:
        match = [e for e in by_address.get((channel, address), ()) if e.marker in text]
        if not match:
            unexpected.append((channel, address, text[:80]))
        for e in match:
            hits[e] += 1
    report = LedgerReport(expected=len(expected), received=len(messages), uncertain=len(flagged))
    for e in expected:
        if hits[e] == 0 and (e.channel, e.address, e.marker) not in flagged:
            report.lost.append(e)
        elif hits[e] > 1:
            report.duplicated.append(e)
    report.unexpected = unexpected
    return report
