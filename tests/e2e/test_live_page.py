"""The live match page in a real browser (Debian's Chromium, headless) against real services.

Each test replays the 2023 IPL final (Cricsheet, ODC-BY 1.0) under its own match id, at high
speed. Screenshots of the key moments go to ``test-artifacts/e2e``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from e2e_helpers import ARTIFACTS, SEGMENT_S, fold_card, free_port, shot, wait_for

from runtime.redisconn import sync_redis
from schemas.store_access import RedisUser
from tests.kafka_access import admin_config

pytestmark = [pytest.mark.stack, pytest.mark.media, pytest.mark.slow]

STATE = """() => {
  const s = window.stumpcast; if (!s) return null;
  const d = s.player.playingDate();
  return { playing: d ? d.getTime() : null, currentTime: s.player.video.currentTime,
           seq: s.conn.match.seq,
           shown: Number(document.querySelector('#scorecard').dataset.seq || 0),
           held: s.reveal.cards.map((c) => c.at), error: s.player.error };
}"""
PLAYING = "() => window.stumpcast && window.stumpcast.player.playingDate() !== null"


def unique(kind: str) -> str:
    return f"e2e-{kind}-{uuid.uuid4().hex[:8]}"


def state(page: Any) -> dict[str, Any]:
    return dict(page.evaluate(STATE))


class HeartbeatTap:
    """Reads ``viewer.heartbeats`` from the offsets it saw when made: only new beats."""

    def __init__(self, settings: Any) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from schemas.topology import VIEWER_HEARTBEATS

        self.consumer = Consumer({**admin_config(settings),
                                  "group.id": unique("beats"), "enable.auto.commit": False})
        topic = VIEWER_HEARTBEATS.name
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = [TopicPartition(topic, p, self.consumer.get_watermark_offsets(
            TopicPartition(topic, p), timeout=10)[1]) for p in parts]
        self.consumer.assign(ends)

    def beats_of(self, session_id: str, timeout: float) -> list[Any]:
        """The session's beats, until one carries a playhead (the video is playing)."""
        from schemas.heartbeats import decode

        found: list[Any] = []
        deadline = time.time() + timeout
        while not any(b.playhead_ms > 0 for b in found) and time.time() < deadline:
            for msg in self.consumer.consume(500, 0.5):
                if not msg.error() and msg.key() == session_id.encode():
                    found.append(decode(msg.value() or b""))
        self.consumer.close()
        return found


def test_page_loads_and_the_video_plays(page, e2e, media_worker, replay, settings) -> None:
    match_id = unique("video")
    media_worker(match_id)
    replay(match_id, speed=100)
    tap = HeartbeatTap(settings)
    page.goto(e2e.page_url(match_id).split("#")[0])
    link = page.locator(f'a[data-match="{match_id}"]')
    link.wait_for(timeout=30_000)
    shot(page, "01-match-list")
    link.click()
    wait_for(page, PLAYING, 45)
    first = state(page)
    time.sleep(3)
    later = state(page)
    assert later["playing"] - first["playing"] >= 1500, (first, later)
    assert later["currentTime"] > first["currentTime"]
    assert page.locator("#score").inner_text()
    assert "Cricsheet" in page.locator("footer").inner_text()
    # The player reports itself: heartbeats through the gateway into viewer.heartbeats.
    session_id = page.evaluate("() => window.stumpcast.heartbeat.sessionId")
    beats = tap.beats_of(session_id, timeout=15)
    assert beats and beats[0].match_id == match_id and beats[0].device == "web", beats
    assert any(b.playhead_ms > 0 for b in beats), beats
    shot(page, "02-match-view")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    time.sleep(0.5)
    overflow = page.evaluate("() => document.documentElement.scrollWidth")
    assert overflow <= 390, f"page is {overflow}px wide on a 390px screen"
    assert page.locator("video").bounding_box()["width"] <= 390
    shot(page, "03-phone")
    assert not page.errors, page.errors


def test_scorecard_matches_the_pure_fold(page, e2e, replay) -> None:
    match_id = unique("fold")
    expected = fold_card(match_id)
    page.goto(e2e.page_url(match_id))
    replay(match_id, speed=0, live=False)  # as fast as Kafka takes it: conflation, resyncs
    final = expected["seq"]
    wait_for(page, "(n) => window.stumpcast.conn.match.seq === n "
             "&& Number(document.querySelector('#scorecard').dataset.seq) === n", 90, final)
    card = page.evaluate("() => window.stumpcast.conn.match.card")
    assert card == expected
    last = expected["innings"][-1]
    assert page.locator("#score").inner_text() == f"{last['runs']}/{last['wickets']}"
    assert page.locator("#result").inner_text() == expected["result"]["text"]
    batters = page.locator("table.batting tbody tr").count()
    assert batters == len(last["batting"])
    shot(page, "04-final-scorecard")
    assert not page.errors, page.errors


def test_wicket_marker_and_seeking_to_it(page, e2e, media_worker, replay) -> None:
    match_id = unique("marker")
    media_worker(match_id)
    page.goto(e2e.page_url(match_id))
    wait_for(page, PLAYING, 45)
    replay(match_id, speed=200)  # the first wicket (6.6 ov) about 15 s in
    marker = page.locator(".marker[data-kind=wicket]").first
    marker.wait_for(state="attached", timeout=75_000)
    wait_for(page, "() => [...document.querySelectorAll('.marker[data-kind=wicket]')]"
             ".some((b) => !b.hidden)", 20)
    shot(page, "05-wicket-marker")
    wicket = page.evaluate("""() => [...window.stumpcast.player.markers.values()]
        .find((m) => m.kind === 'wicket')""")
    assert "WICKET" in wicket["text"]
    page.evaluate("""(id) => new Promise((resolve) => {
        const v = window.stumpcast.player.video;
        v.addEventListener('seeked', resolve, { once: true });
        document.querySelector(`.marker[data-id="${id}"]`).click();
    })""", wicket["id"])
    landed = state(page)["playing"]
    assert landed is not None
    assert abs(landed - wicket["startDate"]) <= SEGMENT_S * 1000, (landed, wicket)
    time.sleep(1)
    shot(page, "06-seeked-to-wicket")
    assert not page.errors, page.errors


def test_sync_with_video_holds_updates_until_the_playhead(page, e2e, media_worker,
                                                          replay) -> None:
    match_id = unique("sync")
    media_worker(match_id)
    page.goto(e2e.page_url(match_id, sync=True))
    wait_for(page, PLAYING, 45)
    replay(match_id, speed=100)
    wait_for(page, "() => window.stumpcast.conn.match.seq >= 20", 60)
    samples = []
    for _ in range(20):
        samples.append(state(page))
        time.sleep(0.5)
    held = [s for s in samples if s["shown"] < s["seq"]]
    assert held, "no update was ever held back for the video"
    for s in samples:  # what is held is ahead of the playhead (give or take one 250 ms tick)
        behind = [s["playing"] - at for at in s["held"]]
        assert max(behind, default=0) < 1000, (behind, s)
    shot(page, "07-sync-holding")
    log = page.evaluate("() => window.stumpcast.reveal.log")
    revealed = [e for e in log if e["playhead"] is not None]
    assert revealed
    assert all(e["playhead"] >= e["ts"] for e in revealed), revealed
    assert max(e["shown"] - e["received"] for e in revealed) >= 1000
    page.locator("#sync").uncheck()  # sync off: everything now, nothing held
    wait_for(page, "() => window.stumpcast.reveal.cards.length === 0 && "
             "Number(document.querySelector('#scorecard').dataset.seq) === "
             "window.stumpcast.conn.match.seq", 5)
    assert not page.errors, page.errors


def test_page_survives_a_gateway_kill_and_misses_nothing(page, e2e, replay, settings) -> None:

    from schemas.notifications import decode, parse_note_id
    from schemas.topology import RedisKeys

    match_id = unique("restart")
    expected = fold_card(match_id)
    port = free_port()  # a gateway of our own, so the session's is not disturbed
    # and its own admin port: with the session's, both would answer the session's /metrics
    env = {"STUMPCAST_GATEWAY_PORT": str(port), "STUMPCAST_GATEWAY_ADMIN_PORT": str(free_port())}
    ready = f"http://127.0.0.1:{port}/readyz"
    gateway = e2e.spawn("gateway-restart", ["gateway", "serve"], ready, env)
    url = e2e.page_url(match_id).replace(f":{e2e.gateway_port}/", f":{port}/")
    page.goto(url)
    replay(match_id, speed=300)
    wait_for(page, "() => window.stumpcast.conn.match.seq >= 60", 60)
    gateway.kill()  # SIGKILL: no close frame, as in a crash
    wait_for(page, "() => window.stumpcast.conn.ws.readyState === WebSocket.CLOSED", 10)
    shot(page, "08-gateway-down")
    time.sleep(3)  # the match goes on without the gateway
    e2e.spawn("gateway-restart", ["gateway", "serve"], ready, env)
    wait_for(page, "(n) => window.stumpcast.conn.match.seq === n", 120, expected["seq"])
    shot(page, "09-after-reconnect")
    conn = page.evaluate("() => ({stats: window.stumpcast.conn.stats, "
                         "journal: window.stumpcast.conn.journal})")
    assert conn["stats"]["connects"] >= 2
    assert page.evaluate("() => window.stumpcast.conn.match.card") == expected
    journal = conn["journal"]
    subs = [e for e in journal if e.get("subscribed", "").startswith("match:")]
    assert len(subs) >= 2 and subs[-1]["recovered"], subs  # resumed by position
    (ARTIFACTS / "restart-journal.json").write_text(json.dumps(journal, indent=1))
    held = 0  # every update applied on top of the position held; a snapshot never goes back
    for e in journal:
        if "update" in e:
            assert e["prev"] == held, e
            held = e["update"]
        elif "snapshot" in e:
            assert e["snapshot"] >= held, e
            held = e["snapshot"]
    # Notifications are never conflated: every one after the first subscription, once.
    first_notes = next(e for e in journal if e.get("subscribed", "").startswith("notes:"))
    client: Any = sync_redis(settings, RedisUser.ADMIN)
    stored = []
    for entry_id, fields in client.xrange(RedisKeys.notifications(match_id)):
        seq = parse_note_id(entry_id)[0]
        if seq > first_notes["seq"]:
            stored.append(decode(fields[b"u"]).id)
    got = [e["note"] for e in journal if "note" in e]
    assert got == stored
    assert not page.errors, page.errors
