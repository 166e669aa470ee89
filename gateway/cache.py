"""Per-process, in-memory state of a match: card, position and recent history (pure, no I/O).

The feed applies each update from Redis here once; snapshots and resumes are then answered from
memory, so a reconnect storm costs Redis nothing per client. ``apply`` reports a duplicate, a
gap or an epoch change as a typed outcome (STYLE.md, "sequence discipline"); the feed answers a
gap or an epoch change by reloading the view and sending every subscriber a fresh snapshot.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from schemas import patch as patch_format
from schemas import protocol as p
from schemas.view import ViewUpdate


class Outcome(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    GAP = "gap"
    EPOCH_CHANGED = "epoch_changed"


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What a (re)subscribing client gets: replayed frames, or a snapshot when not recovered."""

    recovered: bool
    position: p.ChannelPosition
    frames: list[bytes]


def parse_stream_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, n = text.partition("-")
    return int(ms), int(n or 0)


class MatchCache:
    __slots__ = ("match_id", "epoch", "seq", "ts", "card", "history", "_card_json", "_snapshot")

    def __init__(self, match_id: str, epoch: int, seq: int, ts: str, card: Any,
                 history: Iterable[tuple[int, bytes]] = (), recovery_max: int = 300) -> None:
        self.match_id = match_id
        self.epoch = epoch
        self.seq = seq
        self.ts = ts
        self.card = card
        self.history: deque[tuple[int, bytes]] = deque(maxlen=recovery_max)
        self._card_json: bytes | None = None
        self._snapshot: bytes | None = None
        for entry in _contiguous_tail(list(history), seq):
            self.history.append(entry)

    @property
    def position(self) -> p.ChannelPosition:
        return p.ChannelPosition(self.epoch, self.seq)

    def apply(self, update: ViewUpdate, raw: bytes) -> Outcome:
        if update.epoch != self.epoch:
            return Outcome.EPOCH_CHANGED
        if update.seq <= self.seq:
            return Outcome.DUPLICATE
        if update.prev_seq != self.seq:
            return Outcome.GAP
        if update.card is not None:
            self.card = update.card
        else:
            try:
                self.card = patch_format.apply(self.card, update.patch or [])
            except patch_format.PatchError:
                return Outcome.GAP  # the patch does not fit: our card is wrong, reload
        self.seq = update.seq
        self.ts = update.ts
        self.history.append((update.seq, raw))
        self._card_json = None
        self._snapshot = None
        return Outcome.APPLIED

    def card_json(self) -> bytes:
        if self._card_json is None:
            self._card_json = orjson.dumps(self.card)
        return self._card_json

    def snapshot_frame(self) -> bytes:
        """The snapshot at the current position, encoded once and shared."""
        if self._snapshot is None:
            self._snapshot = p.snapshot(self.match_id, self.epoch, self.seq, self.ts,
                                        self.card_json())
        return self._snapshot

    def catch_up(self, since: p.ChannelPosition | None) -> CatchUp:
        if since is not None and since.epoch == self.epoch:
            if since.seq >= self.seq:
                # Up to date (or ahead of this process's cache: the live feed will bring the
                # rest, and the subscription's position filters what the client already has).
                return CatchUp(True, p.ChannelPosition(self.epoch, since.seq), [])
            if self.history and self.history[0][0] <= since.seq + 1:
                frames = [frame for seq, frame in self.history if seq > since.seq]
                return CatchUp(True, self.position, frames)
        return CatchUp(False, self.position, [self.snapshot_frame()])


def _contiguous_tail(entries: list[tuple[int, bytes]], top: int) -> list[tuple[int, bytes]]:
    """The longest run of consecutive seqs ending at ``top`` (entries sorted ascending)."""
    out: list[tuple[int, bytes]] = []
    expect = top
    for seq, frame in reversed(entries):
        if seq != expect:
            break
        out.append((seq, frame))
        expect -= 1
    out.reverse()
    return out


class NotesCache:
    """Recent notifications of one match, wrapped once into ``note`` frames."""

    __slots__ = ("match_id", "entries", "complete", "last")

    def __init__(self, match_id: str, entries: Iterable[tuple[int, int, bytes]] = (),
                 complete: bool = True, keep: int = 300) -> None:
        self.match_id = match_id
        self.entries: deque[tuple[int, int, bytes]] = deque(maxlen=keep)
        self.complete = complete  # True while the cache holds the stream from its start
        self.last = (0, 0)
        for seq, k, raw in entries:
            self.add(seq, k, raw)

    def add(self, seq: int, k: int, raw_note: bytes) -> bytes | None:
        """The ``note`` frame for a new entry, or None for one already seen."""
        if (seq, k) <= self.last:
            return None
        frame = p.note(self.match_id, seq, k, raw_note)
        if len(self.entries) == self.entries.maxlen:
            self.complete = False
        self.entries.append((seq, k, frame))
        self.last = (seq, k)
        return frame

    @property
    def position(self) -> p.ChannelPosition:
        return p.ChannelPosition(0, *self.last)

    def catch_up(self, since: p.ChannelPosition | None) -> CatchUp | None:
        """Frames after ``since``; None when the cache cannot prove continuity (ask Redis)."""
        if since is None:
            return CatchUp(False, self.position, [])
        mark = (since.seq, since.k)
        if mark >= self.last:
            return CatchUp(True, p.ChannelPosition(0, *max(mark, self.last)), [])
        first = (self.entries[0][0], self.entries[0][1]) if self.entries else self.last
        if self.complete or mark >= first:
            frames = [f for s, k, f in self.entries if (s, k) > mark]
            return CatchUp(True, self.position, frames)
        return None
