"""Run the real daemon, ``twistd -n chatd``, as a child process in tests."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from twisted.internet import reactor, task
from twisted.web.client import Agent, readBody

ROOT = Path(__file__).resolve().parent.parent
TWISTD = str(Path(sys.executable).parent / "twistd")


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_twistd(
    folder: str, *args: str, timeout: float = 30
) -> subprocess.CompletedProcess:
    """Run twistd to completion (for start-up failures) and capture output."""
    return subprocess.run(
        [TWISTD, "-n", "--pidfile=", "chatd", *args],
        cwd=folder,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _environment() -> dict:
    # Run the working tree's chatd rather than whatever copy is installed.
    environment = dict(os.environ)
    environment["PYTHONPATH"] = str(ROOT)
    return environment


class Daemon:
    """A ``twistd -n chatd`` child process with its own folder and config.

    Args:
        folder: Working directory (the SQLite file lands here by default).
        ini: The text of chatd.ini; ``{port}`` is replaced by a free port.
    """

    def __init__(self, folder: str, ini: str):
        self.folder = folder = os.path.abspath(folder)
        self.port = free_port()
        self.config_path = os.path.join(folder, "chatd.ini")
        Path(self.config_path).write_text(ini.replace("{port}", str(self.port)))
        self.log_path = os.path.join(folder, "daemon.log")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Spawn the process (see ``ready`` to wait for it)."""
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "chatd", "--config", self.config_path],
            cwd=self.folder,
            env=_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    async def ready(self, timeout: float = 20) -> None:
        """Wait until /healthz answers 200."""
        agent = Agent(reactor)
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/healthz".encode()
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited early:\n{self.log()}")
            try:
                response = await agent.request(b"GET", url)
                await readBody(response)
                if response.code == 200:
                    return
            except Exception:
                pass
            await task.deferLater(reactor, 0.1, lambda: None)
        raise AssertionError(f"daemon not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        """Everything the daemon has written so far."""
        return Path(self.log_path).read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send a signal to the daemon."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    async def exited(self, timeout: float = 20) -> int:
        """Wait for the process to end and return its status."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(f"daemon still running after {timeout}s")
            await task.deferLater(reactor, 0.05, lambda: None)
        return self.process.returncode

    async def stop(self) -> None:
        """SIGTERM the daemon and wait for it (for test cleanup)."""
        if self.process is not None and self.process.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                await self.exited()
            except AssertionError:
                pass
