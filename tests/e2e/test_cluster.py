"""Vestnik on a three-node RabbitMQ cluster through a node's loss, and through a PostgreSQL restart,
judged by the delivery ledger: nothing lost, nothing duplicated.

Outside the default run (each takes minutes and starts servers of its own): ``VESTNIK_CLUSTER_TESTS=1
pytest -m cluster tests/e2e/test_cluster.py -s`` (CI runs them after ``make test``, ``.ci/run``).

- RabbitMQ: ``docker/local-cluster.sh`` starts three nodes on this machine (own names, ports and
  data; the machine's RabbitMQ is untouched).  The relay and two worker processes get the three
  nodes as a client-side list (``VESTNIK_BROKER_URL`` with ``;``).  Events are emitted before,
  during and after node 1 (the first of every client's list, where the queues' leaders start) is
  stopped and brought back.
- PostgreSQL: a private cluster (``initdb`` in a temporary directory, its own port), restarted in
  the middle of a run; never the machine's shared server.

The ledger of each phase is printed (``-s``); docs/operations.md quotes it.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.conftest import Stack
from tests.e2e.runs import CHAOS_ENV, N, add_clients, emit_run, settled, uncertain_rows, worker
from tests.processes import free_port, vestnik, wait_until
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.fakes.ledger import check, received
from vestnik.shared.migrate import upgrade
from vestnik.shared.seeds import install_default_templates

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docker" / "local-cluster.sh"

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.environ.get("VESTNIK_CLUSTER_TESTS") != "1",
                       reason="starts a RabbitMQ cluster and a PostgreSQL server: VESTNIK_CLUSTER_TESTS=1"),
]


def cluster(*args: str, timeout_s: float = 600) -> str:
    result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout_s)
    assert result.returncode == 0, f"local-cluster.sh {' '.join(args)}: {result.stdout[-1500:]}{result.stderr[-1500:]}"
    return result.stdout.strip()


def cluster_base_port() -> int:
    """A base whose AMQP (base+1..3) and distribution (base+10001..3) ports are free, below the
    ephemeral range (where a client's outgoing connection could take one meanwhile)."""
    for _ in range(200):
        base = random.randrange(11000, 15000, 10)
        ports = [base + n for n in (1, 2, 3)] + [base + 10000 + n for n in (1, 2, 3)]
        if all(port_free(p) for p in ports):
            return base
    pytest.fail("no free ports for the RabbitMQ cluster")


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.fixture(scope="module")
def rabbitmq_cluster():
    if shutil.which("rabbitmq-server") is None:
        pytest.fail("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
    directory = tempfile.mkdtemp(prefix="vestnik-rmq-")
    base = cluster_base_port()
    try:
        cluster("start", directory, str(base))
        yield directory, cluster("urls", directory)
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", directory], capture_output=True, timeout=300)


def phase_ledgers(stack, bot_api, smtp_server, phases: dict[str, list]) -> dict[str, object]:
    """The ledger of each phase's events (only their messages), and of the whole run."""
    messages = received(bot_api, smtp_server)
    uncertain = uncertain_rows(stack)
    ledgers = {}
    for name, expected in phases.items():
        markers = {e.marker for e in expected}
        mine = [m for m in messages if any(marker in m[2] for marker in markers)]
        ledgers[name] = check(expected, mine, [u for u in uncertain if u[2] in markers])
    ledgers["whole run"] = check([e for expected in phases.values() for e in expected], messages, uncertain)
    return ledgers


def report(title: str, ledgers: dict[str, object]) -> None:
    print(f"\n{title}")
    print(f"  {'phase':<34} {'expected':>8} {'received':>8} {'lost':>5} {'duplicated':>10} {'uncertain':>9}")
    for name, r in ledgers.items():
        print(f"  {name:<34} {r.expected:>8} {r.received:>8} {len(r.lost):>5} {len(r.duplicated):>10} "
              f"{r.uncertain:>9}")


def test_a_rabbitmq_node_lost_and_back_loses_and_duplicates_nothing(chaos, bot_api, smtp_server, rabbitmq_cluster):
    directory, urls = rabbitmq_cluster
    stack = chaos
    stack.env["VESTNIK_BROKER_URL"] = urls
    procs = [vestnik("relay", "relay", env=stack.env, log_dir=stack.log_dir),
             worker(stack, "worker-1"), worker(stack, "worker-2"),
             vestnik("scheduler", "scheduler", env=stack.env, log_dir=stack.log_dir)]
    phases: dict[str, list] = {}
    try:
        phases["before the loss"] = emit_run(stack, 0, 40)
        wait_until(lambda: len(received(bot_api, smtp_server)) >= 40, 240, message="deliveries before the loss")

        cluster("stop-node", directory, "1")  # the first node of every client's list
        stopped_at = time.monotonic()
        phases["while node 1 is down"] = []
        for batch in range(4):  # a steady trickle while the node is away, each batch delivered first
            first = 40 + 10 * batch
            phases["while node 1 is down"] += emit_run(stack, first, 10)
            wait_until(lambda f=first: len(received(bot_api, smtp_server)) >= 2 * (f + 10), 300,
                       message=lambda: "deliveries through nodes 2 and 3\n" + procs[1].output()[-2000:])
        down_s = time.monotonic() - stopped_at

        cluster("start-node", directory, "1")
        phases["after node 1 is back"] = emit_run(stack, 80, 40)
        wait_until(lambda: settled(stack, 120), 300, message="every event handled and every row final")
    finally:
        for p in procs:
            p.stop()
    ledgers = phase_ledgers(stack, bot_api, smtp_server, phases)
    report(f"RabbitMQ cluster of 3, node 1 stopped for {down_s:.0f} s, relay + 2 workers + scheduler "
           f"({N} clients x 2 channels)", ledgers)
    for name, ledger in ledgers.items():
        assert ledger.clean and ledger.uncertain == 0, (name, str(ledger))


# ---------------------------------------------------------------------- PostgreSQL restart


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own: initdb in a temporary directory, its own port."""

    def __init__(self) -> None:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not versions:
            pytest.fail("PostgreSQL's server binaries are not installed (apt-get install postgresql)")
        self.bin = versions[-1].parent
        self.dir = Path(tempfile.mkdtemp(prefix="vestnik-pg-"))
        self.dir.chmod(0o755)
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=300)

    def init(self) -> PrivatePostgres:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        return self.start()

    def start(self) -> PrivatePostgres:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start")
        return self

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def remove(self) -> None:
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres():
    server = PrivatePostgres().init()
    try:
        yield server
    finally:
        server.remove()


def test_a_postgresql_restart_mid_run_loses_and_duplicates_nothing(private_postgres, amqp_vhost_url, redis_url,
                                                                    bot_api, smtp_server, tmp_path):
    admin = create_engine(private_postgres.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('CREATE DATABASE "vestnik"'))
    admin.dispose()
    url = private_postgres.url("vestnik")
    engine = make_engine(url)
    upgrade(engine)
    factory = make_session_factory(engine)
    with factory() as s:
        install_default_templates(s)
        s.commit()
    env = {"VESTNIK_DATABASE_URL": url, "VESTNIK_BROKER_URL": amqp_vhost_url, "VESTNIK_REDIS_URL": redis_url,
           "VESTNIK_TELEGRAM_TOKEN": bot_api.token, "VESTNIK_TELEGRAM_API_BASE": bot_api.url,
           "VESTNIK_SMTP_URL": f"smtp://127.0.0.1:{smtp_server.port}", "VESTNIK_SECRET_KEY": "x" * 32,
           "VESTNIK_RETRY_BASE_DELAY_S": "0.2", **CHAOS_ENV}
    stack = Stack(env, factory, tmp_path)
    csv = "id,name,email,telegram_chat_id,locale,timezone\n" + "".join(
        f"{100 + i},C{i},c{i}@example.com,{7000 + i},ru,Europe/Moscow\n" for i in range(N))
    add_clients(factory, csv)
    procs = [vestnik("relay", "relay", env=env, log_dir=tmp_path), worker(stack, "worker-1"),
             worker(stack, "worker-2"), vestnik("scheduler", "scheduler", env=env, log_dir=tmp_path)]
    phases: dict[str, list] = {}
    try:
        phases["committed before the restart"] = emit_run(stack, 0, 60)
        engine.dispose()
        # Restart while those are still in flight: the relay, the workers and the scheduler lose every
        # connection in the middle of their work.
        restart = threading.Thread(target=lambda: (private_postgres.stop(), private_postgres.start()))
        restart.start()
        restart.join(300)
        phases["committed after the restart"] = emit_run(stack, 60, 60)
        wait_until(lambda: settled(stack, 120), 300,
                   message=lambda: "every event handled and every row final\n" + procs[0].output()[-2000:])
    finally:
        for p in procs:
            p.stop()
    ledgers = phase_ledgers(stack, bot_api, smtp_server, phases)
    engine.dispose()
    report(f"PostgreSQL restarted (pg_ctl -m fast) mid-run, relay + 2 workers + scheduler ({N} clients x 2 "
           "channels)", ledgers)
    for name, ledger in ledgers.items():
        assert ledger.clean and ledger.uncertain == 0, (name, str(ledger))
