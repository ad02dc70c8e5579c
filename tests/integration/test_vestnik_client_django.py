"""vestnik_client from a real (minimal) Django project on PostgreSQL, through ``django.db.connection``.

The project runs in a subprocess, as a CRM would: its own settings module, an
app with a model, ``migrate``, and ``transaction.atomic()`` blocks that change
a lesson and emit together.  Django never enters this test process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from sqlalchemy import text
from sqlalchemy.engine import make_url

from vestnik.shared.db import make_engine

SETTINGS = """
SECRET_KEY = "test"
INSTALLED_APPS = ["crm"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {{"default": {{"ENGINE": "django.db.backends.postgresql", "NAME": {name!r}, "HOST": {host!r},
                          "PORT": {port!r}, "USER": {user!r}}}}}
"""

MODELS = """
from django.db import models


class Lesson(models.Model):
    title = models.CharField(max_length=200)
    starts_at = models.DateTimeField()
    cancelled = models.BooleanField(default=False)
"""

SCRIPT = """
import json
import os
from datetime import datetime
from zoneinfo import ZoneInfo

os.environ["DJANGO_SETTINGS_MODULE"] = "crmsite.settings"
import django

django.setup()
from django.core.management import call_command
from django.db import connection, transaction

from crm.models import Lesson
from vestnik_client import NotInTransaction, emit, upsert_clients

call_command("migrate", run_syncdb=True, verbosity=0)
out = {}
MOSCOW = ZoneInfo("Europe/Moscow")
lesson = Lesson.objects.create(title="Робототехника", starts_at=datetime(2026, 11, 25, 16, tzinfo=MOSCOW))


def cancel(lesson):
    lesson.cancelled = True
    lesson.save()
    return emit(connection, "lesson_cancelled", recipients=[7], key=f"lesson:{lesson.pk}",
                data={"lesson_title": lesson.title, "starts_at": lesson.starts_at.astimezone(MOSCOW)})


try:
    cancel(lesson)
    out["autocommit"] = "accepted"
except NotInTransaction as exc:
    out["autocommit"] = str(exc)
try:
    with transaction.atomic():
        out["rolled_back"] = cancel(lesson)
        raise RuntimeError("the CRM's change fails after emit")
except RuntimeError:
    pass
with transaction.atomic():
    out["upserted"] = upsert_clients(connection, [{"id": 7, "name": "Анна", "email": "anna@example.com"}])
    out["committed"] = cancel(lesson)
out["cancelled_in_crm"] = Lesson.objects.get(pk=lesson.pk).cancelled
print(json.dumps(out))
"""


def test_emit_through_djangos_connection_follows_transaction_atomic(pg_url, tmp_path):
    url = make_url(pg_url)
    (tmp_path / "crmsite").mkdir()
    (tmp_path / "crmsite" / "__init__.py").write_text("")
    (tmp_path / "crmsite" / "settings.py").write_text(SETTINGS.format(
        name=url.database, host=url.host, port=str(url.port or 5432), user=url.username))
    (tmp_path / "crm").mkdir()
    (tmp_path / "crm" / "__init__.py").write_text("")
    (tmp_path / "crm" / "models.py").write_text(MODELS)
    (tmp_path / "run.py").write_text(textwrap.dedent(SCRIPT))
    done = subprocess.run([sys.executable, "run.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "autocommit mode outside transaction.atomic()" in out["autocommit"]
    assert out["upserted"] == {"created": 1, "updated": 0}
    assert out["cancelled_in_crm"] is True
    engine = make_engine(pg_url)
    with engine.connect() as conn:
        events = conn.execute(text("SELECT id, recipients, data, key FROM outbox_events ORDER BY id")).all()
        client = conn.execute(text("SELECT name, a.address AS email FROM clients JOIN client_addresses a "
                                   "ON a.client_id = clients.id AND a.channel = 'email' WHERE id = 7")).one()
    engine.dispose()
    assert [e.id for e in events] == [out["committed"]] and out["rolled_back"] != out["committed"]
    assert events[0].recipients == [7] and events[0].key.startswith("lesson:")
    assert events[0].data == {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}
    assert tuple(client) == ("Анна", "anna@example.com")
