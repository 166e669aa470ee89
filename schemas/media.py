"""Media events: the contract of the ``media.segments`` topic.

One ``SegmentPublished`` per rendition per published HLS segment, keyed by ``match_id``. The
media worker writes them; analytics and monitoring read them. Versioned wire type
``{"type": "media.segment", "v": 1, ...}`` (STYLE.md principle 6).
"""

from __future__ import annotations

import builtins
from dataclasses import asdict, dataclass
from typing import Any

import orjson

TYPE = "media.segment"
VERSION = 1


class MediaEventError(ValueError):
    """Bytes or fields that are not a valid media event; the message names the field."""


@dataclass(frozen=True, slots=True)
class SegmentPublished:
    match_id: str
    rendition: str  # ladder rung name, e.g. "720p"
    msn: int  # media sequence number, continuous across worker restarts
    pdt: str  # EXT-X-PROGRAM-DATE-TIME of the segment, ISO 8601 UTC with ms and "Z"
    duration: float  # seconds (EXTINF)
    bytes: int
    publish_delay_ms: float  # playlist published minus the segment's last captured instant
    discontinuity: bool = False

    def __post_init__(self) -> None:
        if not self.match_id or not self.rendition:
            raise MediaEventError("match_id/rendition: must be non-empty")
        if not isinstance(self.msn, int) or self.msn < 0:
            raise MediaEventError("msn: must be an integer >= 0")
        if not isinstance(self.pdt, str) or not self.pdt.endswith("Z"):
            raise MediaEventError("pdt: must be an ISO 8601 UTC instant ending in Z")
        if not self.duration > 0 or self.bytes <= 0:
            raise MediaEventError("duration/bytes: must be positive")

    def encode(self) -> builtins.bytes:  # the field named bytes shadows the builtin here
        doc: dict[str, Any] = {"type": TYPE, "v": VERSION, **asdict(self)}
        return orjson.dumps(doc)


def decode(raw: bytes | str) -> SegmentPublished:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MediaEventError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("type") != TYPE:
        raise MediaEventError("type: not a media segment event")
    if doc.get("v") != VERSION:
        raise MediaEventError(f"v: unsupported version {doc.get('v')!r}")
    try:
        return SegmentPublished(**{k: v for k, v in doc.items() if k not in {"type", "v"}})
    except TypeError as exc:
        raise MediaEventError(f"fields: {exc}") from None
