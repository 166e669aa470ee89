"""Connection auth (optional JWT, HS256 or RS256), per-channel permissions, origin allow-list.

A token is verified once, at the upgrade, so a reconnect storm costs no call to a back end; the
gateway then closes the connection (4001) when the token's ``exp`` passes, whether or not the
client sends anything. Claims: ``exp`` (required; checked against the clock passed in), ``aud``
and ``iss`` (required, equal to the configured audience and issuer, so a token minted for
another service or by another issuer is refused), ``sub``, and ``channels``: a list of
patterns, each an exact channel (``match:1370353``) or a prefix ending in ``*`` (``match:*``,
``*``). A token without ``channels`` allows nothing (deny by default). The algorithm is taken
from the configured keys, never trusted from the token alone: ``none`` is never accepted, and
HS256 is verified with the HS256 secret only, so a token "signed" with the RS256 public key as
an HMAC secret fails (algorithm confusion). With auth off every channel is allowed. Foreign
``jwt`` errors become ``AuthFailed`` here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gateway.errors import AuthFailed, TokenExpired

OPEN_CLAIMS_PATTERNS = ("*",)


@dataclass(frozen=True, slots=True)
class AuthConfig:
    hs256_secret: str | None = None
    rs256_public_key: str | None = None  # PEM text
    allowed_origins: tuple[str, ...] = ("*",)
    leeway: float = 5.0
    audience: str = "stumpcast-gateway"
    issuer: str = "stumpcast"

    @property
    def enabled(self) -> bool:
        return bool(self.hs256_secret or self.rs256_public_key)


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str | None
    channels: tuple[str, ...]
    exp: float | None = None

    def allows(self, channel_key: str) -> bool:
        for pattern in self.channels:
            if pattern == channel_key:
                return True
            if pattern.endswith("*") and channel_key.startswith(pattern[:-1]):
                return True
        return False

    def expired(self, now: float, leeway: float = 0.0) -> bool:
        return self.exp is not None and now > self.exp + leeway


ANONYMOUS = Claims(sub=None, channels=OPEN_CLAIMS_PATTERNS)


def verify_token(token: str | None, config: AuthConfig, now: float) -> Claims:
    """Claims of a valid token; ``ANONYMOUS`` when auth is off. Raises ``AuthFailed``."""
    if not config.enabled:
        return ANONYMOUS
    if not token:
        raise AuthFailed("a token is required: ?token=... or Authorization: Bearer ...")
    payload = _decode(token, config)
    exp = payload.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise AuthFailed("token claim exp is required and must be a number")
    channels = payload.get("channels", [])
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise AuthFailed("token claim channels must be a list of strings")
    claims = Claims(sub=payload.get("sub"), channels=tuple(channels), exp=float(exp))
    if claims.expired(now, config.leeway):
        raise TokenExpired("token expired: fetch a new one and reconnect")
    return claims


def _decode(token: str, config: AuthConfig) -> dict[str, Any]:
    import jwt  # PyJWT: imported here so the module stays cheap to import

    try:
        alg = str(jwt.get_unverified_header(token).get("alg"))
    except jwt.PyJWTError:
        raise AuthFailed("token is not a JWT") from None
    key = {"HS256": config.hs256_secret, "RS256": config.rs256_public_key}.get(alg)
    if not key:
        raise AuthFailed(f"token algorithm {alg!r} is not accepted here")
    try:
        # Expiry is checked by the caller against its own clock (testable, one policy);
        # audience and issuer here, and all three must be present.
        payload = jwt.decode(token, key, algorithms=[alg], audience=config.audience,
                             issuer=config.issuer,
                             options={"verify_exp": False, "require": ["exp", "aud", "iss"]})
    except jwt.PyJWTError as exc:
        raise AuthFailed(f"token rejected: {exc}") from None
    if not isinstance(payload, dict):
        raise AuthFailed("token payload must be an object")
    return payload


def token_from_request(path: str, headers: Any) -> str | None:
    """``?token=`` (browsers cannot set headers on a WebSocket) or ``Authorization: Bearer``."""
    auth = headers.get("Authorization")
    if auth and auth.lower().startswith("bearer "):
        return str(auth[7:].strip())
    values = parse_qs(urlsplit(path).query).get("token")
    return values[0] if values else None


def session_from_request(path: str) -> str | None:
    """``?session=``: the id a reconnecting client was given before."""
    values = parse_qs(urlsplit(path).query).get("session")
    return values[0][:128] if values else None


class SessionIds:
    """Viewer session ids the gateway issues, one per connection: random, with an HMAC, so a
    client that reconnects may present its id again (``?session=``) and keep it, while an id
    the gateway never issued (a guessed or copied-looking one) is replaced by a new one.
    Heartbeats count for the connection's id only (``gateway.session``)."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def issue(self, presented: str | None) -> str:
        if presented and self.valid(presented):
            return presented
        rand = secrets.token_urlsafe(12)
        return f"{rand}.{self._mac(rand)}"

    def valid(self, session_id: str) -> bool:
        rand, sep, mac = session_id.partition(".")
        return bool(rand and sep) and hmac.compare_digest(mac, self._mac(rand))

    def _mac(self, rand: str) -> str:
        digest = hmac.new(self.key, rand.encode(), hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def origin_allowed(origin: str | None, config: AuthConfig) -> bool:
    """Browsers always send Origin; tools that send none are not browsers and are allowed."""
    if origin is None or "*" in config.allowed_origins:
        return True
    return origin in config.allowed_origins
