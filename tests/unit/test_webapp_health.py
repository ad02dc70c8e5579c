"""The web app factory and its health endpoints."""

from __future__ import annotations

import pytest

from vestnik.shared.config import Settings, load_settings
from vestnik.shared.errors import ConfigError
from vestnik.webapp import create_app

SECRET = "test-secret-key-0123456789"


def app_for(url: str):
    app = create_app(Settings(database_url=url, secret_key=SECRET))
    app.config["TESTING"] = True
    return app


def test_healthz_answers_without_touching_the_database(tmp_path):
    client = app_for(f"sqlite:///{tmp_path}/missing/dir/vestnik.db").test_client()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_ready_on_a_migrated_database(sqlite_url):
    response = app_for(sqlite_url).test_client().get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"status": "ready", "checks": {"database": "ok", "schema": "ok"}}


def test_readyz_names_the_database_when_it_is_unreachable(tmp_path):
    url = f"sqlite:///{tmp_path}/no/such/dir/vestnik.db"
    response = app_for(url).test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"].startswith("unreachable (OperationalError")
    assert str(tmp_path) not in response.get_data(as_text=True)  # no paths or URLs in the answer


def test_readyz_hides_credentials_of_an_unreachable_postgresql():
    # Port 9 (discard) on localhost: refused at once, nothing listens there.
    url = "postgresql://vestnik:s3cr3t-pass@127.0.0.1:9/vestnik"
    response = app_for(url).test_client().get("/readyz")
    assert response.status_code == 503
    text = response.get_data(as_text=True)
    assert "s3cr3t-pass" not in text and "127.0.0.1" not in text and "vestnik@" not in text
    assert response.get_json()["checks"]["database"].startswith("unreachable (")


def test_readyz_reports_a_database_that_was_never_migrated(tmp_path):
    response = app_for(f"sqlite:///{tmp_path}/empty.db").test_client().get("/readyz")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["database"] == "ok"
    assert checks["schema"].startswith("not migrated")


@pytest.mark.parametrize("secret", ["", "   "])
def test_create_app_refuses_an_empty_secret_key(secret):
    with pytest.raises(ConfigError) as caught:
        create_app(Settings(secret_key=secret))
    assert "VESTNIK_SECRET_KEY" in str(caught.value)


def test_session_cookie_is_secure_only_behind_https(sqlite_url):
    plain = create_app(Settings(database_url=sqlite_url, secret_key=SECRET, public_url="http://127.0.0.1:8000"))
    tls = create_app(Settings(database_url=sqlite_url, secret_key=SECRET, public_url="https://crm.example.ru"))
    for app in (plain, tls):
        assert app.config["SESSION_COOKIE_HTTPONLY"] is True
        assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert plain.config["SESSION_COOKIE_SECURE"] is False
    assert tls.config["SESSION_COOKIE_SECURE"] is True


def test_responses_carry_security_headers(sqlite_url):
    response = app_for(sqlite_url).test_client().get("/healthz")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize(("cpus", "workers"), [(1, 3), (2, 4), (16, 4)])
def test_gunicorn_runs_two_workers_per_core_plus_one_capped_at_four(cpus, workers):
    from vestnik.webapp.server import gunicorn_options, worker_count

    assert worker_count(cpus) == workers
    options = gunicorn_options(Settings(), "::1", 8000)
    assert options["bind"] == "[::1]:8000" and options["threads"] == 4 and options["worker_class"] == "gthread"
    assert options["workers"] == worker_count()


def test_vestnik_web_workers_sets_the_number_of_gunicorn_workers():
    from vestnik.webapp.server import gunicorn_options

    assert gunicorn_options(load_settings({"VESTNIK_WEB_WORKERS": "1"}), "127.0.0.1", 8000)["workers"] == 1
    with pytest.raises(ConfigError, match="VESTNIK_WEB_WORKERS"):
        load_settings({"VESTNIK_WEB_WORKERS": "-1"})


def test_vestnik_web_refuses_to_start_without_a_secret_key(capsys, monkeypatch):
    from vestnik.cli import main

    monkeypatch.delenv("VESTNIK_SECRET_KEY", raising=False)
    assert main(["web", "--port", "0"]) == 2  # before gunicorn starts anything
    assert "VESTNIK_SECRET_KEY" in capsys.readouterr().err
