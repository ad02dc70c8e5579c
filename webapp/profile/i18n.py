"""The profile's words in Russian and English (two languages: a dict beats a catalogue toolchain)."""

from __future__ import annotations

from typing import Any

LANGUAGES = ("ru", "en")

STRINGS: dict[str, dict[str, str]] = {
    "title": {"ru": "Личный кабинет", "en": "My profile"},
    "sign_in": {"ru": "Вход", "en": "Sign in"},
    "sign_in_intro": {"ru": "Без пароля: мы пришлём ссылку на почту или код в Telegram.",
                      "en": "No password: we send a link by email or a code in Telegram."},
    "email": {"ru": "Электронная почта", "en": "Email"},
    "email_invalid": {"ru": "Введите адрес электронной почты, например anna@example.com.",
                      "en": "Enter an email address, e.g. anna@example.com."},
    "send_link": {"ru": "Прислать ссылку на почту", "en": "Email me a link"},
    "send_code": {"ru": "Прислать код в Telegram", "en": "Send a code to Telegram"},
    "link_sent": {"ru": "Если этот адрес известен, мы отправили на него ссылку для входа. Она действует {minutes} мин.",
                  "en": "If this address is known, a sign-in link is on its way. It works for {minutes} min."},
    "code_sent": {"ru": "Если этот адрес известен и к нему подключён Telegram, бот прислал код. "
                        "Он действует {minutes} мин.",
                  "en": "If this address is known and has Telegram connected, the bot has sent you a code. "
                        "It works for {minutes} min."},
    "code": {"ru": "Код из Telegram", "en": "Code from Telegram"},
    "enter": {"ru": "Войти", "en": "Sign in"},
    "code_wrong": {"ru": "Код неверный или устарел.", "en": "The code is wrong or has expired."},
    "code_missing": {"ru": "Сначала запросите код.", "en": "Request a code first."},
    "throttled": {"ru": "Слишком много попыток. Попробуйте позже.", "en": "Too many attempts. Try again later."},
    "link_confirm": {"ru": "Нажмите, чтобы войти в личный кабинет.", "en": "Press the button to sign in."},
    "link_invalid": {"ru": "Ссылка недействительна: она устарела или уже использована. Запросите новую.",
                     "en": "This link is no longer valid: it has expired or was used. Request a new one."},
    "sign_out": {"ru": "Выйти", "en": "Sign out"},
    "signed_out": {"ru": "Вы вышли.", "en": "You have signed out."},
    "history": {"ru": "Уведомления", "en": "Notifications"},
    "no_history": {"ru": "Пока ни одного уведомления.", "en": "No notifications yet."},
    "newer": {"ru": "← Новее", "en": "← Newer"},
    "older": {"ru": "Старее →", "en": "Older →"},
    "page": {"ru": "Страница {n}", "en": "Page {n}"},
    "status_sent": {"ru": "доставлено", "en": "sent"},
    "status_failed": {"ru": "не доставлено", "en": "not sent"},
    "status_pending": {"ru": "ожидает отправки", "en": "waiting"},
    "status_processing": {"ru": "отправляется", "en": "sending"},
    "status_canceled": {"ru": "отменено", "en": "canceled"},
    "channel_telegram": {"ru": "Telegram", "en": "Telegram"},
    "channel_email": {"ru": "Почта", "en": "Email"},
    "scheduled_for": {"ru": "Запланировано на {when}", "en": "Scheduled for {when}"},
    "no_text": {"ru": "Текст появится при отправке.", "en": "The text appears when it is sent."},
    "back": {"ru": "← Ко всем уведомлениям", "en": "← All notifications"},
    "settings": {"ru": "Настройки", "en": "Settings"},
    "telegram_on": {"ru": "Уведомления в Telegram", "en": "Telegram notifications"},
    "email_on": {"ru": "Уведомления на почту", "en": "Email notifications"},
    "service_on": {"ru": "Сервисные сообщения (занятия, оплаты)", "en": "Service messages (lessons, payments)"},
    "marketing_on": {"ru": "Новости и предложения", "en": "News and offers"},
    "language": {"ru": "Язык", "en": "Language"},
    "save": {"ru": "Сохранить", "en": "Save"},
    "saved": {"ru": "Настройки сохранены. Они действуют со следующего уведомления.",
              "en": "Settings saved. They apply from the next notification."},
    "nothing_changed": {"ru": "Ничего не изменилось.", "en": "Nothing changed."},
    "telegram": {"ru": "Telegram", "en": "Telegram"},
    "tg_connected": {"ru": "Telegram подключён", "en": "Telegram connected"},
    "tg_not_connected": {"ru": "Telegram не подключён", "en": "Telegram not connected"},
    "tg_unreachable": {"ru": "Бот не может вам писать: {reason}. Откройте бота и нажмите «Start».",
                       "en": "The bot cannot reach you: {reason}. Open the bot and press Start."},
    "tg_connect": {"ru": "Подключить Telegram", "en": "Connect Telegram"},
    "tg_reconnect": {"ru": "Подключить другой аккаунт", "en": "Connect another account"},
    "tg_open": {"ru": "Открыть бота и нажать «Start»", "en": "Open the bot and press Start"},
    "tg_waiting": {"ru": "Ждём нажатия «Start» в Telegram… Ссылка действует {minutes} мин.",
                   "en": "Waiting for you to press Start in Telegram… The link works for {minutes} min."},
    "tg_disconnect": {"ru": "Отключить Telegram", "en": "Disconnect Telegram"},
    "tg_disconnected": {"ru": "Telegram отключён.", "en": "Telegram disconnected."},
    "tg_not_configured": {"ru": "Подключение Telegram пока не настроено.",
                          "en": "Connecting Telegram is not set up yet."},
    "tg_needs_connection": {"ru": "сначала подключите Telegram", "en": "connect Telegram first"},
    # A channel's switch is disabled while the client has no address on it ("needs_address_<channel>").
    "needs_address_telegram": {"ru": "сначала подключите Telegram", "en": "connect Telegram first"},
    "needs_address_email": {"ru": "адрес почты не указан", "en": "no email address on file"},
    "needs_address_webhook": {"ru": "сначала укажите адрес вебхука", "en": "set the webhook URL first"},
    "webhook_on": {"ru": "Уведомления на вебхук", "en": "Webhook notifications"},
    "address_webhook_help": {"ru": "Уведомления придут POST-запросом с JSON, подписанным HMAC (заголовки "
                                   "X-Vestnik-Timestamp и X-Vestnik-Signature).",
                             "en": "Notifications arrive as a POST with JSON, signed with HMAC (the "
                                   "X-Vestnik-Timestamp and X-Vestnik-Signature headers)."},
    "address_saved": {"ru": "Адрес сохранён.", "en": "Address saved."},
    "address_removed": {"ru": "Адрес удалён.", "en": "Address removed."},
    "address_unreachable": {"ru": "Адрес не принимает уведомления: {reason}",
                            "en": "The address does not accept notifications: {reason}"},
    "remove": {"ru": "Удалить", "en": "Remove"},
    "on": {"ru": "вкл.", "en": "on"},
    "not_found": {"ru": "Не найдено", "en": "Not found"},
    "form_expired": {"ru": "Форма устарела, попробуйте ещё раз.", "en": "The form has expired; try again."},
}


def translate(key: str, lang: str, **values: Any) -> str:
    entry = STRINGS.get(key)
    if entry is None:
        return key
    text = entry.get(lang) or entry["en"]
    return text.format(**values) if values else text


def pick_language(*candidates: str | None) -> str:
    """The first supported language among candidates ("ru-RU" counts as "ru"); Russian by default."""
    for candidate in candidates:
        code = (candidate or "").split("-")[0].split("_")[0].lower()
        if code in LANGUAGES:
            return code
    return "ru"
