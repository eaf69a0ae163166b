"""One WebSocket connection: frames in, replies and events out.

Requests on a connection are handled one at a time, in arrival order, so
replies come back in request order. While a request is being handled, the
events pushed to this connection are held and sent after its reply (and
after the events the reply itself calls for, such as the ones that follow a
login), so a client never hears of its own change before the answer.

Close codes chatd sends (besides Autobahn's own 1002, 1007 and 1009):

- 1001: the server is shutting down.
- 1008: the client stopped reading and its send buffer overflowed.
- 4000: the connection did not authenticate in time.
- 4001: too many sessions for this user; this, the oldest, was closed.
- 4002: the password was changed in another session.
"""

from collections import deque
from typing import Any

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd import wire
from chatd.errors import ChatError, ErrorCode

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_AUTH_TIMEOUT = 4000
CLOSE_SESSION_LIMIT = 4001
CLOSE_PASSWORD_CHANGED = 4002

#: How many unanswered requests one connection may queue.
MAX_QUEUED_REQUESTS = 256


class ChatServerProtocol(WebSocketServerProtocol):
    """A client connection. ``user`` is set once it is logged in."""

    _log = Logger()

    def __init__(self):
        super().__init__()
        self.user = None
        self.token: str | None = None
        self.peer_address = "?"
        self.backlog: Any = None
        self._queue: deque[bytes] = deque()
        self._busy = False
        self._held: list[tuple[bytes, Any]] | None = None
        self._after_reply: list[bytes] = []
        self._auth_timer = None
        self._open = False
        self._opened = False

    def onConnect(self, request: ConnectionRequest) -> None:  # noqa: N802
        """Remember who is connecting; accept every handshake Autobahn
        accepted (Origin is checked by the factory's options)."""
        self.peer_address = request.peer

    def onOpen(self) -> None:  # noqa: N802
        """Start the authentication timer."""
        self._open = self._opened = True
        self.factory.connections.add(self)
        self._log.info("Connection opened from {peer}", peer=self.peer_address)
        timeout = self.factory.config.server.auth_timeout
        if timeout > 0:
            self._auth_timer = self.factory.reactor.callLater(
                timeout, self._auth_timed_out
            )

    def _auth_timed_out(self) -> None:
        self._auth_timer = None
        if self.user is None:
            self._log.info(
                "Closing {peer}: no login within the time allowed",
                peer=self.peer_address,
            )
            self.close_with(CLOSE_AUTH_TIMEOUT, "authentication timed out")

    def authenticated(self) -> None:
        """Stop the authentication timer: the connection logged in."""
        if self._auth_timer is not None and self._auth_timer.active():
            self._auth_timer.cancel()
        self._auth_timer = None

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802
        """Queue a request; Autobahn ignores what this returns."""
        if isBinary:
            error = ChatError(
                ErrorCode.BAD_JSON, "binary frames are not accepted; send text"
            )
            self.sendMessage(wire.reply_error(None, None, error))
            return
        limit = self.factory.config.security.max_frame_bytes
        if len(payload) > limit:
            message = f"frames are limited to {limit} bytes"
            self._refuse(payload, ChatError(ErrorCode.TOO_LARGE, message))
            return
        if len(self._queue) >= MAX_QUEUED_REQUESTS:
            message = "too many requests in flight"
            self._refuse(payload, ChatError(ErrorCode.RATE_LIMITED, message))
            return

        self._queue.append(payload)
        if not self._busy:
            self._busy = True
            Deferred.fromCoroutine(self._drain()).addErrback(self._crashed)

    def _refuse(self, payload: bytes, error: ChatError) -> None:
        """Answer a frame that will not be handled, echoing what we can."""
        request_id, action = wire.echo_of(payload)
        self.sendMessage(wire.reply_error(request_id, action, error))

    async def _drain(self) -> None:
        """Handle queued requests one at a time until none is left."""
        try:
            while self._queue and self._open:
                await self._handle(self._queue.popleft())
        finally:
            self._busy = False

    async def _handle(self, payload: bytes) -> None:
        """Answer one request, then send what it and others pushed meanwhile."""
        self._held = []
        try:
            reply = await self.factory.router.handle(self, payload)
            if self._open:
                self.sendMessage(reply)
        finally:
            after, self._after_reply = self._after_reply, []
            held, self._held = self._held, None
            if self._open:
                for frame in after:
                    self.sendMessage(frame)
                for frame, prepared in held:
                    self._send_now(frame, prepared)

    def _crashed(self, failure) -> None:
        """A bug escaped request handling: log it and drop the connection."""
        self._log.failure(
            "Request loop failed for {peer}", failure, peer=self.peer_address
        )
        self.dropConnection(abort=True)

    def send_after_reply(self, frame: bytes) -> None:
        """Send an event right after the reply being built, before others."""
        self._after_reply.append(frame)

    def push(self, payload: bytes, prepared: Any = None) -> None:
        """Send an event now, or after the reply being built."""
        if not self._open:
            return
        if self._held is not None:
            self._held.append((payload, prepared))
        else:
            self._send_now(payload, prepared)

    def _send_now(self, payload: bytes, prepared: Any) -> None:
        if prepared is not None:
            self.sendPreparedMessage(prepared)
        else:
            self.sendMessage(payload)

    def close_with(self, code: int, reason: str) -> None:
        """Close the connection with a code and a reason for the client."""
        if not self._open:
            return
        self._open = False
        self._queue.clear()
        if code == 1000 or 3000 <= code <= 4999:
            self.sendClose(code, reason)
        else:
            # Autobahn's sendClose refuses protocol codes such as 1001/1008.
            self.sendCloseFrame(code, reason.encode("utf-8")[:123], isReply=False)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802
        """End the session, if any, and log the close."""
        self._open = False
        self.factory.connections.discard(self)
        self.authenticated()
        if self.user is not None:
            self.factory.router.connection_lost(self)
        if self._opened:
            self._log.info(
                "Connection closed from {peer} (code {code}, clean {clean})",
                peer=self.peer_address,
                code=code,
                clean=wasClean,
            )
