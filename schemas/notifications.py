"""Milestone notifications: the contract of the ``match.notifications`` topic.

The streams worker derives them from the fold (wicket, four, six, fifty, hundred, five-wicket
haul, hat-trick, innings end, target set, result). The media worker turns the ball events into
EXT-X-DATERANGE markers; the notifier delivers them to people. Each carries:

* ``id``: deterministic from the event that caused it, so a replay never duplicates it;
* ``priority``: P1 (interrupt the viewer: wickets, results) or P2 (everything else);
* ``ts``: the UTC instant of the ball, ISO 8601 with a ``Z``;
* ``retracts``: set on a ``retraction``, naming the notification a correction voided.

A notification's **position** is ``(seq, k)``: the seq of the event that caused it and ``k``
counting from 0 the notifications of that event. Written ``note_id(seq, k)`` = ``"{seq}-{k}"``,
it is the entry ID of the match's notifications stream in Redis (``schemas.view``), the
gateway's ``notes:`` resume position (``schemas.protocol``) and the relay's checkpoint
(``schemas.relay``); ``parse_note_id`` reads it back. Not to be confused with ``Notification.id``,
the notification's own name.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import orjson

TYPE = "notification"
VERSION = 1

NoteKey = tuple[int, int]  # a notification's position (seq, k)


class Kind(StrEnum):
    WICKET = "wicket"
    FOUR = "four"
    SIX = "six"
    FIFTY = "fifty"
    HUNDRED = "hundred"
    FIVE_WICKETS = "five_wickets"
    HAT_TRICK = "hat_trick"
    INNINGS_END = "innings_end"
    TARGET_SET = "target_set"
    RESULT = "result"
    RETRACTION = "retraction"


class Priority(StrEnum):
    P1 = "P1"
    P2 = "P2"


# Ball events worth a marker on the video timeline (media) and a toast (page).
BALL_MARKER_KINDS = frozenset({Kind.WICKET, Kind.FOUR, Kind.SIX, Kind.FIFTY, Kind.HUNDRED,
                               Kind.FIVE_WICKETS, Kind.HAT_TRICK, Kind.INNINGS_END})


class NotificationError(ValueError):
    """Bytes or fields that are not a valid notification; the message names the field."""


@dataclass(frozen=True, slots=True)
class Notification:
    id: str
    match_id: str
    kind: Kind
    priority: Priority
    ts: str
    seq: int
    innings: int
    over: str
    text: str
    retracts: str | None = None

    def __post_init__(self) -> None:
        for name in ("id", "match_id", "text"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise NotificationError(f"{name}: must be a non-empty string")
        try:
            object.__setattr__(self, "kind", Kind(self.kind))
            object.__setattr__(self, "priority", Priority(self.priority))
        except ValueError as exc:
            raise NotificationError(f"kind/priority: {exc}") from None
        if not isinstance(self.seq, int) or self.seq < 1:
            raise NotificationError("seq: must be an integer >= 1")
        if not isinstance(self.innings, int) or self.innings < 0:
            raise NotificationError("innings: must be an integer >= 0")
        parse_ts(self.ts)
        if (self.kind is Kind.RETRACTION) != (self.retracts is not None):
            raise NotificationError("retracts: set exactly when kind is 'retraction'")

    @property
    def instant(self) -> dt.datetime:
        return parse_ts(self.ts)

    def encode(self) -> bytes:
        doc: dict[str, Any] = {"type": TYPE, "v": VERSION, **asdict(self)}
        return orjson.dumps(doc)


def note_id(seq: int, k: int) -> str:
    """The position ``(seq, k)`` as text: ``"{seq}-{k}"`` (a Redis stream entry ID)."""
    return f"{seq}-{k}"


def parse_note_id(text: str | bytes) -> NoteKey:
    """``(seq, k)`` of a ``note_id`` (text or bytes, as Redis returns it); raises
    ``NotificationError`` naming the text when it is not ``"{seq}-{k}"``."""
    s = text.decode("ascii", "replace") if isinstance(text, bytes) else text
    seq, sep, k = s.partition("-")
    if not (sep and seq.isdigit() and k.isdigit() and seq.isascii() and k.isascii()):
        raise NotificationError(f"note id: {s!r} is not '{{seq}}-{{k}}'")
    return int(seq), int(k)


def parse_ts(ts: str) -> dt.datetime:
    if not isinstance(ts, str) or not ts.endswith("Z"):
        raise NotificationError(f"ts: {ts!r} is not an ISO 8601 UTC instant ending in Z")
    try:
        return dt.datetime.fromisoformat(ts[:-1]).replace(tzinfo=dt.UTC)
    except ValueError:
        raise NotificationError(f"ts: {ts!r} is not an ISO 8601 UTC instant") from None


def decode(raw: bytes | str) -> Notification:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise NotificationError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("type") != TYPE:
        raise NotificationError("type: not a notification")
    if doc.get("v") != VERSION:
        raise NotificationError(f"v: unsupported version {doc.get('v')!r}")
    fields = {k: v for k, v in doc.items() if k not in {"type", "v"}}
    try:
        return Notification(**fields)
    except TypeError as exc:
        raise NotificationError(f"fields: {exc}") from None


def retraction(of: Notification, ts: str, seq: int) -> Notification:
    """The retraction of ``of``, caused by the correction event at ``seq``."""
    return Notification(id=f"{of.id}:retracted", match_id=of.match_id, kind=Kind.RETRACTION,
                        priority=of.priority, ts=ts, seq=seq, innings=of.innings, over=of.over,
                        text=f"Correction: {of.text} (withdrawn)", retracts=of.id)
