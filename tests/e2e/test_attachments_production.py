"""Attachments end to end on the production shape (PostgreSQL, RabbitMQ, Redis, the real relay, worker and
scheduler processes): an invoice email arrives at the SMTP sink with its PDF attached, and a file an admin
uploaded (through the admin's Files page) reaches the fake Bot API and the SMTP sink alike."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import select
from werkzeug.security import generate_password_hash

from tests.integration.test_admin import PASSWORD, login, token
from tests.processes import wait_until
from vestnik.outbox import emit
from vestnik.shared.config import Settings
from vestnik.shared.models import AdminUser, Notification, StoredFile
from vestnik.webapp import create_app

INVOICE_PDF = b"%PDF-1.4\n% invoice INV-9\n" + b"1" * 2048 + b"\n%%EOF\n"
PRICE_LIST = b"%PDF-1.7\n% price list\n" + bytes(range(256)) * 16 + b"\n%%EOF\n"
ANNA_CHAT = "1001"  # client 1: Telegram and email; client 2 (Bob): email only


class _Invoices(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "application/pdf")
        self.send_header("Content-Length", str(len(INVOICE_PDF)))
        self.end_headers()
        self.wfile.write(INVOICE_PDF)

    def log_message(self, *args) -> None:
        pass


def test_an_invoice_pdf_and_an_uploaded_file_reach_the_smtp_sink_and_the_bot_api(stack, bot_api, smtp_server):
    with stack.factory() as s:
        s.add(AdminUser(email="admin@school.test", password_hash=generate_password_hash(PASSWORD), role="admin"))
        s.commit()
    admin = create_app(Settings(database_url=stack.env["VESTNIK_DATABASE_URL"],
                                secret_key=stack.env["VESTNIK_SECRET_KEY"]), config={"TESTING": True}).test_client()
    login(admin)
    page = admin.get("/admin/files/")
    uploaded = admin.post("/admin/files/", data={"csrf_token": token(page.text),
                                                 "upload": (io.BytesIO(PRICE_LIST), "Прайс 2027.pdf")},
                          content_type="multipart/form-data", follow_redirects=True)
    with stack.factory() as s:
        file_id = s.scalars(select(StoredFile.id)).one()
    assert f"attach it as file:{file_id}" in uploaded.text
    files = ThreadingHTTPServer(("127.0.0.1", 0), _Invoices)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    stack.env["VESTNIK_SCHEDULER_TICK_S"] = "1"
    try:
        with stack.factory() as s:
            emit(s, "invoice_created", recipients=[2], key="invoice:9", data={
                "invoice_number": "INV-9", "amount": "4500.00", "currency": "RUB",
                "payment_url": "https://pay.example.com/i/9", "due_date": "2027-01-15",
                "invoice_pdf_url": f"http://127.0.0.1:{files.server_port}/inv/9.pdf", "file_name": "INV-9.pdf"})
            emit(s, "mass_broadcast", recipients=[1], data={
                "template_code": "ANNOUNCEMENT", "category": "service", "broadcast_name": "Прайс на 2027",
                "title": "Прайс на 2027 год", "text": "Во вложении", "attachment": f"file:{file_id}"})
            s.commit()
        with stack.run("relay", "worker", "scheduler"):
            wait_until(lambda: len(smtp_server.messages()) >= 2 and bot_api.messages(ANNA_CHAT), 90,
                       message="the invoice email, the broadcast's email and its Telegram document")
    finally:
        files.shutdown()
    mails = {m["to"]: m for m in smtp_server.messages()}
    invoice = mails["bob@example.com"]
    assert invoice["attachments"] == [{"filename": "INV-9.pdf", "mime_type": "application/pdf",
                                       "content": INVOICE_PDF}]
    news = mails["anna@example.com"]
    assert news["attachments"] == [{"filename": "Прайс 2027.pdf", "mime_type": "application/pdf",
                                    "content": PRICE_LIST}]
    [document] = bot_api.messages(ANNA_CHAT)
    assert document["method"] == "sendDocument" and document["document"]["content"] == PRICE_LIST
    assert "Прайс на 2027 год" in document["text"]
    attached = {(n.recipient_id, n.channel): n.attachment for n in stack.rows(Notification.status == "sent")}
    assert attached[(2, "email")]["source"] == "url" and attached[(2, "email")]["bytes"] == len(INVOICE_PDF)
    assert attached[(1, "email")] == attached[(1, "telegram")] == {
        "source": "file", "ref": f"file:{file_id}", "name": "Прайс 2027.pdf", "type": "application/pdf",
        "bytes": len(PRICE_LIST)}
