"""Webhook signatures: HMAC-SHA256 over the timestamp and the exact body bytes.

Every delivery carries::

    X-Stumpcast-Notification-Id: <notification id>      (dedupe on it: delivery is at least once)
    X-Stumpcast-Timestamp: <unix seconds>
    X-Stumpcast-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

A receiver recomputes the HMAC with its secret over ``f"{t}.".encode() + body``, compares in
constant time, and rejects a ``t`` more than ``tolerance`` seconds from its clock (replays).
Several ``v1=`` entries may appear during a secret rotation; any match is accepted.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER_ID = "X-Stumpcast-Notification-Id"
HEADER_TIMESTAMP = "X-Stumpcast-Timestamp"
HEADER_SIGNATURE = "X-Stumpcast-Signature"
HEADER_ATTEMPT = "X-Stumpcast-Attempt"
SCHEME = "v1"


class SignatureError(ValueError):
    """A signature header that does not verify; the message says why."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return mac.hexdigest()


def sign(secret: str, timestamp: int, body: bytes, notification_id: str,
         attempt: int = 1) -> dict[str, str]:
    """The headers of one delivery attempt."""
    return {
        "Content-Type": "application/json",
        HEADER_ID: notification_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: f"t={timestamp},{SCHEME}={signature(secret, timestamp, body)}",
        HEADER_ATTEMPT: str(attempt),
    }


def verify(secret: str, header: str, body: bytes, now: int, tolerance: int = 300) -> int:
    """Check a signature header; return its timestamp or raise ``SignatureError``."""
    items = [part.strip().partition("=") for part in header.split(",")]
    stamps = [v for k, _, v in items if k == "t"]
    sigs = [v for k, _, v in items if k == SCHEME]
    if len(stamps) != 1 or not stamps[0].isdigit() or not sigs:
        raise SignatureError("malformed header: want t=<unix>,v1=<hex>")
    ts = int(stamps[0])
    if abs(now - ts) > tolerance:
        raise SignatureError(f"timestamp {ts} is outside the {tolerance} s tolerance")
    want = signature(secret, ts, body)
    if not any(hmac.compare_digest(want, s) for s in sigs):
        raise SignatureError("no signature matches")
    return ts
