"""The contract of ``match.events.dlq``: one record per event the streams worker refused.

Keyed by match id (no key when the bytes did not say which match). The value is JSON::

    {"type": "dead_letter", "v": 1, "reason": "conflict", "detail": "...",
     "match_id": "m1", "seq": 4, "event_type": "delivery", "event": {...}}

* ``reason``: why, one of :class:`Reason`;
* ``detail``: for a person, e.g. which ``event_id`` already holds the seq of a ``conflict``;
* ``match_id``, ``seq``, ``event_type``: of the refused event, ``null`` when its bytes did not
  decode into one;
* ``event``: the refused bytes as they came, their JSON when they parse, else their text.

Version 0, written before this module, had no ``type`` and no ``v`` and named the event's type
``type``; :func:`decode` reads it as version 1 (STYLE.md, principle 6: readers upcast).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

TYPE = "dead_letter"
VERSION = 1


class Reason(StrEnum):
    INVALID = "invalid"
    UNAUTHORISED = "unauthorised_source"
    UNKNOWN_MATCH = "unknown_match"
    SEQUENCE_GAP = "sequence_gap"  # no longer written (a gap is held); older records decode
    CONFLICT = "conflict"  # the seq already holds (or holds back) another event_id
    FOLD_REJECTED = "fold_rejected"
    INTERNAL = "internal_error"  # a bug on this event; the detail holds the traceback
    BAD_SIGNATURE = "bad_signature"  # unsigned, unknown scorer, or not its signature


class DeadLetterError(ValueError):
    """Bytes or fields that are not a valid dead letter; the message names the field."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: Reason
    detail: str
    event: Any  # JSON value: the refused bytes' document, or their text
    match_id: str | None = None
    seq: int | None = None
    event_type: str | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "reason", Reason(self.reason))
        except ValueError:
            raise DeadLetterError(f"reason: unknown reason {self.reason!r}") from None
        if not isinstance(self.detail, str):
            raise DeadLetterError("detail: must be a string")
        for name in ("match_id", "event_type"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise DeadLetterError(f"{name}: must be a string or null")
        if self.seq is not None and (type(self.seq) is not int or self.seq < 0):
            raise DeadLetterError("seq: must be an integer >= 0 or null")

    @classmethod
    def of(cls, reason: Reason, detail: str, raw: bytes, match_id: str | None = None,
           seq: int | None = None, event_type: str | None = None) -> DeadLetter:
        """The dead letter of the refused bytes ``raw``."""
        return cls(reason, detail, embed(raw), match_id, seq, event_type)

    def encode(self) -> bytes:
        return orjson.dumps({"type": TYPE, "v": VERSION, "reason": self.reason.value,
                             "detail": self.detail, "match_id": self.match_id, "seq": self.seq,
                             "event_type": self.event_type, "event": self.event})


def embed(raw: bytes) -> Any:
    """``raw`` as a JSON value: its document when it parses, else its text."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


def decode(raw: bytes | str) -> DeadLetter:
    """A dead letter of version 1, or of version 0 (upcast)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DeadLetterError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DeadLetterError("not a JSON object")
    if "v" not in doc and "reason" in doc:  # version 0: "type" was the event's type
        doc = {**doc, "type": TYPE, "v": VERSION, "event_type": doc.get("type")}
    if doc.get("type") != TYPE:
        raise DeadLetterError("type: not a dead letter")
    if doc.get("v") != VERSION:
        raise DeadLetterError(f"v: unsupported version {doc.get('v')!r}")
    missing = [k for k in ("reason", "detail", "event") if k not in doc]
    if missing:
        raise DeadLetterError(f"{missing[0]}: missing")
    return DeadLetter(doc["reason"], doc["detail"], doc["event"], doc.get("match_id"),
                      doc.get("seq"), doc.get("event_type"))
