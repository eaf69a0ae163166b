"""chatd: a real-time chat daemon speaking JSON over WebSocket."""

__version__ = "0.1.0"
