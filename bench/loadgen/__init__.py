"""The load generator: a lean WebSocket client, worker processes, metering."""
