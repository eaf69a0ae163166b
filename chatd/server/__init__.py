"""The WebSocket and HTTP edge: protocol, factory, registry, router, site."""
