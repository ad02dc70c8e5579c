"""The admin on the embedded demo: a demo admin with a fresh password, "send test to me" lands in the fake."""

from __future__ import annotations

import re

import requests

from vestnik.webapp.demo import DEMO_ADMIN_CHAT_ID, DEMO_ADMIN_EMAIL, build_demo


def _token(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


def test_the_demo_admin_signs_in_and_sends_a_test_to_the_fake_telegram(tmp_path):
    demo = build_demo(tmp_path / "demo", port=0, worker_threads=1)
    try:
        first_password = demo.admin_password
        s = requests.Session()
        page = s.get(demo.url + "/admin/login", timeout=10)
        resp = s.post(demo.url + "/admin/login", timeout=10, allow_redirects=False, data={
            "email": DEMO_ADMIN_EMAIL, "password": demo.admin_password, "csrf_token": _token(page.text)})
        assert resp.status_code == 302
        editor = s.get(demo.url + "/admin/template/new/", timeout=10)
        assert editor.status_code == 200
        answer = s.post(demo.url + "/admin/template/send-test/", timeout=10,
                        headers={"X-CSRFToken": _token(editor.text)},
                        data={"code": "LESSON_CANCELLED", "channel": "telegram", "locale": "ru",
                              "body": "Тест {{ lesson_title }}"}).json()
        assert answer["ok"] is True and answer["address"] == DEMO_ADMIN_CHAT_ID
        sent = demo.bot_api.wait_for(lambda msgs: any(str(m["chat_id"]) == DEMO_ADMIN_CHAT_ID for m in msgs))
        assert any(m["text"] == "Тест Робототехника" for m in sent)
        # The demo's teachers' group is registered: a post from the admin reaches it through the queue.
        chats = s.get(demo.url + "/admin/chats/", timeout=10).text
        group = re.search(r'id="post-to-(\d+)"[^>]*>\s*<label[^>]*>Учителя \(демо\)', chats).group(1)
        s.post(demo.url + "/admin/chats/post", timeout=10, data={
            "csrf_token": _token(chats), "chat": group, "template": "LESSON_CANCELLED", "when": "now",
            "data": '{"lesson_title": "Шахматы", "starts_at": "2026-12-03T13:00:00+00:00"}'})
        posted = demo.bot_api.wait_for(lambda msgs: any(str(m["chat_id"]) == "-1001000000001" for m in msgs), 60)
        assert any("Шахматы" in m["text"] for m in posted if str(m["chat_id"]) == "-1001000000001")
    finally:
        demo.stop()
    again = build_demo(tmp_path / "demo", port=0, worker_threads=1)  # same data folder: a new password
    try:
        assert again.admin_password and again.admin_password != first_password
    finally:
        again.stop()
