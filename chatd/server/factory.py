"""The WebSocket server factory: protocol options from config, and the
shared objects every connection reaches through ``self.factory``."""

from autobahn.twisted.websocket import WebSocketServerFactory

from chatd.config import Config
from chatd.server.origins import OriginPolicy
from chatd.server.protocol import ChatServerProtocol


class ChatServerFactory(WebSocketServerFactory):
    """Make ``ChatServerProtocol`` connections.

    ``router`` and ``config`` are what connections use; the registry is the
    router's. (``server`` and ``log`` are Autobahn's own attributes.)

    Args:
        router: Dispatches requests.
        config: The whole configuration.
        reactor: The reactor connections time out on.
    """

    protocol = ChatServerProtocol

    def __init__(self, router, config: Config, reactor):
        super().__init__(reactor=reactor, server="chatd")
        self.router = router
        self.config = config
        #: Every open connection, logged in or not.
        self.connections: set = set()
        server = config.server
        frame_limit = config.security.max_frame_bytes
        options = dict(
            # Frames up to twice the limit are read and answered too_large;
            # past that Autobahn closes the connection with 1009.
            maxFramePayloadSize=2 * frame_limit,
            maxMessagePayloadSize=2 * frame_limit,
            openHandshakeTimeout=server.open_handshake_timeout,
            autoPingInterval=server.auto_ping_interval,
            autoPingTimeout=server.auto_ping_timeout,
            closeHandshakeTimeout=server.close_handshake_timeout,
            echoCloseCodeReason=False,
            # Send a close frame with the reason before dropping a client that
            # broke the protocol (bad UTF-8, oversized frame).
            failByDrop=False,
            # A plain GET on /ws gets a refusal, not Autobahn's status page
            # announcing its version.
            webStatus=False,
        )
        # Origin is checked by chatd (chatd.server.origins) in onConnect, so
        # Autobahn's own check must let every origin, "null" too, through.
        options["allowNullOrigin"] = True
        self.setProtocolOptions(**options)
        #: Which browser origins may connect ([server] allowed_origins).
        self.origins = OriginPolicy(server.allowed_origins)
