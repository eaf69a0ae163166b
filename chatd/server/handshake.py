"""A deadline on the whole opening handshake, HTTP part included.

Autobahn's ``openHandshakeTimeout`` starts only once twisted.web has read
the complete HTTP request and handed the connection to the WebSocket
protocol; before that, twisted.web waits up to twelve hours for a silent
client and, once the request line is in, forever for headers trickling in
(slowloris). ``DeadlineChannel`` gives every connection a fixed time from
accept to be handed over; one that has not been is aborted. Plain HTTP
connections (/healthz, /) live at most that long too.
"""

from twisted.logger import Logger
from twisted.web.http import HTTPChannel


class DeadlineChannel(HTTPChannel):
    """An HTTP/1.1 channel that must upgrade to WebSocket in time.

    ``deadline`` (seconds) is set on the class by ``deadline_channel``.
    Autobahn's WebSocketResource takes an upgraded connection over by
    setting the channel's ``transport`` to None, which is how the upgrade
    is recognised (and the clock stopped); from then on Autobahn's timers and chatd's
    authentication timeout apply.
    """

    _log = Logger()
    deadline: float = 0.0
    _deadline_call = None
    _transport = None

    @property
    def transport(self):
        """The connection, until Autobahn takes it over (then None)."""
        return self._transport

    @transport.setter
    def transport(self, value) -> None:
        previous, self._transport = self._transport, value
        if value is None:
            # Handed over to the WebSocket protocol: the deadline is met, and
            # nothing may keep this channel and its request alive any more:
            # not the HTTP idle timeout (12 hours by default), not the
            # transport, where the channel registered itself as producer.
            self._stop_clock()
            self.setTimeout(None)
            if previous is not None and getattr(previous, "producer", None) is self:
                previous.unregisterProducer()

    def _stop_clock(self) -> None:
        if self._deadline_call is not None and self._deadline_call.active():
            self._deadline_call.cancel()
        self._deadline_call = None

    def connectionMade(self) -> None:  # noqa: N802
        """Start the clock on the site's reactor."""
        super().connectionMade()
        if self.deadline > 0:
            self._deadline_call = self.callLater(self.deadline, self._expired)

    def _expired(self) -> None:
        self._deadline_call = None
        if self.transport is None:
            return
        self._log.info(
            "Dropping {peer}: no WebSocket within the handshake time",
            peer=str(self.transport.getPeer()),
        )
        self.transport.abortConnection()

    def connectionLost(self, reason) -> None:  # noqa: N802
        """Stop the clock."""
        self._stop_clock()
        super().connectionLost(reason)


def deadline_channel(seconds: float) -> type[DeadlineChannel]:
    """A ``DeadlineChannel`` class with its deadline set, for
    ``Site.protocol``."""
    return type("DeadlineChannel", (DeadlineChannel,), {"deadline": seconds})
