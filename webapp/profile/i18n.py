"""The profile's words in every locale of ``shared/locales.py`` (a dict beats a catalogue toolchain
for three languages; ``tests`` check that every word has every locale)."""

from __future__ import annotations

from typing import Any

from vestnik.shared import locales

LANGUAGES = locales.SUPPORTED

STRINGS: dict[str, dict[str, str]] = {
    "title": {
        "ru": "Личный кабинет",
        "uz-latn": "Shaxsiy kabinet",
        "en": "My profile",
    },
    "sign_in": {
        "ru": "Вход",
        "uz-latn": "Kirish",
        "en": "Sign in",
    },
    "sign_in_intro": {
        "ru": "Без пароля: мы пришлём ссылку на почту или код в Telegram.",
        "uz-latn": "Parolsiz: pochtangizga havola yoki Telegramga kod yuboramiz.",
        "en": "No password: we send a link by email or a code in Telegram.",
    },
    "phone_on_record": {
        "ru": "Телефон в нашей базе: {phone}. Изменить его можно у администратора.",
        "uz-latn": "Bazamizdagi telefon raqamingiz: {phone}. Uni administrator oʻzgartira oladi.",
        "en": "Phone on record: {phone}. The staff can change it for you.",
    },
    "email": {
        "ru": "Электронная почта",
        "uz-latn": "Elektron pochta",
        "en": "Email",
    },
    "email_invalid": {
        "ru": "Введите адрес электронной почты, например anna@example.com.",
        "uz-latn": "Elektron pochta manzilini kiriting, masalan dilnoza@example.com.",
        "en": "Enter an email address, e.g. anna@example.com.",
    },
    "send_link": {
        "ru": "Прислать ссылку на почту",
        "uz-latn": "Pochtaga havola yuborish",
        "en": "Email me a link",
    },
    "send_code": {
        "ru": "Прислать код в Telegram",
        "uz-latn": "Telegramga kod yuborish",
        "en": "Send a code to Telegram",
    },
    "link_sent": {
        "ru": "Если этот адрес известен, мы отправили на него ссылку для входа. Она действует {minutes} мин.",
        "uz-latn": "Agar bu manzil bizga maʼlum boʻlsa, unga kirish havolasi yuborildi. "
                   "U {minutes} daqiqa amal qiladi.",
        "en": "If this address is known, a sign-in link is on its way. It works for {minutes} min.",
    },
    "code_sent": {
        "ru": "Если этот адрес известен и к нему подключён Telegram, бот прислал код. "
              "Он действует {minutes} мин.",
        "uz-latn": "Agar bu manzil bizga maʼlum boʻlsa va unga Telegram ulangan boʻlsa, bot sizga kod yubordi. "
                   "U {minutes} daqiqa amal qiladi.",
        "en": "If this address is known and has Telegram connected, the bot has sent you a code. "
              "It works for {minutes} min.",
    },
    "code": {
        "ru": "Код из Telegram",
        "uz-latn": "Telegramdan kelgan kod",
        "en": "Code from Telegram",
    },
    "enter": {
        "ru": "Войти",
        "uz-latn": "Kirish",
        "en": "Sign in",
    },
    "code_wrong": {
        "ru": "Код неверный или устарел.",
        "uz-latn": "Kod notoʻgʻri yoki muddati oʻtgan.",
        "en": "The code is wrong or has expired.",
    },
    "code_missing": {
        "ru": "Сначала запросите код.",
        "uz-latn": "Avval kod soʻrang.",
        "en": "Request a code first.",
    },
    "throttled": {
        "ru": "Слишком много попыток. Попробуйте позже.",
        "uz-latn": "Urinishlar juda koʻp. Keyinroq qayta urinib koʻring.",
        "en": "Too many attempts. Try again later.",
    },
    "link_confirm": {
        "ru": "Нажмите, чтобы войти в личный кабинет.",
        "uz-latn": "Shaxsiy kabinetga kirish uchun tugmani bosing.",
        "en": "Press the button to sign in.",
    },
    "link_invalid": {
        "ru": "Ссылка недействительна: она устарела или уже использована. Запросите новую.",
        "uz-latn": "Havola yaroqsiz: muddati oʻtgan yoki allaqachon ishlatilgan. Yangisini soʻrang.",
        "en": "This link is no longer valid: it has expired or was used. Request a new one.",
    },
    "sign_out": {
        "ru": "Выйти",
        "uz-latn": "Chiqish",
        "en": "Sign out",
    },
    "signed_out": {
        "ru": "Вы вышли.",
        "uz-latn": "Siz chiqdingiz.",
        "en": "You have signed out.",
    },
    "history": {
        "ru": "Уведомления",
        "uz-latn": "Bildirishnomalar",
        "en": "Notifications",
    },
    "no_history": {
        "ru": "Пока ни одного уведомления.",
        "uz-latn": "Hozircha bildirishnomalar yoʻq.",
        "en": "No notifications yet.",
    },
    "newer": {
        "ru": "← Новее",
        "uz-latn": "← Yangiroq",
        "en": "← Newer",
    },
    "older": {
        "ru": "Старее →",
        "uz-latn": "Eskiroq →",
        "en": "Older →",
    },
    "page": {
        "ru": "Страница {n}",
        "uz-latn": "{n}-sahifa",
        "en": "Page {n}",
    },
    "status_sent": {
        "ru": "доставлено",
        "uz-latn": "yetkazildi",
        "en": "sent",
    },
    "status_failed": {
        "ru": "не доставлено",
        "uz-latn": "yetkazilmadi",
        "en": "not sent",
    },
    "status_pending": {
        "ru": "ожидает отправки",
        "uz-latn": "yuborilishini kutmoqda",
        "en": "waiting",
    },
    "status_processing": {
        "ru": "отправляется",
        "uz-latn": "yuborilmoqda",
        "en": "sending",
    },
    "status_canceled": {
        "ru": "отменено",
        "uz-latn": "bekor qilindi",
        "en": "canceled",
    },
    "channel_telegram": {
        "ru": "Telegram",
        "uz-latn": "Telegram",
        "en": "Telegram",
    },
    "channel_email": {
        "ru": "Почта",
        "uz-latn": "Pochta",
        "en": "Email",
    },
    "scheduled_for": {
        "ru": "Запланировано на {when}",
        "uz-latn": "Rejalashtirilgan vaqt: {when}",
        "en": "Scheduled for {when}",
    },
    "no_text": {
        "ru": "Текст появится при отправке.",
        "uz-latn": "Matn yuborilganda paydo boʻladi.",
        "en": "The text appears when it is sent.",
    },
    "back": {
        "ru": "← Ко всем уведомлениям",
        "uz-latn": "← Barcha bildirishnomalar",
        "en": "← All notifications",
    },
    "settings": {
        "ru": "Настройки",
        "uz-latn": "Sozlamalar",
        "en": "Settings",
    },
    "telegram_on": {
        "ru": "Уведомления в Telegram",
        "uz-latn": "Telegramdagi bildirishnomalar",
        "en": "Telegram notifications",
    },
    "email_on": {
        "ru": "Уведомления на почту",
        "uz-latn": "Pochtaga bildirishnomalar",
        "en": "Email notifications",
    },
    "service_on": {
        "ru": "Сервисные сообщения (занятия, оплаты)",
        "uz-latn": "Xizmat xabarlari (darslar, toʻlovlar)",
        "en": "Service messages (lessons, payments)",
    },
    "marketing_on": {
        "ru": "Новости и предложения",
        "uz-latn": "Yangiliklar va takliflar",
        "en": "News and offers",
    },
    "language": {
        "ru": "Язык",
        "uz-latn": "Til",
        "en": "Language",
    },
    "save": {
        "ru": "Сохранить",
        "uz-latn": "Saqlash",
        "en": "Save",
    },
    "quiet_hours": {
        "ru": "Тихие часы",
        "uz-latn": "Sokin soatlar",
        "en": "Quiet hours",
    },
    "quiet_own": {
        "ru": "Свои тихие часы для рекламных сообщений",
        "uz-latn": "Reklama xabarlari uchun oʻz sokin soatlarim",
        "en": "My own quiet hours for marketing messages",
    },
    "quiet_from": {
        "ru": "с",
        "uz-latn": "boshlanishi",
        "en": "from",
    },
    "quiet_to": {
        "ru": "до",
        "uz-latn": "tugashi",
        "en": "to",
    },
    "quiet_hint": {
        "ru": "Сообщение, пришедшее в это время, подождёт до конца (по вашему времени). Без своих — {default}. "
              "Срочные, например отмена занятия, приходят сразу.",
        "uz-latn": "Bu vaqtda kelgan xabar uning tugashini kutadi (sizning vaqtingiz boʻyicha). Oʻzingizniki "
                   "boʻlmasa — {default}. Shoshilinch xabarlar, masalan dars bekor qilinishi, darhol keladi.",
        "en": "A message due then waits for its end (your local time). Without your own: {default}. "
              "Urgent news, such as a cancelled lesson, comes at once.",
    },
    "quiet_invalid": {
        "ru": "Тихие часы: укажите время от 00:00 до 23:59. Ничего не сохранено.",
        "uz-latn": "Sokin soatlar: 00:00 dan 23:59 gacha vaqtni kiriting. Hech narsa saqlanmadi.",
        "en": "Quiet hours: enter a time between 00:00 and 23:59. Nothing was saved.",
    },
    "saved": {
        "ru": "Настройки сохранены. Они действуют со следующего уведомления.",
        "uz-latn": "Sozlamalar saqlandi. Ular keyingi bildirishnomadan boshlab amal qiladi.",
        "en": "Settings saved. They apply from the next notification.",
    },
    "nothing_changed": {
        "ru": "Ничего не изменилось.",
        "uz-latn": "Hech narsa oʻzgarmadi.",
        "en": "Nothing changed.",
    },
    "telegram": {
        "ru": "Telegram",
        "uz-latn": "Telegram",
        "en": "Telegram",
    },
    "tg_connected": {
        "ru": "Telegram подключён",
        "uz-latn": "Telegram ulangan",
        "en": "Telegram connected",
    },
    "tg_not_connected": {
        "ru": "Telegram не подключён",
        "uz-latn": "Telegram ulanmagan",
        "en": "Telegram not connected",
    },
    "tg_unreachable": {
        "ru": "Бот не может вам писать: {reason}. Откройте бота и нажмите «Start».",
        "uz-latn": "Bot sizga yoza olmayapti: {reason}. Botni oching va «Start» tugmasini bosing.",
        "en": "The bot cannot reach you: {reason}. Open the bot and press Start.",
    },
    "tg_connect": {
        "ru": "Подключить Telegram",
        "uz-latn": "Telegramni ulash",
        "en": "Connect Telegram",
    },
    "tg_reconnect": {
        "ru": "Подключить другой аккаунт",
        "uz-latn": "Boshqa akkauntni ulash",
        "en": "Connect another account",
    },
    "tg_open": {
        "ru": "Открыть бота и нажать «Start»",
        "uz-latn": "Botni ochib, «Start» tugmasini bosing",
        "en": "Open the bot and press Start",
    },
    "tg_waiting": {
        "ru": "Ждём нажатия «Start» в Telegram… Ссылка действует {minutes} мин.",
        "uz-latn": "Telegramda «Start» bosilishini kutyapmiz… Havola {minutes} daqiqa amal qiladi.",
        "en": "Waiting for you to press Start in Telegram… The link works for {minutes} min.",
    },
    "tg_disconnect": {
        "ru": "Отключить Telegram",
        "uz-latn": "Telegramni uzish",
        "en": "Disconnect Telegram",
    },
    "tg_disconnected": {
        "ru": "Telegram отключён.",
        "uz-latn": "Telegram uzildi.",
        "en": "Telegram disconnected.",
    },
    "tg_not_configured": {
        "ru": "Подключение Telegram пока не настроено.",
        "uz-latn": "Telegramni ulash hali sozlanmagan.",
        "en": "Connecting Telegram is not set up yet.",
    },
    "tg_needs_connection": {
        "ru": "сначала подключите Telegram",
        "uz-latn": "avval Telegramni ulang",
        "en": "connect Telegram first",
    },
    # A channel's switch is disabled while the client has no address on it ("needs_address_<channel>").
    "needs_address_telegram": {"ru": "сначала подключите Telegram", "uz-latn": "avval Telegramni ulang",
                               "en": "connect Telegram first"},
    "needs_address_email": {"ru": "адрес почты не указан", "uz-latn": "pochta manzili koʻrsatilmagan",
                            "en": "no email address on file"},
    "needs_address_webhook": {"ru": "сначала укажите адрес вебхука", "uz-latn": "avval webhook manzilini kiriting",
                              "en": "set the webhook URL first"},
    "webhook_on": {"ru": "Уведомления на вебхук", "uz-latn": "Webhook orqali bildirishnomalar",
                   "en": "Webhook notifications"},
    "address_webhook_help": {
        "ru": "Уведомления придут POST-запросом с JSON, подписанным HMAC (заголовки X-Vestnik-Timestamp и "
              "X-Vestnik-Signature).",
        "uz-latn": "Bildirishnomalar HMAC bilan imzolangan JSON POST soʻrovi sifatida keladi "
                   "(X-Vestnik-Timestamp va X-Vestnik-Signature sarlavhalari).",
        "en": "Notifications arrive as a POST with JSON, signed with HMAC (the X-Vestnik-Timestamp and "
              "X-Vestnik-Signature headers).",
    },
    "address_saved": {"ru": "Адрес сохранён.", "uz-latn": "Manzil saqlandi.", "en": "Address saved."},
    "address_removed": {"ru": "Адрес удалён.", "uz-latn": "Manzil oʻchirildi.", "en": "Address removed."},
    "address_unreachable": {"ru": "Адрес не принимает уведомления: {reason}",
                            "uz-latn": "Manzil bildirishnomalarni qabul qilmayapti: {reason}",
                            "en": "The address does not accept notifications: {reason}"},
    "remove": {"ru": "Удалить", "uz-latn": "Oʻchirish", "en": "Remove"},
    "on": {
        "ru": "вкл.",
        "uz-latn": "yoq.",
        "en": "on",
    },
    "not_found": {
        "ru": "Не найдено",
        "uz-latn": "Topilmadi",
        "en": "Not found",
    },
    "form_expired": {
        "ru": "Форма устарела, попробуйте ещё раз.",
        "uz-latn": "Forma eskirdi, qayta urinib koʻring.",
        "en": "The form has expired; try again.",
    },
}


def translate(key: str, lang: str, **values: Any) -> str:
    entry = STRINGS.get(key)
    if entry is None:
        return key
    text = locales.pick(entry, lang)
    return text.format(**values) if values else text


def pick_language(*candidates: str | None) -> str:
    """The first supported language among candidates ("ru-RU" counts as "ru", "uz_Latn" as "uz-latn");
    Russian by default."""
    for candidate in candidates:
        found = locales.match(candidate)
        if found is not None:
            return found
    return "ru"
