"""The contract of ``match.notifications.relay``: the notification relay's checkpoints.

One record per match (key: the match id; the topic is compacted), written by the relay of
``match.events`` partition p into partition p, in the same Kafka transaction as the
notifications it covers (``streams.relay``). A checkpoint at position ``(seq, k)``
(``schemas.notifications.note_id``) says every notification of the match up to and including
that one is committed to ``match.notifications``.

Version 1 is JSON::

    {"type": "relay_checkpoint", "v": 1, "match_id": "m1", "seq": 12, "k": 3}

Version 0, the bare position ``"12-3"``, is what the relay wrote before this module and what it
still writes (``WRITE_VERSION``): a worker of the old code reads only version 0, and one that
met a version-1 record while taking a partition over would retry its relay's open forever,
holding that partition's acks. :func:`decode` reads both, so once no older worker runs (nor
shares the brokers, as test stacks do) ``WRITE_VERSION`` becomes 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from schemas.notifications import NoteKey, NotificationError, note_id, parse_note_id

TYPE = "relay_checkpoint"
VERSION = 1
WRITE_VERSION = 0  # see the module's docstring before raising it


class CheckpointError(ValueError):
    """A key or value that is not a valid checkpoint; the message names the field."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    match_id: str
    seq: int
    k: int

    def __post_init__(self) -> None:
        if not isinstance(self.match_id, str) or not self.match_id:
            raise CheckpointError("match_id: must be a non-empty string")
        if type(self.seq) is not int or self.seq < 1:
            raise CheckpointError(f"seq: {self.seq!r} is not an integer >= 1")
        if type(self.k) is not int or self.k < 0:
            raise CheckpointError(f"k: {self.k!r} is not an integer >= 0")

    @property
    def position(self) -> NoteKey:
        return self.seq, self.k

    @property
    def key(self) -> bytes:
        return self.match_id.encode()

    def encode(self, v: int = WRITE_VERSION) -> bytes:
        """The record's value in version ``v`` (1, or 0 for readers of the old code)."""
        if v == 0:
            return note_id(self.seq, self.k).encode()
        if v != VERSION:
            raise CheckpointError(f"v: cannot write version {v!r}")
        return orjson.dumps({"type": TYPE, "v": VERSION, "match_id": self.match_id,
                             "seq": self.seq, "k": self.k})


def decode(key: bytes | str, value: bytes | str) -> Checkpoint:
    """The checkpoint of one record of the relay topic, of version 1 or 0."""
    match_id = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if not text.lstrip().startswith("{"):  # version 0: the bare position
        try:
            return Checkpoint(match_id, *parse_note_id(text))
        except NotificationError as exc:
            raise CheckpointError(f"value: {exc}") from None
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CheckpointError(f"value: not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("type") != TYPE:
        raise CheckpointError("type: not a relay checkpoint")
    if doc.get("v") != VERSION:
        raise CheckpointError(f"v: unsupported version {doc.get('v')!r}")
    if doc.get("match_id") != match_id:
        raise CheckpointError(f"match_id: {doc.get('match_id')!r} under key {match_id!r}")
    # seq and k are checked by Checkpoint itself
    return Checkpoint(match_id, doc.get("seq"), doc.get("k"))  # type: ignore[arg-type]
