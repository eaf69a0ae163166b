"""A lean WebSocket client for chatd's JSON protocol on asyncio.

Built on the Sans-I/O layer of the ``websockets`` library under an
``asyncio.Protocol``, so that a received frame costs one parse and one
callback, not a task switch: the generator must stay cheaper than the
server it measures.
"""

import asyncio
import collections
import socket
import time
from collections.abc import Callable

import msgspec
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

_encode = msgspec.json.encode
_decode = msgspec.json.decode

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)

EventHandler = Callable[[dict, int], None]
FrameHandler = Callable[[bytes, int], None]
ReplyHandler = Callable[[dict, int], None]


class RequestFailed(Exception):
    """A request was answered with ``ok: false``."""

    def __init__(self, action: str, error: dict) -> None:
        """Create the exception.

        Args:
            action: The action that failed.
            error: The reply's error object (``code``, ``message``).
        """
        super().__init__(f"{action}: {error.get('code')}: {error.get('message')}")
        self.action = action
        self.code = error.get("code")


class Connection(asyncio.Protocol):
    """One WebSocket connection speaking chatd's request/reply/event protocol.

    Replies are matched to requests by id.  Events go to ``on_event`` when
    it is set and are buffered by name otherwise, for ``wait_event``.  In
    raw mode (``on_frame`` set), every text frame goes to ``on_frame``
    undecoded.
    """

    def __init__(self, uri: str) -> None:
        """Create an unconnected protocol instance.

        Args:
            uri: The ws:// address, used for the handshake.
        """
        loop = asyncio.get_running_loop()
        self._ws = ClientProtocol(parse_uri(uri), max_size=None)
        self._transport: asyncio.Transport | None = None
        self._opened = loop.create_future()
        self.closed = loop.create_future()
        self._pending: dict[int, asyncio.Future | ReplyHandler] = {}
        self._actions: dict[int, str] = {}
        self._next_id = 0
        self._fragments: list[bytes] = []
        self._buffered: dict[str, collections.deque] = collections.defaultdict(
            collections.deque
        )
        self._waiters: dict[str, list[asyncio.Future]] = collections.defaultdict(list)
        self.on_event: EventHandler | None = None
        self.on_frame: FrameHandler | None = None
        self.frames_received = 0
        self.close_code: int | None = None

    # asyncio.Protocol hooks

    def connection_made(self, transport: asyncio.Transport) -> None:
        """Send the opening handshake.

        Args:
            transport: The connected transport.
        """
        self._transport = transport
        self._sock = transport.get_extra_info("socket")
        self._ws.send_request(self._ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        """Parse received bytes and dispatch every complete frame.

        Args:
            data: Bytes from the socket.
        """
        received_ns = time.monotonic_ns()
        if _QUICKACK is not None:
            self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        self._ws.receive_data(data)
        for event in self._ws.events_received():
            if isinstance(event, Response):
                self._handshake_done()
                continue
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if event.fin:
                    self._dispatch(event.data, received_ns)
                else:
                    self._fragments = [event.data]
            elif opcode is Opcode.CONT:
                self._fragments.append(event.data)
                if event.fin:
                    self._dispatch(b"".join(self._fragments), received_ns)
                    self._fragments = []
            elif opcode is Opcode.CLOSE:
                self.close_code = self._ws.close_code
        self._flush()

    def eof_received(self) -> bool:
        """Tell the WebSocket layer the peer closed its side.

        Returns:
            False, so that the transport closes.
        """
        self._ws.receive_eof()
        self._flush()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail whatever still waits on this connection.

        Args:
            exc: The error that ended it, if any.
        """
        error = ConnectionError(f"connection lost (close code {self.close_code})")
        if not self._opened.done():
            self._opened.set_exception(error)
        for pending in self._pending.values():
            if isinstance(pending, asyncio.Future) and not pending.done():
                pending.set_exception(error)
        self._pending.clear()
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(self.close_code)

    # internals

    def _handshake_done(self) -> None:
        """Resolve ``opened`` with the handshake's outcome."""
        if self._opened.done():
            return
        if self._ws.handshake_exc is not None:
            self._opened.set_exception(self._ws.handshake_exc)
        else:
            self._opened.set_result(None)

    def _flush(self) -> None:
        """Write whatever the WebSocket layer has queued."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        for chunk in self._ws.data_to_send():
            if chunk:
                transport.write(chunk)
            else:
                transport.close()
                return
        if self._ws.state is State.CLOSED:
            transport.close()

    def _dispatch(self, payload: bytes, received_ns: int) -> None:
        """Route one complete text frame.

        Args:
            payload: The frame body.
            received_ns: CLOCK_MONOTONIC when its bytes arrived.
        """
        self.frames_received += 1
        if self.on_frame is not None:
            self.on_frame(payload, received_ns)
            return

        frame = _decode(payload)
        if frame.get("type") == "reply":
            pending = self._pending.pop(frame.get("id"), None)
            self._actions.pop(frame.get("id"), None)
            if pending is None:
                return
            if isinstance(pending, asyncio.Future):
                if not pending.done():
                    pending.set_result(frame)
            else:
                pending(frame, received_ns)
            return

        if self.on_event is not None:
            self.on_event(frame, received_ns)
            return
        name = frame.get("event")
        waiters = self._waiters.get(name)
        if waiters:
            waiter = waiters.pop(0)
            if not waiter.done():
                waiter.set_result(frame["data"])
                return
        self._buffered[name].append(frame["data"])

    # public API

    @property
    def opened(self) -> asyncio.Future:
        """A future resolved when the opening handshake succeeded."""
        return self._opened

    def send_raw(self, payload: bytes) -> None:
        """Send one text frame as it is.

        Args:
            payload: The frame body (UTF-8).
        """
        self._ws.send_text(payload)
        self._flush()

    def send_request(
        self,
        action: str,
        params: dict | None = None,
        on_reply: ReplyHandler | None = None,
    ) -> asyncio.Future | None:
        """Send one request.

        Args:
            action: The action name.
            params: Its parameters.
            on_reply: Called with the reply and its arrival time; when None,
                a future of the reply is returned instead.

        Returns:
            The future of the reply, or None when ``on_reply`` is given.
        """
        self._next_id += 1
        request_id = self._next_id
        frame = {"action": action, "id": request_id}
        if params:
            frame.update(params)
        result = None
        if on_reply is None:
            result = asyncio.get_running_loop().create_future()
            self._pending[request_id] = result
        else:
            self._pending[request_id] = on_reply
        self._ws.send_text(_encode(frame))
        self._flush()
        return result

    async def call(self, action: str, timeout: float = 30.0, **params) -> dict:
        """Send a request and return its reply's data.

        Args:
            action: The action name.
            timeout: Seconds to wait for the reply.
            **params: The request's parameters.

        Returns:
            The reply's ``data`` object.

        Raises:
            RequestFailed: The reply said ``ok: false``.
        """
        reply = await asyncio.wait_for(self.send_request(action, params), timeout)
        if not reply.get("ok"):
            raise RequestFailed(action, reply.get("error") or {})
        return reply.get("data") or {}

    async def wait_event(self, name: str, timeout: float = 30.0) -> dict:
        """Return the data of the next event of this name.

        Args:
            name: The event name.
            timeout: Seconds to wait.

        Returns:
            The event's ``data`` object.
        """
        buffered = self._buffered.get(name)
        if buffered:
            return buffered.popleft()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[name].append(waiter)
        return await asyncio.wait_for(waiter, timeout)

    def drain_events(self, name: str) -> list[dict]:
        """Take every buffered event of this name.

        Args:
            name: The event name.

        Returns:
            The events' data objects, oldest first.
        """
        buffered = self._buffered.pop(name, None)
        return list(buffered) if buffered else []

    def pause_reading(self) -> None:
        """Stop reading from the socket, as a client that hangs would."""
        if self._transport is not None:
            self._transport.pause_reading()

    async def close(self, timeout: float = 2.0) -> None:
        """Close with 1000 and wait for the close to finish.

        Args:
            timeout: Seconds to wait before dropping the connection.
        """
        if self._transport is None or self.closed.done():
            return
        if self._ws.state is State.OPEN:
            self._ws.send_close(1000)
            self._flush()
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            self._transport.abort()

    def abort(self) -> None:
        """Drop the connection without a close handshake."""
        if self._transport is not None:
            self._transport.abort()


async def connect(
    host: str, port: int, path: str = "/ws", rcvbuf: int | None = None
) -> Connection:
    """Open a connection and finish its opening handshake.

    Args:
        host: The server's address.
        port: Its port.
        path: The WebSocket resource path.
        rcvbuf: A small SO_RCVBUF, for a client meant to fall behind.

    Returns:
        The open connection.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    # asyncio sets TCP_NODELAY only on sockets created with proto=IPPROTO_TCP;
    # without it, Nagle holds a small frame until the previous one is acked.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        await loop.sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    uri = f"ws://{host}:{port}{path}"
    _transport, conn = await loop.create_connection(lambda: Connection(uri), sock=sock)
    await asyncio.wait_for(conn.opened, 30)
    return conn
