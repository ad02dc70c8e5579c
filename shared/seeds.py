"""Default templates shipped with Vestnik (Russian and English, Telegram and email).

``install_default_templates`` runs at every ``vestnik db upgrade``: it adds
missing templates and refreshes shipped ones, but never touches a template an
admin has edited (``updated_by`` is set then).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.events import get_event_type
from shared.models import NotificationTemplate, utcnow


@dataclass(frozen=True)
class Default:
    code: str
    event_type: str
    locale: str
    channel: str
    name: str
    body: str
    subject: str | None = None
    category: str = "service"


_EMAIL_FOOTER = {
    "ru": "<p style=\"color:#777\">Это автоматическое сообщение, отвечать на него не нужно.</p>",
    "en": "<p style=\"color:#777\">This is an automatic message; there is no need to reply.</p>",
}

DEFAULTS: list[Default] = [
    # ---- lesson_cancelled
    Default("LESSON_CANCELLED", "lesson_cancelled", "ru", "telegram", "Занятие отменено",
            "❌ <b>Занятие отменено</b>\n{{ lesson_title }}, {{ starts_at }}"
            "{% if reason %}\nПричина: {{ reason }}{% endif %}"),
    Default("LESSON_CANCELLED", "lesson_cancelled", "en", "telegram", "Lesson cancelled",
            "❌ <b>Lesson cancelled</b>\n{{ lesson_title }}, {{ starts_at }}"
            "{% if reason %}\nReason: {{ reason }}{% endif %}"),
    Default("LESSON_CANCELLED", "lesson_cancelled", "ru", "email", "Занятие отменено",
            "<p>Здравствуйте, {{ name }}!</p><p>Занятие <b>{{ lesson_title }}</b> {{ starts_at }} отменено."
            "{% if reason %} Причина: {{ reason }}.{% endif %}</p>" + _EMAIL_FOOTER["ru"],
            subject="Занятие «{{ lesson_title }}» {{ starts_at }} отменено"),
    Default("LESSON_CANCELLED", "lesson_cancelled", "en", "email", "Lesson cancelled",
            "<p>Hello {{ name }},</p><p>The <b>{{ lesson_title }}</b> lesson on {{ starts_at }} is cancelled."
            "{% if reason %} Reason: {{ reason }}.{% endif %}</p>" + _EMAIL_FOOTER["en"],
            subject="{{ lesson_title }} on {{ starts_at }} is cancelled"),
    # ---- lesson_rescheduled
    Default("LESSON_RESCHEDULED", "lesson_rescheduled", "ru", "telegram", "Занятие перенесено",
            "🔁 <b>Занятие перенесено</b>\n{{ lesson_title }}: {{ old_starts_at }} → <b>{{ starts_at }}</b>"
            "{% if room %}\nАудитория: {{ room }}{% endif %}"),
    Default("LESSON_RESCHEDULED", "lesson_rescheduled", "en", "telegram", "Lesson moved",
            "🔁 <b>Lesson moved</b>\n{{ lesson_title }}: {{ old_starts_at }} → <b>{{ starts_at }}</b>"
            "{% if room %}\nRoom: {{ room }}{% endif %}"),
    Default("LESSON_RESCHEDULED", "lesson_rescheduled", "ru", "email", "Занятие перенесено",
            "<p>Здравствуйте, {{ name }}!</p><p>Занятие <b>{{ lesson_title }}</b> перенесено "
            "с {{ old_starts_at }} на <b>{{ starts_at }}</b>.{% if room %} Аудитория: {{ room }}.{% endif %}</p>"
            + _EMAIL_FOOTER["ru"],
            subject="Занятие «{{ lesson_title }}» перенесено на {{ starts_at }}"),
    Default("LESSON_RESCHEDULED", "lesson_rescheduled", "en", "email", "Lesson moved",
            "<p>Hello {{ name }},</p><p>The <b>{{ lesson_title }}</b> lesson moved from {{ old_starts_at }} "
            "to <b>{{ starts_at }}</b>.{% if room %} Room: {{ room }}.{% endif %}</p>" + _EMAIL_FOOTER["en"],
            subject="{{ lesson_title }} moved to {{ starts_at }}"),
    # ---- invoice_created
    Default("INVOICE_CREATED", "invoice_created", "ru", "telegram", "Счёт на оплату",
            "🧾 <b>Счёт {{ invoice_number }}</b> на {{ amount|money(currency) }}"
            "{% if due_date %}\nОплатить до {{ due_date }}{% endif %}\n"
            "<a href=\"{{ payment_url }}\">Оплатить</a>"),
    Default("INVOICE_CREATED", "invoice_created", "en", "telegram", "Invoice",
            "🧾 <b>Invoice {{ invoice_number }}</b> for {{ amount|money(currency) }}"
            "{% if due_date %}\nDue by {{ due_date }}{% endif %}\n"
            "<a href=\"{{ payment_url }}\">Pay now</a>"),
    Default("INVOICE_CREATED", "invoice_created", "ru", "email", "Счёт на оплату",
            "<p>Здравствуйте, {{ name }}!</p><p>Выставлен счёт <b>{{ invoice_number }}</b> "
            "на сумму <b>{{ amount|money(currency) }}</b>.{% if due_date %} Оплатить до {{ due_date }}.{% endif %}"
            "</p><p><a href=\"{{ payment_url }}\">Оплатить онлайн</a></p>" + _EMAIL_FOOTER["ru"],
            subject="Счёт {{ invoice_number }} на {{ amount|money(currency) }}"),
    Default("INVOICE_CREATED", "invoice_created", "en", "email", "Invoice",
            "<p>Hello {{ name }},</p><p>Invoice <b>{{ invoice_number }}</b> for "
            "<b>{{ amount|money(currency) }}</b> is ready.{% if due_date %} Due by {{ due_date }}.{% endif %}</p>"
            "<p><a href=\"{{ payment_url }}\">Pay online</a></p>" + _EMAIL_FOOTER["en"],
            subject="Invoice {{ invoice_number }} for {{ amount|money(currency) }}"),
    # ---- payment_success
    Default("PAYMENT_SUCCESS", "payment_success", "ru", "telegram", "Оплата получена",
            "✅ <b>Оплата получена</b>: {{ amount|money(currency) }}"
            "{% if invoice_number %} по счёту {{ invoice_number }}{% endif %}. Спасибо!"),
    Default("PAYMENT_SUCCESS", "payment_success", "en", "telegram", "Payment received",
            "✅ <b>Payment received</b>: {{ amount|money(currency) }}"
            "{% if invoice_number %} for invoice {{ invoice_number }}{% endif %}. Thank you!"),
    Default("PAYMENT_SUCCESS", "payment_success", "ru", "email", "Оплата получена",
            "<p>Здравствуйте, {{ name }}!</p><p>Мы получили оплату <b>{{ amount|money(currency) }}</b>"
            "{% if invoice_number %} по счёту {{ invoice_number }}{% endif %}. Спасибо!</p>" + _EMAIL_FOOTER["ru"],
            subject="Оплата {{ amount|money(currency) }} получена"),
    Default("PAYMENT_SUCCESS", "payment_success", "en", "email", "Payment received",
            "<p>Hello {{ name }},</p><p>We received your payment of <b>{{ amount|money(currency) }}</b>"
            "{% if invoice_number %} for invoice {{ invoice_number }}{% endif %}. Thank you!</p>"
            + _EMAIL_FOOTER["en"],
            subject="Payment of {{ amount|money(currency) }} received"),
    # ---- mass_broadcast: a general announcement admins can reuse
    Default("ANNOUNCEMENT", "mass_broadcast", "ru", "telegram", "Объявление",
            "📣 <b>{{ title }}</b>\n{{ text }}"),
    Default("ANNOUNCEMENT", "mass_broadcast", "en", "telegram", "Announcement",
            "📣 <b>{{ title }}</b>\n{{ text }}"),
    Default("ANNOUNCEMENT", "mass_broadcast", "ru", "email", "Объявление",
            "<p>Здравствуйте, {{ name }}!</p><h3>{{ title }}</h3><p>{{ text }}</p>" + _EMAIL_FOOTER["ru"],
            subject="{{ title }}"),
    Default("ANNOUNCEMENT", "mass_broadcast", "en", "email", "Announcement",
            "<p>Hello {{ name }},</p><h3>{{ title }}</h3><p>{{ text }}</p>" + _EMAIL_FOOTER["en"],
            subject="{{ title }}"),
]


def _variables_schema(event_type: str) -> dict:
    spec = get_event_type(event_type)
    return {
        "event_type": event_type,
        "variables": [
            {"name": f.name, "type": f.type, "required": f.required, "example": f.example,
             "description": f.description}
            for f in spec.variables()
        ],
    }


def install_default_templates(session: Session) -> tuple[int, int]:
    """Add missing default templates, refresh untouched ones; return (added, refreshed)."""
    existing = {
        (t.code, t.channel, t.locale): t for t in session.scalars(select(NotificationTemplate))
    }
    added = refreshed = 0
    for d in DEFAULTS:
        current = existing.get((d.code, d.channel, d.locale))
        values = {
            "name": d.name,
            "description": get_event_type(d.event_type).description,
            "subject": d.subject,
            "body": d.body,
            "category": d.category,
            "variables_schema": _variables_schema(d.event_type),
        }
        if current is None:
            session.add(NotificationTemplate(code=d.code, channel=d.channel, locale=d.locale, **values))
            added += 1
        elif current.updated_by is None and any(getattr(current, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(current, k, v)
            current.updated_at = utcnow()
            refreshed += 1
    session.flush()
    return added, refreshed
