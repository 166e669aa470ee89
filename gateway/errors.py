"""The gateway's errors, as one tree with a policy.

::

    GatewayError
     ├── ClientFault                the client broke it: answered to that client only
     │    ├── UpgradeRefused        refused before the WebSocket upgrade (HTTP status)
     │    │    ├── OriginRejected   403, terminal
     │    │    ├── AcceptThrottled  503 + Retry-After, retriable (reconnect storm guard)
     │    │    └── BadRequest       400/404 on the HTTP API
     │    └── AuthFailed            close 4101 (forged/unverifiable) or 4001 (expired)
     ├── SlowConsumer               close 4008, retriable: resume by position
     └── ServerFault                our side or a dependency; retriable
          └── FeedUnavailable       Redis unreachable: in-band "unavailable", HTTP panic mode

In-band protocol errors (bad JSON, unknown type, limits) are ``schemas.protocol.ProtocolError``:
they are answered with an ``error`` message and the connection stays open. Foreign errors
(``redis.exceptions``, ``jwt``) are translated into this tree at the seam, never passed up.
"""

from __future__ import annotations

from schemas.protocol import CloseCode


class GatewayError(Exception):
    retriable: bool = False
    close_code: int | None = None
    http_status: int = 500


class ClientFault(GatewayError):
    pass


class UpgradeRefused(ClientFault):
    """Answered with an HTTP response instead of a WebSocket upgrade."""

    http_status = 400
    headers: tuple[tuple[str, str], ...] = ()


class OriginRejected(UpgradeRefused):
    http_status = 403


class AcceptThrottled(UpgradeRefused):
    retriable = True
    http_status = 503
    headers = (("Retry-After", "1"),)


class BadRequest(UpgradeRefused):
    http_status = 400


class NotFound(UpgradeRefused):
    http_status = 404


class AuthFailed(ClientFault):
    close_code = CloseCode.UNAUTHORIZED
    http_status = 401


class TokenExpired(AuthFailed):
    retriable = True
    close_code = CloseCode.TOKEN_EXPIRED


class SlowConsumer(GatewayError):
    retriable = True
    close_code = CloseCode.SLOW


class ServerFault(GatewayError):
    retriable = True
    close_code = CloseCode.UNAVAILABLE
    http_status = 503


class FeedUnavailable(ServerFault):
    """Redis could not be reached or answered with an error."""
