"""Reading a match back from durable state: the event store and the Redis view position.

What a worker holds in memory for a match is rebuilt from here whenever it has no state for it:
first sight, a partition assigned (whatever the process held before, principle 13), a view
moved by another worker, a bug on an event. The reads only; the engine does the effects
(re-seeding a view that is behind, handing the notifications to the relay).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

from schemas import codec
from schemas.events import Event
from streams.eventstore import EventStore, EventStoreError, StoredEvent
from streams.pipeline import MATCH_CREATED, Folder, MatchState, replay_state
from streams.viewstore import Position, ViewStore


@dataclass(frozen=True)
class Recovered:
    state: MatchState
    position: Position | None  # the Redis view's, None when there is no view


async def read_match(match_id: str, event: Event, views: ViewStore, store: EventStore,
                     folder: Folder) -> Recovered | None:
    """The match's state from the event store and its view position from Redis; ``None``
    for a match with neither a stored log nor a ``match.created`` at seq 1 (unknown).

    A store or Redis that is down raises (``Unavailable``): the caller retries, since a worker
    that cannot read a match's past cannot fold its future. The exception is a brand-new match
    (``match.created`` at seq 1 with no view): one failed store read counts as an empty log.
    """
    view = await views.read(match_id)
    created = event.payload.TYPE == MATCH_CREATED and event.seq == 1
    fresh = created and view.position is None
    try:
        stored = await store.load(match_id)
    except EventStoreError:
        if not fresh:
            raise
        stored = []
    events = [codec.decode(e.body) for e in stored]
    if not events and not created:
        return None
    return Recovered(replay_state(match_id, events, folder), view.position)


def stored_events(rows: list[StoredEvent], first: int, last: int) -> list[tuple[Event, bytes]]:
    """The stored events with ``first <= seq <= last``, decoded, in seq order (a gap's fill)."""
    return [(codec.decode(r.body), r.body) for r in rows if first <= r.seq <= last]


def describe(exc: BaseException, limit: int = 4000) -> str:
    """An exception with its traceback, for a dead letter's ``detail`` (the end if too long)."""
    text = "".join(traceback.format_exception(exc)).rstrip()
    return text if len(text) <= limit else "..." + text[-limit:]


def as_stored(event: Any) -> StoredEvent:
    return StoredEvent(event.match_id, event.seq, event.event_id, event.payload.TYPE, event.ts,
                       codec.encode(event))
