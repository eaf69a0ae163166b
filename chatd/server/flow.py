"""How much a connection has written that the network has not taken yet.

A client that stops reading fills the kernel's socket buffers first, then
the transport's own write buffer in the daemon's memory. Twisted's transports
do not tell how big that buffer is through an interface, so this looks at the
attributes they keep it in: ``dataBuffer`` (past ``offset``) plus
``_tempDataLen`` on a TCP or Unix transport, ``_appSendBuffer`` on a TLS
connection still in its handshake, summed down the chain of wrapped
transports (TLS over TCP, say).
"""

from typing import Any

#: How many wrapped transports to look through (TLS over TCP is two).
_MAX_DEPTH = 4


def pending_bytes(transport: Any) -> int:
    """Count the bytes written to ``transport`` that wait to be sent.

    Args:
        transport: A connection's transport, possibly wrapping others.

    Returns:
        The bytes buffered in user space; 0 for a transport that keeps its
        buffer where this cannot see it.
    """
    total = 0
    for _ in range(_MAX_DEPTH):
        if transport is None:
            break
        buffered = getattr(transport, "dataBuffer", None)
        if isinstance(buffered, bytes | bytearray | memoryview):
            total += len(buffered) - getattr(transport, "offset", 0)
            total += getattr(transport, "_tempDataLen", 0)
        waiting = getattr(transport, "_appSendBuffer", None)
        if waiting:
            total += sum(len(chunk) for chunk in waiting)
        transport = getattr(transport, "transport", None)
    return total
