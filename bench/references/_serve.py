"""Start-up shared by the reference servers: arguments, limits, listening."""

import argparse
import json
import resource
import sys

from autobahn import websocket as autobahn_websocket
from autobahn.twisted.websocket import WebSocketServerFactory


def raise_nofile_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit.

    Returns:
        The soft limit now in force.
    """
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line common to every reference server.

    Args:
        description: One line for ``--help``.
        argv: The arguments, or None for ``sys.argv``.

    Returns:
        The parsed arguments (``port``, ``interface`` and ``history``).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument(
        "--history",
        action="store_true",
        help="relay only: keep every message in memory for get_history",
    )
    return parser.parse_args(argv)


def serve(
    factory_class: type[WebSocketServerFactory], args: argparse.Namespace
) -> None:
    """Listen with a factory of the given class and run the reactor.

    Args:
        factory_class: A WebSocketServerFactory subclass taking ``reactor``
            and ``args`` keyword arguments.
        args: The parsed command line.
    """
    from twisted.internet import reactor

    raise_nofile_limit()
    factory = factory_class(reactor=reactor, args=args)
    factory.setProtocolOptions(
        autoPingInterval=0,
        openHandshakeTimeout=30,
        closeHandshakeTimeout=2,
        maxMessagePayloadSize=1 << 20,
    )
    port = reactor.listenTCP(args.port, factory, backlog=4096, interface=args.interface)

    line = {"listening": port.getHost().port, "nvx": autobahn_websocket.USES_NVX}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    reactor.run()
