"""Every attempt limit holds exactly when 50 attempts arrive at once, against a real ``vestnik web``.

gunicorn serves with several processes and threads, as in production, on
PostgreSQL; 50 client threads wait at a barrier and fire together.  Each
limit must let exactly its number of attempts through: the admin lockout
(5 per address), a sign-in code's tries (5 per challenge, the right code
included), the sign-in throttle per address (5 an hour) and per IP (30 an
hour), a sign-in link's single use, and an API key's requests a minute
(shared by the processes through Redis).  Each test uses its own addresses and client IPs (the server trusts
one proxy, so ``X-Forwarded-For`` names the client), so they share nothing.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from tests.processes import free_port, running, vestnik, wait_until
from vestnik.shared import api_keys, client_auth
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.migrate import upgrade
from vestnik.shared.models import AdminUser, Client, ClientToken, ClientTokenPurpose, utcnow

SECRET_KEY = "p" * 40
PASSWORD = "correct horse battery"
PARALLEL = 50
API_RATE_PER_MIN = 10


@pytest.fixture(scope="module")
def server(pg_template, tmp_path_factory, redis_url):
    """``vestnik web`` on a database of this module's own (a copy of the migrated template)."""
    from sqlalchemy import create_engine, text

    from tests.conftest import PG_URL

    name = f"vestnik_parallel_{free_port()}"
    admin_engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    upgrade(engine)
    factory = make_session_factory(engine)
    with factory() as s:
        s.add(AdminUser(email="admin@school.test", password_hash=generate_password_hash(PASSWORD), role="admin"))
        s.add(Client(id=1, name="Анна", email="anna@example.com", telegram_chat_id="1001"))
        s.commit()
    port = free_port()
    env = {"VESTNIK_DATABASE_URL": url, "VESTNIK_SECRET_KEY": SECRET_KEY, "VESTNIK_TRUSTED_PROXIES": "1",
           "VESTNIK_CLIENT_SIGN_IN_PER_ADDRESS": "5", "VESTNIK_CLIENT_SIGN_IN_PER_IP": "30",
           "VESTNIK_PUBLIC_URL": f"http://127.0.0.1:{port}", "VESTNIK_REDIS_URL": redis_url,
           "VESTNIK_API_RATE_PER_MIN": str(API_RATE_PER_MIN)}
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{base}/readyz", timeout=10).status_code == 200
        except requests.RequestException:  # not listening yet
            return False

    log_dir = tmp_path_factory.mktemp("web")
    with running([vestnik("web", "web", "--port", str(port), env=env, log_dir=log_dir)]) as [web]:
        wait_until(up, 120, message=lambda: f"vestnik web on {port}\n{web.output()[-3000:]}")
        yield base, factory, web
    engine.dispose()
    with admin_engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin_engine.dispose()


def _form(base: str, path: str, ip: str, cookies: dict[str, str] | None = None) -> tuple[dict[str, str], str]:
    """A page's session cookie and CSRF token, fetched as the client at ``ip``."""
    resp = requests.get(base + path, cookies=cookies, headers={"X-Forwarded-For": ip}, timeout=60)
    assert resp.status_code == 200, (path, resp.status_code)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', resp.text).group(1)
    return {**(cookies or {}), **resp.cookies.get_dict()}, token


def _at_once(make_request, n: int = PARALLEL) -> list[requests.Response]:
    """``n`` requests released together by a barrier; their responses in order."""
    barrier = threading.Barrier(n)

    def one(i: int) -> requests.Response:
        barrier.wait(timeout=120)
        return make_request(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


def _statuses(responses) -> Counter:
    return Counter(r.status_code for r in responses)


def _visible(html: str) -> str:
    """A page without what differs on every request (CSRF token, CSP nonce)."""
    return re.sub(r'(value|nonce)="[^"]*"', "", html)


def test_admin_lockout_lets_exactly_five_passwords_through_and_answers_known_and_unknown_alike(server):
    base, _, web = server
    pages = {}
    for who, email, ip in (("known", "admin@school.test", "198.51.100.1"),
                           ("unknown", "nobody@school.test", "198.51.100.2")):
        cookies, token = _form(base, "/admin/login", ip)
        answers = _at_once(lambda i, email=email, ip=ip, cookies=cookies, token=token: requests.post(
            f"{base}/admin/login", data={"email": email, "password": f"wrong {i}", "csrf_token": token},
            cookies=cookies, headers={"X-Forwarded-For": ip}, timeout=120, allow_redirects=False))
        assert _statuses(answers) == {401: 5, 429: PARALLEL - 5}, (who, web.output()[-2000:])
        # Locked: the right password is not even looked at now.
        late = requests.post(f"{base}/admin/login", data={"email": email, "password": PASSWORD,
                                                          "csrf_token": token},
                             cookies=cookies, headers={"X-Forwarded-For": ip}, timeout=60, allow_redirects=False)
        assert late.status_code == 429, who
        pages[who] = [_visible(next(r for r in answers if r.status_code == status).text) for status in (401, 429)]
    # The same pages for a real and an unknown address, before the lockout and after it.
    assert pages["known"] == pages["unknown"]


def test_a_sign_in_code_takes_exactly_five_tries_however_many_arrive_at_once(server):
    base, factory, _ = server
    ip = "198.51.100.10"
    with factory() as s:
        challenge, code = client_auth.issue_code(s, SECRET_KEY, 1, 600, utcnow())
        s.commit()
    session_cookie = _session_cookie({"vestnik_sign_in_challenge": challenge})
    cookies, token = _form(base, "/me/login/code", ip, {"vestnik_session": session_cookie})
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    answers = _at_once(lambda i: requests.post(
        f"{base}/me/login/code", data={"code": wrong, "csrf_token": token}, cookies=cookies,
        headers={"X-Forwarded-For": f"198.51.100.{100 + i % 100}"}, timeout=120, allow_redirects=False))
    assert _statuses(answers) == {401: PARALLEL}
    with factory() as s:
        assert s.scalars(select(ClientToken.failed_attempts).where(
            ClientToken.code_hash.is_not(None))).all() == [client_auth.MAX_CODE_ATTEMPTS]
    right = requests.post(f"{base}/me/login/code", data={"code": code, "csrf_token": token}, cookies=cookies,
                          headers={"X-Forwarded-For": ip}, timeout=60, allow_redirects=False)
    assert right.status_code == 401  # the challenge is spent: not even the right code signs in now


def test_the_sign_in_throttle_lets_exactly_its_limit_through_per_address(server):
    base, _, _ = server
    cookies, token = _form(base, "/me/login", "198.51.100.20")
    # One address from many IPs: the address's limit (5) decides.
    answers = _at_once(lambda i: requests.post(
        f"{base}/me/login", data={"email": "target@example.com", "method": "link", "csrf_token": token},
        cookies=cookies, headers={"X-Forwarded-For": f"203.0.113.{i + 1}"}, timeout=120, allow_redirects=False))
    assert _statuses(answers) == {200: 5, 429: PARALLEL - 5}


def test_the_sign_in_throttle_lets_exactly_its_limit_through_per_ip(server):
    base, _, _ = server
    ip = "198.51.100.30"
    cookies, token = _form(base, "/me/login", ip)
    # Many addresses from one IP: the IP's limit (30) decides.
    answers = _at_once(lambda i: requests.post(
        f"{base}/me/login", data={"email": f"someone{i}@example.com", "method": "link", "csrf_token": token},
        cookies=cookies, headers={"X-Forwarded-For": ip}, timeout=120, allow_redirects=False))
    assert _statuses(answers) == {200: 30, 429: PARALLEL - 30}


def _session_cookie(data: dict) -> str:
    """A session cookie the server accepts (signed with its secret key, as Flask does)."""
    from flask import Flask

    app = Flask("forge")
    app.secret_key = SECRET_KEY
    return app.session_interface.get_signing_serializer(app).dumps(data)


def test_a_sign_in_link_signs_in_exactly_once_however_many_uses_arrive_at_once(server):
    base, factory, _ = server
    with factory() as s:
        raw = client_auth.issue(s, SECRET_KEY, 1, ClientTokenPurpose.sign_in_link, 600, utcnow())
        s.commit()
    cookies, token = _form(base, f"/me/login/t/{raw}", "198.51.100.40")  # looking never uses it up
    answers = _at_once(lambda i: requests.post(
        f"{base}/me/login/t/{raw}", data={"csrf_token": token}, cookies=cookies,
        headers={"X-Forwarded-For": f"198.51.100.{150 + i % 100}"}, timeout=120, allow_redirects=False))
    assert _statuses(answers) == {302: 1, 410: PARALLEL - 1}


def test_an_api_key_gets_exactly_its_rate_a_minute_however_many_requests_arrive_at_once(server):
    base, factory, _ = server
    with factory() as s:
        _, raw = api_keys.create(s, "parallel", "test")
        s.commit()
    answers = _at_once(lambda i: requests.get(
        f"{base}/api/v1/notifications", headers={"Authorization": f"Bearer {raw}"}, timeout=120))
    assert _statuses(answers) == {200: API_RATE_PER_MIN, 429: PARALLEL - API_RATE_PER_MIN}
