"""The multi-CDN optimizer: which pathway (CDN) each region's players use, from live quality.

Pure: no I/O, no clock (times are passed in). The shell (``media.steering_server``) feeds it
the analytics worker's per-window figures (``schemas.heartbeats.ConcurrencyRecord``: sessions,
average bitrate and rebuffering ratio per match, region and CDN), the operators' overrides, and
the time; it answers each player's steering request with ``Optimizer.priority``.

The rules, per region, with hysteresis so that one bad minute does not flap an audience:

* A window of a CDN is **bad** when its players spent more than ``rebuffer_max`` of their time
  rebuffering, or played below ``bitrate_floor`` of the region's reference bitrate (the best
  recent average of any CDN there, decaying with a half-life, so a device mix that changes
  slowly moves it). A window without sessions says nothing.
* The region **moves** off its primary CDN after ``bad_windows`` (3) consecutive bad windows,
  to the first other CDN whose last window was not bad. The analytics windows are two
  heartbeat intervals long and start every interval, so one bad interval is in two windows:
  three in a row take at least two bad intervals. It then stays off for ``hold_down``.
* It **returns gradually**: after the hold-down a share of its players (by bucket: ``ramp``,
  25% then 50%) is sent back first to the CDN it left; each step lasts ``ramp_step`` and the
  next one comes only if no bad window was seen there since the step began. At 100% the CDN
  is the primary again. A bad window during a step ends the probe, and the next hold-down is
  twice as long (up to ``max_backoff`` times).
* Operators override all of it: a CDN **pinned** for a region (or for every region, "*") is
  first there; a **drained** CDN is last everywhere (kept as the players' last resort).

hls.js takes the first pathway of ``PATHWAY-PRIORITY`` it has not penalised itself (after its
own load errors, for 300 s), so the client-side failover still works when this is slow.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

REGION = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
ALL_REGIONS = "*"
BUCKETS = 100
STEERING_VERSION = 1  # the steering manifest's VERSION (HLS Content Steering spec, v1)


def valid_region(raw: str) -> bool:
    return bool(REGION.match(raw))


@dataclass(frozen=True, slots=True)
class Quality:
    """One analytics window of one CDN in one region."""

    region: str
    cdn: str
    window_end_ms: int
    sessions: int
    avg_bitrate_kbps: float
    rebuffering_ratio: float


@dataclass(frozen=True)
class Policy:
    pathways: tuple[str, ...]
    rebuffer_max: float = 0.02        # stalled > 2% of the time
    bitrate_floor: float = 0.6        # below 60% of the region's reference bitrate
    bad_windows: int = 3
    hold_down_ms: int = 60_000
    ramp_step_ms: int = 20_000
    ramp: tuple[int, ...] = (25, 50, 100)
    max_backoff: int = 8
    reference_half_life_ms: int = 300_000

    def __post_init__(self) -> None:
        if not self.pathways or len(set(self.pathways)) != len(self.pathways):
            raise ValueError("steering needs at least one pathway, each named once")
        if not self.ramp or self.ramp[-1] != 100 or list(self.ramp) != sorted(self.ramp):
            raise ValueError("the ramp must rise to 100 (percent of a region's players)")


@dataclass
class Health:
    """What the optimizer remembers of one CDN in one region."""

    bad_streak: int = 0
    last_bad_ms: int = -1
    last_window_ms: int = -1
    best_kbps: float = 0.0
    last: Quality | None = None

    def bad(self) -> bool:
        return self.last_bad_ms >= 0 and self.last_bad_ms == self.last_window_ms


@dataclass
class Route:
    """A region's decision: its primary CDN and, after a move, the CDN it left."""

    primary: str
    away: str | None = None      # the CDN it moved off, until it is back
    share: int = 0               # % of buckets sent back first to ``away`` (probing it)
    hold_until_ms: int = 0
    step_since_ms: int = 0
    backoff: int = 1


@dataclass(frozen=True)
class Overrides:
    """Operators' pins (region or "*" -> CDN) and drained CDNs."""

    pins: Mapping[str, str] = field(default_factory=dict)
    drained: frozenset[str] = frozenset()

    @classmethod
    def from_fields(cls, raw: Mapping[str, str]) -> Overrides:
        """From the Redis hash (``RedisKeys.steering_overrides``): ``pin:<region>`` -> CDN,
        ``drain:<cdn>`` -> "1". Fields of another shape are ignored (a newer writer's)."""
        pins: dict[str, str] = {}
        drained: set[str] = set()
        for key, value in raw.items():
            kind, _, name = key.partition(":")
            if kind == "pin" and (name == ALL_REGIONS or valid_region(name)):
                pins[name] = value
            elif kind == "drain" and value == "1":
                drained.add(name)
        return cls(pins, frozenset(drained))


def pin_field(region: str) -> str:
    return f"pin:{region}"


def drain_field(cdn: str) -> str:
    return f"drain:{cdn}"


@dataclass(frozen=True, slots=True)
class Event:
    at_ms: int
    region: str
    what: str


class Optimizer:
    def __init__(self, policy: Policy, events: int = 200) -> None:
        self.policy = policy
        self.health: dict[tuple[str, str], Health] = {}
        self.routes: dict[str, Route] = {}
        self.events: deque[Event] = deque(maxlen=events)

    # -- evidence ------------------------------------------------------------------------------

    def observe(self, q: Quality) -> None:
        """One window's figures; older windows than one already seen, other CDNs, empty
        windows and unknown regions are ignored."""
        if q.cdn not in self.policy.pathways or q.sessions <= 0 or not valid_region(q.region):
            return
        h = self.health.setdefault((q.region, q.cdn), Health())
        if q.window_end_ms <= h.last_window_ms:
            return
        reference = self.reference(q.region, q.window_end_ms)
        bad = q.rebuffering_ratio > self.policy.rebuffer_max or (
            reference > 0 and q.avg_bitrate_kbps < self.policy.bitrate_floor * reference)
        h.best_kbps = max(q.avg_bitrate_kbps, self._decayed(h, q.window_end_ms))
        h.last_window_ms, h.last = q.window_end_ms, q
        if bad:
            h.bad_streak += 1
            h.last_bad_ms = q.window_end_ms
        else:
            h.bad_streak = 0
        self.route(q.region)

    def _decayed(self, h: Health, at_ms: int) -> float:
        if h.last_window_ms < 0:
            return 0.0
        age = max(at_ms - h.last_window_ms, 0)
        return h.best_kbps * math.pow(0.5, age / self.policy.reference_half_life_ms)

    def reference(self, region: str, at_ms: int) -> float:
        """The region's reference bitrate: the best recent average of any of its CDNs."""
        return max((self._decayed(h, at_ms) for (r, _), h in self.health.items()
                    if r == region), default=0.0)

    # -- decisions -----------------------------------------------------------------------------

    def route(self, region: str) -> Route:
        return self.routes.setdefault(region, Route(self.policy.pathways[0]))

    def tick(self, now_ms: int) -> list[Event]:
        """Apply the rules to every region; return what changed."""
        before = len(self.events)
        for region in sorted(self.routes):
            route = self.routes[region]
            if route.away is None:
                self._maybe_move(region, route, now_ms)
            else:
                self._probe(region, route, now_ms)
        return list(self.events)[before:] if len(self.events) > before else []

    def _health(self, region: str, cdn: str) -> Health:
        return self.health.get((region, cdn)) or Health()

    def _maybe_move(self, region: str, route: Route, now_ms: int) -> None:
        h = self._health(region, route.primary)
        if h.bad_streak < self.policy.bad_windows:
            return
        target = next((c for c in self.policy.pathways
                       if c != route.primary and not self._health(region, c).bad()), None)
        if target is None:
            return  # nowhere better: stay
        why = _why(h.last, self.reference(region, now_ms))
        self._log(now_ms, region, f"moved {route.primary} -> {target}: {why}")
        left = route.primary
        route.primary, route.away, route.share = target, left, 0
        route.hold_until_ms = now_ms + self.policy.hold_down_ms * route.backoff
        self._fresh(region, target, left)

    def _probe(self, region: str, route: Route, now_ms: int) -> None:
        assert route.away is not None
        policy = self.policy
        if route.share == 0:
            if now_ms >= route.hold_until_ms:
                self._step(region, route, policy.ramp[0], now_ms)
            return
        if self._health(region, route.away).last_bad_ms > route.step_since_ms:
            route.backoff = min(route.backoff * 2, policy.max_backoff)
            route.share = 0
            route.hold_until_ms = now_ms + policy.hold_down_ms * route.backoff
            self._log(now_ms, region, f"probe of {route.away} failed; hold-down x"
                      f"{route.backoff}")
            return
        if now_ms - route.step_since_ms < policy.ramp_step_ms:
            return
        later = [s for s in policy.ramp if s > route.share]
        self._step(region, route, later[0], now_ms)

    def _step(self, region: str, route: Route, share: int, now_ms: int) -> None:
        assert route.away is not None
        if share >= 100:
            back = route.away
            self._log(now_ms, region, f"returned to {back}")
            route.primary, route.away, route.share, route.backoff = back, None, 0, 1
            self._fresh(region, back)
            return
        route.share, route.step_since_ms = share, now_ms
        self._log(now_ms, region, f"{share}% of players back on {route.away}")

    def _fresh(self, region: str, *cdns: str) -> None:
        """A route change starts the streaks of the CDNs involved afresh: evidence from before
        the change (a stale bad streak of a CDN nobody uses any more) must not move it again."""
        for cdn in cdns:
            h = self.health.get((region, cdn))
            if h is not None:
                h.bad_streak = 0

    def _log(self, now_ms: int, region: str, what: str) -> None:
        self.events.append(Event(now_ms, region, what))

    # -- answers -------------------------------------------------------------------------------

    def priority(self, region: str, bucket: int, overrides: Overrides | None = None) -> list[str]:
        """PATHWAY-PRIORITY for one player of ``region`` in ``bucket`` (0-99)."""
        route = self.routes.get(region) or Route(self.policy.pathways[0])
        order = [route.primary] + [c for c in self.policy.pathways if c != route.primary]
        if route.away is not None and bucket < route.share:
            order.remove(route.away)
            order.insert(0, route.away)
        return apply_overrides(order, region, overrides or Overrides())

    def snapshot(self) -> dict[str, Any]:
        return {
            "pathways": list(self.policy.pathways),
            "routes": {r: {"primary": x.primary, "away": x.away, "share": x.share,
                           "hold_until_ms": x.hold_until_ms, "backoff": x.backoff}
                       for r, x in sorted(self.routes.items())},
            "health": [{"region": r, "cdn": c, "bad_streak": h.bad_streak,
                        "best_kbps": round(h.best_kbps, 1), "last_window_ms": h.last_window_ms,
                        "last_bad_ms": h.last_bad_ms,
                        "last": None if h.last is None else {
                            "sessions": h.last.sessions,
                            "avg_bitrate_kbps": h.last.avg_bitrate_kbps,
                            "rebuffering_ratio": h.last.rebuffering_ratio}}
                       for (r, c), h in sorted(self.health.items())],
            "events": [{"at_ms": e.at_ms, "region": e.region, "what": e.what}
                       for e in self.events],
        }


def apply_overrides(order: list[str], region: str, overrides: Overrides) -> list[str]:
    pin = overrides.pins.get(region) or overrides.pins.get(ALL_REGIONS)
    if pin in order:
        order = [pin] + [c for c in order if c != pin]
    kept = [c for c in order if c not in overrides.drained]
    if kept:  # every CDN drained: nothing better to offer, leave the order alone
        order = kept + [c for c in order if c in overrides.drained]
    return order


def _why(q: Quality | None, reference: float) -> str:
    if q is None:
        return "bad windows"
    return (f"rebuffering {q.rebuffering_ratio:.1%}, {q.avg_bitrate_kbps:.0f} kbit/s against "
            f"a reference of {reference:.0f}, {q.sessions} session(s)")


def combine(records: Iterable[Any]) -> list[Quality]:
    """Analytics records (``ConcurrencyRecord``: one per match, region, CDN and window) summed
    over matches into one ``Quality`` per region, CDN and window, oldest window first. Totals
    (region or CDN "*") are left out."""
    groups: dict[tuple[str, str, int], list[float]] = {}
    for rec in records:
        if rec.region == "*" or rec.cdn == "*" or rec.concurrent <= 0:
            continue
        g = groups.setdefault((rec.region, rec.cdn, rec.window_end_ms), [0, 0, 0.0, 0.0])
        g[0] += rec.concurrent
        g[1] += rec.beats
        g[2] += rec.avg_bitrate_kbps * rec.beats      # back to sums, weighted by beats
        g[3] += rec.rebuffering_ratio * rec.beats
    out = [Quality(region, cdn, end, int(s), b and k / b, b and r / b)
           for (region, cdn, end), (s, b, k, r) in groups.items()]
    return sorted(out, key=lambda q: (q.window_end_ms, q.region, q.cdn))


def manifest(priority: Iterable[str], ttl: int, reload_uri: str) -> dict[str, Any]:
    """The steering manifest (Apple HLS Content Steering spec v1.2 and rfc8216bis §7):
    VERSION and TTL are required; hls.js applies no default TTL (edge.md §2.2)."""
    return {"VERSION": STEERING_VERSION, "TTL": ttl, "RELOAD-URI": reload_uri,
            "PATHWAY-PRIORITY": list(priority)}
