"""``twistd chatd``: the command-line options and the service they make.

The service starts asynchronously once the reactor runs: it opens the store
(applying migrations), then listens. twistd ignores the outcome of
``startService``, so a failure there is logged in one line and stops the
process with a non-zero status.
"""

import os
import signal
import sys

from autobahn.websocket import USES_NVX
from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.python import usage

from chatd import __version__
from chatd.clock import now_ms
from chatd.config import Config, ConfigError, load_config
from chatd.passwords import PasswordHasher
from chatd.server.factory import ChatServerFactory
from chatd.server.protocol import CLOSE_GOING_AWAY
from chatd.server.registry import Registry
from chatd.server.router import Router, Services
from chatd.server.site import make_site
from chatd.services.auth import AuthService
from chatd.services.friends import FriendsService
from chatd.services.groups import GroupsService
from chatd.services.messages import MessagesService
from chatd.services.presence import PresenceService
from chatd.services.profiles import ProfilesService
from chatd.storage.database import DatabaseUnavailable
from chatd.storage.postgres import PostgresDatabase
from chatd.storage.sqlite import SqliteDatabase
from chatd.storage.store import Store
from chatd.storage.writer import MessageWriter


class Options(usage.Options):
    """``twistd chatd [--config PATH]``."""

    optParameters = [
        ["config", "c", None, "Path to chatd.ini (default: built-in defaults)."],
    ]

    def postOptions(self) -> None:  # noqa: N802 (usage.Options hook)
        """Read and check the configuration now, so errors stop start-up."""
        try:
            self["parsed"] = load_config(self["config"])
        except ConfigError as error:
            # One line and status 1, without twistd's usage summary.
            raise SystemExit(f"chatd: {error}") from None


def open_store(config: Config, reactor) -> Store:
    """Make the store for the configured backend (not yet started)."""
    database = config.database
    if database.backend == "postgres":
        backend = PostgresDatabase(
            database.dsn,
            database.pool_size,
            database.timeout,
            reactor,
            reconnect_max_delay=database.reconnect_max_delay,
        )
    else:
        backend = SqliteDatabase(database.path)
    return Store(backend)


def bcrypt_threads(configured: int) -> int:
    """The bcrypt pool size: as configured, or for 0 one fewer than the
    CPU cores (at least 1), so that a login storm leaves the reactor a core."""
    if configured > 0:
        return configured
    return max(1, (os.cpu_count() or 2) - 1)


class ChatService(service.Service):
    """The whole daemon: store, services, WebSocket listener.

    Args:
        config: The configuration.
        reactor: The reactor to run on.
    """

    _log = Logger()

    def __init__(self, config: Config, reactor):
        self.config = config
        self.reactor = reactor
        self.port = None
        self.registry: Registry | None = None
        self.store: Store | None = None
        self._hasher: PasswordHasher | None = None
        self._presence: PresenceService | None = None
        self._factory: ChatServerFactory | None = None
        self.ready: defer.Deferred = defer.Deferred()

    def startService(self) -> None:  # noqa: N802 (IService)
        """Start in the background; ``ready`` fires when listening."""
        super().startService()
        defer.Deferred.fromCoroutine(self._start()).addCallbacks(
            self.ready.callback, self._failed
        )

    async def _start(self):
        config = self.config
        self._log.info(
            "chatd {version} starting; Autobahn NVX acceleration is {nvx}",
            version=__version__,
            nvx="on" if USES_NVX else "off",
        )
        self.store = open_store(config, self.reactor)
        await self.store.start(now_ms(self.reactor))

        security = config.security
        self._hasher = PasswordHasher(
            self.reactor,
            security.bcrypt_cost,
            bcrypt_threads(security.bcrypt_threads),
            security.bcrypt_queue,
        )
        self._hasher.start()

        factory = self._factory = ChatServerFactory(None, config, self.reactor)
        self.registry = registry = Registry(factory.prepareMessage)
        presence = self._presence = PresenceService(
            registry, self.reactor, config.presence
        )
        writer = MessageWriter(self.store, config.messages.write_batch)
        services = Services(
            auth=AuthService(self.store, self._hasher, self.reactor, security),
            friends=FriendsService(self.store, registry, presence, self.reactor),
            groups=GroupsService(self.store, registry, self.reactor, security),
            messages=MessagesService(
                self.store, writer, registry, self.reactor, security, config.messages
            ),
            presence=presence,
            profiles=ProfilesService(self.store, registry, presence, security),
        )
        factory.router = Router(services, registry, config)

        site = make_site(factory, self.store, registry)
        endpoint = serverFromString(self.reactor, config.server.endpoint)
        self.port = await endpoint.listen(site)
        presence.start()
        self._log.info(
            "chatd listening on {address} ({backend} store)",
            address=str(self.port.getHost()),
            backend=config.database.backend,
        )
        return self

    def _failed(self, failure) -> None:
        """Log why start-up failed and stop the process with status 1."""
        if failure.check(DatabaseUnavailable):
            self._log.critical(
                "chatd cannot start: database unavailable: {error}",
                error=failure.getErrorMessage(),
            )
        elif failure.check(CannotListenError, OverflowError, OSError):
            error = getattr(failure.value, "socketError", None) or failure.value
            self._log.critical(
                "chatd cannot start: cannot listen on {endpoint}: {error}",
                endpoint=self.config.server.endpoint,
                error=str(error),
            )
        else:
            self._log.failure("chatd cannot start", failure)
        self.ready.errback(failure)
        self.ready.addErrback(lambda _: None)
        if self.reactor.running:
            # FIXME: os._exit skips twistd's pidfile removal, so a failed start
            # without -n leaves twistd.pid behind (and its parent exited 0).
            self.reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
            self.reactor.stop()

    async def _stop(self) -> None:
        """Stop listening, close every session with 1001, close the store."""
        if self.port is not None:
            await self.port.stopListening()
        if self._presence is not None:
            self._presence.stop()
        if self._factory is not None:
            await self._close_connections(self._factory.connections)
        if self._hasher is not None:
            self._hasher.stop()
        if self.store is not None:
            await self.store.close()
        self._log.info("chatd stopped")
        # twistd re-raises the SIGTERM that stopped the reactor, so that the
        # process dies of it; a shutdown that got here was orderly: exit 0.
        if getattr(self.reactor, "_exitSignal", None) == signal.SIGTERM:
            self.reactor._exitSignal = None

    async def _close_connections(self, connections: set) -> None:
        """Let in-flight requests finish (the rest are answered unavailable),
        then close every connection with 1001 and wait for the closing
        handshakes; all of it within the configured shutdown timeout."""
        deadline = self.reactor.seconds() + self.config.server.shutdown_timeout
        for connection in list(connections):
            connection.begin_shutdown()
        while any(c.busy for c in connections) and self.reactor.seconds() < deadline:
            await task.deferLater(self.reactor, 0.02, lambda: None)

        # FIXME: a request still running at the deadline gets no reply.
        for connection in list(connections):
            connection.close_with(CLOSE_GOING_AWAY, "the server is shutting down")
        while connections and self.reactor.seconds() < deadline:
            await task.deferLater(self.reactor, 0.05, lambda: None)
        for connection in list(connections):
            connection.dropConnection(abort=True)

    def stopService(self):  # noqa: N802 (IService)
        """Shut down; twistd waits for the returned Deferred."""
        super().stopService()
        return defer.Deferred.fromCoroutine(self._stop())


def makeService(options: Options) -> ChatService:  # noqa: N802 (twistd hook)
    """Build the chatd service from parsed options."""
    from twisted.internet import reactor

    config = options["parsed"]
    try:
        serverFromString(reactor, config.server.endpoint)
    except (ValueError, TypeError, KeyError, OSError) as error:
        raise SystemExit(f"chatd: server.endpoint: {error}") from None
    if config.database.backend == "sqlite":
        folder = os.path.dirname(os.path.abspath(config.database.path))
        if not os.access(folder, os.W_OK):
            sys.stderr.write(f"database.path: cannot write in {folder}\n")
            raise SystemExit(1)
    return ChatService(config, reactor)
