"""clients import: merge by id, every bad field reported by line, good rows kept, client choices never reset."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from vestnik.shared import wire
from vestnik.shared.addresses import ADDRESS_FIELDS
from vestnik.shared.clients_import import RowError, decode_csv, import_clients, parse_row
from vestnik.shared.config import Settings
from vestnik.shared.models import Client, ClientGroup
from vestnik.workers.channels import build_channels


@pytest.fixture(autouse=True)
def channel_checks():
    """Every process that imports a file (the CLI, the web app) builds its channels, which installs
    their address checks; so do these tests."""
    return build_channels(Settings(webhook_allow_private=False))

CSV = """id,name,email,telegram_chat_id,locale,timezone,telegram_enabled,allow_marketing
1,Анна,anna@example.com,1001,ru,Europe/Moscow,,yes
2,Bob,not-an-email,1002,en,Europe/London,,
3,Вера,vera@example.com,abc,ru,Europe/Moscow,,
4,Dan,dan@example.com,,en,Mars/Olympus,,
5,Eve,eve@example.com,1005,en,UTC,maybe,
6,Фёдор,,1006,ru,Asia/Yekaterinburg,no,
"""


def test_import_reports_bad_rows_by_line_and_imports_the_rest(session_factory):
    with session_factory() as s:
        report = import_clients(s, io.StringIO(CSV))
        s.commit()
    assert report.created == 2
    lines = {line: reason for line, reason in report.errors}
    assert set(lines) == {3, 4, 5, 6}
    assert lines[3].startswith("email:") and lines[4].startswith("telegram_chat_id:")
    assert lines[5].startswith("timezone:") and lines[6].startswith("telegram_enabled:")
    with session_factory() as s:
        anna, fedor = s.get(Client, 1), s.get(Client, 6)
    assert anna.allow_marketing_notifications is True and anna.notifications_telegram_enabled is True
    assert fedor.notifications_telegram_enabled is False and fedor.allow_marketing_notifications is False
    assert fedor.email is None and fedor.timezone == "Asia/Yekaterinburg"


def test_import_upserts_by_id_and_a_new_address_clears_unreachable(session_factory):
    with session_factory() as s:
        import_clients(s, io.StringIO("id,name,email,telegram_chat_id,locale,timezone\n1,A,a@x.io,1,ru,UTC\n"))
        s.get(Client, 1).telegram_unreachable_reason = "blocked"
        s.commit()
    with session_factory() as s:
        report = import_clients(s, io.StringIO("id,name,email,telegram_chat_id,locale,timezone\n1,B,a@x.io,2,en,UTC\n"))
        s.commit()
    assert (report.created, report.updated) == (0, 1)
    with session_factory() as s:
        c = s.scalars(select(Client)).one()
    assert (c.name, c.telegram_chat_id, c.locale, c.telegram_unreachable_reason) == ("B", "2", "en", None)


def test_header_names_a_missing_id_and_unknown_columns(session_factory):
    with session_factory() as s:
        report = import_clients(s, io.StringIO("name,emial\nA,a@x.io\n"))
    assert report.errors and report.errors[0][0] == 1
    assert "missing column(s) id" in report.errors[0][1] and "'emial'" in report.errors[0][1]


# What a client (or Vestnik on their behalf) may have set since the last import, with a value
# that differs from every default and from what the file would otherwise carry.
CHOSEN = {
    "notifications_telegram_enabled": False,
    "notifications_email_enabled": False,
    "allow_service_notifications": False,
    "allow_marketing_notifications": True,
    "telegram_chat_id": "777",
    "locale": "en",
    "timezone": "Asia/Vladivostok",
    "name": "Anna K.",
    "email": "anna.k@example.com",
}
COLUMN_OF = {"notifications_telegram_enabled": "telegram_enabled", "notifications_email_enabled": "email_enabled",
             "allow_service_notifications": "allow_service", "allow_marketing_notifications": "allow_marketing"}
# A value the file may name for each column, different from CHOSEN.
NAMED = {"telegram_enabled": ("yes", True), "email_enabled": ("да", True), "allow_service": ("1", True),
         "allow_marketing": ("no", False), "telegram_chat_id": ("1001", "1001"), "locale": ("ru", "ru"),
         "timezone": ("Europe/Kaliningrad", "Europe/Kaliningrad"), "name": ("Анна", "Анна"),
         "email": ("anna@example.com", "anna@example.com")}


def _client_with_choices(session_factory):
    with session_factory() as s:
        import_clients(s, io.StringIO("id,name\n1,Анна\n"))
        client = s.get(Client, 1)
        for attr, value in CHOSEN.items():
            setattr(client, attr, value)
        s.add(ClientGroup(client_id=1, name="Йога"))
        s.commit()


def _stored(session_factory) -> dict:
    with session_factory() as s:
        c = s.get(Client, 1)
        groups = sorted(s.scalars(select(ClientGroup.name).where(ClientGroup.client_id == 1)))
        return {**{attr: getattr(c, attr) for attr in CHOSEN}, "groups": groups}


@pytest.mark.parametrize("column", [COLUMN_OF.get(a, a) for a in CHOSEN])
@pytest.mark.parametrize("how", ["column absent", "cell empty"])
def test_reimport_never_resets_what_the_file_does_not_name(session_factory, column, how):
    """Every field a client can choose survives a re-import that does not name it."""
    _client_with_choices(session_factory)
    before = _stored(session_factory)
    others = [c for c in NAMED if c != column]
    header = ["id", *others] + ([column] if how == "cell empty" else [])
    cells = ["1", *(NAMED[c][0] for c in others)] + ([""] if how == "cell empty" else [])
    with session_factory() as s:
        report = import_clients(s, io.StringIO(",".join(header) + "\n" + ",".join(cells) + "\n"))
        s.commit()
    assert report.errors == [] and report.updated == 1
    after = _stored(session_factory)
    attr = next((a for a, col in COLUMN_OF.items() if col == column), column)
    assert after[attr] == before[attr], f"{column} ({how}) was reset"
    assert after["groups"] == ["Йога"]  # no groups column: memberships untouched
    for other in others:  # and what the file does name is applied
        other_attr = next((a for a, col in COLUMN_OF.items() if col == other), other)
        assert after[other_attr] == NAMED[other][1], other


def test_reimport_applies_a_preference_the_file_names(session_factory):
    _client_with_choices(session_factory)
    with session_factory() as s:
        import_clients(s, io.StringIO("id;allow_marketing;groups\n1;нет;\n"))  # ';'-separated, as Excel saves
        s.commit()
    after = _stored(session_factory)
    assert after["allow_marketing_notifications"] is False and after["groups"] == []
    assert after["notifications_telegram_enabled"] is False  # not named: still the client's choice


def test_every_bad_field_of_a_bad_row_is_reported_with_its_line(session_factory):
    text = ("id,email,telegram_chat_id,timezone,allow_marketing,last_active_at\n"
            "1,ok@example.com,1,UTC,yes,2026-01-01T10:00:00+03:00\n"
            "x y,bad,abc,Mars/Olympus,maybe,yesterday\n"  # a space: no client id (a UUID would be one)
            "３,,,,,\n"  # full-width digit: not an id
            "4,,,,,,extra\n")
    with session_factory() as s:
        report = import_clients(s, io.StringIO(text))
        s.commit()
    by_line: dict[int, list[str]] = {}
    for line, problem in report.errors:
        by_line.setdefault(line, []).append(problem.split(":")[0])
    assert by_line == {3: ["id", "email", "telegram_chat_id", "timezone", "allow_marketing", "last_active_at"],
                       4: ["id"], 5: ["row"]}
    assert report.created == 1 and report.rejected_lines == 3


def test_new_clients_get_the_configured_default_time_zone(session_factory):
    with session_factory() as s:
        import_clients(s, io.StringIO("id\n9\n"), default_timezone="Asia/Tashkent")
        s.commit()
        c = s.get(Client, 9)
    assert c.timezone == "Asia/Tashkent" and c.allow_marketing_notifications is False
    assert c.notifications_telegram_enabled and c.notifications_email_enabled and c.allow_service_notifications


def test_decode_csv_reads_utf8_and_cp1251_and_names_anything_else():
    text = "id,name\n1,Фёдор Иванов\n"
    assert decode_csv(("\ufeff" + text).encode("utf-8")) == (text, None)
    decoded, note = decode_csv(text.encode("cp1251"))
    assert decoded == text and "Windows-1251" in note
    with pytest.raises(ValueError, match=r"control byte 0x00 at offset 14"):
        decode_csv(b"id,name\n1,\x89PNG\x00\xff\xfe\n")
    with pytest.raises(ValueError, match=r"neither UTF-8 nor Windows-1251 text: byte 0xe9 at offset 11"):
        decode_csv("id,name\n1,Hélène Dupont, Zoë\n".encode("latin-1"))


def test_progress_is_reported_per_chunk(session_factory, monkeypatch):
    import vestnik.shared.clients_import as module

    monkeypatch.setattr(module, "CHUNK", 10)
    seen: list[int] = []
    text = "id\n" + "".join(f"{i}\n" for i in range(1, 26))
    with session_factory() as s:
        report = import_clients(s, io.StringIO(text), progress=seen.append)
    assert report.created == 25 and seen == [10, 20, 25]


def test_locales_are_read_in_any_spelling_of_a_supported_one_and_others_are_named(session_factory):
    rows = "id,name,locale\n1,Dilnoza,uz-latn\n2,Jasur,uz_Latn\n3,Anna,RU\n4,Bob,en-GB\n5,Olim,uz-cyrl\n6,Hans,de\n"
    with session_factory() as s:
        report = import_clients(s, io.StringIO(rows))
        s.commit()
    assert report.created == 4
    assert dict(report.errors) == {
        6: "locale: 'uz-cyrl' is not a supported locale (supported: ru, uz-latn, en)",
        7: "locale: 'de' is not a supported locale (supported: ru, uz-latn, en)"}
    with session_factory() as s:
        assert dict(s.execute(select(Client.id, Client.locale)).all()) == {1: "uz-latn", 2: "uz-latn", 3: "ru",
                                                                          4: "en"}


#: addresses of every kind, good and bad for some channel: each CSV address column must take exactly what
#: its channel's own check takes (the admin and the profile ask that check), and store what it returns
ADDRESSES = ["anna@example.com", " anna@example.com ", "not-an-email", "a@b", "a,b@example.com", "1001",
             "-1001234567890", "+1001", "12345678901234567890123", "abc", "@school_news", "https://crm.example.com/hook",
             "http://crm.example.com/hook#x", "https://user:pw@crm.example.com/", "http://127.0.0.1/hook",
             "ftp://crm.example.com/", "x" * 400 + "@example.com"]


def test_each_address_column_takes_what_its_channel_takes(channel_checks):
    for field, channel_name in ADDRESS_FIELDS.items():
        channel = channel_checks[channel_name]
        for value in ADDRESSES:
            try:
                expected = channel.check_address(value)
            except ValueError:
                expected = None
            try:
                got = parse_row({"id": "1", field: value}).get(field)
            except RowError as exc:
                assert expected is None, f"{field}={value!r}: the channel takes it, the CSV refused: {exc}"
                assert all(p.startswith(f"{field}:") for p in exc.problems)
                continue
            assert got == expected, f"{field}={value!r}: the channel says {expected!r}, the CSV stored {got!r}"


def test_the_api_takes_the_client_addresses_the_channels_take(channel_checks):
    """The wire's kinds (the HTTP API, OpenAPI, vestnik_client) agree with each channel on the form of an
    address; the channel may refuse more (a webhook to a private network), never less."""
    for field, channel_name in ADDRESS_FIELDS.items():
        kind = getattr(wire, field.upper())
        for value in ADDRESSES:
            try:
                channel_checks[channel_name].check_address(value)
            except ValueError:
                continue
            assert kind(value.strip()), f"{field}={value!r}: the channel takes it, the API would refuse it"
