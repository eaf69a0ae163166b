"""One WebSocket connection: frames in, replies and events out.

Requests on a connection start in arrival order and their replies go out in
that order. Most requests run one at a time: while one is being handled, the
events pushed to this connection are held and sent after its reply (and
after the events the reply itself calls for, such as the ones that follow a
login), so a client never hears of its own change before the answer. A run
of ``send_message`` (and ``ping``) requests is pipelined instead: they start
one after the other without waiting, so that they reach the message writer
together and share a commit, and their replies are released in order as
they complete. Any other request waits until the pipelined ones are done.

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
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd import wire
from chatd.errors import ChatError, ErrorCode
from chatd.server.flow import pending_bytes
from chatd.server.ratelimit import TokenBucket

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_AUTH_TIMEOUT = 4000
CLOSE_SESSION_LIMIT = 4001
CLOSE_PASSWORD_CHANGED = 4002

#: How many unanswered requests one connection may queue.
MAX_QUEUED_REQUESTS = 256
#: How many refusals may wait behind them before the connection is closed.
MAX_QUEUED_REFUSALS = 1024
#: How many pipelined requests of one connection may be in progress at once.
MAX_PIPELINED = 64
#: The requests that may run concurrently with their neighbours.
_PIPELINED = (wire.SendMessage, wire.Ping)


class _Slot:
    """A reply's place in the outgoing order, filled when it is ready."""

    __slots__ = ("reply",)

    def __init__(self, reply: bytes | None = None):
        self.reply = reply


class _Refusal:
    """A ready-made error reply waiting for its turn in the queue."""

    __slots__ = ("reply",)

    def __init__(self, reply: bytes):
        self.reply = reply


class ChatServerProtocol(WebSocketServerProtocol):
    """A client connection. ``user`` is set once it is logged in."""

    _log = Logger()

    def __init__(self):
        super().__init__()
        self.user = None
        self.token: str | None = None
        self.peer_address = "?"
        self.backlog: Any = None
        # Both queues exist only while there is something in them, which
        # keeps an idle connection small.
        self._queue: deque[bytes | _Refusal] | None = None
        self._queued_requests = 0
        self._busy = False
        self._outbox: deque[_Slot] | None = None
        self._pipelined: list[Deferred] = []
        self._held: list[tuple[bytes, Any]] | None = None
        self._after_reply: list[bytes] = []
        self._auth_timer = None
        self._bucket: TokenBucket | None = None
        self._open = False
        self._opened = False
        self._stopping = False

    def onConnect(self, request: ConnectionRequest) -> None:  # noqa: N802
        """Remember who is connecting; refuse a browser Origin that is not
        on the allow-list with HTTP 403.

        Raises:
            ConnectionDeny: 403 for an Origin the factory does not allow.
        """
        self.peer_address = request.peer
        if not self.factory.origins.allows(request.origin):
            self._log.info(
                "Refusing {peer}: origin {origin!r} not allowed",
                peer=self.peer_address,
                origin=request.origin[:200],
            )
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "origin not allowed")

    def onOpen(self) -> None:  # noqa: N802
        """Start the authentication timer."""
        self._open = self._opened = True
        self.factory.connections.add(self)
        # The opening handshake is over: let go of its request text and
        # headers, a few KiB that would otherwise live as long as we do.
        self.http_request_data = None
        self.http_headers = {}
        self._log.info("Connection opened from {peer}", peer=self.peer_address)
        security = self.factory.config.security
        if security.rate_limit > 0:
            self._bucket = TokenBucket(
                security.rate_limit, security.rate_burst, self.factory.reactor
            )
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
        # Every frame costs a token, even one that is refused unread, so a
        # flood of junk is throttled like a flood of requests.
        if self._bucket is not None and not self._bucket.take():
            message = "too many requests; slow down"
            self._refuse(payload, ChatError(ErrorCode.RATE_LIMITED, message))
            return
        if isBinary:
            message = "binary frames are not accepted; send JSON in text frames"
            self._refuse(b"", ChatError(ErrorCode.BAD_JSON, message))
            return
        limit = self.factory.config.security.max_frame_bytes
        if len(payload) > limit:
            message = f"frames are limited to {limit} bytes"
            self._refuse(payload, ChatError(ErrorCode.TOO_LARGE, message))
            return
        if self._queued_requests >= MAX_QUEUED_REQUESTS:
            message = "too many requests in flight"
            self._refuse(payload, ChatError(ErrorCode.RATE_LIMITED, message))
            return

        self._queued_requests += 1
        self._enqueue(payload)

    def _refuse(self, payload: bytes, error: ChatError) -> None:
        """Answer a frame that will not be handled, echoing what we can, in
        its turn among the replies."""
        request_id, action = wire.echo_of(payload)
        reply = _Refusal(wire.reply_error(request_id, action, error))
        if len(self._queue or ()) - self._queued_requests >= MAX_QUEUED_REFUSALS:
            self._log.warn(
                "Closing {peer}: it keeps sending while far behind",
                peer=self.peer_address,
            )
            self.close_with(CLOSE_POLICY_VIOLATION, "too many requests")
            return
        self._enqueue(reply)

    def _enqueue(self, entry: "bytes | _Refusal") -> None:
        if self._queue is None:
            self._queue = deque()
        self._queue.append(entry)
        if not self._busy:
            self._busy = True
            Deferred.fromCoroutine(self._drain()).addErrback(self._crashed)

    async def _drain(self) -> None:
        """Start queued requests in order until none is left."""
        try:
            while self._queue and self._open:
                entry = self._queue.popleft()
                if isinstance(entry, _Refusal):
                    self._reply_in_order(_Slot(entry.reply))
                    continue
                self._queued_requests -= 1
                await self._start(entry)
        finally:
            self._busy = False
            if not self._queue:
                self._queue = None

    async def _start(self, payload: bytes) -> None:
        """Decode a request and run it, pipelined or on its own."""
        try:
            request = wire.decode_request(payload)
        except wire.DecodeFailure as failure:
            error = failure.error
            self._reply_in_order(
                _Slot(wire.reply_error(failure.request_id, failure.action, error))
            )
            return
        if self._stopping:
            error = ChatError(ErrorCode.UNAVAILABLE, "the server is shutting down")
            action = wire.action_of(request)
            self._reply_in_order(_Slot(wire.reply_error(request.id, action, error)))
            return

        if isinstance(request, _PIPELINED) and self.user is not None:
            if len(self._pipelined) >= MAX_PIPELINED:
                await self._pipelined[0]
            slot = _Slot()
            if self._outbox is None:
                self._outbox = deque()
            self._outbox.append(slot)
            running = Deferred.fromCoroutine(
                self.factory.router.dispatch(self, request)
            )
            self._pipelined.append(running)
            running.addCallback(self._pipelined_done, slot, running)
            running.addErrback(self._crashed)
            return

        await self._settle()
        await self._handle(request)

    def _pipelined_done(self, reply: bytes, slot: _Slot, running: Deferred) -> None:
        """File a pipelined reply and send every reply now due."""
        self._pipelined.remove(running)
        slot.reply = reply
        self._flush_outbox()

    async def _settle(self) -> None:
        """Wait until every pipelined request has been answered."""
        while self._pipelined:
            await self._pipelined[-1]

    def _reply_in_order(self, slot: _Slot) -> None:
        if self._outbox is None:
            if self._open:
                self.sendMessage(slot.reply)
            return
        self._outbox.append(slot)
        self._flush_outbox()

    def _flush_outbox(self) -> None:
        """Send the ready replies at the head of the outgoing order."""
        outbox = self._outbox
        while outbox and outbox[0].reply is not None:
            reply = outbox.popleft().reply
            if self._open:
                self.sendMessage(reply)
        if not outbox:
            self._outbox = None

    async def _handle(self, request: wire.Request) -> None:
        """Answer one request on its own, then send what it and others
        pushed meanwhile."""
        self._held = []
        try:
            reply = await self.factory.router.dispatch(self, request)
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
        # A client whose close frame is in but whose onClose has not run yet
        # is still registered; Autobahn raises Disconnected on any send then,
        # which would stop the delivery to every session after this one.
        if not self._open or self.state != self.STATE_OPEN:
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

    def sendMessage(self, payload: bytes, isBinary: bool = False, **kwargs) -> None:  # noqa: N802
        """Send a frame unless the connection is closing or the client has
        stopped reading (see ``_overflowing``)."""
        # Autobahn raises Disconnected once the closing handshake started.
        if self.state != self.STATE_OPEN or self._overflowing():
            return
        # Autobahn applies maxMessagePayloadSize, meant for what clients
        # send, to what we send too; a backlog batch may well be bigger.
        limit, self.maxMessagePayloadSize = self.maxMessagePayloadSize, 0
        try:
            super().sendMessage(payload, isBinary, **kwargs)
        finally:
            self.maxMessagePayloadSize = limit

    def sendData(self, data: bytes, sync: bool = False, chopsize=None) -> None:  # noqa: N802
        """Write a frame. Autobahn's own version does the same for an
        unqueued, unchopped frame, plus a debug log call whose arguments it
        formats for every frame even with debug logging off (a tenth of the
        CPU of a large group fan-out)."""
        if sync or chopsize or self.send_queue:
            super().sendData(data, sync, chopsize)
        else:
            self.transport.write(data)

    def sendPreparedMessage(self, preparedMsg) -> None:  # noqa: N802
        """Send a prepared frame unless the connection is closing or the
        client has stopped reading."""
        if self.state == self.STATE_OPEN and not self._overflowing():
            super().sendPreparedMessage(preparedMsg)

    def _overflowing(self) -> bool:
        """Close the connection with 1008 when more than the configured
        bytes already wait unsent for it, and answer whether it is past that.

        The check comes before a frame is written, so what one connection
        holds in memory stays under the cap plus one frame, and a single
        large frame (a backlog batch) still goes out to a client that reads.
        """
        if not self._open:
            return False
        limit = self.factory.config.server.max_buffered_bytes
        if limit <= 0:
            return False
        # FIXME: bytes written earlier in this reactor turn count as waiting too,
        # so a burst bigger than the cap to a fast reader closes it as well.
        transport = self.transport
        try:
            # The common case, a plain TCP transport, without the general walk.
            waiting = (
                len(transport.dataBuffer) - transport.offset + transport._tempDataLen
            )
        except AttributeError:
            waiting = pending_bytes(transport)
        if waiting <= limit:
            return False

        self._log.warn(
            "Closing {peer}: {waiting} bytes wait unsent (limit {limit}); "
            "it stopped reading",
            peer=self.peer_address,
            waiting=waiting,
            limit=limit,
        )
        self.close_with(CLOSE_POLICY_VIOLATION, "you stopped reading: send buffer full")
        # The close frame waits behind everything the client did not read;
        # without a close handshake timeout nothing would ever free that.
        if self.factory.config.server.close_handshake_timeout <= 0:
            self.dropConnection(abort=True)
        return True

    def begin_shutdown(self) -> None:
        """Answer the requests that have not started yet with unavailable;
        the one being handled, if any, still gets its real reply."""
        self._stopping = True

    @property
    def still_open(self) -> bool:
        """Whether the connection is open and not closing (Autobahn owns
        ``is_open``)."""
        return self._open

    @property
    def busy(self) -> bool:
        """Whether a request of this connection is being handled."""
        return self._busy or bool(self._pipelined)

    def close_with(self, code: int, reason: str) -> None:
        """Close the connection with a code and a reason for the client."""
        if not self._open:
            return
        self._open = False
        self._queue = None
        self._queued_requests = 0
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
