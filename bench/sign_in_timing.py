"""Does the sign-in page answer as fast for an unknown address as for a client's? (account enumeration by timing)

Posts ``/me/login`` (email link) alternately for known and unknown addresses
through the Flask test client on a scratch PostgreSQL database, with the
sign-in emails going to a local SMTP sink on the background pool, and prints
the latency percentiles of each kind.

    .venv/bin/python -m bench.sign_in_timing --requests 200
"""

from __future__ import annotations

import argparse
import re
import time

from bench.common import Report, run, scratch_database
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.fakes.smtp import FakeSmtpServer
from vestnik.shared.models import Client
from vestnik.webapp import create_app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests of each kind")
    args = parser.parse_args()
    with scratch_database() as url, FakeSmtpServer() as smtp:
        engine = make_engine(url)
        factory = make_session_factory(engine)
        with factory() as s:
            s.add_all(Client(id=i + 1, name=f"c{i}", email=f"known{i}@example.com") for i in range(args.requests))
            s.commit()
        settings = Settings(secret_key="b" * 40, database_url=url, smtp_url=smtp.url, email_rate_per_min=100_000,
                            email_rate_per_hour=100_000, email_rate_per_day=100_000,
                            client_sign_in_per_address=1000, client_sign_in_per_ip=100_000)
        app = create_app(settings, session_factory=factory)
        c = app.test_client()
        token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/me/login").text).group(1)
        timings: dict[str, list[float]] = {"known": [], "unknown": []}
        for i in range(args.requests):
            for kind in ("known", "unknown"):
                started = time.perf_counter()
                resp = c.post("/me/login", data={"email": f"{kind}{i}@example.com", "method": "link",
                                                 "csrf_token": token})
                timings[kind].append((time.perf_counter() - started) * 1000)
                assert resp.status_code == 200, resp.status_code
        smtp.wait_for(lambda m: len(m) >= args.requests, timeout=120)
        app.extensions["vestnik_sign_in_messenger"].close()
        engine.dispose()
    report = Report("bench.sign_in_timing", "POST /me/login (email link) for known and unknown addresses: "
                    "equal times (no account enumeration by timing); PostgreSQL, Flask test client",
                    size=f"{args.requests} requests of each kind")
    for kind, values in timings.items():
        report.add_percentiles(kind, values, "ms", ps=(50, 90, 99))
    report.add_timing_comparison("known", "unknown", timings)
    return report.finish()

if __name__ == "__main__":
    run(main)
