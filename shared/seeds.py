"""Default templates shipped with Vestnik: every code x channel in every locale of
``shared/locales.py`` (Russian, Uzbek in the Latin script, English), Telegram, email and webhook.

``install_default_templates`` runs at every ``vestnik db upgrade``: it adds
missing templates and refreshes shipped ones, but never touches a template an
admin has edited (``updated_by`` is set then).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from vestnik.shared.events import get_event_type
from vestnik.shared.models import NotificationTemplate, utcnow


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
    "uz-latn": "<p style=\"color:#777\">Bu avtomatik xabar, unga javob berish shart emas.</p>",
}
_UZ_FOOTER = _EMAIL_FOOTER["uz-latn"]

#: Uzbek (Latin script): oʻ and gʻ are written with U+02BB, the tutuq belgisi (maʼlumot) with U+02BC,
#: as the 1995 alphabet and the flower shop's texts do.  Suffixes are not glued to a variable
#: ("{{ starts_at }}dan"): the sentences are built so that a variable stands alone.
_UZBEK: list[Default] = [
    Default(code, event, "uz-latn", channel, name, body, subject)
    for code, event, channel, name, body, subject in (
        ("LESSON_CANCELLED", "lesson_cancelled", "telegram", "Dars bekor qilindi",
         "❌ <b>Dars bekor qilindi</b>\n{{ lesson_title }}, {{ starts_at }}"
         "{% if reason %}\nSabab: {{ reason }}{% endif %}", None),
        ("LESSON_CANCELLED", "lesson_cancelled", "email", "Dars bekor qilindi",
         "<p>Assalomu alaykum, {{ name }}!</p><p><b>{{ lesson_title }}</b> darsi ({{ starts_at }}) bekor qilindi."
         "{% if reason %} Sabab: {{ reason }}.{% endif %}</p>" + _UZ_FOOTER,
         "«{{ lesson_title }}» darsi ({{ starts_at }}) bekor qilindi"),
        ("LESSON_RESCHEDULED", "lesson_rescheduled", "telegram", "Dars koʻchirildi",
         "🔁 <b>Dars koʻchirildi</b>\n{{ lesson_title }}: {{ old_starts_at }} → <b>{{ starts_at }}</b>"
         "{% if room %}\nXona: {{ room }}{% endif %}", None),
        ("LESSON_RESCHEDULED", "lesson_rescheduled", "email", "Dars koʻchirildi",
         "<p>Assalomu alaykum, {{ name }}!</p><p><b>{{ lesson_title }}</b> darsi koʻchirildi. Yangi vaqt: "
         "<b>{{ starts_at }}</b> (avval: {{ old_starts_at }}).{% if room %} Xona: {{ room }}.{% endif %}</p>"
         + _UZ_FOOTER,
         "«{{ lesson_title }}» darsi koʻchirildi: {{ starts_at }}"),
        ("INVOICE_CREATED", "invoice_created", "telegram", "Toʻlov uchun hisob",
         "🧾 <b>Hisob {{ invoice_number }}</b>: {{ amount|money(currency) }}"
         "{% if due_date %}\nToʻlov muddati: {{ due_date }}{% endif %}\n"
         "<a href=\"{{ payment_url }}\">Toʻlash</a>", None),
        ("INVOICE_CREATED", "invoice_created", "email", "Toʻlov uchun hisob",
         "<p>Assalomu alaykum, {{ name }}!</p><p>Sizga <b>{{ invoice_number }}</b> raqamli hisob yuborildi, "
         "summasi: <b>{{ amount|money(currency) }}</b>.{% if due_date %} Toʻlov muddati: {{ due_date }}.{% endif %}"
         "</p><p><a href=\"{{ payment_url }}\">Onlayn toʻlash</a></p>" + _UZ_FOOTER,
         "Hisob {{ invoice_number }}: {{ amount|money(currency) }}"),
        ("PAYMENT_SUCCESS", "payment_success", "telegram", "Toʻlov qabul qilindi",
         "✅ <b>Toʻlov qabul qilindi</b>: {{ amount|money(currency) }}"
         "{% if invoice_number %} (hisob {{ invoice_number }}){% endif %}. Rahmat!", None),
        ("PAYMENT_SUCCESS", "payment_success", "email", "Toʻlov qabul qilindi",
         "<p>Assalomu alaykum, {{ name }}!</p><p>Toʻlovingiz qabul qilindi: <b>{{ amount|money(currency) }}</b>"
         "{% if invoice_number %} (hisob {{ invoice_number }}){% endif %}. Rahmat!</p>" + _UZ_FOOTER,
         "Toʻlov qabul qilindi: {{ amount|money(currency) }}"),
        ("LESSON_REMINDER", "lesson_reminder", "telegram", "Dars haqida eslatma",
         "⏰ Eslatma: <b>{{ lesson_title }}</b> — {{ starts_at }}{% if room %}, {{ room }}{% endif %}.", None),
        ("LESSON_REMINDER", "lesson_reminder", "email", "Dars haqida eslatma",
         "<p>Assalomu alaykum, {{ name }}!</p><p>Eslatib oʻtamiz: <b>{{ lesson_title }}</b> darsi — {{ starts_at }}"
         "{% if room %} ({{ room }}){% endif %}.</p>" + _UZ_FOOTER,
         "Eslatma: {{ lesson_title }}, {{ starts_at }}"),
        ("PAYMENT_REMINDER", "invoice_created", "telegram", "Toʻlov haqida eslatma",
         "💳 <b>{{ invoice_number }}</b> raqamli hisob ({{ amount|money(currency) }}) hali toʻlanmagan.\n"
         "<a href=\"{{ payment_url }}\">Toʻlash</a>", None),
        ("PAYMENT_REMINDER", "invoice_created", "email", "Toʻlov haqida eslatma",
         "<p>Assalomu alaykum, {{ name }}!</p><p><b>{{ invoice_number }}</b> raqamli hisob "
         "({{ amount|money(currency) }}) hali toʻlanmagan.</p>"
         "<p><a href=\"{{ payment_url }}\">Onlayn toʻlash</a></p>" + _UZ_FOOTER,
         "Eslatma: hisob {{ invoice_number }} toʻlanmagan"),
        ("ONBOARDING_1", "client_registered", "telegram", "Tanishuv: 0-kun",
         "👋 {{ name }}, xush kelibsiz! Shu yerdan boshlang: <a href=\"{{ first_step_url }}\">birinchi qadam</a>",
         None),
        ("ONBOARDING_2", "client_registered", "telegram", "Tanishuv: 3-kun",
         "{{ name }}, siz hali birinchi darsga yozilmadingiz. <a href=\"{{ first_step_url }}\">Yozilish</a>",
         None),
        ("ONBOARDING_3", "client_registered", "telegram", "Tanishuv: 7-kun",
         "{{ name }}, sizni kutamiz! Birinchi dars — bepul: <a href=\"{{ first_step_url }}\">yozilish</a>",
         None),
        ("ONBOARDING_1", "client_registered", "email", "Tanishuv: 0-kun",
         "<p>{{ name }}, xush kelibsiz!</p><p><a href=\"{{ first_step_url }}\">Birinchi qadam</a></p>",
         "Xush kelibsiz!"),
        ("ONBOARDING_2", "client_registered", "email", "Tanishuv: 3-kun",
         "<p>{{ name }}, siz hali birinchi darsga yozilmadingiz.</p>"
         "<p><a href=\"{{ first_step_url }}\">Yozilish</a></p>", "Birinchi dars sizni kutmoqda"),
        ("ONBOARDING_3", "client_registered", "email", "Tanishuv: 7-kun",
         "<p>{{ name }}, birinchi dars — bepul.</p><p><a href=\"{{ first_step_url }}\">Yozilish</a></p>",
         "Birinchi dars bepul"),
        ("BOOKING_CONFIRMED", "booking_created", "telegram", "Yozilish tasdiqlandi",
         "✅ Siz yozildingiz: <b>{{ service }}</b>, {{ starts_at }}{% if place %}, {{ place }}{% endif %}.", None),
        ("BOOKING_CONFIRMED", "booking_created", "email", "Yozilish tasdiqlandi",
         "<p>{{ name }}, siz yozildingiz: <b>{{ service }}</b>, {{ starts_at }}"
         "{% if place %}, {{ place }}{% endif %}.</p>", "Yozilish tasdiqlandi: {{ service }}, {{ starts_at }}"),
        ("BOOKING_REMINDER", "booking_created", "telegram", "Yozilish haqida eslatma",
         "⏰ Ertaga: <b>{{ service }}</b>, {{ starts_at }}{% if place %}, {{ place }}{% endif %}.", None),
        ("BOOKING_REMINDER", "booking_created", "email", "Yozilish haqida eslatma",
         "<p>{{ name }}, eslatib oʻtamiz: <b>{{ service }}</b>, {{ starts_at }}.</p>", "Eslatma: {{ service }}"),
        ("BOOKING_FEEDBACK", "booking_created", "telegram", "Tashrifni baholash",
         "«{{ service }}» qanday oʻtdi? 1 dan 5 gacha baho bering:", None),
        ("BOOKING_MOVED", "booking_moved", "telegram", "Yozilish koʻchirildi",
         "🔁 Yozilish koʻchirildi: <b>{{ service }}</b>, yangi vaqt: {{ starts_at }}.", None),
        ("BOOKING_MOVED", "booking_moved", "email", "Yozilish koʻchirildi",
         "<p>{{ name }}, <b>{{ service }}</b> yozilishingiz koʻchirildi. Yangi vaqt: {{ starts_at }}.</p>",
         "Yozilish koʻchirildi: {{ starts_at }}"),
        ("BOOKING_CANCELLED", "booking_cancelled", "telegram", "Yozilish bekor qilindi",
         "❌ Yozilish bekor qilindi: <b>{{ service }}</b>, {{ starts_at }}.", None),
        ("BOOKING_CANCELLED", "booking_cancelled", "email", "Yozilish bekor qilindi",
         "<p>{{ name }}, <b>{{ service }}</b> ({{ starts_at }}) yozilishingiz bekor qilindi.</p>",
         "Yozilish bekor qilindi"),
        ("FEEDBACK_REVIEW_LINKS", "feedback_received", "telegram", "Beshlik baho uchun rahmat",
         "Yuqori baho uchun rahmat! 🙏 Fikr qoldirsangiz, juda xursand boʻlamiz: "
         "<a href=\"https://yandex.ru/maps\">Yandex Xaritalar</a> · <a href=\"https://2gis.ru\">2GIS</a>", None),
        ("FEEDBACK_THANKS", "feedback_received", "telegram", "Baho uchun rahmat",
         "Bahoingiz ({{ rating }}) uchun rahmat! Fikringizni albatta inobatga olamiz.", None),
        ("JOB_FINISHED", "job_finished", "telegram", "Vazifa bajarildi",
         "📊 <b>{{ job_title }}</b> tayyor.\n{% for k, v in stats.items() %}{{ k }}: {{ v }}\n{% endfor %}", None),
        ("LOW_BALANCE", "balance_changed", "telegram", "Balans kam",
         "⚠️ Balansingizda {{ balance|money(currency) }} qoldi — bu {{ threshold|money(currency) }} chegarasidan "
         "kam.", None),
        ("LOW_BALANCE", "balance_changed", "email", "Balans kam",
         "<p>{{ name }}, balansingizda {{ balance|money(currency) }} qoldi — bu "
         "{{ threshold|money(currency) }} chegarasidan kam.</p>", "Balans chegaradan past: "
         "{{ threshold|money(currency) }}"),
        ("ANNOUNCEMENT", "mass_broadcast", "telegram", "Eʼlon", "📣 <b>{{ title }}</b>\n{{ text }}", None),
        ("ANNOUNCEMENT", "mass_broadcast", "email", "Eʼlon",
         "<p>Assalomu alaykum, {{ name }}!</p><h3>{{ title }}</h3><p>{{ text }}</p>" + _UZ_FOOTER, "{{ title }}"),
    )
]

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
    # ---- lesson reminders (lesson_reminder, lesson_rescheduled)
    *[Default("LESSON_REMINDER", "lesson_reminder", loc, ch, name, body, subj) for loc, ch, name, body, subj in (
        ("ru", "telegram", "Напоминание о занятии",
         "⏰ Напоминаем: <b>{{ lesson_title }}</b> — {{ starts_at }}{% if room %}, {{ room }}{% endif %}.", None),
        ("en", "telegram", "Lesson reminder",
         "⏰ Reminder: <b>{{ lesson_title }}</b> — {{ starts_at }}{% if room %}, {{ room }}{% endif %}.", None),
        ("ru", "email", "Напоминание о занятии",
         "<p>Здравствуйте, {{ name }}!</p><p>Напоминаем о занятии <b>{{ lesson_title }}</b> {{ starts_at }}"
         "{% if room %} ({{ room }}){% endif %}.</p>" + _EMAIL_FOOTER["ru"],
         "Напоминание: {{ lesson_title }} {{ starts_at }}"),
        ("en", "email", "Lesson reminder",
         "<p>Hello {{ name }},</p><p>A reminder of <b>{{ lesson_title }}</b> on {{ starts_at }}"
         "{% if room %} ({{ room }}){% endif %}.</p>" + _EMAIL_FOOTER["en"],
         "Reminder: {{ lesson_title }} on {{ starts_at }}"),
    )],
    # ---- payment reminders (invoice_created, cancelled by payment_success)
    *[Default("PAYMENT_REMINDER", "invoice_created", loc, ch, name, body, subj) for loc, ch, name, body, subj in (
        ("ru", "telegram", "Напоминание об оплате",
         "💳 Счёт <b>{{ invoice_number }}</b> на {{ amount|money(currency) }} ещё не оплачен.\n"
         "<a href=\"{{ payment_url }}\">Оплатить</a>", None),
        ("en", "telegram", "Payment reminder",
         "💳 Invoice <b>{{ invoice_number }}</b> for {{ amount|money(currency) }} is not paid yet.\n"
         "<a href=\"{{ payment_url }}\">Pay now</a>", None),
        ("ru", "email", "Напоминание об оплате",
         "<p>Здравствуйте, {{ name }}!</p><p>Счёт <b>{{ invoice_number }}</b> на {{ amount|money(currency) }} "
         "ещё не оплачен.</p><p><a href=\"{{ payment_url }}\">Оплатить онлайн</a></p>" + _EMAIL_FOOTER["ru"],
         "Напоминание: счёт {{ invoice_number }} не оплачен"),
        ("en", "email", "Payment reminder",
         "<p>Hello {{ name }},</p><p>Invoice <b>{{ invoice_number }}</b> for {{ amount|money(currency) }} "
         "is not paid yet.</p><p><a href=\"{{ payment_url }}\">Pay online</a></p>" + _EMAIL_FOOTER["en"],
         "Reminder: invoice {{ invoice_number }} is unpaid"),
    )],
    # ---- onboarding chain (client_registered, stopped by client_activated)
    *[Default(code, "client_registered", loc, ch, name, body, subj) for code, loc, ch, name, body, subj in (
        ("ONBOARDING_1", "ru", "telegram", "Знакомство: день 0",
         "👋 {{ name }}, добро пожаловать! Начните отсюда: <a href=\"{{ first_step_url }}\">первый шаг</a>", None),
        ("ONBOARDING_1", "en", "telegram", "Onboarding: day 0",
         "👋 Welcome, {{ name }}! Start here: <a href=\"{{ first_step_url }}\">first step</a>", None),
        ("ONBOARDING_2", "ru", "telegram", "Знакомство: день 3",
         "{{ name }}, вы ещё не записались на первое занятие. <a href=\"{{ first_step_url }}\">Записаться</a>",
         None),
        ("ONBOARDING_2", "en", "telegram", "Onboarding: day 3",
         "{{ name }}, you have not booked a first lesson yet. <a href=\"{{ first_step_url }}\">Book now</a>", None),
        ("ONBOARDING_3", "ru", "telegram", "Знакомство: день 7",
         "{{ name }}, ждём вас! Первое занятие — бесплатно: <a href=\"{{ first_step_url }}\">записаться</a>", None),
        ("ONBOARDING_3", "en", "telegram", "Onboarding: day 7",
         "{{ name }}, we are waiting for you! The first lesson is free: "
         "<a href=\"{{ first_step_url }}\">book</a>", None),
        ("ONBOARDING_1", "ru", "email", "Знакомство: день 0",
         "<p>{{ name }}, добро пожаловать!</p><p><a href=\"{{ first_step_url }}\">Первый шаг</a></p>",
         "Добро пожаловать!"),
        ("ONBOARDING_1", "en", "email", "Onboarding: day 0",
         "<p>Welcome, {{ name }}!</p><p><a href=\"{{ first_step_url }}\">Your first step</a></p>", "Welcome!"),
        ("ONBOARDING_2", "ru", "email", "Знакомство: день 3",
         "<p>{{ name }}, вы ещё не записались на первое занятие.</p>"
         "<p><a href=\"{{ first_step_url }}\">Записаться</a></p>", "Первое занятие ждёт вас"),
        ("ONBOARDING_2", "en", "email", "Onboarding: day 3",
         "<p>{{ name }}, you have not booked a first lesson yet.</p>"
         "<p><a href=\"{{ first_step_url }}\">Book now</a></p>", "Your first lesson is waiting"),
        ("ONBOARDING_3", "ru", "email", "Знакомство: день 7",
         "<p>{{ name }}, первое занятие — бесплатно.</p><p><a href=\"{{ first_step_url }}\">Записаться</a></p>",
         "Первое занятие бесплатно"),
        ("ONBOARDING_3", "en", "email", "Onboarding: day 7",
         "<p>{{ name }}, the first lesson is free.</p><p><a href=\"{{ first_step_url }}\">Book</a></p>",
         "The first lesson is free"),
    )],
    # ---- booking flow
    *[Default(code, ev, loc, ch, name, body, subj) for code, ev, loc, ch, name, body, subj in (
        ("BOOKING_CONFIRMED", "booking_created", "ru", "telegram", "Запись подтверждена",
         "✅ Вы записаны: <b>{{ service }}</b>, {{ starts_at }}{% if place %}, {{ place }}{% endif %}.", None),
        ("BOOKING_CONFIRMED", "booking_created", "en", "telegram", "Booking confirmed",
         "✅ You are booked: <b>{{ service }}</b>, {{ starts_at }}{% if place %}, {{ place }}{% endif %}.", None),
        ("BOOKING_CONFIRMED", "booking_created", "ru", "email", "Запись подтверждена",
         "<p>{{ name }}, вы записаны: <b>{{ service }}</b>, {{ starts_at }}"
         "{% if place %}, {{ place }}{% endif %}.</p>", "Запись подтверждена: {{ service }}, {{ starts_at }}"),
        ("BOOKING_CONFIRMED", "booking_created", "en", "email", "Booking confirmed",
         "<p>{{ name }}, you are booked: <b>{{ service }}</b>, {{ starts_at }}"
         "{% if place %}, {{ place }}{% endif %}.</p>", "Booking confirmed: {{ service }}, {{ starts_at }}"),
        ("BOOKING_REMINDER", "booking_created", "ru", "telegram", "Напоминание о записи",
         "⏰ Завтра: <b>{{ service }}</b>, {{ starts_at }}{% if place %}, {{ place }}{% endif %}.", None),
        ("BOOKING_REMINDER", "booking_created", "en", "telegram", "Booking reminder",
         "⏰ Tomorrow: <b>{{ service }}</b>, {{ starts_at }}{% if place %}, {{ place }}{% endif %}.", None),
        ("BOOKING_REMINDER", "booking_created", "ru", "email", "Напоминание о записи",
         "<p>{{ name }}, напоминаем: <b>{{ service }}</b>, {{ starts_at }}.</p>", "Напоминание: {{ service }}"),
        ("BOOKING_REMINDER", "booking_created", "en", "email", "Booking reminder",
         "<p>{{ name }}, a reminder: <b>{{ service }}</b>, {{ starts_at }}.</p>", "Reminder: {{ service }}"),
        ("BOOKING_FEEDBACK", "booking_created", "ru", "telegram", "Оценка визита",
         "Как прошло занятие «{{ service }}»? Оцените от 1 до 5:", None),
        ("BOOKING_FEEDBACK", "booking_created", "en", "telegram", "Visit rating",
         "How was «{{ service }}»? Rate it from 1 to 5:", None),
        ("BOOKING_MOVED", "booking_moved", "ru", "telegram", "Запись перенесена",
         "🔁 Запись перенесена: <b>{{ service }}</b>, теперь {{ starts_at }}.", None),
        ("BOOKING_MOVED", "booking_moved", "en", "telegram", "Booking moved",
         "🔁 Your booking moved: <b>{{ service }}</b>, now {{ starts_at }}.", None),
        ("BOOKING_MOVED", "booking_moved", "ru", "email", "Запись перенесена",
         "<p>{{ name }}, запись <b>{{ service }}</b> перенесена на {{ starts_at }}.</p>",
         "Запись перенесена на {{ starts_at }}"),
        ("BOOKING_MOVED", "booking_moved", "en", "email", "Booking moved",
         "<p>{{ name }}, your booking <b>{{ service }}</b> moved to {{ starts_at }}.</p>",
         "Booking moved to {{ starts_at }}"),
        ("BOOKING_CANCELLED", "booking_cancelled", "ru", "telegram", "Запись отменена",
         "❌ Запись отменена: <b>{{ service }}</b>, {{ starts_at }}.", None),
        ("BOOKING_CANCELLED", "booking_cancelled", "en", "telegram", "Booking cancelled",
         "❌ Booking cancelled: <b>{{ service }}</b>, {{ starts_at }}.", None),
        ("BOOKING_CANCELLED", "booking_cancelled", "ru", "email", "Запись отменена",
         "<p>{{ name }}, запись <b>{{ service }}</b> {{ starts_at }} отменена.</p>", "Запись отменена"),
        ("BOOKING_CANCELLED", "booking_cancelled", "en", "email", "Booking cancelled",
         "<p>{{ name }}, your booking <b>{{ service }}</b> on {{ starts_at }} is cancelled.</p>",
         "Booking cancelled"),
        ("FEEDBACK_REVIEW_LINKS", "feedback_received", "ru", "telegram", "Спасибо за пятёрку",
         "Спасибо за высокую оценку! 🙏 Будем рады отзыву: "
         "<a href=\"https://yandex.ru/maps\">Яндекс Карты</a> · <a href=\"https://2gis.ru\">2ГИС</a>", None),
        ("FEEDBACK_REVIEW_LINKS", "feedback_received", "en", "telegram", "Thanks for the 5",
         "Thank you for the top rating! 🙏 A review would help us: "
         "<a href=\"https://yandex.ru/maps\">Yandex Maps</a> · <a href=\"https://2gis.ru\">2GIS</a>", None),
        ("FEEDBACK_THANKS", "feedback_received", "ru", "telegram", "Спасибо за оценку",
         "Спасибо за оценку {{ rating }}! Мы учтём ваше мнение.", None),
        ("FEEDBACK_THANKS", "feedback_received", "en", "telegram", "Thanks for rating",
         "Thank you for rating us {{ rating }}! We will take it into account.", None),
        ("JOB_FINISHED", "job_finished", "ru", "telegram", "Задача выполнена",
         "📊 <b>{{ job_title }}</b> готов.\n{% for k, v in stats.items() %}{{ k }}: {{ v }}\n{% endfor %}", None),
        ("JOB_FINISHED", "job_finished", "en", "telegram", "Job finished",
         "📊 <b>{{ job_title }}</b> is ready.\n{% for k, v in stats.items() %}{{ k }}: {{ v }}\n{% endfor %}", None),
        ("LOW_BALANCE", "balance_changed", "ru", "telegram", "Низкий баланс",
         "⚠️ На балансе {{ balance|money(currency) }} — меньше {{ threshold|money(currency) }}.", None),
        ("LOW_BALANCE", "balance_changed", "en", "telegram", "Low balance",
         "⚠️ Your balance is {{ balance|money(currency) }}, below {{ threshold|money(currency) }}.", None),
        ("LOW_BALANCE", "balance_changed", "ru", "email", "Низкий баланс",
         "<p>{{ name }}, на балансе {{ balance|money(currency) }} — меньше "
         "{{ threshold|money(currency) }}.</p>", "Баланс ниже {{ threshold|money(currency) }}"),
        ("LOW_BALANCE", "balance_changed", "en", "email", "Low balance",
         "<p>{{ name }}, your balance is {{ balance|money(currency) }}, below "
         "{{ threshold|money(currency) }}.</p>", "Balance below {{ threshold|money(currency) }}"),
    )],
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
    *_UZBEK,
]


# ---- webhook: what the email says, for a receiving system (the CRM, the client's own system), without the
# email's footer; the JSON carries the subject, the HTML and a plain-text part made from it.
DEFAULTS += [Default(d.code, d.event_type, d.locale, "webhook", d.name, d.body.replace(_EMAIL_FOOTER[d.locale], ""),
                     subject=d.subject, category=d.category)
             for d in list(DEFAULTS) if d.channel == "email"]


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
