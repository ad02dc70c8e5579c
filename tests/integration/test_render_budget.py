"""No template, whatever it does, makes a render use more than its budget in the worker or the web process.

The class: templates that build big values in one C call (a list of repeated
strings turned into text, joined, dumped as JSON...), that burn CPU between
the step checks, or that nest loops.  Each is rendered through the real entry
points (``rendering.render``, delivery, the admin's preview on a real
``vestnik web``) while the processes' memory is measured: the caller's peak
RSS barely moves, the render fails with a reason naming the budget, and the
next ordinary render works.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from tests.processes import free_port, running, vestnik, wait_until
from vestnik.shared.render_sandbox import MAX_MEMORY_MB, is_linear, needs_child
from vestnik.shared.rendering import parse

#: Templates that passed every step check before the budget existed (the first took 17.7 s and 1.9 GB).
HOSTILE = {
    "repeated list joined": "{% set s = 'x' * 99999 %}{{ ([s] * 99999)|join }}",
    "repeated list as text": "{{ (['x' * 99999] * 99999)|string|length }}",
    "repeated list printed": "{{ ['x' * 99999] * 99999 }}",
    "repeated list as JSON": "{{ (['x' * 99999] * 99999)|tojson|length }}",
    "repeated list concatenated": "{% set l = ['x' * 99999] * 99999 %}{{ (l ~ l)|length }}",
    "hidden behind a condition": "{% if name != 'Анна' %}{{ (['x' * 99999] * 99999)|join|length }}{% endif %}",
    "CPU between step checks": "{% for i in range(1000) %}{{ (name ~ 'x' * 99990)|title|length }}{% endfor %}",
    "nested loops": "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
}
BUDGET_WORDS = re.compile(r"MB of memory|CPU time|longer than|loop iterations|render budget|the limit is|"
                          r"produced more than|longer than \d+ characters")

PROBE = textwrap.dedent("""
    import json, resource, sys, time
    from vestnik.shared import render_sandbox
    from vestnik.shared.errors import TemplateError
    from vestnik.shared.rendering import render

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    hostile = json.loads(sys.argv[1])
    render("{% for x in items %}{{ x }}{% endfor %}", {"items": [1]}, html_mode=True)  # warm: a child is up
    before = peak_mb()
    results = {}
    for name, source in hostile.items():
        started = time.process_time()
        try:
            render(source, {"name": "Борис"}, html_mode=True)
            results[name] = "rendered"
        except TemplateError as exc:
            results[name] = str(exc)
    after = peak_mb()
    ordinary = render("{% for x in items %}{{ x }};{% endfor %}", {"items": [1, 2, 3]}, html_mode=True)
    replaced = render_sandbox.pool().replaced
    render_sandbox.pool().close()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"before_mb": before, "after_mb": after, "results": results, "ordinary": ordinary,
                      "children_peak_mb": children, "replaced": replaced}))
""")


def test_no_template_takes_the_calling_process_past_its_budget():
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(HOSTILE)], capture_output=True, text=True,
                          timeout=600, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, outcome in report["results"].items():
        assert BUDGET_WORDS.search(outcome), f"{name}: {outcome}"
    # The caller holds at most the rendered text: its peak grew by far less than one budget.
    assert report["after_mb"] - report["before_mb"] < MAX_MEMORY_MB / 2, report
    # A render process never held more than its budget over what it had (its own ~60 MB).
    assert report["children_peak_mb"] < 200 + MAX_MEMORY_MB, report
    assert report["ordinary"] == "1;2;3;"  # and rendering goes on


def test_the_shipped_templates_render_in_process_and_anything_that_can_work_goes_to_a_child():
    from vestnik.shared.seeds import DEFAULTS

    assert all(is_linear(parse(source)) for d in DEFAULTS for source in (d.body, d.subject or ""))
    for source in HOSTILE.values():
        assert needs_child(source), source
    for source in ["{{ x * 3 }}", "{{ '%9d' % x }}", "{{ x.upper() }}", "{% set a = x %}{{ a }}",
                   "{% macro m() %}{% endmacro %}", "{{ x|e|tojson }}", "{{ x|join(y) }}", "{{ [x, x] }}",
                   "{% for a in x %}{% for b in a %}{% endfor %}{% endfor %}",
                   "{{ x ~ x ~ x ~ x ~ x ~ x ~ x ~ x ~ x }}",
                   "{% for i in range(3) %}{% endfor %}", "{{ x|replace('a', 'b') }}", "{{ x|striptags }}"]:
        assert needs_child(source), source


# ---------------------------------------------------------------- the worker


def test_a_template_past_its_budget_fails_only_its_own_notification(session_factory, bot_api, smtp_server):
    from vestnik.outbox import emit
    from vestnik.shared.config import Settings
    from vestnik.shared.models import Client, Notification, NotificationTemplate
    from vestnik.shared.seeds import install_default_templates
    from vestnik.workers.channels import build_channels
    from vestnik.workers.delivery import Delivery
    from vestnik.workers.handling import handle_event

    with session_factory() as s:
        install_default_templates(s)
        t = s.scalars(select(NotificationTemplate).where(
            NotificationTemplate.code == "LESSON_CANCELLED", NotificationTemplate.channel == "telegram",
            NotificationTemplate.locale == "ru")).one()
        t.body = "{% if name != 'Анна' %}{{ (['x' * 99999] * 99999)|join|length }}{% endif %}{{ lesson_title }}"
        s.add_all([Client(id=1, name="Борис", email="b@example.com", telegram_chat_id="1001", locale="ru"),
                   Client(id=2, name="Анна", email="a@example.com", telegram_chat_id="1002", locale="ru")])
        s.commit()
        event_id = emit(s, "lesson_cancelled", recipients=[1, 2],
                        data={"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"})
        s.commit()
    settings = Settings(telegram_token=bot_api.token, telegram_api_base=bot_api.url, smtp_url=smtp_server.url,
                        email_from="Школа <school@example.com>", telegram_chat_rate_per_s=1000)
    channels = build_channels(settings)
    try:
        delivery = Delivery(session_factory, channels, settings)
        for nid, *_ in handle_event(session_factory, channels, event_id).created:
            delivery.deliver(nid)
    finally:
        for channel in channels.values():
            channel.close()
    with session_factory() as s:
        rows = {(n.recipient_id, n.channel): n for n in s.scalars(select(Notification))}
    boris = rows[(1, "telegram")]
    assert boris.status == "failed" and f"{MAX_MEMORY_MB} MB" in boris.last_error, boris.last_error
    assert rows[(2, "telegram")].status == "sent"  # the same template for a client it does not blow up on
    assert rows[(1, "email")].status == "sent" and rows[(2, "email")].status == "sent"


# ---------------------------------------------------------------- the web process


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def _workers(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(c) for c in children]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak memory from /proc")
def test_previewing_and_saving_hostile_templates_leaves_the_web_process_small(sqlite_url, tmp_path):
    from vestnik.shared.db import make_engine, make_session_factory
    from vestnik.shared.models import AdminUser
    from vestnik.shared.seeds import install_default_templates

    engine = make_engine(sqlite_url)
    with make_session_factory(engine)() as s:
        install_default_templates(s)
        s.add(AdminUser(email="admin@school.test", password_hash=generate_password_hash("pw-0123456789"),
                        role="admin"))
        s.commit()
    engine.dispose()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"VESTNIK_DATABASE_URL": sqlite_url, "VESTNIK_SECRET_KEY": "s" * 32}

    def up() -> bool:
        try:
            return requests.get(f"{base}/readyz", timeout=10).status_code == 200
        except requests.RequestException:
            return False

    with running([vestnik("web", "web", "--port", str(port), env=env, log_dir=tmp_path)]) as [web]:
        wait_until(up, 120, message=lambda: f"vestnik web on {port}\n{web.output()[-3000:]}")
        http = requests.Session()
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', http.get(f"{base}/admin/login").text).group(1)
        assert http.post(f"{base}/admin/login", data={"email": "admin@school.test", "password": "pw-0123456789",
                                                      "csrf_token": token}, allow_redirects=False).status_code == 302
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', http.get(f"{base}/admin/account/").text).group(1)
        workers = _workers(web.pid)
        before = {pid: _peak_rss_mb(pid) for pid in workers}
        for name, body in HOSTILE.items():
            resp = http.post(f"{base}/admin/template/preview/", headers={"X-CSRFToken": token}, data={
                "code": "LESSON_CANCELLED", "channel": "telegram", "locale": "ru", "subject": "", "body": body,
                "csrf_token": token}, timeout=300)
            assert resp.status_code == 200, (name, resp.status_code)
            assert BUDGET_WORDS.search(json.dumps(resp.json(), ensure_ascii=False)), (name, resp.text[:300])
        after = {pid: _peak_rss_mb(pid) for pid in workers}
        grown = {pid: after[pid] - before[pid] for pid in workers}
        assert max(grown.values()) < MAX_MEMORY_MB / 2, grown
        ordinary = http.post(f"{base}/admin/template/preview/", headers={"X-CSRFToken": token}, data={
            "code": "LESSON_CANCELLED", "channel": "telegram", "locale": "ru", "subject": "",
            "body": "{% for i in range(3) %}{{ lesson_title }} {% endfor %}", "csrf_token": token}, timeout=120)
        assert ordinary.status_code == 200 and "Робототехника" in json.dumps(ordinary.json(), ensure_ascii=False)

