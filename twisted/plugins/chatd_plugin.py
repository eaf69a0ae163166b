"""The twistd plugin: ``twistd chatd --config etc/chatd.ini``."""

from twisted.application.service import ServiceMaker

chatd = ServiceMaker(
    "chatd", "chatd.tap", "A real-time chat daemon (WebSocket, JSON)", "chatd"
)
