"""The exporter's pure parts: event keys, arrival times, CDN rows, allowed sources; and its
collector's families with an empty and a filled snapshot."""

from __future__ import annotations

import orjson

from schemas.settings import Settings
from stumpcast.ops.exporter import (
    MAX_CDNS,
    Exporter,
    Snapshot,
    allowed,
    arrival,
    cdn_rows,
    event_key,
)


class Msg:
    def __init__(self, kind: int, ms: int) -> None:
        self._ts = (kind, ms)

    def timestamp(self) -> tuple[int, int]:
        return self._ts


def test_event_key_reads_match_seq_and_source() -> None:
    raw = orjson.dumps({"type": "delivery", "match_id": "m1", "seq": 12, "source": "scorer:a"})
    assert event_key(raw) == ("m1", 12, "scorer:a")
    assert event_key(b"not json") is None
    assert event_key(orjson.dumps({"match_id": "m1"})) is None
    assert event_key(orjson.dumps({"match_id": "m1", "seq": "x"})) is None


def test_sources_follow_the_workers_allow_list() -> None:
    patterns = Settings.from_env({}).streams_allowed_sources
    assert allowed("cricsheet", patterns) and allowed("scorer:ground-7", patterns)
    assert not allowed("random-bot", patterns)


def test_arrival_is_the_record_time_never_later_than_now() -> None:
    assert arrival(Msg(1, 5_000), now=10.0) == 5.0
    assert arrival(Msg(1, 50_000), now=10.0) == 10.0  # a clock ahead of ours
    assert arrival(Msg(0, -1), now=10.0) == 10.0      # no timestamp


def _window(start_ms: int, rows: dict[str, list[int]]) -> dict[bytes, bytes]:
    out = {b"_window_start_ms": str(start_ms).encode(), b"*|*": b"[9,9,9,9]"}
    out.update({k.encode(): orjson.dumps(v) for k, v in rows.items()})
    return out


def test_cdn_rows_sum_regions_and_matches() -> None:
    now = 1_000_000
    hashes = [_window(now - 20_000, {"in|akamai": [10, 20, 0, 4000], "us|akamai": [5, 10, 0, 0],
                                     "in|fastly": [3, 6, 0, 600]}),
              _window(now - 10_000, {"in|akamai": [1, 2, 0, 0]}),
              _window(now - 120_000, {"in|cloudfront": [100, 200, 0, 0]})]  # too old
    rows = cdn_rows(hashes, now, interval_s=10)
    assert rows == {"akamai": (16, 4.0, 320.0), "fastly": (3, 0.6, 60.0)}


def test_cdn_labels_are_bounded() -> None:
    now = 1_000_000
    many = {f"in|cdn{i}": [100 - i, 1, 0, 0] for i in range(MAX_CDNS + 3)}
    rows = cdn_rows([_window(now, many)], now, interval_s=10)
    assert len(rows) == MAX_CDNS + 1
    assert rows["other"][0] == sum(100 - i for i in range(MAX_CDNS, MAX_CDNS + 3))


def _samples(exporter: Exporter) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in exporter.collect():
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_the_collector_reports_the_snapshot() -> None:
    exporter = Exporter(Settings.from_env({}))
    empty = _samples(exporter)
    assert empty["stumpcast_live_matches"] == [({}, 0.0)]
    assert "stumpcast_view_staleness_seconds" not in empty
    exporter.snap = Snapshot(staleness=[("m1", 12.5)], live=1,
                             lag={("stumpcast-streams", "match.events"): 40},
                             members={"stumpcast-streams": 0},
                             messages={"match.events": 300},
                             cdn={"akamai": (16, 4.0, 320.0)})
    got = _samples(exporter)
    assert got["stumpcast_view_staleness_seconds"] == [({"match": "m1"}, 12.5)]
    assert got["stumpcast_kafka_consumer_lag"] == [
        ({"group": "stumpcast-streams", "topic": "match.events"}, 40.0)]
    assert got["stumpcast_kafka_group_members"] == [({"group": "stumpcast-streams"}, 0.0)]
    assert got["stumpcast_kafka_topic_messages_total"] == [({"topic": "match.events"}, 300.0)]
    assert got["stumpcast_cdn_watch_seconds"] == [({"cdn": "akamai"}, 320.0)]
    assert ({"result": "stale"}, 0.0) in got["stumpcast_view_freshness_checks_total"]


def test_a_failing_part_is_counted_and_the_others_go_on() -> None:
    exporter = Exporter(Settings.from_env({
        "STUMPCAST_KAFKA_BOOTSTRAP": "127.0.0.1:9", "STUMPCAST_REDIS_URL": "redis://127.0.0.1:9/0"}))
    calls = []

    def boom(now: float) -> None:
        calls.append("events")
        raise RuntimeError("kafka says no")

    exporter._read_events = boom  # type: ignore[method-assign]
    exporter._read_kafka = lambda now: calls.append("kafka")  # type: ignore[method-assign]
    exporter._read_views = lambda now: calls.append("views")  # type: ignore[method-assign]
    exporter._read_cdn = lambda now: calls.append("cdn")  # type: ignore[method-assign]
    exporter.refresh(0.0)
    assert calls == ["events", "views", "kafka", "cdn"]
    assert exporter.snap.errors["events"] == 1 and exporter.ready
