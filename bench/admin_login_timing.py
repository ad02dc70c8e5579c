"""Does the admin sign-in answer as fast for an unknown address as for an admin's? (enumeration by timing)

Posts ``/admin/login`` with a wrong password for real admins' addresses,
unknown addresses and an inactive admin's, interleaved, through the Flask test
client on a scratch PostgreSQL database (each address tried fewer times than
the lockout, so every answer is a checked password), then a locked real and a
locked unknown address, and prints the latency percentiles of each kind.

    .venv/bin/python -m bench.admin_login_timing --requests 100
"""

from __future__ import annotations

import argparse
import re
import time

from werkzeug.security import generate_password_hash

from bench.common import Report, run, scratch_database
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.models import AdminUser
from vestnik.webapp import create_app
from vestnik.webapp.admin.auth import MAX_FAILED_LOGINS

KINDS = ("admin", "unknown", "inactive")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="requests of each kind")
    args = parser.parse_args()
    per_address = MAX_FAILED_LOGINS - 1  # never locked while measuring checked passwords
    addresses = -(-args.requests // per_address)
    with scratch_database() as url:
        engine = make_engine(url)
        factory = make_session_factory(engine)
        password_hash = generate_password_hash("a real password")
        with factory() as s:
            s.add_all(AdminUser(email=f"admin{i}@school.test", password_hash=password_hash) for i in range(addresses))
            s.add_all(AdminUser(email=f"inactive{i}@school.test", password_hash=password_hash, is_active=False)
                      for i in range(addresses))
            s.add(AdminUser(email="locked@school.test", password_hash=password_hash))
            s.commit()
        app = create_app(Settings(secret_key="b" * 40, database_url=url), session_factory=factory)
        c = app.test_client()
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', c.get("/admin/login").text).group(1)
        timings: dict[str, list[float]] = {kind: [] for kind in (*KINDS, "admin locked", "unknown locked")}

        def attempt(kind: str | None, email: str, expect: int) -> None:
            started = time.perf_counter()
            resp = c.post("/admin/login", data={"email": email, "password": "wrong", "csrf_token": token})
            if kind:
                timings[kind].append((time.perf_counter() - started) * 1000)
            assert resp.status_code == expect, (kind, resp.status_code)

        for i in range(args.requests):
            for kind in KINDS:
                attempt(kind, f"{kind}{i // per_address}@school.test", 401)
        locked = {"admin locked": "locked@school.test", "unknown locked": "nobody-locked@school.test"}
        for email in locked.values():
            for _ in range(MAX_FAILED_LOGINS):
                attempt(None, email, 401)
        for _ in range(args.requests):  # past the lockout: answered without a password check
            for kind, email in locked.items():
                attempt(kind, email, 429)
        engine.dispose()
    report = Report("bench.admin_login_timing", "POST /admin/login with a wrong password: an admin's, an unknown "
                    "and an inactive address, then locked ones; equal times (no enumeration by timing); "
                    "PostgreSQL, Flask test client", size=f"{args.requests} requests of each kind")
    for kind, values in timings.items():
        report.add_percentiles(kind, values, "ms", ps=(50, 90, 99))
    report.add_timing_comparison("admin", "unknown", timings)
    report.add_timing_comparison("admin", "inactive", timings)
    report.add_timing_comparison("admin locked", "unknown locked", timings)
    return report.finish()


if __name__ == "__main__":
    run(main)
