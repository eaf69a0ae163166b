"""The HTTP side: WebSocket at /ws, health at /healthz, and the page at /."""

from autobahn.twisted.resource import WebSocketResource
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from chatd import __version__, wire
from chatd.server.handshake import deadline_channel

_INDEX = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>chatd</title></head>
<body><h1>chatd</h1><p>This server speaks JSON over WebSocket at
<code>/ws</code>. See docs/protocol.md.</p></body></html>
"""


class IndexResource(Resource):
    """The page at /, where the web client will live."""

    isLeaf = True

    def render_GET(self, request) -> bytes:  # noqa: N802
        """Serve a short page that says what this server is."""
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return _INDEX


class HealthResource(Resource):
    """``GET /healthz``: 200 with a small JSON body when the store answers,
    503 when it does not."""

    isLeaf = True
    _log = Logger()

    def __init__(self, store, registry):
        super().__init__()
        self._store = store
        self._registry = registry

    def render_GET(self, request):  # noqa: N802
        """Ask the store, then answer."""
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        Deferred.fromCoroutine(self._answer(request))
        return NOT_DONE_YET

    async def _answer(self, request) -> None:
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        try:
            healthy = await self._store.ping()
        except Exception as error:
            self._log.warn("Health check failed: {error}", error=repr(error))
            healthy = False
        body = {
            "status": "ok" if healthy else "unavailable",
            "version": __version__,
            "online_users": self._registry.online_count(),
        }
        if gone:
            return
        request.setResponseCode(200 if healthy else 503)
        request.write(wire.encode(body))
        request.finish()


def make_site(factory, store, registry) -> Site:
    """Build the web site that serves chatd. A connection must open its
    WebSocket within open_handshake_timeout (chatd.server.handshake)."""
    root = Resource()
    root.putChild(b"", IndexResource())
    root.putChild(b"ws", WebSocketResource(factory))
    root.putChild(b"healthz", HealthResource(store, registry))
    site = Site(root, reactor=factory.reactor)
    site.displayTracebacks = False
    # HTTP/1.1 only: chatd serves WebSocket, which HTTP/2 cannot carry. The
    # channel also lets go of each upgraded connection's HTTP state.
    site.protocol = deadline_channel(factory.config.server.open_handshake_timeout)
    return site
