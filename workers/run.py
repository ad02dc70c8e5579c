"""``vestnik worker``'s main process: Dramatiq's CLI, logging in Vestnik's format.

Dramatiq's CLI forks the worker processes and relays their output; its own
lines ("booting up", "worker process is ready", signals) used its plain-text
``basicConfig``.  Here the main process configures Vestnik's logging first
(JSON with ``VESTNIK_LOG_FORMAT=json``, secrets redacted) and runs the CLI
with ``--skip-logging``; each worker process configures the same in
``vestnik.workers.app.setup``.  Run as ``python -m vestnik.workers.run
<dramatiq arguments>`` (``vestnik worker`` does).
"""

from __future__ import annotations

import sys

from vestnik.shared.config import load_settings
from vestnik.shared.logs import configure_logging


def main(argv: list[str]) -> int:
    configure_logging(load_settings())
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    return int(dramatiq_main(make_argument_parser().parse_args([*argv, "--skip-logging"])) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
