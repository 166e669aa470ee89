"""Carry out a ``FlushPlan`` in Redis (one pipeline) and turn complete windows into records.

Views: the sessions of the flush are added to ``RedisKeys.views(m)`` (SADD exact, PFADD hll;
both idempotent, so a re-read after a restart adds nothing), and the key expires
``VIEWS_TTL_S`` after the match's last beat, so the sets of old matches do not pile up.
Windows: ``merge.lua`` stores each partition's partial, sums them, and, when every partition of
the topic has reported, publishes the "N watching" counter (live) or the per-group figures
(final). A window whose partials are all in is returned as ``ConcurrencyRecord``s for the
``analytics.concurrency`` topic.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson

from analytics.aggregate import FlushPlan, Partial
from analytics.window import Stats
from schemas.heartbeats import ConcurrencyRecord
from schemas.topology import RedisKeys

_CHUNK = 10_000
VIEWS_TTL_S = 7 * 24 * 3600  # longer than any match (a Test lasts five days)


def _script_text() -> str:
    return resources.files("analytics").joinpath("merge.lua").read_text()


def encode_part(part: dict[tuple[str, str], Stats]) -> bytes:
    return orjson.dumps({f"{r}|{c}": s.as_list() for (r, c), s in part.items()})


class RedisSink:
    def __init__(self, redis: Any, mode: str, partitions: int, step_ms: int,
                 ttl_s: int = 3600, maxlen: int = 100) -> None:
        self.redis = redis
        self.mode, self.partitions, self.step_ms = mode, partitions, step_ms
        self.ttl_s, self.maxlen = ttl_s, maxlen
        self.script = redis.register_script(_script_text())
        # What the last ``write`` could not write, each with its error (None: a views command):
        # the shell logs them as bugs; the rest of the flush stands.
        self.skipped: list[tuple[Partial | None, Exception]] = []

    def watched_sessions(self) -> frozenset[str]:
        """Sessions with a no-spoilers webhook: their playheads go to ``RedisKeys.playheads``."""
        return frozenset(m.decode() for m in self.redis.smembers(RedisKeys.spoiler_sessions))

    def write(self, plan: FlushPlan, now_ms: int) -> list[ConcurrencyRecord]:
        pipe = self.redis.pipeline(transaction=False)
        for match_id, sessions in plan.sessions.items():
            members = list(sessions)
            for i in range(0, len(members), _CHUNK):
                cmd = pipe.pfadd if self.mode == "hll" else pipe.sadd
                cmd(RedisKeys.views(match_id, self.mode), *members[i:i + _CHUNK])
            pipe.expire(RedisKeys.views(match_id, self.mode), VIEWS_TTL_S)
        if plan.playheads:
            pipe.hset(RedisKeys.playheads, mapping=plan.playheads)
        n_views = len(pipe)
        partials = plan.finals + plan.live
        for partial in partials:
            self._merge(pipe, partial, now_ms)
        # A server that is down raises here, before any reply; an error in the reply of one
        # command (a script error, a key of the wrong type) is that command's alone.
        results = pipe.execute(raise_on_error=False)
        results[n_views:] = self._after_noscript(partials, results[n_views:], now_ms)
        self.skipped = [(None, r) for r in results[:n_views] if isinstance(r, Exception)]
        records: list[ConcurrencyRecord] = []
        for partial, result in zip(partials, results[n_views:], strict=True):
            if isinstance(result, Exception):
                self.skipped.append((partial, result))
                continue
            complete, totals = result
            if partial.final and int(complete):
                records += self._records(partial, orjson.loads(totals))
        return records

    def _after_noscript(self, partials: list[Partial], results: list[Any],
                        now_ms: int) -> list[Any]:
        """The merges a node answered NOSCRIPT, run again once the script is loaded.

        A plain pipeline loads its scripts before it runs; a Redis Cluster pipeline does not
        (redis-py leaves NOSCRIPT to the caller), and a node has no script on its first use or
        after a replica took over its slots. NOSCRIPT means the script did not run, so running
        it again is safe. ``SCRIPT LOAD`` on a cluster client goes to every master."""
        from redis.exceptions import NoScriptError

        again = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if not again:
            return results
        self.redis.script_load(_script_text())
        pipe = self.redis.pipeline(transaction=False)
        for i in again:
            self._merge(pipe, partials[i], now_ms)
        out = list(results)
        for i, result in zip(again, pipe.execute(raise_on_error=False), strict=True):
            out[i] = result
        return out

    def _merge(self, pipe: Any, partial: Partial, now_ms: int) -> None:
        m = partial.match_id
        keys = [RedisKeys.concurrency_partials(m, partial.start_ms, partial.final),
                RedisKeys.watching(m), RedisKeys.concurrency(m), RedisKeys.views(m, self.mode)]
        args: list[Any] = [self.partitions, "1" if partial.final else "0", m, partial.start_ms,
                           partial.end_ms, now_ms, self.mode, self.ttl_s, self.maxlen]
        for p, part in sorted(partial.parts.items()):
            args += [p, encode_part(part)]
        self.script(keys=keys, args=args, client=pipe)

    def _records(self, partial: Partial, totals: Any) -> list[ConcurrencyRecord]:
        if not isinstance(totals, dict):  # cjson encodes an empty table as {} or []
            return []
        out = []
        for group, values in sorted(totals.items()):
            region, _, cdn = group.partition("|")
            s = Stats(*(int(v) for v in values))
            out.append(ConcurrencyRecord(
                match_id=partial.match_id, region=region, cdn=cdn,
                window_start_ms=partial.start_ms, window_end_ms=partial.end_ms,
                concurrent=s.sessions, beats=s.beats,
                avg_bitrate_kbps=round(s.avg_bitrate(), 1),
                rebuffering_ratio=round(s.rebuffering_ratio(self.step_ms), 6),
                mode=self.mode, complete=True))
        return out
