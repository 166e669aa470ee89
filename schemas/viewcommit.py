"""The view commit: the one writer of a match's Redis view (``schemas.view``), as a contract.

``viewcommit.lua`` (next to this module) applies one change of a match's view atomically
(STYLE.md, principle 4): card, position ``{epoch, seq}``, the history entry ``"{seq}-0"`` with
its commit time (``COMMIT_FIELD``, Redis ``TIME``, which the gateway's delivery-latency metric
reads), the event's notifications and the live-matches score. Every writer runs it through this
module: the streams worker's view store, ``stumpcast rebuild``, the tests and the benchmarks, so
none of them can skip a check the others make.

* ``commit`` applies ``seq`` only when the stored position is ``(epoch, prev_seq)``, the one the
  writer folded from: a replay is ``Status.DUPLICATE`` (a no-op), anything else unexpected is a
  ``Status.CONFLICT`` and nothing is written.
* ``reset`` writes a whole card under a higher epoch and restarts the history.

On Redis Cluster (a client with ``get_nodes``, or ``cluster=True``) the script gets only the
match's four keys, which share its hash tag (``schemas.topology.match_tag``), and the committer
adds the match to the live-matches index with its own ZADD after an applied write: the index
lists every match, so it cannot be in the match's slot. A crash between the two leaves the match
out of the index until its next event; the view and its position still move together.

The bytes are encoded once by the caller (``ViewWrite.card``, ``.update``, the notes) and passed
through untouched. Foreign errors (``redis.RedisError``, ``OSError``) are not translated here:
that is each service's seam.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from importlib import resources
from typing import Any, Literal

from schemas.topology import RedisKeys
from schemas.view import HISTORY_MAXLEN

Mode = Literal["commit", "reset"]
COMMIT: Mode = "commit"
RESET: Mode = "reset"


class Status(IntEnum):
    APPLIED = 1
    DUPLICATE = 0
    CONFLICT = -1


@dataclass(frozen=True, slots=True)
class Position:
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True)
class CommitResult:
    status: Status
    stored: Position | None  # the position after the call (None: there is no view)


@dataclass(frozen=True, slots=True)
class ViewWrite:
    """One change of a match's view: the new card at ``seq`` folded from ``prev_seq``."""

    match_id: str
    epoch: int
    seq: int
    prev_seq: int
    card: bytes
    update: bytes
    notes: Sequence[tuple[str, bytes]] = ()  # (stream entry ID "{seq}-{i}", encoded bytes)
    now_ms: int = 0  # the match's score in RedisKeys.live_matches


def source() -> str:
    """The Lua text (package data of ``schemas``; read on call, not at import)."""
    return resources.files("schemas").joinpath("viewcommit.lua").read_text()


def script_keys(match_id: str, live: bool = True) -> list[str]:
    """The script's KEYS; ``live=False`` (Redis Cluster) leaves out the live-matches index."""
    keys = [RedisKeys.card(match_id), RedisKeys.position(match_id), RedisKeys.history(match_id),
            RedisKeys.notifications(match_id)]
    return [*keys, RedisKeys.live_matches] if live else keys


def script_call(mode: Mode, w: ViewWrite, maxlen: int = HISTORY_MAXLEN, live: bool = True
                ) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of the script for one write."""
    argv: list[Any] = [mode, w.epoch, w.seq, w.prev_seq, w.card, w.update, maxlen, w.now_ms,
                       w.match_id]
    for entry_id, raw in w.notes:
        argv += [entry_id, raw]
    return script_keys(w.match_id, live), argv


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a redis-py cluster client (sync or asyncio) or a cluster pipeline:
    only those have ``get_nodes``."""
    return callable(getattr(client, "get_nodes", None))


def parse_reply(reply: Sequence[Any]) -> CommitResult:
    """The script's ``{status, stored_epoch, stored_seq}`` (seq -1: no stored position)."""
    status, epoch, seq = (int(x) for x in reply)
    return CommitResult(Status(status), Position(epoch, seq) if seq >= 0 else None)


class ViewCommitter:
    """The script on a sync ``redis.Redis`` client; one EVALSHA per write."""

    def __init__(self, client: Any, history_maxlen: int = HISTORY_MAXLEN,
                 cluster: bool | None = None) -> None:
        self.maxlen = history_maxlen
        self._client = client
        self.cluster = is_cluster(client) if cluster is None else cluster
        self._script = client.register_script(source())

    def run(self, mode: Mode, w: ViewWrite) -> CommitResult:
        keys, argv = script_call(mode, w, self.maxlen, live=not self.cluster)
        result = parse_reply(self._script(keys=keys, args=argv))
        if self.cluster and result.status is Status.APPLIED:
            self._client.zadd(RedisKeys.live_matches, {w.match_id: w.now_ms})
        return result

    def commit(self, w: ViewWrite) -> CommitResult:
        return self.run(COMMIT, w)

    def reset(self, w: ViewWrite) -> CommitResult:
        return self.run(RESET, w)


class AsyncViewCommitter:
    """The script on a ``redis.asyncio`` client; one EVALSHA per write."""

    def __init__(self, client: Any, history_maxlen: int = HISTORY_MAXLEN,
                 cluster: bool | None = None) -> None:
        self.maxlen = history_maxlen
        self._client = client
        self.cluster = is_cluster(client) if cluster is None else cluster
        self._script = client.register_script(source())

    async def run(self, mode: Mode, w: ViewWrite) -> CommitResult:
        keys, argv = script_call(mode, w, self.maxlen, live=not self.cluster)
        result = parse_reply(await self._script(keys=keys, args=argv))
        if self.cluster and result.status is Status.APPLIED:
            await self._client.zadd(RedisKeys.live_matches, {w.match_id: w.now_ms})
        return result

    async def commit(self, w: ViewWrite) -> CommitResult:
        return await self.run(COMMIT, w)

    async def reset(self, w: ViewWrite) -> CommitResult:
        return await self.run(RESET, w)

    async def queue(self, pipe: Any, mode: Mode, w: ViewWrite) -> int:
        """Add the write to a ``redis.asyncio`` pipeline; its reply, in ``pipe.execute()``'s
        list, goes through ``parse_reply``. Returns how many replies it queued: 2 on a cluster,
        where the live-matches ZADD follows the script whatever its status (harmless: the
        index's score is only "last heard of")."""
        keys, argv = script_call(mode, w, self.maxlen, live=not self.cluster)
        await self._script(keys=keys, args=argv, client=pipe)
        if not self.cluster:
            return 1
        pipe.zadd(RedisKeys.live_matches, {w.match_id: w.now_ms})
        return 2
