"""A simulated audience with known arrivals and departures, and its exact expected figures.

Each session arrives at a random instant, beats every ``step_ms`` (with a random phase) while it
watches, and leaves; some switch CDN halfway. ``expected`` counts distinct sessions per window by
brute force from the beats themselves, independently of the code under test.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

from schemas.heartbeats import Heartbeat

REGIONS = ("mumbai", "delhi", "chennai")
CDNS = ("akamai", "cloudfront", "jio-edge")


@dataclass(frozen=True)
class Audience:
    beats: list[Heartbeat]
    step_ms: int
    t0: int


def simulate(match_id: str, sessions: int, t0: int, span_ms: int, step_ms: int = 10_000,
             seed: int = 7) -> Audience:
    rng = random.Random(seed)
    beats: list[Heartbeat] = []
    for i in range(sessions):
        arrive = t0 + rng.randrange(0, span_ms)
        leave = min(t0 + span_ms, arrive + rng.randrange(step_ms, span_ms))
        region, cdn = rng.choice(REGIONS), rng.choice(CDNS)
        switch_at = arrive + (leave - arrive) // 2 if rng.random() < 0.2 else None
        ts = arrive
        while ts < leave:
            if switch_at is not None and ts >= switch_at:
                cdn = CDNS[(CDNS.index(cdn) + 1) % len(CDNS)]
                switch_at = None
            beats.append(Heartbeat(f"{match_id}-s{i}", match_id, region, cdn,
                                   rng.choice((400, 800, 1600, 3000)), rng.choice((0, 0, 0, 250)),
                                   ts - 20_000, "web", ts))
            ts += step_ms
    beats.sort(key=lambda b: b.ts_ms)
    return Audience(beats, step_ms, t0)


def expected(beats: list[Heartbeat], step_ms: int,
             size: int = 2) -> dict[int, dict[tuple[str, str], tuple[int, int, int, int]]]:
    """window start ms -> group -> (sessions, beats, bitrate_sum, buffering_ms), brute force."""
    sets: dict[int, dict[tuple[str, str], set[str]]] = defaultdict(lambda: defaultdict(set))
    sums: dict[int, dict[tuple[str, str], list[int]]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0, 0]))
    for b in beats:
        bucket = b.ts_ms // step_ms
        for k in range(bucket - size + 1, bucket + 1):
            for g in ((b.region, b.cdn), ("*", "*")):
                sets[k * step_ms][g].add(b.session_id)
                s = sums[k * step_ms][g]
                s[0] += 1
                s[1] += b.bitrate_kbps
                s[2] += b.buffering_ms
    return {w: {g: (len(ss), *sums[w][g]) for g, ss in groups.items()}
            for w, groups in sets.items()}
