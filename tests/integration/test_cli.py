"""The vestnik CLI against a real database (in-process: main(argv))."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from vestnik.cli import main
from vestnik.shared.models import AuditLog, Client, Notification, OutboxEvent, utcnow


@pytest.fixture
def cli_db(db_url, monkeypatch, tmp_path):
    monkeypatch.setenv("VESTNIK_DATABASE_URL", db_url)
    assert main(["db", "upgrade"]) == 0
    csv = tmp_path / "clients.csv"
    csv.write_text("id,name,email,telegram_chat_id,locale,timezone\n1,Анна,anna@example.com,1001,ru,Europe/Moscow\n"
                   "2,Bad,bad email,,ru,UTC\n", encoding="utf-8")
    assert main(["clients", "import", str(csv)]) == 0
    return db_url


def test_db_upgrade_installs_templates_and_keeps_edited_ones(cli_db, session_factory, capsys):
    from vestnik.shared.models import NotificationTemplate

    with session_factory() as s:
        t = s.scalars(select(NotificationTemplate).where(NotificationTemplate.code == "PAYMENT_SUCCESS")).first()
        t.body, t.updated_by = "edited by an admin", "admin:1"
        s.commit()
        total = len(s.scalars(select(NotificationTemplate)).all())
    assert main(["db", "upgrade"]) == 0
    with session_factory() as s:
        assert s.get(NotificationTemplate, t.id).body == "edited by an admin"
        assert len(s.scalars(select(NotificationTemplate)).all()) == total
    assert total >= 60  # ru + en, telegram + email, for every V1 event


def test_clients_import_reports_bad_lines(cli_db, capsys, tmp_path):
    csv = tmp_path / "more.csv"
    csv.write_text("id,name,email,telegram_chat_id,locale,timezone\nx y,A,,,ru,UTC\n3,B,b@example.com,,en,UTC\n")
    assert main(["clients", "import", str(csv)]) == 0
    err = capsys.readouterr().err
    assert f"{csv}:2: id: must be a client id" in err


def test_clients_import_reads_an_excel_cp1251_semicolon_file_and_refuses_binary(cli_db, session_factory, capsys,
                                                                               tmp_path):
    csv = tmp_path / "excel.csv"
    csv.write_bytes("id;name;allow_marketing\n1;Анна Петрова;да\n5;Фёдор;нет\n".encode("cp1251"))
    capsys.readouterr()
    assert main(["clients", "import", str(csv)]) == 0
    out = capsys.readouterr()
    assert "read as Windows-1251" in out.err and "0 created, 1 updated" not in out.out
    with session_factory() as s:
        anna, fedor = s.get(Client, 1), s.get(Client, 5)
        assert anna.name == "Анна Петрова" and anna.allow_marketing_notifications is True
        assert anna.email == "anna@example.com"  # not named by this file: kept
        assert fedor.name == "Фёдор"
    blob = tmp_path / "photo.csv"
    blob.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xd8")
    assert main(["clients", "import", str(blob)]) == 2
    assert "not a text file: control byte 0x1a at offset 6" in capsys.readouterr().err


def test_emit_prints_the_event_id_and_rejects_bad_events(cli_db, session_factory, capsys):
    capsys.readouterr()
    assert main(["emit", "lesson_cancelled", "--recipients", "1", "--key", "lesson:1",
                 "--data", json.dumps({"lesson_title": "X", "starts_at": "2026-11-25T16:00:00+03:00"})]) == 0
    event_id = int(capsys.readouterr().out.strip())
    with session_factory() as s:
        assert s.get(OutboxEvent, event_id).key == "lesson:1"
    assert main(["emit", "lesson_cancelled", "--recipients", "1", "--data", "{}"]) == 1
    assert "data.lesson_title: required" in capsys.readouterr().err
    assert main(["emit", "lesson_cancelled", "--recipients", "1", "--data", "{nope"]) == 2


def test_cancel_by_key_and_resend(cli_db, session_factory, capsys):
    with session_factory() as s:
        s.add_all([
            Notification(recipient_id=1, channel="email", recipient_address="anna@example.com", event_type="x",
                         template_code="LESSON_REMINDER", key="lesson:9", status="pending", send_at=utcnow()),
            Notification(recipient_id=1, channel="email", recipient_address="anna@example.com", event_type="x",
                         template_code="LESSON_REMINDER", key="lesson:9", status="sent", step="other"),
        ])
        s.commit()
        sent_id = s.scalar(select(Notification.id).where(Notification.status == "sent"))
    capsys.readouterr()
    assert main(["cancel", "--key", "lesson:9"]) == 0
    assert "1 pending notification(s)" in capsys.readouterr().out
    assert main(["resend", str(sent_id)]) == 0
    copy_id = int(capsys.readouterr().out)
    with session_factory() as s:
        statuses = sorted(s.scalars(select(Notification.status)).all())
        copy = s.get(Notification, copy_id)
        actions = sorted(s.scalars(select(AuditLog.action)).all())
    assert statuses == ["canceled", "pending", "sent"] and copy.step.startswith(f"resend-of-{sent_id}-")
    assert actions == ["notification.cancel_by_key", "notification.resend"]


def test_a_sign_in_message_is_not_resent(cli_db, session_factory, capsys):
    with session_factory() as s:
        s.add(Notification(recipient_id=1, channel="email", recipient_address="anna@example.com",
                           event_type="client_sign_in", template_code="client_sign_in", status="sent"))
        s.commit()
        sign_in_id = s.scalar(select(Notification.id))
    assert main(["resend", str(sign_in_id)]) == 1
    assert "single-use" in capsys.readouterr().err
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Notification)) == 1


def test_send_one_template_to_one_client_renders_as_its_event_does(cli_db, session_factory, capsys, bot_api,
                                                                  smtp_server):
    from vestnik.shared.config import Settings
    from vestnik.shared.models import Broadcast
    from vestnik.workers.channels import build_channels
    from vestnik.workers.delivery import Delivery

    capsys.readouterr()
    # No "reason": the optional field is simply empty; starts_at is shown in the client's zone and language.
    data = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T13:00:00+00:00"}
    assert main(["send", "LESSON_CANCELLED", "--to", "1", "--data", json.dumps(data)]) == 0
    made = {channel: int(nid) for nid, channel in (line.split("\t") for line in
                                                     capsys.readouterr().out.splitlines())}
    assert set(made) == {"telegram", "email"}
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(OutboxEvent)) == 0  # not an event ...
        assert s.scalar(select(func.count()).select_from(Broadcast)) == 0  # ... and not a broadcast
        rows = {n.channel: n for n in s.scalars(select(Notification))}
        assert {n.event_type for n in rows.values()} == {"lesson_cancelled"} and rows["email"].initiator == "cli"
    settings = Settings(telegram_token=bot_api.token, telegram_api_base=bot_api.url, smtp_url=smtp_server.url,
                        email_from="Школа <school@example.com>", telegram_chat_rate_per_s=1000)
    channels = build_channels(settings)
    try:
        delivery = Delivery(session_factory, channels, settings)
        for nid in made.values():
            delivery.deliver(nid)
    finally:
        for channel in channels.values():
            channel.close()
    with session_factory() as s:
        assert {n.status for n in s.scalars(select(Notification))} == {"sent"}
    [tg] = bot_api.messages()
    [mail] = smtp_server.messages()
    for text in (tg["text"], mail["html"], mail["subject"]):
        assert "25 ноября, 16:00" in text and "2026-11-25T13" not in text, text


def test_send_names_what_is_missing_and_makes_nothing(cli_db, session_factory, capsys):
    capsys.readouterr()
    assert main(["send", "LESSON_CANCELLED", "--to", "1", "--data", '{"lesson_title": "X"}']) == 1
    assert "data.starts_at: required" in capsys.readouterr().err
    assert main(["send", "NOPE", "--to", "1"]) == 1
    assert "no active template with code 'NOPE'" in capsys.readouterr().err
    assert main(["send", "LESSON_CANCELLED", "--to", "404", "--data", '{}']) == 1
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Notification)) == 0


def test_bad_configuration_names_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("VESTNIK_MAX_ATTEMPTS", "many")
    assert main(["emit", "x", "--recipients", "1"]) == 2
    assert "VESTNIK_MAX_ATTEMPTS" in capsys.readouterr().err


def test_create_admin_without_a_terminal_says_how_instead_of_crashing(cli_db, session_factory, capsys, monkeypatch):
    import io

    from vestnik.shared.models import AdminUser

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # as under `docker compose run -T`
    monkeypatch.delenv("VESTNIK_ADMIN_PASSWORD", raising=False)
    assert main(["create-admin", "ops@school.test"]) == 2
    assert "set VESTNIK_ADMIN_PASSWORD and add --password-env" in capsys.readouterr().err
    assert main(["create-admin", "ops@school.test", "--password-env"]) == 2
    assert "VESTNIK_ADMIN_PASSWORD, which is not set" in capsys.readouterr().err
    monkeypatch.setenv("VESTNIK_ADMIN_PASSWORD", "correct horse battery")
    assert main(["create-admin", "ops@school.test", "--password-env"]) == 0
    with session_factory() as s:
        assert s.scalars(select(AdminUser.email)).all() == ["ops@school.test"]



def test_a_password_reset_signs_out_every_session_and_keeps_the_role(cli_db, session_factory, capsys, monkeypatch):
    import re

    from vestnik.shared.config import Settings
    from vestnik.shared.models import AdminUser
    from vestnik.webapp import create_app

    monkeypatch.setenv("VESTNIK_ADMIN_PASSWORD", "old password 123")
    assert main(["create-admin", "help@school.test", "--role", "support", "--password-env"]) == 0
    app = create_app(Settings(secret_key="k" * 32), session_factory=session_factory, config={"TESTING": True})
    browsers = [app.test_client() for _ in range(2)]  # two devices signed in before the reset
    for browser in browsers:
        page = browser.get("/admin/login").text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        assert browser.post("/admin/login", data={"email": "help@school.test", "password": "old password 123",
                                                  "csrf_token": token}).status_code == 302
        assert browser.get("/admin/").status_code == 200
    monkeypatch.setenv("VESTNIK_ADMIN_PASSWORD", "new password 456")
    assert main(["create-admin", "Help@School.test", "--password-env"]) == 0  # the address as typed, any case
    assert "every earlier session is signed out" in capsys.readouterr().out
    for browser in browsers:  # a cookie captured before the reset is worth nothing
        resp = browser.get("/admin/")
        assert resp.status_code == 302 and "/admin/login" in resp.headers["Location"]
    with session_factory() as s:
        [user] = s.scalars(select(AdminUser).where(AdminUser.email == "help@school.test")).all()
        assert user.role == "support"  # no --role: kept, never promoted
        reset = s.scalars(select(AuditLog).where(AuditLog.action == "admin.password_reset")).one()
        assert reset.actor == "cli" and reset.details["sessions_revoked"] is True
    assert main(["create-admin", "help@school.test", "--role", "admin", "--password-env"]) == 0
    with session_factory() as s:
        assert s.scalars(select(AdminUser.role).where(AdminUser.email == "help@school.test")).one() == "admin"


def test_a_busy_demo_port_is_answered_with_a_command_that_works_as_printed(tmp_path, capsys, monkeypatch):
    import shlex
    import socket
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        # As `make demo` runs it: the Makefile passes its own way to choose the port.
        assert main(["demo", "--port", str(port), "--data-dir", str(tmp_path / "d"),
                     "--retry-hint", "make demo PORT={port}"]) == 1
        assert capsys.readouterr().err.strip().endswith(f"choose another port: make demo PORT={port + 1}")
        # As a shell runs it: the same program, its arguments, the next port.
        monkeypatch.setattr("sys.argv", ["/nonexistent/vestnik"])
        assert main(["demo", "--port", str(port), "--data-dir", str(tmp_path / "d")]) == 1
    hint = capsys.readouterr().err.strip().split("choose another port: ", 1)[1]
    words = shlex.split(hint)
    assert words[-2:] == ["--port", str(port + 1)] and "demo" in words
    assert words[:3] == [sys.executable, "-m", "vestnik"]  # a path that exists, not a bare name
    assert words[words.index("--data-dir") + 1] == str(tmp_path / "d")
