"""Where data lives: Kafka topics, the Cassandra keyspace and tables, and the Redis key layout.

Defined once here and never built inline elsewhere (STYLE.md, principle 5). ``stumpcast stack
init`` creates exactly what this module lists, and the services read their names from it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    doc: str
    compacted: bool = False
    retention_ms: int | None = None
    config: dict[str, str] = field(default_factory=dict)

    def kafka_config(self) -> dict[str, str]:
        out = dict(self.config)
        if self.compacted:
            out["cleanup.policy"] = "compact"
        if self.retention_ms is not None:
            out["retention.ms"] = str(self.retention_ms)
        return out


_DAY_MS = 24 * 3600 * 1000

# Ball-by-ball input. Keyed by match_id, so one match is one partition and stays in order.
MATCH_EVENTS = Topic("match.events", 8, "Validated-on-read match events from scorers and feeds.",
                     retention_ms=7 * _DAY_MS)
MATCH_EVENTS_DLQ = Topic("match.events.dlq", 2, "Rejected events with the reason they failed.",
                         retention_ms=30 * _DAY_MS)
NOTIFICATIONS = Topic("match.notifications", 8,
                      "Milestones derived from the fold, and retractions.",
                      retention_ms=7 * _DAY_MS)
# The relay's checkpoint (last notification id per match), written in the same Kafka transaction
# as the notifications. Partition p is written only by the relay of match.events partition p.
NOTIFY_RELAY = Topic("match.notifications.relay", MATCH_EVENTS.partitions,
                     "Notification relay checkpoints: the last id published per match.",
                     compacted=True)
SCORECARDS = Topic("match.scorecards", 8, "Latest scorecard per match, for analysts.",
                   compacted=True)
VIEWER_HEARTBEATS = Topic("viewer.heartbeats", 8, "Player heartbeats: session, CDN, bitrate.",
                          retention_ms=1 * _DAY_MS)
ANALYTICS_CONCURRENCY = Topic("analytics.concurrency", 4,
                              "Concurrent viewers and quality per match, region and CDN.",
                              compacted=True)
MEDIA_SEGMENTS = Topic("media.segments", 2, "One record per published HLS segment.",
                       retention_ms=1 * _DAY_MS)
# Feature flag and degradation level changes (schemas/flags.py), keyed by flag: the audit trail.
# Compacted, but only after 30 days, so `stumpcast flags history` shows every recent change.
FLAGS = Topic("stumpcast.flags", 1, "Feature flag and degradation level changes, with who, when "
              "and why (compacted per flag after 30 days).", compacted=True,
              config={"min.compaction.lag.ms": str(30 * _DAY_MS)})
SMOKE = Topic("stumpcast.smoke", 1, "Round trips of `make demo`'s smoke run and stack tests.",
              retention_ms=3600 * 1000)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of a keyed record written with librdkafka's default partitioner,
    ``consistent_random``: CRC-32 of the key bytes modulo the topic's partition count.

    The notification relay (``streams/relay.py``) leaves ``partitioner`` unset, so a match's
    notifications are all in ``partition_for(match_id.encode(), n)``. Not valid for producers
    set to ``murmur2_random`` (the Java client's default; heartbeats, analytics), nor for an
    empty key, which ``consistent_random`` places at random.
    """
    if not key:
        raise ValueError("an empty key has no fixed partition")
    return zlib.crc32(key) % partitions


TOPICS: tuple[Topic, ...] = (
    MATCH_EVENTS, MATCH_EVENTS_DLQ, NOTIFICATIONS, NOTIFY_RELAY, SCORECARDS, VIEWER_HEARTBEATS,
    ANALYTICS_CONCURRENCY, MEDIA_SEGMENTS, SMOKE, FLAGS,
)

# Consumer groups, one per service role.
GROUP_STREAMS = "stumpcast-streams"
GROUP_MEDIA_MARKERS = "stumpcast-media-markers"


def media_markers_group(match_id: str) -> str:
    """The media worker's consumer group for one match's markers (one group per match)."""
    return f"{GROUP_MEDIA_MARKERS}.{match_id}"
GROUP_NOTIFIER = "stumpcast-notifier"
GROUP_ANALYTICS = "stumpcast-analytics"
# Readers of the flags topic (``stumpcast flags history|sync``) use groups under this prefix.
FLAGS_GROUP_PREFIX = "flags-"


# -- Cassandra: the event store -------------------------------------------------------------

EVENTS_TABLE = "match_events"


def keyspace_cql(keyspace: str, replication: dict[str, Any]) -> str:
    def literal(v: Any) -> str:
        return f"'{v}'"

    body = ", ".join(f"{literal(k)}: {literal(v)}" for k, v in replication.items())
    return f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {{{body}}}"


def tables_cql(keyspace: str) -> list[str]:
    """One partition per match, clustered by seq: a match's log reads back in order."""
    return [
        f"""CREATE TABLE IF NOT EXISTS {keyspace}.{EVENTS_TABLE} (
            match_id text,
            seq bigint,
            event_id text,
            type text,
            ts timestamp,
            body blob,
            PRIMARY KEY ((match_id), seq)
        ) WITH CLUSTERING ORDER BY (seq ASC)""",
    ]


# -- Redis key layout ---------------------------------------------------------------------

REDIS_PREFIX = "stumpcast:"


def match_tag(match_id: str) -> str:
    """``{match_id}``: the Redis Cluster hash tag every per-match key ends with.

    Redis Cluster hashes only the part between the first ``{`` and the next ``}`` of a key
    (cluster spec, "Hash tags"), so every key of one match lands in one slot and the view commit
    (one Lua script over the card, position, history and notifications) runs on one node instead
    of failing with CROSSSLOT. The prefix before the tag has no brace, so the tag is always the
    match id's, whatever the id holds after a ``}``; single-node Redis ignores tags.
    """
    return f"{{{match_id}}}"


class RedisKeys:
    """Every Redis key stumpcast uses. Methods, not f-strings at call sites.

    Per-match keys end with the match's hash tag (``match_tag``): one match, one cluster slot.
    Keys of no match (``live_matches``, the webhook keys, ...) have no tag and may live on any
    node; no script touches them together with a match's keys.
    """

    prefix = REDIS_PREFIX

    @staticmethod
    def card(match_id: str) -> str:
        """The scorecard document (JSON bytes)."""
        return f"{REDIS_PREFIX}card:{match_tag(match_id)}"

    @staticmethod
    def position(match_id: str) -> str:
        """Hash {epoch, seq}: the position of the view. Moves with the card, atomically."""
        return f"{REDIS_PREFIX}pos:{match_tag(match_id)}"

    @staticmethod
    def history(match_id: str) -> str:
        """Stream of updates (what changed) for clients that resume by position."""
        return f"{REDIS_PREFIX}hist:{match_tag(match_id)}"

    @staticmethod
    def notifications(match_id: str) -> str:
        """Stream of notification messages for the match's notifications channel."""
        return f"{REDIS_PREFIX}notes:{match_tag(match_id)}"

    @staticmethod
    def watching(match_id: str) -> str:
        """Stream of the match's "N watching" counter for the gateway (analytics worker).

        Each entry's field ``UPDATE_FIELD`` ("u") holds ``schemas.heartbeats.Watching.encode()``
        bytes: ``{"type": "watching", "v": 1, "match_id", "concurrent", "views",
        "window_start_ms", "window_end_ms", "final", "ts_ms", "views_mode"}``. Auto IDs, capped
        (``MAXLEN ~ 100``), appended at most once a second per worker and only on a change; read
        the newest with ``XREVRANGE key + - COUNT 1``, follow with ``XREAD``.
        """
        return f"{REDIS_PREFIX}watching:{match_tag(match_id)}"

    @staticmethod
    def concurrency(match_id: str) -> str:
        """Hash of the newest complete final window: field "{region}|{cdn}" ("*|*" = match
        total) -> JSON ``[sessions, beats, bitrate_sum_kbps, buffering_ms]``; field
        ``_window_start_ms`` says which window."""
        return f"{REDIS_PREFIX}conc:{match_tag(match_id)}"

    @staticmethod
    def concurrency_partials(match_id: str, window_start_ms: int, final: bool) -> str:
        """Hash partition -> that partition's partial of one window (analytics merge, 1 h TTL);
        final windows and the live (provisional) newest window are kept apart."""
        return (f"{REDIS_PREFIX}conc:part:{'f' if final else 'p'}:{match_tag(match_id)}:"
                f"{window_start_ms}")

    @staticmethod
    def views(match_id: str, mode: str = "exact") -> str:
        """Distinct sessions ever: a set (mode "exact") or a HyperLogLog (mode "hll")."""
        return f"{REDIS_PREFIX}views:{match_tag(match_id)}" if mode == "exact" else \
            f"{REDIS_PREFIX}views:{mode}:{match_tag(match_id)}"

    # Webhook delivery (notifier): subscriptions, delivered ids, dead letters, playheads.
    webhooks = f"{REDIS_PREFIX}webhooks"             # hash id -> subscription JSON
    spoiler_sessions = f"{REDIS_PREFIX}nospoil"      # set of sessions with a no-spoilers hook
    playheads = f"{REDIS_PREFIX}playheads"           # hash session -> playhead PDT, ms
    webhook_dead_letters = f"{REDIS_PREFIX}wh:dlq"   # stream of undeliverable notifications
    # Content steering (media.steering): operators' pins and drains, "pin:<region>" -> CDN
    # ("*": every region), "drain:<cdn>" -> "1"; written by `stumpcast steering`.
    steering_overrides = f"{REDIS_PREFIX}steer:overrides"

    @staticmethod
    def webhook_delivered(subscription_id: str) -> str:
        """Set of notification ids delivered to one webhook (idempotency, 7-day TTL)."""
        return f"{REDIS_PREFIX}wh:done:{subscription_id}"

    @staticmethod
    def health(service: str) -> str:
        """A heartbeat key with an expiry, one per service instance."""
        return f"{REDIS_PREFIX}health:{service}"

    @staticmethod
    def ingest_seqs(match_id: str) -> str:
        """Hash seq -> event_id written through the ingest API ("~" prefix: being written)."""
        return f"{REDIS_PREFIX}ingest:seq:{match_tag(match_id)}"

    @staticmethod
    def ingest_ids(match_id: str) -> str:
        """Hash event_id -> seq written through the ingest API (idempotency by event_id)."""
        return f"{REDIS_PREFIX}ingest:id:{match_tag(match_id)}"

    # Feature flags (schemas/flags.py): the current change per flag (hash flag -> change JSON
    # with its version), and the stream of changes every gateway follows (field "u").
    flags = f"{REDIS_PREFIX}flags"
    flags_log = f"{REDIS_PREFIX}flags:log"

    live_matches = f"{REDIS_PREFIX}live"
    smoke = f"{REDIS_PREFIX}smoke"

    # The inverse of the per-match keys a reader gets back from Redis (XREAD names its streams):
    # the key's middle segment -> the method that builds it. Only keys that are exactly
    # "{prefix}{segment}:{{match_id}}" with no other family under the segment, so a match id
    # may itself contain ":" or "}" ("conc:" and "views:" have sub-families and are not listed).
    _MATCH_KINDS = {"card": "card", "pos": "position", "hist": "history",
                    "notes": "notifications", "watching": "watching"}

    @staticmethod
    def match_of(key: str | bytes) -> tuple[str, str]:
        """``(kind, match_id)`` of a per-match key, ``kind`` the name of the method that builds
        it: ``match_of(RedisKeys.history(m)) == ("history", m)``. ValueError on any other key."""
        text = key.decode() if isinstance(key, bytes) else key
        segment, sep, tagged = text.removeprefix(REDIS_PREFIX).partition(":")
        kind = RedisKeys._MATCH_KINDS.get(segment)
        match_id = tagged[1:-1]
        if kind is None or not sep or not text.startswith(REDIS_PREFIX) or not match_id \
                or tagged != match_tag(match_id):
            raise ValueError(f"not a per-match stumpcast key: {text!r}")
        return kind, match_id
