"""``vestnik``: the one console script.

Each subcommand loads settings once (a bad ``VESTNIK_*`` value stops it at
start, naming the variable) and passes them on explicitly.
"""

from __future__ import annotations

import argparse
import getpass
import io
import json
import os
import shutil
import sys
from collections.abc import Sequence

from vestnik.preflight import StartupError
from vestnik.shared import bounds
from vestnik.shared.bounds import BoundsError
from vestnik.shared.config import Settings, load_settings
from vestnik.shared.errors import ConfigError, VestnikError

DEMO_DATA_DIR = "var/demo"


def _session_factory(settings: Settings):
    from vestnik.shared.db import make_engine, make_session_factory

    return make_session_factory(make_engine(settings.database_url))


# ------------------------------------------------------------------ commands


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from vestnik.shared.db import make_engine, make_session_factory, safe_url, session_scope
    from vestnik.shared.migrate import upgrade
    from vestnik.shared.seeds import install_default_templates

    engine = make_engine(settings.database_url)
    upgrade(engine, defaults={"locale": settings.default_locale, "timezone": settings.default_timezone})
    with session_scope(make_session_factory(engine)) as session:
        added, refreshed = install_default_templates(session)
    print(f"database {safe_url(settings.database_url)} is at the latest schema; "
          f"default templates: {added} added, {refreshed} refreshed (edited ones untouched)")
    engine.dispose()
    return 0


def cmd_emit(settings: Settings, args: argparse.Namespace) -> int:
    from vestnik.outbox import emit
    from vestnik.shared.db import session_scope

    data = _json_object(args.data, "--data")
    # Client ids as the CRM has them; decimal ones as integers (both name the same client).
    recipients = [int(r) if r.isascii() and r.isdigit() and not r.startswith("0") and len(r) <= 18 else r
                  for r in (part.strip() for part in args.recipients.split(",")) if r]
    with session_scope(_session_factory(settings)) as session:
        event_id = emit(
            session,
            args.event_type,
            recipients=recipients,
            data=data,
            key=args.key,
            idempotency_key=args.idempotency_key,
            send_at=args.send_at,
            initiator="cli",
        )
    if event_id is None:
        print("an event with this idempotency key exists already; nothing emitted", file=sys.stderr)
        return 0
    print(event_id)
    return 0


def cmd_clients_import(settings: Settings, args: argparse.Namespace) -> int:
    from vestnik.shared.clients_import import decode_csv, import_clients
    from vestnik.shared.db import session_scope
    from vestnik.workers.channels import build_channels

    build_channels(settings)  # each channel's address check (a webhook URL's target) for the rows

    try:
        with open(args.file, "rb") as raw:
            text, note = decode_csv(raw.read())
    except (OSError, ValueError) as exc:
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 2
    if note:
        print(f"{args.file}: {note}", file=sys.stderr)
    total = max(text.count("\n") - 1, 1)

    def progress(rows: int) -> None:
        if total > 5000:  # a line per chunk for a file that takes a while
            print(f"{args.file}: {rows}/~{total} rows ({min(100, rows * 100 // total)}%)", file=sys.stderr)

    with session_scope(_session_factory(settings)) as session:
        report = import_clients(session, io.StringIO(text, newline=""), default_timezone=settings.default_timezone,
                                progress=progress)
    for line, reason in report.errors:
        print(f"{args.file}:{line}: {reason}", file=sys.stderr)
    print(f"imported: {report.created} created, {report.updated} updated, "
          f"{report.rejected_lines} rows rejected ({len(report.errors)} problems)")
    return 1 if report.errors and not (report.created or report.updated) else 0


def cmd_create_admin(settings: Settings, args: argparse.Namespace) -> int:
    import secrets

    from sqlalchemy import func, select
    from werkzeug.security import generate_password_hash

    from vestnik.shared import counters
    from vestnik.shared.db import session_scope
    from vestnik.shared.models import AdminRole, AdminUser
    from vestnik.webapp.admin.auth import login_scope

    if args.password_env:
        password = os.environ.get("VESTNIK_ADMIN_PASSWORD")
        if password is None:
            print("error: --password-env reads VESTNIK_ADMIN_PASSWORD, which is not set", file=sys.stderr)
            return 2
    elif not sys.stdin.isatty():
        # getpass would fail with EOFError (e.g. under `docker compose run -T`): say what to do instead.
        print("error: no terminal to ask for the password on; set VESTNIK_ADMIN_PASSWORD and add --password-env",
              file=sys.stderr)
        return 2
    else:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            print("error: the passwords differ", file=sys.stderr)
            return 2
    if len(password) < 10:
        print("error: the password must have at least 10 characters", file=sys.stderr)
        return 2
    email = args.email.strip()
    with session_scope(_session_factory(settings)) as session:
        user = session.scalars(select(AdminUser).where(func.lower(AdminUser.email) == email.lower())).first()
        created = user is None
        if user is None:
            user = AdminUser(email=email, role=args.role or AdminRole.admin.value)
            session.add(user)
        elif args.role is not None:
            user.role = args.role  # a reset keeps the role unless one is given
        user.password_hash = generate_password_hash(password)
        # A reset is what one does after a leak: every session signed in with the old password ends here.
        user.session_token = secrets.token_hex(16)
        user.is_active = True
        counters.reset(session, login_scope(settings.secret_key, email))  # a lockout ends with the reset
        session.flush()
        _audit(session, "cli", "admin.create" if created else "admin.password_reset", "admin_user", str(user.id),
               {"email": user.email, "role": user.role, "sessions_revoked": not created})
        role = user.role
    print(f"admin user {email} ({role}) is ready" + ("" if created else "; every earlier session is signed out"))
    return 0


def cmd_api_keys(settings: Settings, args: argparse.Namespace) -> int:
    """API keys for /api/v1: create (printed once), list, revoke."""
    from sqlalchemy import select

    from vestnik.shared import api_keys
    from vestnik.shared.db import session_scope
    from vestnik.shared.models import ApiKey

    with session_scope(_session_factory(settings)) as session:
        if args.api_keys_command == "create":
            key, raw = api_keys.create(session, args.name, "cli")  # a bad --name: BoundsError, exit 2
            print(f"API key {key.id} ({key.name}); it is shown only this once, store it now:", file=sys.stderr)
            print(raw)
            return 0
        if args.api_keys_command == "revoke":
            key = api_keys.revoke(session, args.id, "cli")
            if key is None:
                print(f"error: no API key {args.id}", file=sys.stderr)
                return 1
            print(f"API key {key.id} ({key.name}) is revoked")
            return 0
        for key in session.scalars(select(ApiKey).order_by(ApiKey.id)):
            state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
            used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
            print(f"{key.id}\t{key.prefix}…\t{key.name}\t{state}\tlast used {used}")
    return 0


def _audit(session, actor: str, action: str, object_type: str, object_id: str | None, details: dict) -> None:
    from vestnik.shared.models import AuditLog

    session.add(AuditLog(actor=actor, action=action, object_type=object_type, object_id=object_id,
                         details=details))


def cmd_resend(settings: Settings, args: argparse.Namespace) -> int:
    """A copy of a notification goes out again (the original keeps its history)."""
    from vestnik.shared.db import session_scope
    from vestnik.shared.models import Notification
    from vestnik.workers import notifications

    with session_scope(_session_factory(settings)) as session:
        original = session.get(Notification, args.id)
        if original is None:
            print(f"error: notification {args.id} does not exist", file=sys.stderr)
            return 1
        try:
            new_id = notifications.resend(session, original, initiator="cli")
        except ValueError as exc:
            print(f"error: notification {args.id}: {exc}", file=sys.stderr)
            return 1
        _audit(session, "cli", "notification.resend", "notification", str(original.id), {"copy": new_id})
    print(new_id)  # the scheduler hands it to delivery within a tick
    return 0


def _bar(sent: int, failed: int, canceled: int, total: int, width: int = 30) -> str:
    """``[####x.....]``: # sent, x failed, - canceled, . waiting."""
    if total <= 0:
        return "[" + " " * width + "]"
    cells = [("#", sent), ("x", failed), ("-", canceled)]
    out = "".join(ch * int(round(n * width / total)) for ch, n in cells)[:width]
    return "[" + out + "." * (width - len(out)) + "]"


def broadcast_progress_text(session, broadcast_id: int, settings: Settings) -> tuple[str, bool]:
    """The progress of a broadcast as lines a person reads (as the admin shows it); and whether it
    is finished.  Raises VestnikError when the broadcast does not exist."""
    from vestnik.shared.models import Broadcast
    from vestnik.workers import broadcast_eta

    b = session.get(Broadcast, broadcast_id)
    if b is None:
        raise VestnikError(f"broadcast {broadcast_id} does not exist")
    e = broadcast_eta.estimate(session, b, settings)
    lines = [f"broadcast {b.id} {b.name!r}: {b.status}" + (f" ({b.stage} stage)" if b.stage else "")]
    for c in e.channels:
        parts = [f"{c.sent} sent", f"{c.failed} failed" + (f" ({c.resent} resent)" if c.resent else ""),
                 f"{c.waiting} waiting"]
        if c.canceled:
            parts.append(f"{c.canceled} canceled")
        if c.rate_per_min is not None:
            parts.append(f"{c.rate_per_min:g} a minute")
        lines.append(f"  {c.channel:<9} {_bar(c.sent, c.failed, c.canceled, c.total)} " + " · ".join(parts))
    if e.ends_at is not None:
        lines.append(f"  estimated end: {broadcast_eta.duration_text(e.seconds_left)}, "
                     f"{e.ends_at:%Y-%m-%d %H:%M} UTC (set by {e.decided_by})")
    if b.paused_reason and b.status == "paused":
        lines.append(f"  paused: {b.paused_reason}")
    return "\n".join(lines), b.status in broadcast_eta.FINAL


def cmd_broadcast_progress(settings: Settings, args: argparse.Namespace) -> int:
    """Per channel bars, the rate and the estimated end; ``--watch`` refreshes until it finishes."""
    import time

    factory = _session_factory(settings)
    shown = 0
    while True:
        with factory() as session:
            try:
                text, finished = broadcast_progress_text(session, args.id, settings)
            except VestnikError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
        if shown and sys.stdout.isatty():
            sys.stdout.write(f"\x1b[{shown}F\x1b[J")  # redraw in place on a terminal
        print(text, flush=True)
        shown = text.count("\n") + 1
        if finished or not args.watch:
            return 0
        time.sleep(args.every)  # a person's refresh interval, not a synchronisation


def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    """One configured template to one client, now, through delivery (not as an event or a broadcast)."""
    from vestnik.shared import client_ids
    from vestnik.shared.db import session_scope
    from vestnik.shared.models import utcnow
    from vestnik.workers import direct_send
    from vestnik.workers.channels import build_channels

    data = _json_object(args.data, "--data")
    channels = build_channels(settings)
    try:
        with session_scope(_session_factory(settings)) as session:
            key = client_ids.resolve(session, args.to)
            if key is None:
                raise direct_send.NotSent(f"no client {args.to}")
            made = direct_send.send(session, channels, args.template_code, key, data, now=utcnow())
            _audit(session, "cli", "notification.send", "client", str(args.to),
                   {"template": args.template_code, "notifications": [nid for nid, _ in made]})
    finally:
        for channel in channels.values():
            channel.close()
    for nid, channel in made:
        print(f"{nid}\t{channel}")  # the scheduler hands them to delivery within a tick
    return 0


def cmd_cancel(settings: Settings, args: argparse.Namespace) -> int:
    from vestnik.shared.db import session_scope
    from vestnik.shared.models import utcnow
    from vestnik.workers.notifications import cancel_by_key

    with session_scope(_session_factory(settings)) as session:
        count = cancel_by_key(session, args.key, "canceled from the command line", utcnow())
        _audit(session, "cli", "notification.cancel_by_key", "key", args.key, {"canceled": count})
    print(f"{count} pending notification(s) with key {args.key!r} canceled")
    return 0


def _preflight(settings: Settings, component: str, *, broker: bool = True, wait: bool = True) -> None:
    """Database and broker checked before the work starts (vestnik/preflight.py)."""
    from vestnik.outbox.contract import EVENTS_QUEUE
    from vestnik.preflight import wait_for_services
    from vestnik.shared.logs import configure_logging
    from vestnik.workers.broker import BROADCASTS_QUEUE, MAINTENANCE_QUEUE, delivery_queue
    from vestnik.workers.channels import CHANNELS

    configure_logging(settings)
    queues = [EVENTS_QUEUE, MAINTENANCE_QUEUE, BROADCASTS_QUEUE, delivery_queue("default"),
              *[delivery_queue(c) for c in sorted(CHANNELS)]] if broker else None
    wait_for_services(settings, component, queues=queues, wait=wait)


def cmd_relay(settings: Settings, args: argparse.Namespace) -> int:
    from vestnik.outbox.relay import main as relay_main

    _preflight(settings, "relay")
    return relay_main(settings)


def cmd_health(settings: Settings, args: argparse.Namespace) -> int:
    from vestnik.shared import heartbeat

    ok, message = heartbeat.check(args.process, args.max_age)
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    # Fatal problems stop it here; an outage does not: Dramatiq reconnects and retries messages with
    # its own backoff (each retry logged), as it must for an outage in the middle of a run anyway.
    _preflight(settings, "worker", wait=False)
    # Dramatiq's own CLI runs the processes and threads and handles SIGTERM
    # (finish in-flight work, take no new work); we only point it at setup().
    if settings.worker_metrics_port:
        from vestnik.workers.broker import prometheus_environment

        # Dramatiq reads these when its CLI starts, before our code runs; a previous run's
        # multiprocess files would add up into this one's counters.
        os.environ.update(prometheus_environment(settings.worker_metrics_port))
        shutil.rmtree(os.environ["dramatiq_prom_db"], ignore_errors=True)
    # Dramatiq re-enqueues due delayed messages (limiter waits, retry backoffs) only when a consumer
    # wakes up, every worker timeout (default 1 s): at 10/s that halved the rate a channel limit
    # allows (bench/broadcast_expand.py).  100 ms keeps a wait close to what the limiter asked.
    os.environ.setdefault("dramatiq_worker_timeout", "100")
    # Dramatiq's CLI, with its main process logging in Vestnik's format (workers/run.py).
    argv = [sys.executable, "-m", "vestnik.workers.run", "vestnik.workers.app:setup",
            "--processes", str(args.processes), "--threads", str(args.threads)]
    if args.queues:
        argv += ["--queues", *args.queues]
    os.execv(sys.executable, argv)
    return 0  # pragma: no cover


def cmd_scheduler(settings: Settings, args: argparse.Namespace) -> int:
    from vestnik.workers.scheduler import main as scheduler_main

    _preflight(settings, "scheduler")
    return scheduler_main(settings)


def cmd_bot(settings: Settings, args: argparse.Namespace) -> int:
    from vestnik.workers.poller import main as bot_main

    _preflight(settings, "bot", broker=False)
    return bot_main(settings, poll_timeout_s=args.poll_timeout, delete_webhook=args.delete_webhook)


def cmd_web(settings: Settings, args: argparse.Namespace) -> int:
    from vestnik.webapp import serve

    _preflight(settings, "web", broker=False, wait=False)
    return serve(settings, host=args.host, port=args.port)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from vestnik.webapp.demo import PortInUse, run_demo

    try:
        return run_demo(host=args.host, port=args.port, data_dir=args.data_dir, open_seconds=args.seconds)
    except PortInUse as exc:
        if not exc.port:
            raise
        hint = args.retry_hint or _demo_command(args) + " --port {port}"
        raise VestnikError(f"{exc}; choose another port: {hint.format(port=exc.port + 1)}") from None


def _demo_command(args: argparse.Namespace) -> str:
    """``vestnik demo`` as this shell can run it again: the console script by name when it is on
    PATH, else by its path, else ``python -m vestnik``."""
    import shlex

    script = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if os.path.basename(script) == "vestnik" and os.path.exists(script):
        found = shutil.which("vestnik")
        command = ["vestnik"] if found and os.path.samefile(found, script) else [script]
    else:
        command = [sys.executable, "-m", "vestnik"]
    command.append("demo")
    if args.host != "127.0.0.1":
        command += ["--host", args.host]
    if args.data_dir != DEMO_DATA_DIR:
        command += ["--data-dir", args.data_dir]
    return shlex.join(command)


# ------------------------------------------------------------------ parser


def _argument(parse, **kwargs):
    """An argparse ``type`` from a bounded parser: a bad value is argparse's usage error, naming it."""

    def convert(value: str):
        try:
            return parse(value, "", **kwargs)
        except BoundsError as exc:
            raise argparse.ArgumentTypeError(exc.reason) from None

    convert.__name__ = parse.__name__  # argparse names the type in its message
    return convert


_iso = _argument(bounds.moment)
_id = _argument(bounds.identifier)


def _crm_client_id(value: str, field: str = "") -> str:
    """A client as the CRM names it: an integer or a string id such as a UUID (shared/client_ids.py)."""
    from vestnik.shared.wire import CLIENT_ID

    if not CLIENT_ID(value):
        raise BoundsError(field, CLIENT_ID.error)
    return value


_client = _argument(_crm_client_id)
_line = _argument(bounds.text, min_chars=1, max_chars=200)


def _json_object(raw: str, option: str) -> dict:
    """``--data``: a JSON object (BoundsError naming the option otherwise)."""
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise BoundsError(option, f"is not valid JSON: {exc}") from None
    except RecursionError:
        raise BoundsError(option, "is nested too deeply") from None
    if not isinstance(value, dict):
        raise BoundsError(option, 'must be a JSON object, e.g. {"title": "Hi"}')
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vestnik", description="Vestnik notification service")
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="migrate to the latest schema and install default templates").set_defaults(
        func=cmd_db_upgrade
    )

    p = sub.add_parser("emit", help="emit one event from the shell (its own transaction)")
    p.add_argument("event_type")
    p.add_argument("--recipients", required=True, help="client ids, e.g. 1,2,3")
    p.add_argument("--data", default="{}", help="template data as JSON")
    p.add_argument("--key", type=_line, help="grouping key for cancel/reschedule, e.g. lesson:42")
    p.add_argument("--idempotency-key", type=_line)
    p.add_argument("--send-at", type=_iso, help="ISO 8601 time with offset")
    p.set_defaults(func=cmd_emit)

    clients = sub.add_parser("clients", help="clients").add_subparsers(dest="clients_command", required=True)
    p = clients.add_parser("import", help="upsert clients from a CSV file")
    p.add_argument("file")
    p.set_defaults(func=cmd_clients_import)

    keys = sub.add_parser("api-keys", help="keys for the HTTP API (/api/v1)").add_subparsers(
        dest="api_keys_command", required=True)
    p = keys.add_parser("create", help="make a key and print it (only this once)")
    p.add_argument("--name", required=True, help="who uses it, e.g. crm-production")
    p.set_defaults(func=cmd_api_keys)
    keys.add_parser("list", help="every key: id, prefix, name, state, last use").set_defaults(func=cmd_api_keys)
    p = keys.add_parser("revoke", help="revoke a key (its next request gets 403)")
    p.add_argument("id", type=_id)
    p.set_defaults(func=cmd_api_keys)

    p = sub.add_parser("create-admin", help="create or reset an admin user")
    p.add_argument("email", type=_argument(bounds.text, min_chars=3, max_chars=320))
    p.add_argument("--role", choices=("admin", "support"), default=None,
                   help="admin or support (a new user: admin; an existing one keeps their role unless given)")
    p.add_argument("--password-env", action="store_true",
                   help="read the password from VESTNIK_ADMIN_PASSWORD instead of prompting")
    p.set_defaults(func=cmd_create_admin)

    p = sub.add_parser("resend", help="send a copy of a notification again")
    p.add_argument("id", type=_id)
    p.set_defaults(func=cmd_resend)

    bc = sub.add_parser("broadcast", help="broadcasts").add_subparsers(dest="broadcast_command", required=True)
    p = bc.add_parser("progress", help="per channel bars, rate and estimated end of a broadcast")
    p.add_argument("id", type=int)
    p.add_argument("--watch", action="store_true", help="refresh until the broadcast has finished")
    p.add_argument("--every", type=float, default=2.0, help="seconds between refreshes with --watch")
    p.set_defaults(func=cmd_broadcast_progress)

    p = sub.add_parser("send", help="send one configured template to one client now")
    p.add_argument("template_code")
    p.add_argument("--to", type=_client, required=True, help="client id (the CRM's: 42 or a UUID)")
    p.add_argument("--data", default="{}", help="template data as JSON")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("cancel", help="cancel pending notifications by key")
    p.add_argument("--key", type=_line, required=True, help="e.g. lesson:42")
    p.set_defaults(func=cmd_cancel)

    sub.add_parser("relay", help="publish committed outbox events to the broker").set_defaults(func=cmd_relay)

    p = sub.add_parser("health", help="exit 0 if a relay, worker, scheduler or bot on this host is alive (heartbeat)")
    p.add_argument("process", choices=("relay", "worker", "scheduler", "bot"))
    p.add_argument("--max-age", type=float, default=60.0, help="seconds since the last heartbeat")
    p.set_defaults(func=cmd_health)

    p = sub.add_parser("worker", help="run Dramatiq workers")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--queues", nargs="*", help="only these queues (e.g. deliver.telegram)")
    p.set_defaults(func=cmd_worker)

    sub.add_parser("scheduler", help="release due notifications, reap stuck ones, housekeeping").set_defaults(
        func=cmd_scheduler
    )

    p = sub.add_parser("bot", help="Telegram bot updates by long polling (instead of the webhook)")
    p.add_argument("--poll-timeout", type=int, default=25, help="getUpdates long-poll timeout, seconds")
    p.add_argument("--delete-webhook", action="store_true", help="remove a webhook set for the bot first")
    p.set_defaults(func=cmd_bot)

    p = sub.add_parser("web", help="the admin, profile and webhook web app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_web)

    p = sub.add_parser("demo", help="everything in one process on SQLite, with local Telegram and SMTP sinks")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-dir", default=DEMO_DATA_DIR)
    p.add_argument("--seconds", type=float, default=None, help="stop after this many seconds (for scripts)")
    # How to run the demo on another port, as the caller knows it (the Makefile: "make demo PORT={port}").
    p.add_argument("--retry-hint", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings() if args.command != "demo" else Settings()
        return int(args.func(settings, args) or 0)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except BoundsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StartupError:
        return 2  # already said, once, in the log (vestnik/preflight.py)
    except VestnikError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
