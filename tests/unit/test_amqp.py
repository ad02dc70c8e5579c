"""Every RabbitMQ connection Vestnik opens is named (the management UI says whose it is) and takes a
cluster's node list: connections are only made from shared/amqp.py's parameters."""

from __future__ import annotations

import re
from pathlib import Path

from vestnik.shared.amqp import connection_name, node_parameters

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("shared", "outbox", "workers", "webapp", "vestnik")


def test_each_node_of_a_list_gets_the_named_connection():
    nodes = node_parameters("amqp://u:p@rmq1:5672/v;amqp://u:p@rmq2:5673/v", "web-metrics", timeout_s=2)
    assert [(n.host, n.port) for n in nodes] == [("rmq1", 5672), ("rmq2", 5673)]
    assert {n.client_properties["connection_name"] for n in nodes} == {connection_name("web-metrics")}
    assert all(n.connection_attempts == 1 and n.socket_timeout == 2 for n in nodes)


def test_no_module_builds_its_own_unnamed_connection_parameters():
    offenders = []
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "shared" / "amqp.py":
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(r"pika\.(URLParameters|ConnectionParameters)\(|(?<![`\w])RabbitmqBroker\(", line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert not offenders, "use vestnik.shared.amqp (node_parameters, VestnikRabbitmqBroker): " + ", ".join(offenders)
