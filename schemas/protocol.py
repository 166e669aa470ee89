"""The gateway's WebSocket wire protocol, version 1 (prose and examples in docs/protocol.md).

Every message is a JSON object ``{"type": ..., "v": 1, ...}`` in a text frame. A client opens
one connection and subscribes to channels: ``match:{id}`` (the live scorecard) and ``notes:{id}``
(milestone notifications). Score updates are the writer's ``schemas.view.ViewUpdate`` bytes,
forwarded verbatim; everything else the gateway sends is built here, once per position, and
shared by every subscriber as bytes (STYLE.md, "encode once").

Positions: a ``match:`` message carries ``(epoch, seq)`` of the view. A ``notes:`` message carries
``seq`` and ``k``, the entry ID ``"{seq}-{k}"`` of the notifications stream; notification IDs
derive from the event that caused them, so their positions survive a rebuild and their epoch is
always 0.

Close codes: 4000-4099 mean "reconnect (with backoff) and resume"; 4100-4199 mean "terminal: do
not reconnect until something changes" (a new token, a fixed client).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

import orjson

VERSION = 1
MATCH = "match"
NOTES = "notes"
FLAGS = "flags"  # the one channel without a match id: this client's feature flags
_MATCH_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_ID_MAX = 64


class CloseCode(IntEnum):
    # -- reconnect range: back off (full jitter), reconnect, resume by position --
    GOING_AWAY = 4000        # the gateway is restarting or draining
    TOKEN_EXPIRED = 4001     # get a fresh token, then reconnect
    SLOW = 4008              # the client did not read fast enough; resume by position
    RATE_LIMITED = 4029      # too many messages on this connection; slow down
    UNAVAILABLE = 4013       # the feed is unavailable; retry later
    # -- terminal range: do not reconnect as-is --
    PROTOCOL = 4100          # repeated protocol violations
    UNAUTHORIZED = 4101      # missing, forged or unverifiable token
    FORBIDDEN = 4103         # the token does not allow what the client keeps asking for
    UNSUPPORTED = 4105       # protocol version not supported


def should_reconnect(code: int | None) -> bool:
    """True for the reconnect range and the standard transient codes (1001, 1006, 1011-1013)."""
    if code is None:
        return True
    return 4000 <= code <= 4099 or code in {1000, 1001, 1005, 1006, 1011, 1012, 1013}


class ErrorCode(StrEnum):
    """In-band errors: the connection stays open, the offending message is ignored."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    BAD_CHANNEL = "bad_channel"
    TOO_LARGE = "too_large"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    RATE_LIMITED = "rate_limited"
    FORBIDDEN = "forbidden"
    UNKNOWN_MATCH = "unknown_match"
    NOT_SUBSCRIBED = "not_subscribed"
    UNAVAILABLE = "unavailable"


class ProtocolError(ValueError):
    """A client message that does not follow this protocol; ``code`` is the in-band answer."""

    def __init__(self, code: ErrorCode, message: str, req_id: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.req_id = req_id


@dataclass(frozen=True, slots=True)
class Channel:
    kind: str
    match_id: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.match_id}" if self.match_id else self.kind


def parse_channel(raw: Any, req_id: str | int | None = None) -> Channel:
    if not isinstance(raw, str):
        raise ProtocolError(ErrorCode.BAD_CHANNEL, "channel must be a string", req_id)
    if raw == FLAGS:
        return Channel(FLAGS, "")
    kind, sep, match_id = raw.partition(":")
    if not sep or kind not in {MATCH, NOTES} or not _MATCH_ID.fullmatch(match_id):
        raise ProtocolError(ErrorCode.BAD_CHANNEL, "channel must be match:{id}, notes:{id} "
                            "(id [A-Za-z0-9_.-]{1,64}) or flags", req_id)
    return Channel(kind, match_id)


@dataclass(frozen=True, slots=True, order=True)
class ChannelPosition:
    """Where a client is in a channel. ``k`` is 0 on ``match:`` channels."""

    epoch: int
    seq: int
    k: int = 0

    def to_json(self) -> dict[str, int]:
        return {"epoch": self.epoch, "seq": self.seq, "k": self.k}


def parse_position(raw: Any, req_id: str | int | None = None) -> ChannelPosition | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "since must be {epoch, seq[, k]}", req_id)
    values = [raw.get("epoch"), raw.get("seq"), raw.get("k", 0)]
    if not all(type(v) is int and 0 <= v < 2**53 for v in values):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "since: epoch, seq, k must be integers >= 0",
                            req_id)
    return ChannelPosition(*values)


# -- client -> gateway --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Subscribe:
    id: str | int | None
    channel: Channel
    since: ChannelPosition | None = None
    # ``flags`` only: the client's region and platform, for the flags' targeting
    context: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    id: str | int | None
    channel: Channel


@dataclass(frozen=True, slots=True)
class Ping:
    id: str | int | None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A player's heartbeat (``schemas.heartbeats`` fields less ``ts_ms``, which the gateway
    stamps on receipt so that viewers' clocks cannot skew the concurrency windows)."""

    id: str | int | None
    fields: dict[str, Any]


ClientMessage = Subscribe | Unsubscribe | Ping | Heartbeat
HEARTBEAT_FIELDS = ("session_id", "match_id", "region", "cdn", "bitrate_kbps", "buffering_ms",
                    "playhead_ms", "device")


def _req_id(doc: dict[str, Any]) -> str | int | None:
    rid = doc.get("id")
    if rid is None or (type(rid) is int and abs(rid) < 2**53):
        return rid
    if isinstance(rid, str) and len(rid) <= _ID_MAX:
        return rid
    raise ProtocolError(ErrorCode.BAD_MESSAGE, f"id must be an integer or a string of at most "
                        f"{_ID_MAX} characters")


def parse_client_message(raw: bytes | str) -> ClientMessage:
    """Validate one client frame; raise ``ProtocolError`` naming what is wrong."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError(ErrorCode.BAD_JSON, "message is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "message must be a JSON object")
    rid = _req_id(doc)
    if doc.get("v") != VERSION:
        raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION,
                            f"v must be {VERSION}, got {doc.get('v')!r}", rid)
    kind = doc.get("type")
    if kind == "subscribe":
        channel = parse_channel(doc.get("channel"), rid)
        context = parse_context(doc.get("context"), rid) if channel.kind == FLAGS else None
        return Subscribe(rid, channel, parse_position(doc.get("since"), rid), context)
    if kind == "unsubscribe":
        return Unsubscribe(rid, parse_channel(doc.get("channel"), rid))
    if kind == "ping":
        return Ping(rid)
    if kind == "heartbeat":
        return Heartbeat(rid, parse_heartbeat(doc.get("beat"), rid))
    raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown type {kind!r}; expected subscribe, "
                        "unsubscribe, ping or heartbeat", rid)


def parse_heartbeat(beat: Any, rid: str | int | None) -> dict[str, Any]:
    """Validate a heartbeat's fields with the heartbeat contract itself (one rule set)."""
    from schemas.heartbeats import Heartbeat as Beat
    from schemas.heartbeats import HeartbeatError

    if not isinstance(beat, dict) or set(beat) != set(HEARTBEAT_FIELDS):
        raise ProtocolError(ErrorCode.BAD_MESSAGE,
                            f"beat must be an object with exactly {', '.join(HEARTBEAT_FIELDS)}",
                            rid)
    try:
        Beat(**beat, ts_ms=0)
    except (HeartbeatError, TypeError) as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"beat.{exc}", rid) from None
    return dict(beat)


_CONTEXT_VALUE = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def parse_context(raw: Any, rid: str | int | None) -> tuple[str, str]:
    """``{"region": ..., "platform": ...}`` (each optional, default "unknown")."""
    if raw is None:
        return ("unknown", "unknown")
    if not isinstance(raw, dict) or set(raw) - {"region", "platform"}:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "context must be {region, platform}", rid)
    out = (raw.get("region", "unknown"), raw.get("platform", "unknown"))
    if not all(isinstance(v, str) and _CONTEXT_VALUE.fullmatch(v) for v in out):
        raise ProtocolError(ErrorCode.BAD_MESSAGE,
                            "context.region and context.platform: [A-Za-z0-9_.-]{1,32}", rid)
    return out


def heartbeat_message(beat: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": "heartbeat", "v": VERSION, "beat": beat})


def subscribe_message(channel: str, since: ChannelPosition | None = None,
                      req_id: str | int | None = None,
                      context: dict[str, str] | None = None) -> bytes:
    doc: dict[str, Any] = {"type": "subscribe", "v": VERSION, "channel": channel}
    if req_id is not None:
        doc["id"] = req_id
    if since is not None and channel != FLAGS:
        doc["since"] = since.to_json()
    if context is not None:
        doc["context"] = context
    return orjson.dumps(doc)


def unsubscribe_message(channel: str, req_id: str | int | None = None) -> bytes:
    return orjson.dumps({"type": "unsubscribe", "v": VERSION, "channel": channel, "id": req_id})


# -- gateway -> client --------------------------------------------------------------------------

def subscribed(req_id: str | int | None, channel: str, position: ChannelPosition,
               recovered: bool, session: str | None = None) -> bytes:
    """``session``: the viewer session id the gateway issued to this connection (heartbeats
    count for it; present it as ``?session=`` when reconnecting to keep it)."""
    doc = {"type": "subscribed", "v": VERSION, "id": req_id, "channel": channel,
           "epoch": position.epoch, "seq": position.seq, "k": position.k, "recovered": recovered}
    if session is not None:
        doc["session"] = session
    return orjson.dumps(doc)


def unsubscribed(req_id: str | int | None, channel: str) -> bytes:
    return orjson.dumps({"type": "unsubscribed", "v": VERSION, "id": req_id, "channel": channel})


def error(code: ErrorCode, message: str, req_id: str | int | None = None,
          channel: str | None = None) -> bytes:
    doc: dict[str, Any] = {"type": "error", "v": VERSION, "id": req_id, "code": str(code),
                           "message": message}
    if channel is not None:
        doc["channel"] = channel
    return orjson.dumps(doc)


def pong(req_id: str | int | None) -> bytes:
    return orjson.dumps({"type": "pong", "v": VERSION, "id": req_id})


def snapshot(match_id: str, epoch: int, seq: int, ts: str, card_json: bytes) -> bytes:
    """The full scorecard at a position; ``card_json`` is spliced in, not re-encoded."""
    head = orjson.dumps({"type": "snapshot", "v": VERSION, "channel": f"{MATCH}:{match_id}",
                         "match_id": match_id, "epoch": epoch, "seq": seq, "ts": ts})
    return head[:-1] + b',"card":' + card_json + b"}"


def note(match_id: str, seq: int, k: int, note_json: bytes) -> bytes:
    """A notification wrapped with its channel and position; ``note_json`` is spliced in."""
    head = orjson.dumps({"type": "note", "v": VERSION, "channel": f"{NOTES}:{match_id}",
                         "epoch": 0, "seq": seq, "k": k})
    return head[:-1] + b',"note":' + note_json + b"}"


def flags(version: int, level: int, values: dict[str, bool]) -> bytes:
    """This client's feature flags, resolved by the gateway (a whole set, never a diff):
    ``version`` is the newest flag change applied, ``level`` the degradation level."""
    return orjson.dumps({"type": "flags", "v": VERSION, "channel": FLAGS, "version": version,
                         "level": level, "flags": values})


def channel_of(message: dict[str, Any]) -> str | None:
    """The channel a decoded gateway message belongs to (updates name only their match)."""
    if message.get("type") == "update":
        return f"{MATCH}:{message.get('match_id')}"
    channel = message.get("channel")
    return channel if isinstance(channel, str) else None
