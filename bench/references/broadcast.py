"""Raw WebSocket broadcast: each frame goes to every other connection.

The frame is prepared (encoded and framed) once and written to each
recipient, the ceiling for fan-out on this stack.
"""

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

from bench.references._serve import parse_args, serve


class BroadcastProtocol(WebSocketServerProtocol):
    """Joins the factory's set of connections while open."""

    def onOpen(self) -> None:
        """Register this connection for broadcasts."""
        self.factory.clients.add(self)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        """Leave the set of connections.

        Args:
            wasClean: Whether the close handshake completed.
            code: The close code.
            reason: The close reason.
        """
        self.factory.clients.discard(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """Send one message to every other open connection.

        Args:
            payload: The message body.
            isBinary: Whether it came as a binary message.
        """
        prepared = self.factory.prepareMessage(payload, isBinary)
        for client in self.factory.clients:
            if client is not self:
                client.sendPreparedMessage(prepared)


class BroadcastFactory(WebSocketServerFactory):
    """Factory that keeps the set of open broadcast connections."""

    protocol = BroadcastProtocol

    def __init__(self, *, reactor, args) -> None:
        """Create the factory.

        Args:
            reactor: The reactor to run on.
            args: The parsed command line (unused beyond the port).
        """
        super().__init__(reactor=reactor)
        self.clients: set[BroadcastProtocol] = set()


def main(argv: list[str] | None = None) -> None:
    """Run the broadcast server.

    Args:
        argv: Command-line arguments, or None for ``sys.argv``.
    """
    serve(BroadcastFactory, parse_args("Raw WebSocket broadcast server.", argv))


if __name__ == "__main__":
    main()
