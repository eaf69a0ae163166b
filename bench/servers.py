"""Start the servers under test as fresh subprocesses, and stop them.

chatd runs as ``twistd -n chatd --config INI`` on a PostgreSQL database
created for it and dropped afterwards; the references run as
``python -m bench.references.<name>``.
"""

import contextlib
import dataclasses
import json
import os
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.loadgen import meter

REPO = Path(__file__).resolve().parent.parent
PG_DSN = "host=127.0.0.1 user=postgres"
REFERENCES = ("relay", "echo", "broadcast")


class ServerFailed(Exception):
    """A server did not come up; the message holds the end of its log."""


@dataclasses.dataclass
class Server:
    """A running server under test.

    Attributes:
        name: ``chatd`` or a reference's name.
        host: Its address.
        port: Its port.
        process: The subprocess.
        log_path: Where its output goes.
        speaks_chatd: Whether it speaks chatd's protocol (chatd, relay).
        needs_friends: Whether private messages and groups need friendships.
        path: The WebSocket resource path.
    """

    name: str
    host: str
    port: int
    process: subprocess.Popen
    log_path: Path
    speaks_chatd: bool
    needs_friends: bool
    path: str = "/ws"

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    def address(self) -> dict:
        """Return what a worker needs to connect, as a picklable dict."""
        return {"host": self.host, "port": self.port, "path": self.path}

    def rss(self) -> int:
        """Return the server's resident memory in bytes."""
        return meter.process_rss(self.pid)

    def cpu(self) -> float:
        """Return the server's CPU seconds so far."""
        return meter.process_cpu(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        """Return the end of the server's log.

        Args:
            lines: How many lines.
        """
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``timeout``.

        Args:
            timeout: Seconds to wait for a clean exit.
        """
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _raise_nofile_limit() -> None:
    """Raise the soft limit on open files to the hard one (in the child)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _child_env() -> dict:
    """Return an environment in which ``bench`` and ``chatd`` import."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), env.get("PYTHONPATH")) if p
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chatd_available() -> bool:
    """Tell whether ``twistd`` in this environment knows the chatd plugin."""
    twistd = Path(sys.executable).with_name("twistd")
    try:
        result = subprocess.run(
            [str(twistd), "--help"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(line.split()[:1] == ["chatd"] for line in result.stdout.splitlines())


@contextlib.contextmanager
def reference(name: str, workdir: Path, history: bool = False):
    """Run a reference server for the duration of a ``with`` block.

    Args:
        name: ``relay``, ``echo`` or ``broadcast``.
        workdir: Where its log goes.
        history: Relay only: keep messages for get_history.

    Yields:
        The running Server.
    """
    log_path = workdir / f"{name}.log"
    command = [sys.executable, "-m", f"bench.references.{name}", "--port", "0"]
    if history:
        command.append("--history")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log,
            env=_child_env(),
            preexec_fn=_raise_nofile_limit,
        )
    server = None
    try:
        line = process.stdout.readline()
        if not line:
            raise ServerFailed(f"{name} exited: {log_path.read_text()[-2000:]}")
        port = json.loads(line)["listening"]
        server = Server(
            name=name,
            host="127.0.0.1",
            port=port,
            process=process,
            log_path=log_path,
            speaks_chatd=name == "relay",
            needs_friends=False,
        )
        yield server
    finally:
        if server is not None:
            server.stop()
        elif process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def _write_ini(path: Path, port: int, dbname: str, options: dict) -> None:
    """Write chatd's config for one benchmark run.

    Args:
        path: Where to write it.
        port: The port to listen on.
        dbname: The PostgreSQL database.
        options: ``bcrypt_cost`` and ``online_users``.
    """
    path.write_text(
        "[server]\n"
        f"endpoint = tcp:{port}:interface=127.0.0.1\n"
        "[database]\n"
        "backend = postgres\n"
        f"dsn = dbname={dbname} {PG_DSN}\n"
        "[security]\n"
        f"bcrypt_cost = {options.get('bcrypt_cost', 4)}\n"
        "rate_limit = 0\n"
        # The scenarios register thousands of users and log 100 in at once:
        # they measure that work, not the refusal of it past the queue cap.
        "bcrypt_queue = 100000\n"
        "[presence]\n"
        f"online_users = {options.get('online_users', 'off')}\n"
    )


def _pg_admin(statement: str) -> None:
    """Run one statement on the postgres database, outside a transaction.

    Args:
        statement: The SQL.
    """
    import psycopg2

    connection = psycopg2.connect(f"dbname=postgres {PG_DSN}")
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def _wait_healthy(server: Server, timeout: float) -> None:
    """Poll /healthz until it answers 200.

    Args:
        server: The starting chatd.
        timeout: Seconds to wait.

    Raises:
        ServerFailed: It exited or did not become healthy in time.
    """
    url = f"http://{server.host}:{server.port}/healthz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerFailed(f"chatd exited:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise ServerFailed(f"chatd not healthy after {timeout} s:\n{server.log_tail()}")


@contextlib.contextmanager
def chatd(workdir: Path, **options):
    """Run chatd on a fresh PostgreSQL database for a ``with`` block.

    Args:
        workdir: Where its config and log go.
        **options: ``bcrypt_cost`` (default 4) and ``online_users``
            (default ``off``).

    Yields:
        The running Server.
    """
    dbname = f"chatd_bench_{secrets.token_hex(4)}"
    port = _free_port()
    ini = workdir / "chatd.ini"
    _write_ini(ini, port, dbname, options)
    _pg_admin(f"CREATE DATABASE {dbname}")
    log_path = workdir / "chatd.log"
    twistd = Path(sys.executable).with_name("twistd")
    process = None
    try:
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [str(twistd), "-n", "--pidfile=", "chatd", "--config", str(ini)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=_child_env(),
                preexec_fn=_raise_nofile_limit,
            )
        server = Server(
            name="chatd",
            host="127.0.0.1",
            port=port,
            process=process,
            log_path=log_path,
            speaks_chatd=True,
            needs_friends=True,
        )
        _wait_healthy(server, timeout=60)
        yield server
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        _pg_admin(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


def nvx_line(server: Server) -> str | None:
    """Return the first line of chatd's log that mentions NVX, if any.

    Args:
        server: A chatd Server.
    """
    try:
        text = server.log_path.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if "nvx" in line.lower():
            return line.strip()[-200:]
    return None


@contextlib.contextmanager
def workdir(keep: bool = False):
    """Make a temporary directory for configs and logs.

    Args:
        keep: Leave it in place afterwards (for reading logs).

    Yields:
        Its path.
    """
    path = Path(tempfile.mkdtemp(prefix="chatd-bench-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def target(name: str, work: Path, **options):
    """Run chatd or a reference, whichever ``name`` says.

    Args:
        name: ``chatd`` or a reference's name.
        work: The working directory.
        **options: chatd options, or ``history`` for the relay.

    Yields:
        The running Server.
    """
    if name == "chatd":
        chatd_options = {k: v for k, v in options.items() if k != "history"}
        with chatd(work, **chatd_options) as server:
            yield server
    else:
        with reference(name, work, history=options.get("history", False)) as server:
            yield server
