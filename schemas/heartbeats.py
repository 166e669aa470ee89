"""Player heartbeats (``viewer.heartbeats``) and what the analytics worker makes of them.

Three wire types, each ``{"type": ..., "v": 1, ...}`` encoded with orjson:

* ``Heartbeat`` (``"heartbeat"``): one per playing session every ``interval`` seconds (10 by
  default). Keyed by ``session_id`` on Kafka, so one session always lands on one partition and
  per-partition distinct counts add up exactly across partitions and workers.
  ``ts_ms`` is the client's send instant and ``playhead_ms`` the PDT (EXT-X-PROGRAM-DATE-TIME)
  of the frame on screen, both in ms since the Unix epoch; ``buffering_ms`` is the time spent
  stalled since the previous beat; ``bitrate_kbps`` the rendition being played.
* ``Watching`` (``"watching"``): the "N watching" counter of a match, written to the Redis
  stream ``RedisKeys.watching(match_id)`` for the gateway. ``concurrent`` = distinct sessions
  seen in the last 2 heartbeat intervals; ``views`` = distinct sessions ever (never label one as
  the other: industry.md §1b).
* ``ConcurrencyRecord`` (``"concurrency"``): one (match, region, CDN, window) result on the
  compacted ``analytics.concurrency`` topic; region ``"*"`` and CDN ``"*"`` is the match total.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import orjson

HEARTBEAT_TYPE = "heartbeat"
WATCHING_TYPE = "watching"
CONCURRENCY_TYPE = "concurrency"
VERSION = 1
ALL = "*"  # region/CDN of a match-wide total
DEFAULT_INTERVAL_S = 10
_MAX_TEXT = 128


class HeartbeatError(ValueError):
    """Bytes or fields that are not a valid heartbeat; the message names the field."""


def _text(name: str, value: Any) -> None:
    if type(value) is not str or not value or len(value) > _MAX_TEXT:
        raise HeartbeatError(f"{name}: must be a non-empty string of at most {_MAX_TEXT} chars")


def _count(name: str, value: Any) -> None:
    if type(value) is not int or value < 0:
        raise HeartbeatError(f"{name}: must be an integer >= 0")


class _HeartbeatFields(NamedTuple):
    session_id: str
    match_id: str
    region: str
    cdn: str
    bitrate_kbps: int
    buffering_ms: int
    playhead_ms: int
    device: str
    ts_ms: int


class Heartbeat(_HeartbeatFields):
    """Immutable and validated on construction. A tuple underneath, not a dataclass: a worker
    builds 50k+ of these a second, and a frozen dataclass's ``__init__`` alone cost ~3 us."""

    __slots__ = ()

    def __new__(cls, session_id: str, match_id: str, region: str, cdn: str, bitrate_kbps: int,
                buffering_ms: int, playhead_ms: int, device: str, ts_ms: int) -> Heartbeat:
        hb = tuple.__new__(cls, (session_id, match_id, region, cdn, bitrate_kbps,
                                 buffering_ms, playhead_ms, device, ts_ms))
        _validate(hb)
        return hb

    def encode(self) -> bytes:
        return orjson.dumps({"type": HEARTBEAT_TYPE, "v": VERSION, **self._asdict()})

    @property
    def key(self) -> bytes:
        """The Kafka key: the session, so a session's beats stay on one partition."""
        return self.session_id.encode()


def _validate(hb: Heartbeat) -> None:
    # One boolean expression on the hot path; the slow path names the field.
    sid, mid, reg, cdn, rate, buf, play, dev, ts = hb
    if not (type(sid) is str and 0 < len(sid) <= _MAX_TEXT
            and type(mid) is str and 0 < len(mid) <= _MAX_TEXT
            and type(reg) is str and 0 < len(reg) <= _MAX_TEXT and reg != ALL
            and type(cdn) is str and 0 < len(cdn) <= _MAX_TEXT and cdn != ALL
            and type(dev) is str and 0 < len(dev) <= _MAX_TEXT
            and type(rate) is int and rate >= 0 and type(buf) is int and buf >= 0
            and type(play) is int and play >= 0 and type(ts) is int and ts >= 0):
        _explain(hb)


def _explain(hb: Heartbeat) -> None:
    for name in ("session_id", "match_id", "region", "cdn", "device"):
        _text(name, getattr(hb, name))
    for name in ("bitrate_kbps", "buffering_ms", "playhead_ms", "ts_ms"):
        _count(name, getattr(hb, name))
    raise HeartbeatError(f"region/cdn: {ALL!r} is reserved for totals")


_ORDER = _HeartbeatFields._fields
_HEARTBEAT_FIELDS = frozenset(_ORDER)


def _build(doc: dict[str, Any]) -> Heartbeat:
    hb = tuple.__new__(Heartbeat, [doc[name] for name in _ORDER])
    _validate(hb)
    return hb


def decode(raw: bytes | str) -> Heartbeat:
    """Strict: unknown or missing fields, wrong types and other versions are rejected."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HeartbeatError(f"not JSON: {exc}") from None
    if type(doc) is not dict or doc.pop("type", None) != HEARTBEAT_TYPE:
        raise HeartbeatError("type: not a heartbeat")
    if doc.pop("v", None) != VERSION:
        raise HeartbeatError("v: unsupported version")
    if doc.keys() != _HEARTBEAT_FIELDS:
        missing = sorted(_HEARTBEAT_FIELDS - doc.keys())
        extra = sorted(doc.keys() - _HEARTBEAT_FIELDS)
        raise HeartbeatError(f"fields: missing {missing}, unknown {extra}")
    return _build(doc)


def make_heartbeat(session_id: str, match_id: str, *, ts_ms: int, playhead_ms: int,
                   region: str = "unknown", cdn: str = "unknown", bitrate_kbps: int = 0,
                   buffering_ms: int = 0, device: str = "web") -> bytes:
    """The encoded heartbeat a player (the web page, ``stumpcast watch``) sends every interval.

    Produce it to ``VIEWER_HEARTBEATS`` with key ``session_id.encode()``.
    """
    return Heartbeat(session_id, match_id, region, cdn, bitrate_kbps, buffering_ms,
                     playhead_ms, device, ts_ms).encode()


@dataclass(frozen=True, slots=True)
class Watching:
    """The gateway's "N watching" counter; see ``RedisKeys.watching``."""

    match_id: str
    concurrent: int
    views: int
    window_start_ms: int
    window_end_ms: int
    final: bool
    ts_ms: int
    views_mode: str = "exact"

    def encode(self) -> bytes:
        return orjson.dumps({"type": WATCHING_TYPE, "v": VERSION, **asdict(self)})


def decode_watching(raw: bytes | str) -> Watching:
    doc = orjson.loads(raw)
    if not isinstance(doc, dict) or doc.pop("type", None) != WATCHING_TYPE:
        raise ValueError("not a watching record")
    if doc.pop("v", None) != VERSION:
        raise ValueError("unsupported watching version")
    return Watching(**doc)


@dataclass(frozen=True, slots=True)
class ConcurrencyRecord:
    match_id: str
    region: str
    cdn: str
    window_start_ms: int
    window_end_ms: int
    concurrent: int
    beats: int
    avg_bitrate_kbps: float
    rebuffering_ratio: float
    mode: str          # "exact" or "hll"
    complete: bool     # every partition of viewer.heartbeats has reported this window

    @property
    def key(self) -> bytes:
        """Compaction key: the latest window per (match, region, CDN) survives."""
        return f"{self.match_id}|{self.region}|{self.cdn}".encode()

    def encode(self) -> bytes:
        return orjson.dumps({"type": CONCURRENCY_TYPE, "v": VERSION, **asdict(self)})


def decode_concurrency(raw: bytes | str) -> ConcurrencyRecord:
    doc = orjson.loads(raw)
    if not isinstance(doc, dict) or doc.pop("type", None) != CONCURRENCY_TYPE:
        raise ValueError("not a concurrency record")
    if doc.pop("v", None) != VERSION:
        raise ValueError("unsupported concurrency version")
    return ConcurrencyRecord(**doc)
