"""The Redis view contract between the streams worker (writer) and the gateway (reader).

Per match, three things move together in one atomic step (the Lua script of
``schemas.viewcommit``, the only writer), so replaying an event is a no-op and a reader never
sees a card without its position:

* ``RedisKeys.card(m)``: the scorecard document, JSON bytes (``schemas.scorecard``'s shape);
* ``RedisKeys.position(m)``: a hash ``{"epoch": int, "seq": int}``;
* ``RedisKeys.history(m)``: a Redis stream of update records, bounded by ``HISTORY_MAXLEN``.
  Each entry's stream ID is ``"{seq}-0"``, so ``XRANGE key (since+1)-0 +`` returns exactly the
  updates after ``since``; its field ``UPDATE_FIELD`` holds the encoded ``ViewUpdate``, and
  its field ``COMMIT_FIELD`` the commit instant in ms since the Unix epoch (Redis ``TIME`` in
  the script, so one clock for every writer), which readers use only to measure delivery
  latency. It is not part of the update and never sent to clients; entries written before it
  existed lack it, so readers treat it as optional.

The ``ViewUpdate`` bytes are encoded once by the writer and are meant to be forwarded verbatim
by the gateway to every subscriber (STYLE.md, "encode once"). ``epoch`` changes only when the
view is rebuilt from the event store (``stumpcast rebuild``); the history is then restarted, and
a reader that holds an older epoch must take a fresh snapshot. ``RedisKeys.live_matches`` is a
sorted set of match ids scored by the time of their last update (ms since the epoch).

Notifications of a match go to the stream ``RedisKeys.notifications(m)``, field ``UPDATE_FIELD``
holding ``Notification.encode()`` bytes, with entry ID ``note_id(seq, k)``
(``schemas.notifications``): the seq of the event that caused it and ``k`` counting from 0 the
notifications of that event. IDs are thus deterministic (a replay or rebuild writes the same
IDs; ``XADD`` of an existing ID fails and the writer treats that as already written) and a reader
resumes by ``(seq, k)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from schemas import patch as patch_format

HISTORY_MAXLEN = 2000  # a T20 match is ~250-300 events; a whole match fits with room to spare
UPDATE_FIELD = "u"
COMMIT_FIELD = "t"  # commit time, ms since the epoch (latency metric only; old entries lack it)
UPDATE_TYPE = "update"
UPDATE_VERSION = 1


class ViewUpdateError(ValueError):
    """Bytes that are not a valid ViewUpdate."""


@dataclass(frozen=True, slots=True)
class ViewUpdate:
    """What changed in a match's view at one position.

    Exactly one of ``patch`` (``schemas.patch`` operations against the card at ``prev_seq``) and
    ``card`` (the full document, sent when a patch would not be smaller) is set.
    """

    match_id: str
    epoch: int
    seq: int
    prev_seq: int
    ts: str
    patch: list[Any] | None = None
    card: dict[str, Any] | None = None

    def encode(self) -> bytes:
        doc: dict[str, Any] = {
            "type": UPDATE_TYPE, "v": UPDATE_VERSION, "match_id": self.match_id,
            "epoch": self.epoch, "seq": self.seq, "prev_seq": self.prev_seq, "ts": self.ts,
        }
        if self.card is not None:
            doc["card"] = self.card
        else:
            doc["patch"] = self.patch
        return orjson.dumps(doc)


def make_update(match_id: str, epoch: int, seq: int, prev_seq: int, ts: str,
                old_card: dict[str, Any] | None, new_card: dict[str, Any]) -> ViewUpdate:
    """A patch when there is a previous card and the patch is smaller, else the full card."""
    if old_card is not None:
        ops = patch_format.diff(old_card, new_card)
        if len(orjson.dumps(ops)) < len(orjson.dumps(new_card)):
            return ViewUpdate(match_id, epoch, seq, prev_seq, ts, patch=ops)
    return ViewUpdate(match_id, epoch, seq, prev_seq, ts, card=new_card)


def decode_update(raw: bytes | str) -> ViewUpdate:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ViewUpdateError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("type") != UPDATE_TYPE:
        raise ViewUpdateError("not an update record")
    if doc.get("v") != UPDATE_VERSION:
        raise ViewUpdateError(f"unsupported update version {doc.get('v')!r}")
    try:
        update = ViewUpdate(
            match_id=str(doc["match_id"]), epoch=int(doc["epoch"]), seq=int(doc["seq"]),
            prev_seq=int(doc["prev_seq"]), ts=str(doc["ts"]),
            patch=doc.get("patch"), card=doc.get("card"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ViewUpdateError(f"missing or bad field: {exc}") from None
    if (update.patch is None) == (update.card is None):
        raise ViewUpdateError("exactly one of 'patch' and 'card' must be present")
    return update


def history_id(seq: int) -> str:
    """The stream entry ID of the update at ``seq`` (seq starts at 1; Redis forbids 0-0)."""
    return f"{seq}-0"
