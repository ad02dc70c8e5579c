"""The demo CRM's own tables: groups (кружки), their members, lessons, invoices.

These belong to the pretend CRM, not to Vestnik: they have their own
metadata, a ``demo_`` prefix, and are created with ``create_all`` by the demo
(never by Vestnik's migrations).  They live in the same database as Vestnik's
tables, which is the point: a CRM change and its ``emit`` commit together.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Date, ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from vestnik.shared.models import UTCDateTime, utcnow


class DemoBase(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}


class Group(DemoBase):
    __tablename__ = "demo_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    room: Mapped[str] = mapped_column(String(100), default="")
    members: Mapped[list[GroupMember]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    lessons: Mapped[list[Lesson]] = relationship(back_populates="group", order_by="Lesson.starts_at")

    @property
    def client_ids(self) -> list[int]:
        """Who is told about this group's lessons: client ids as Vestnik knows them."""
        return sorted(m.client_id for m in self.members)


class GroupMember(DemoBase):
    __tablename__ = "demo_group_members"

    group_id: Mapped[int] = mapped_column(ForeignKey("demo_groups.id", ondelete="CASCADE"), primary_key=True)
    # The CRM's client id; Vestnik's ``clients.id`` is the same number.
    client_id: Mapped[int] = mapped_column(Integer, primary_key=True)


class Lesson(DemoBase):
    __tablename__ = "demo_lessons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("demo_groups.id", ondelete="CASCADE"))
    starts_at: Mapped[datetime] = mapped_column()
    room: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(20), default="scheduled")  # scheduled | cancelled

    group: Mapped[Group] = relationship(back_populates="lessons", lazy="joined")


class Invoice(DemoBase):
    __tablename__ = "demo_invoices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(Integer)
    number: Mapped[str] = mapped_column(String(50), default="")
    # Kopecks/cents as an integer: exact on every backend (SQLite has no decimal type).
    amount_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    due_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="unpaid")  # unpaid | paid
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column()

    @property
    def amount(self) -> Decimal:
        return Decimal(self.amount_minor).scaleb(-2)
