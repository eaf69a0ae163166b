"""Raw WebSocket echo: every frame received is sent back unchanged.

The ceiling for one request and one reply per frame on this stack.
"""

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

from bench.references._serve import parse_args, serve


class EchoProtocol(WebSocketServerProtocol):
    """Sends each message back to its sender."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """Echo one message.

        Args:
            payload: The message body.
            isBinary: Whether it came as a binary message.
        """
        self.sendMessage(payload, isBinary)


class EchoFactory(WebSocketServerFactory):
    """Factory of echo connections."""

    protocol = EchoProtocol

    def __init__(self, *, reactor, args) -> None:
        """Create the factory.

        Args:
            reactor: The reactor to run on.
            args: The parsed command line (unused beyond the port).
        """
        super().__init__(reactor=reactor)


def main(argv: list[str] | None = None) -> None:
    """Run the echo server.

    Args:
        argv: Command-line arguments, or None for ``sys.argv``.
    """
    serve(EchoFactory, parse_args("Raw WebSocket echo server.", argv))


if __name__ == "__main__":
    main()
