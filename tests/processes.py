"""Running Vestnik's real processes (``vestnik relay``, ``vestnik worker``...) in tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

VESTNIK = [sys.executable, "-m", "vestnik"]
ROOT = Path(__file__).resolve().parent.parent


class Proc:
    """A child process in its own process group, with its output in a file."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args, env={**os.environ, **env}, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._terminated = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM to the main process only, like `docker stop`, once: Dramatiq and gunicorn forward it to
        their children once; a second SIGTERM would tell a Dramatiq child to stop at once."""
        if not self._terminated and self.popen.poll() is None:
            self._terminated = True
            self.popen.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 20) -> int:
        """Terminate (unless done already), wait up to ``timeout_s``, then kill whatever is left."""
        if self.popen.poll() is None:
            self.terminate()
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self.signal(signal.SIGKILL)  # whatever the main process left behind in its group
        self._log.close()
        return self.popen.returncode

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


@contextmanager
def running(procs: list[Proc]) -> Iterator[list[Proc]]:
    """The processes stop together at the end: each is sent SIGTERM, then each is waited for (their
    graceful stops overlap instead of adding up, a second or more each)."""
    try:
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.stop()


def vestnik(name: str, *args: str, env: Mapping[str, str], log_dir: Path) -> Proc:
    return Proc(name, [*VESTNIK, *args], env, log_dir)


def wait_until(predicate: Callable[[], object], timeout_s: float = 30, interval_s: float = 0.05,
               message: str | Callable[[], str] = "condition") -> object:
    """Poll a condition with a deadline (never a fixed sleep as synchronisation).

    ``message`` may be a function, called only on timeout: a process's log read then says what
    happened during the wait, not before it.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            what = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def wait_for_web(base: str, timeout_s: float = 90) -> None:
    """Until ``vestnik web`` at ``base`` answers its health check (the process starts, migrates, binds)."""
    import requests

    def up() -> bool:
        try:
            return requests.get(f"{base}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(up, timeout_s, message=f"the web app at {base}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test run's own, on a free port: nothing shared with another suite.
    ``directory``: where a ``SAVE`` writes its snapshot, read back when it starts again (else none)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        saved = ["--dir", str(self.directory), "--dbfilename", "dump.rdb"] if self.directory else []
        self.proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(self.port),
                                      "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *saved],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_until(up, 20, message="private redis-server")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
