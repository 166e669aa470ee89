"""What the operations server measures from outside the services, as Prometheus metrics.

A service cannot report that it is gone: a stopped streams worker has no ``/metrics``, so its
consumer lag and its views' freshness must be measured by someone else (as Burrow or
kafka-exporter do for lag). One thread here, every ``REFRESH`` seconds:

* reads the new records of ``match.events`` (no consumer group; at start, from
  ``LIVE_SECONDS`` back) and gives each event's (match, seq, arrival) to ``ViewTracker``;
* reads each live match's view position from Redis and updates the tracker: the per-match
  **staleness** and the fresh/stale **checks** of the freshness SLO;
* every ``KAFKA_EVERY`` seconds, asks Kafka for the end offsets of the watched topics, the
  committed offsets and members of the service groups (``schemas.topology``): **lag per group**,
  **members per group**, **messages per topic**;
* reads the newest final analytics window of each live match (``RedisKeys.concurrency``):
  **viewers, buffering and watch time per CDN**.

Labels are bounded: ``match`` by ``MAX_MATCHES`` live matches, ``cdn`` by ``MAX_CDNS`` (the
rest summed as ``other``), ``group`` and ``topic`` by the topology's fixed lists, ``result`` and
``part`` by fixed sets. A part that fails counts ``stumpcast_ops_refresh_errors_total{part}``
and keeps its last values; the others go on.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.settings import Settings
from schemas.topology import (
    GROUP_ANALYTICS,
    GROUP_NOTIFIER,
    GROUP_STREAMS,
    MATCH_EVENTS,
    MATCH_EVENTS_DLQ,
    NOTIFICATIONS,
    VIEWER_HEARTBEATS,
    RedisKeys,
)
from stumpcast.ops.views import FRESH_SECONDS, LIVE_SECONDS, ViewTracker

log = logging.getLogger(__name__)

REFRESH = 1.0
KAFKA_EVERY = 5.0
MAX_MATCHES = 20
MAX_CDNS = 8
GROUPS = (GROUP_STREAMS, GROUP_ANALYTICS, GROUP_NOTIFIER)
TOPICS = (MATCH_EVENTS.name, MATCH_EVENTS_DLQ.name, NOTIFICATIONS.name, VIEWER_HEARTBEATS.name)
PARTS = ("events", "views", "kafka", "cdn")
WINDOW_MAX_AGE_MS = 60_000  # an analytics window older than this is not "now"


@dataclass
class Snapshot:
    """The last values of every metric, replaced whole under the lock."""

    staleness: list[tuple[str, float]] = field(default_factory=list)
    live: int = 0
    checks: dict[str, int] = field(default_factory=lambda: {"fresh": 0, "stale": 0})
    lag: dict[tuple[str, str], int] = field(default_factory=dict)
    members: dict[str, int] = field(default_factory=dict)
    messages: dict[str, int] = field(default_factory=dict)
    cdn: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PARTS, 0))


def allowed(source: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(source, p) for p in patterns)


def event_key(raw: bytes) -> tuple[str, int, str] | None:
    """(match_id, seq, source) of an encoded event; None if it is not one (the workers
    dead-letter it: it will never be applied, so it is never pending)."""
    try:
        doc = orjson.loads(raw)
        return str(doc["match_id"]), int(doc["seq"]), str(doc.get("source", ""))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def arrival(msg: Any, now: float) -> float:
    """When the record was written: its Kafka timestamp (the producer's clock, which is this
    machine's for the local stack), never later than ``now``. Records read back at start so
    get their real age instead of "now"."""
    kind, ms = msg.timestamp()
    return min(now, ms / 1000) if kind != 0 and ms > 0 else now  # 0: TIMESTAMP_NOT_AVAILABLE


def cdn_rows(hashes: Sequence[dict[bytes, bytes]], now_ms: int, interval_s: float
             ) -> dict[str, tuple[float, float, float]]:
    """cdn -> (viewers, buffering seconds, watch seconds) over the matches' newest final
    windows (``RedisKeys.concurrency``: "region|cdn" -> [sessions, beats, bitrate_sum,
    buffering_ms]); windows older than a minute are left out; beyond ``MAX_CDNS`` the
    smallest are summed as ``other``."""
    total: dict[str, list[float]] = {}
    for h in hashes:
        start = int(h.get(b"_window_start_ms", b"0") or 0)
        if now_ms - start > WINDOW_MAX_AGE_MS:
            continue
        for key, raw in h.items():
            region_cdn = key.decode(errors="replace")
            if region_cdn.startswith("_") or region_cdn == "*|*" or "|" not in region_cdn:
                continue
            try:
                sessions, beats, _bitrate, buffering_ms = orjson.loads(raw)[:4]
            except (orjson.JSONDecodeError, ValueError, TypeError):
                continue
            row = total.setdefault(region_cdn.split("|", 1)[1], [0.0, 0.0, 0.0])
            row[0] += sessions
            row[1] += buffering_ms / 1000
            row[2] += beats * interval_s
    ranked = sorted(total.items(), key=lambda kv: -kv[1][0])
    out = {k: (v[0], v[1], v[2]) for k, v in ranked[:MAX_CDNS]}
    if len(ranked) > MAX_CDNS:
        rest = [v for _, v in ranked[MAX_CDNS:]]
        out["other"] = tuple(sum(col) for col in zip(*rest, strict=True))  # type: ignore[assignment]
    return out


class Exporter:
    """The measuring thread and a Prometheus collector of its last snapshot."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tracker = ViewTracker()
        self.snap = Snapshot()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer: Any = None
        self._admin: Any = None
        self._redis: Any = None
        self._next_kafka = 0.0
        self.ready = False

    # -- the thread ----------------------------------------------------------------------------

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="ops-exporter", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.refresh(time.time())
            self._stop.wait(max(0.0, REFRESH - (time.monotonic() - started)))
        if self._consumer is not None:
            self._consumer.close()

    def refresh(self, now: float) -> None:
        """One round; each part's failure is counted and logged, never raised."""
        for part, step in (("events", self._read_events), ("views", self._read_views),
                           ("kafka", self._read_kafka), ("cdn", self._read_cdn)):
            try:
                step(now)
            except Exception as exc:  # noqa: BLE001 - a foreign error of any client
                with self._lock:
                    self.snap.errors[part] += 1
                log.warning("ops exporter: %s failed", part, extra={"error": str(exc)})
        self.ready = True

    # -- match.events --------------------------------------------------------------------------

    def _read_events(self, now: float) -> None:
        if self._consumer is None:
            self._consumer = self._open_consumer(now)
            if self._consumer is None:
                return
        patterns = self.settings.streams_allowed_sources
        for msg in self._consumer.consume(num_messages=5000, timeout=0.2):
            if msg.error() is not None or msg.value() is None:
                continue
            key = event_key(msg.value())
            if key is not None and allowed(key[2], patterns):
                self.tracker.event(key[0], key[1], arrival(msg, time.time()))

    def _open_consumer(self, now: float) -> Any:
        """A consumer assigned to every partition of match.events, from ``LIVE_SECONDS`` ago
        (the end where nothing is that recent); None while the topic does not exist."""
        from confluent_kafka import OFFSET_END, Consumer, TopicPartition

        from runtime.kafka import client_config
        from schemas.access import Principal

        consumer = Consumer({**client_config(self.settings, Principal.ADMIN),
                             "group.id": "stumpcast-ops-exporter",
                             "enable.auto.commit": False, "enable.partition.eof": False})
        try:
            topic = consumer.list_topics(MATCH_EVENTS.name, timeout=5).topics.get(
                MATCH_EVENTS.name)
            if topic is None or topic.error is not None or not topic.partitions:
                consumer.close()
                return None
            since = int((now - LIVE_SECONDS) * 1000)
            wanted = [TopicPartition(MATCH_EVENTS.name, p, since) for p in topic.partitions]
            found = consumer.offsets_for_times(wanted, timeout=10)
            consumer.assign([TopicPartition(tp.topic, tp.partition,
                                            tp.offset if tp.offset >= 0 else OFFSET_END)
                             for tp in found])
        except Exception:
            consumer.close()  # the next round opens a new one
            raise
        return consumer

    # -- Redis: view positions and analytics windows -------------------------------------------

    def _client(self) -> Any:
        if self._redis is None:
            from runtime.redisconn import sync_redis
            from schemas.store_access import RedisUser

            self._redis = sync_redis(self.settings, RedisUser.OPS, socket_timeout=2,
                                     socket_connect_timeout=2)
        return self._redis

    def flags(self) -> dict[bytes, bytes]:
        """The current flags (the degradation level among them) for the /ops page."""
        from schemas.topology import RedisKeys

        return dict(self._client().hgetall(RedisKeys.flags))

    def _read_views(self, now: float) -> None:
        live = self.tracker.live(now)
        if live:
            with self._client().pipeline(transaction=False) as pipe:
                for m in live:
                    pipe.hget(RedisKeys.position(m), "seq")
                seqs = pipe.execute()
            for m, seq in zip(live, seqs, strict=True):
                self.tracker.view(m, int(seq) if seq is not None else None)
        checks = {"fresh": 0, "stale": 0}
        for m in live:
            checks["stale" if self.tracker.staleness(m, now) > FRESH_SECONDS else "fresh"] += 1
        with self._lock:
            self.snap.staleness = self.tracker.snapshot(now, MAX_MATCHES)
            self.snap.live = len(live)
            for k, v in checks.items():
                self.snap.checks[k] += v

    def _read_cdn(self, now: float) -> None:
        client = self._client()
        recent = client.zrangebyscore(RedisKeys.live_matches, int((now - LIVE_SECONDS) * 1000),
                                      "+inf", start=0, num=MAX_MATCHES * 5)
        matches = {m.decode() if isinstance(m, bytes) else str(m) for m in recent}
        matches.update(self.tracker.live(now))
        with client.pipeline(transaction=False) as pipe:
            for m in sorted(matches):
                pipe.hgetall(RedisKeys.concurrency(m))
            hashes = pipe.execute() if matches else []
        rows = cdn_rows(hashes, int(now * 1000), float(self.settings.heartbeat_interval))
        with self._lock:
            self.snap.cdn = rows

    # -- Kafka: groups and topics ------------------------------------------------------------

    def _read_kafka(self, now: float) -> None:
        if time.monotonic() < self._next_kafka:
            return
        self._next_kafka = time.monotonic() + KAFKA_EVERY
        from stumpcast.ops.kafka_groups import group_state, topic_ends

        if self._admin is None:
            from confluent_kafka.admin import AdminClient

            from runtime.kafka import client_config
            from schemas.access import Principal

            self._admin = AdminClient(client_config(self.settings, Principal.ADMIN))
        ends = topic_ends(self._admin, TOPICS)
        lag, members = group_state(self._admin, GROUPS, ends)
        with self._lock:
            self.snap.messages = {t: sum(p.values()) for t, p in ends.items()}
            self.snap.lag, self.snap.members = lag, members

    # -- the collector -------------------------------------------------------------------------

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        with self._lock:
            s = Snapshot(list(self.snap.staleness), self.snap.live, dict(self.snap.checks),
                         dict(self.snap.lag), dict(self.snap.members), dict(self.snap.messages),
                         dict(self.snap.cdn), dict(self.snap.errors))
        yield _gauge("stumpcast_view_staleness_seconds", "Age of the oldest event of a live "
                     "match that its view has not taken (0: up to date).", ["match"],
                     [([m], v) for m, v in s.staleness])
        yield _gauge("stumpcast_live_matches", "Matches with an event in the last 10 minutes "
                     "or one pending.", [], [([], float(s.live))])
        checks = CounterMetricFamily(
            "stumpcast_view_freshness_checks", "Once a second per live match: fresh (view "
            "within 10 s of its events) or stale.", labels=["result"])
        for result, n in s.checks.items():
            checks.add_metric([result], float(n))
        yield checks
        yield _gauge("stumpcast_kafka_consumer_lag", "Messages after a service group's "
                     "committed offsets, summed over partitions.", ["group", "topic"],
                     [([g, t], float(v)) for (g, t), v in s.lag.items()])
        yield _gauge("stumpcast_kafka_group_members", "Members of a service consumer group "
                     "the broker knows.", ["group"],
                     [([g], float(v)) for g, v in s.members.items()])
        messages = CounterMetricFamily("stumpcast_kafka_topic_messages", "Messages ever "
                                       "written to a topic (sum of end offsets).",
                                       labels=["topic"])
        for topic, n in s.messages.items():
            messages.add_metric([topic], float(n))
        yield messages
        for i, (name, doc) in enumerate((
                ("stumpcast_cdn_viewers", "Concurrent viewers per CDN (newest final window)."),
                ("stumpcast_cdn_buffering_seconds", "Buffering time per CDN in that window."),
                ("stumpcast_cdn_watch_seconds", "Watch time per CDN in that window (beats x "
                 "heartbeat interval)."))):
            yield _gauge(name, doc, ["cdn"], [([c], v[i]) for c, v in s.cdn.items()])
        errors = CounterMetricFamily("stumpcast_ops_refresh_errors", "Measurements of the "
                                     "operations server that failed, by part.", labels=["part"])
        for part, n in s.errors.items():
            errors.add_metric([part], float(n))
        yield errors


def _gauge(name: str, doc: str, labels: list[str],
           rows: list[tuple[list[str], float]]) -> Any:
    from prometheus_client.core import GaugeMetricFamily

    g = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in rows:
        g.add_metric(values, value)
    return g
