"""Demo data: Vestnik's clients and the demo CRM's groups, lessons and invoices.

The five clients cover every preference path, so one click shows all of them:
both channels, Telegram only, email only, everything switched off, and an
English speaker in another time zone.  Seeding is idempotent: a restarted
demo keeps its history, and gets fresh lessons only when none are upcoming.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vestnik.shared.models import Client, ClientGroup
from vestnik.webapp.democrm_models import Group, GroupMember, Invoice, Lesson


def demo_clients() -> list[Client]:
    """Fresh (unsaved) demo clients: a new list per call, as ORM objects must not be shared."""
    return [
        Client(id=1, name="Анна Смирнова", email="anna.smirnova@example.ru", telegram_chat_id="100001",
               locale="ru", timezone="Europe/Moscow"),
        Client(id=2, name="Дмитрий Козлов", email="d.kozlov@example.ru", telegram_chat_id="100002",
               locale="ru", timezone="Asia/Yekaterinburg", notifications_email_enabled=False),
        Client(id=3, name="Ольга Петрова", email="olga.petrova@example.ru", telegram_chat_id=None,
               locale="ru", timezone="Asia/Vladivostok", notifications_telegram_enabled=False),
        Client(id=4, name="Сергей Иванов", email="sergey.ivanov@example.ru", telegram_chat_id="100004",
               locale="ru", timezone="Europe/Kaliningrad", notifications_telegram_enabled=False,
               notifications_email_enabled=False, allow_service_notifications=False),
        Client(id=5, name="Emily Clarke", email="emily.clarke@example.com", telegram_chat_id="100005",
               locale="en", timezone="Europe/London", allow_marketing_notifications=True),
    ]


#: Groups and their members (client ids).  Robotics has everyone, so cancelling
#: one of its lessons exercises every preference at once.
GROUPS = (
    ("Робототехника", "Аудитория 3", (1, 2, 3, 4, 5)),
    ("Шахматы", "Аудитория 1", (1, 3, 5)),
)

#: (group index, days from today, local start time) of the lessons seeded when none are upcoming.
LESSON_PLAN = ((0, 1, time(16, 0)), (1, 1, time(18, 30)), (0, 3, time(16, 0)), (1, 4, time(18, 30)),
               (0, 5, time(11, 0)), (1, 6, time(12, 0)))


def seed_clients(session: Session) -> int:
    """Add the demo clients that are missing; never overwrite edited ones. Returns how many were added."""
    existing = set(session.scalars(select(Client.id)))
    added = [c for c in demo_clients() if c.id not in existing]
    session.add_all(added)
    return len(added)


def seed_crm(session: Session, *, now: datetime, school_tz: str) -> None:
    """Groups once; a week of lessons whenever none are upcoming; one unpaid invoice once."""
    zone = ZoneInfo(school_tz)
    groups = list(session.scalars(select(Group).order_by(Group.id)))
    if not groups:
        for title, room, members in GROUPS:
            group = Group(title=title, room=room, members=[GroupMember(client_id=c) for c in members])
            session.add(group)
            groups.append(group)
            # Vestnik's own copy of the membership: admin broadcasts target groups (docs/broadcasts.md).
            session.add_all([ClientGroup(name=title, client_id=c) for c in members])
        session.flush()

    upcoming = session.scalar(
        select(func.count()).select_from(Lesson).where(Lesson.starts_at > now, Lesson.status == "scheduled")
    )
    if not upcoming:
        today = now.astimezone(zone).date()
        for index, days, at in LESSON_PLAN:
            group = groups[index % len(groups)]
            starts_at = datetime.combine(today + timedelta(days=days), at, tzinfo=zone)
            session.add(Lesson(group_id=group.id, starts_at=starts_at, room=group.room))

    if not session.scalar(select(func.count()).select_from(Invoice)):
        invoice = Invoice(client_id=1, amount_minor=450000, currency="RUB",
                          due_date=now.astimezone(zone).date() + timedelta(days=7))
        session.add(invoice)
        session.flush()
        invoice.number = invoice_number(invoice.id, now.astimezone(zone).date())


def invoice_number(invoice_id: int, day: date) -> str:
    return f"INV-{day.year}-{invoice_id:03d}"
