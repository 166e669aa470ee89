"""The degradation controller: load signals -> a level 0-3 with hysteresis -> a flag change.

``Controller`` is the pure core: ``observe(signals, now)`` returns a ``Decision`` when the level
should change, with the reason in words (it goes into the change's ``why``). A level is raised
as soon as a signal has been at or above that level's threshold for ``up_samples`` samples in a
row (1 s apart: within a few seconds of trouble); it is lowered one step at a time, and only
after every signal has stayed below ``exit_ratio`` of the current level's thresholds for
``down_seconds`` (hysteresis: a signal hovering around a threshold does not make the level
flap), and not within ``min_dwell`` of the last change. Shedding calms the signals it is judged
by, so a level also holds while the P2 load offered to the gateways (counted before shedding,
``p2_offered``) stays well above its usual rate. ``ControllerLoop`` is the shell: it
reads the signals once a second (the gateway workers' stats files, a Redis PING, the streams
group's Kafka lag), asks the core, and writes the level as the flag ``degrade.level`` through
``runtime.flags`` (Kafka, then Redis), so every level change is audited like an operator's.
An operator pins the level with the flag ``degrade.override`` (``stumpcast flags set
degrade.override --value N``); while a pin is set the controller writes nothing.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from schemas.flags import LEVEL_FLAG, MAX_LEVEL, OVERRIDE_FLAG, FlagChange, FlagState

log = logging.getLogger("stumpcast.degrade")
SIGNALS = ("loop_lag_ms", "queue_bytes", "redis_ms", "kafka_lag", "cpu")
OFFERED = "p2_offered"  # P2 deliveries/s asked of the gateways, before shedding: not a
# reason to rise (P2 traffic is normal), but what keeps a raised level while it is offered
OFFERED_MIN_SAMPLES = 5


@dataclass(frozen=True)
class Thresholds:
    """Per signal, the value at which levels 1, 2 and 3 begin (None: never that level).

    Loop lag: a gateway worker whose loop wakes 50 ms late delays every delivery by as much
    (the P1 budget in the bench is 50 ms p99). Queue bytes: data waiting in the hub for slow
    clients, summed over workers. CPU: one worker's share of a core (a worker is one thread).
    """

    loop_lag_ms: tuple[float | None, ...] = (50.0, 250.0, 2000.0)
    queue_bytes: tuple[float | None, ...] = (8e6, 64e6, 512e6)
    redis_ms: tuple[float | None, ...] = (25.0, 150.0, 1000.0)
    kafka_lag: tuple[float | None, ...] = (5_000.0, 50_000.0, 500_000.0)
    cpu: tuple[float | None, ...] = (0.85, 0.97, None)

    def level_of(self, name: str, value: float, scale: float = 1.0) -> int:
        level = 0
        for i, limit in enumerate(getattr(self, name), start=1):
            if limit is not None and value >= limit * scale:
                level = i
        return level


@dataclass(frozen=True)
class Decision:
    level: int
    why: str


@dataclass
class Controller:
    thresholds: Thresholds = field(default_factory=Thresholds)
    up_samples: int = 2
    down_seconds: float = 5.0
    exit_ratio: float = 0.6
    level: int = 0
    max_level: int = MAX_LEVEL  # an operator may cap what the controller does on its own
    _above: int = 0
    _calm_since: float | None = None
    _recent: dict[str, deque[float]] = field(default_factory=dict)
    # Shedding hides the load it sheds: once calm, the controller steps down and the load
    # returns. A level raised again within ``rehold_window`` of a step down doubles the calm
    # period required next time (up to ``max_hold``), so a persistent overload settles at its
    # level instead of flapping; a quiet ``rehold_window`` resets it.
    rehold_window: float = 60.0
    max_hold: float = 60.0
    _hold: float | None = None
    _last_down: float | None = None
    # The offered P2 load (OFFERED: P2 deliveries a second the gateways were asked to make,
    # counted before shedding, so the same at every level) is the one signal shedding does not
    # calm. Its usual rate is the 10th percentile of the last ``offered_window`` samples (5
    # minutes; at least 5 samples, else no hold): a stray low sample does not set it, and a
    # flood longer than ~90% of the window becomes the usual. While the offered rate stays at
    # or above ``offered_ratio`` x the usual and ``offered_floor`` above it, the load that
    # shedding removed is still offered, so a level >= 1 holds whatever the other signals say.
    # A rise for another cause (Redis slow) leaves the offered rate at its usual: it holds
    # nothing. After a hold ends the calm period applies, and a relapse doubles it (above).
    offered_ratio: float = 2.0
    offered_floor: float = 2_000.0
    offered_window: int = 300
    _offered: deque[float] = field(default_factory=deque)
    # ``min_dwell``: no step down within this long of the last change (a level just entered
    # has not had time to show what it sheds).
    min_dwell: float = 10.0
    _changed_at: float | None = None

    def observe(self, signals: dict[str, float], now: float) -> Decision | None:
        t = self.thresholds
        for n, v in signals.items():
            self._recent.setdefault(n, deque(maxlen=3)).append(v)
        if OFFERED in signals:
            self._offered.append(signals[OFFERED])
            while len(self._offered) > self.offered_window:
                self._offered.popleft()
        pressure = {n: t.level_of(n, v) for n, v in signals.items() if n in SIGNALS}
        top = min(max(pressure.values(), default=0), self.max_level)
        if top > self.level:
            self._calm_since = None
            self._above += 1
            if self._above >= self.up_samples:
                return self._rise(top, pressure, signals, now)
            return None
        self._above = 0
        return self._maybe_down(signals, now)

    def _rise(self, top: int, pressure: dict[str, int], signals: dict[str, float],
              now: float) -> Decision:
        t = self.thresholds
        self._above = 0
        self._backoff(now)
        worst = max(pressure, key=lambda n: pressure[n])
        return self._go(top, f"{worst} {signals[worst]:g} >= "
                        f"{getattr(t, worst)[top - 1]:g} (level {top} threshold)", now)

    def _maybe_down(self, signals: dict[str, float], now: float) -> Decision | None:
        # Going down looks at the median of the last three samples: one stray spike (a GC
        # pause, a noisy neighbour) does not restart the calm period.
        t = self.thresholds
        smooth = {n: statistics.median(self._recent[n]) for n in signals}
        held = [n for n, v in smooth.items() if n in SIGNALS and self.level
                and t.level_of(n, v, self.exit_ratio) >= self.level]
        if self.level == 0 or held or self.offered_holds(smooth):
            self._calm_since = None
            return None
        if self._calm_since is None:
            self._calm_since = now
            return None
        hold = self._hold or self.down_seconds
        if now - self._calm_since < hold or (self._changed_at is not None
                                             and now - self._changed_at < self.min_dwell):
            return None
        self._calm_since = self._last_down = now
        shown = ", ".join(f"{n} {v:.3g}" for n, v in sorted(smooth.items()))
        return self._go(self.level - 1, f"every signal below {self.exit_ratio:g} of its level "
                        f"{self.level} threshold for {hold:g} s ({shown})", now)

    def offered_holds(self, smooth: dict[str, float]) -> bool:
        """True while the P2 load is well above its usual rate (what shedding removed)."""
        offered = smooth.get(OFFERED)
        if offered is None or self.level == 0 or len(self._offered) < OFFERED_MIN_SAMPLES:
            return False
        usual = sorted(self._offered)[len(self._offered) // 10]
        return offered >= max(self.offered_ratio * usual, usual + self.offered_floor)

    def _backoff(self, now: float) -> None:
        if self._last_down is not None and now - self._last_down < self.rehold_window:
            self._hold = min(2 * (self._hold or self.down_seconds), self.max_hold)
        else:
            self._hold = None

    def _go(self, level: int, why: str, now: float) -> Decision:
        self.level = level
        self._changed_at = now
        return Decision(level, why)


# -- the shell ------------------------------------------------------------------------------------

def gateway_signals(stats_dir: Path, now: float, max_age: float = 5.0) -> dict[str, float]:
    """Worst loop lag and CPU of any fresh worker; their queued bytes and offered P2 rate
    summed."""
    lag = cpu = queued = offered = 0.0
    for path in stats_dir.glob("worker-*.json"):
        try:
            if now - path.stat().st_mtime > max_age:
                continue
            doc = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        lag = max(lag, float(doc.get("loop_lag_ms", 0.0)))
        cpu = max(cpu, float(doc.get("cpu", 0.0)))
        queued += float(doc.get("queue_bytes", 0.0))
        offered += float(doc.get(OFFERED, 0.0))
    return {"loop_lag_ms": lag, "cpu": cpu, "queue_bytes": queued, OFFERED: offered}


def redis_ms(redis: Any) -> float:
    start = time.perf_counter()
    try:
        redis.ping()
    except Exception:  # noqa: BLE001 - unreachable counts as very slow
        return 10_000.0
    return (time.perf_counter() - start) * 1000


def kafka_lag(kafka: dict[str, Any] | None, group: str, topic: str) -> float:
    """Events the group has not committed yet on ``topic`` (0 when unknown)."""
    if not kafka:
        return 0.0
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**kafka, "group.id": group, "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=3).topics.get(topic)
        if meta is None:
            return 0.0
        parts = [TopicPartition(topic, p) for p in meta.partitions]
        lag = 0
        for tp in consumer.committed(parts, timeout=3):
            _, high = consumer.get_watermark_offsets(tp, timeout=3)
            lag += max(0, high - tp.offset) if tp.offset >= 0 else 0
        return float(lag)
    except Exception:  # noqa: BLE001 - lag unknown this tick; the other signals still count
        return 0.0
    finally:
        consumer.close()


@dataclass
class ControllerLoop:
    """Once a second: signals -> core -> a flag change when the level moves."""

    read_signals: Callable[[], dict[str, float]]
    store: Any  # runtime.flags.FlagStore
    core: Controller = field(default_factory=Controller)
    who: str = "degrade-controller"
    interval: float = 1.0
    last: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        """Begin from the level in force (a restarted controller does not reset it)."""
        self.store.connect()
        current = self.store.current()
        if LEVEL_FLAG in current:
            self.core.level = current[LEVEL_FLAG][1].value or 0

    def pinned(self) -> int | None:
        state = self.store.current().get(OVERRIDE_FLAG)
        if state is not None and state[1].enabled and state[1].value is not None:
            return state[1].value
        return None

    def step(self, now: float) -> Decision | None:
        self.last = self.read_signals()
        decision = self.core.observe(self.last, now)
        if decision is None:
            return None
        pin = self.pinned()
        if pin is not None:
            log.warning("level pinned by an operator; not changed",
                        extra={"pin": pin, "wanted": decision.level})
            self.core.level = pin
            return None
        self.store.write(FlagChange(LEVEL_FLAG, FlagState(value=decision.level), self.who,
                                    int(time.time() * 1000), decision.why))
        log.warning("degradation level changed", extra={"level": decision.level,
                                                        "why": decision.why})
        return decision

    def run(self, stop: Callable[[], bool]) -> None:
        self.start()
        while not stop():
            started = time.monotonic()
            try:
                self.step(started)
            except Exception as exc:  # noqa: BLE001 - a bad tick must not stop the controller
                log.warning("controller tick failed", extra={"error": str(exc)})
            time.sleep(max(0.0, self.interval - (time.monotonic() - started)))


def run_controller(settings: Any, stats_dir: Path | None, stop: Callable[[], bool],
                   down_seconds: float = 5.0, interval: float = 1.0,
                   max_level: int = MAX_LEVEL) -> None:
    """The controller's process. Flag changes are written as the ``flags`` principal; the
    streams group's lag is read as ``admin``, as the operations server's exporter reads it
    (another group's committed offsets need Describe on that group)."""
    from runtime.flags import FlagStore, operator
    from runtime.kafka import client_config
    from schemas.access import Principal
    from schemas.topology import GROUP_STREAMS, MATCH_EVENTS

    store = FlagStore(settings)
    client = store.redis  # one Redis client for the flags and the latency probe
    try:
        kafka: dict[str, Any] | None = client_config(settings, Principal.ADMIN)
    except Exception:  # noqa: BLE001 - no credentials: the lag signal is left out
        kafka = None

    def read() -> dict[str, float]:
        now = time.time()
        out = gateway_signals(stats_dir, now) if stats_dir is not None else {}
        out["redis_ms"] = redis_ms(client)
        out["kafka_lag"] = kafka_lag(kafka, GROUP_STREAMS, MATCH_EVENTS.name)
        return out

    loop = ControllerLoop(read, store, Controller(down_seconds=down_seconds,
                                                  max_level=max_level),
                          who=f"degrade-controller@{operator().split('@')[-1]}",
                          interval=interval)
    try:
        loop.run(stop)
    finally:
        store.close()
