"""The viewer-facing WebSocket fanout gateway and its HTTP API."""
