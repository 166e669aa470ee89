"""How a service meets a fault: a dependency that is down, a bug, a background task that fails.

STYLE.md 14 ("never ack what you did not do") as the few pieces every service shares:

* ``classify(exc)``: ``Fault.DEPENDENCY`` when a server the service needs (Redis, Kafka,
  Cassandra, the network under them) refused, dropped or did not answer in time: the caller
  pauses, retries with a ``Backoff`` and acks nothing meanwhile. Anything else is a
  ``Fault.BUG``: logged with its traceback; the one record it concerns is dead-lettered or
  skipped (each service documents which) and the service carries on.
* ``Backoff``: capped exponential delays with jitter; pure (the caller passes ``random()``).
* ``periodic`` and ``supervised``: a timer or a long-running loop that a failing step never
  ends (an unguarded asyncio task that raises just stops, silently, until the process exits).
* ``Throttle``: at most one log line per key per interval, so an outage does not flood the log.

The classification is a table of class names (module and name, along the exception's MRO), so
this module imports none of the client libraries.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from runtime.eventloop import raise_if_cancelled


class Fault(enum.StrEnum):
    DEPENDENCY = "dependency"
    BUG = "bug"


# A server that is down, restarting, loading its data set or overloaded: each clears by itself
# once the server is back, so waiting is the cure.
DEPENDENCY_CLASSES = frozenset({
    # redis-py: refused, reset or closed connections (BusyLoadingError and AuthenticationError
    # are subclasses: a restart still loading its dump, a server not yet configured), timeouts;
    # a replica that is read-only during a failover.
    "redis.exceptions.ConnectionError", "redis.exceptions.TimeoutError",
    "redis.exceptions.ReadOnlyError", "redis.exceptions.TryAgainError",
    "redis.exceptions.ClusterDownError", "redis.exceptions.MasterDownError",
    # aiokafka: its own errors carry ``retriable`` too (checked below); these are the ones
    # raised before any broker answered.
    "aiokafka.errors.KafkaConnectionError", "aiokafka.errors.NodeNotReadyError",
    "aiokafka.errors.RequestTimedOutError", "aiokafka.errors.KafkaTimeoutError",
    "aiokafka.errors.NoBrokersAvailable",
    # The consumer group is rebalancing (a replica joined, left or died): the next commit,
    # under the new assignment, is the cure.
    "aiokafka.errors.CommitFailedError", "aiokafka.errors.RebalanceInProgressError",
    "aiokafka.errors.IllegalGenerationError", "aiokafka.errors.UnknownMemberIdError",
    # cassandra-driver: no replica reachable, not enough replicas, or a timeout.
    "cassandra.cluster.NoHostAvailable", "cassandra.OperationTimedOut",
    "cassandra.Unavailable", "cassandra.ReadTimeout", "cassandra.WriteTimeout",
    # the standard library: sockets (refused, reset, unreachable) and timeouts. BufferError is
    # librdkafka's local queue being full: the broker is not taking messages.
    "builtins.OSError", "builtins.TimeoutError", "builtins.BufferError",
})

# librdkafka error names (``KafkaError.name()``) that mean "the cluster is not answering".
KAFKA_DEPENDENCY_ERRORS = frozenset({
    "_TRANSPORT", "_ALL_BROKERS_DOWN", "_TIMED_OUT", "_MSG_TIMED_OUT", "_TIMED_OUT_QUEUE",
    "_WAIT_COORD", "_RESOLVE", "_QUEUE_FULL", "_NODE_UPDATE", "REQUEST_TIMED_OUT",
    "NETWORK_EXCEPTION", "COORDINATOR_NOT_AVAILABLE", "NOT_COORDINATOR",
    "COORDINATOR_LOAD_IN_PROGRESS", "LEADER_NOT_AVAILABLE", "NOT_LEADER_FOR_PARTITION",
    "NOT_ENOUGH_REPLICAS", "NOT_ENOUGH_REPLICAS_AFTER_APPEND", "BROKER_NOT_AVAILABLE",
    "REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID",
})


def _names(exc: BaseException) -> set[str]:
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__}


def classify(exc: BaseException) -> Fault:
    """``DEPENDENCY`` if waiting for a server is the cure, else ``BUG``."""
    names = _names(exc)
    if names & DEPENDENCY_CLASSES:
        return Fault.DEPENDENCY
    if any(n.startswith("aiokafka.errors.") for n in names) and getattr(exc, "retriable", False):
        return Fault.DEPENDENCY
    if "cimpl.KafkaException" in names or "confluent_kafka.cimpl.KafkaException" in names:
        err: Any = exc.args[0] if exc.args else None
        name = err.name() if hasattr(err, "name") else ""
        retriable = bool(err.retriable()) if hasattr(err, "retriable") else False
        if name in KAFKA_DEPENDENCY_ERRORS or retriable:
            return Fault.DEPENDENCY
    return Fault.BUG


@dataclass
class Backoff:
    """Delays after consecutive failures: ``ceiling = min(cap, base * 2**(n-1))``, and the
    delay is drawn from [ceiling/2, ceiling) ("equal jitter"): replicas that failed together do
    not retry together, and a retry never comes at once."""

    base_s: float = 0.2
    cap_s: float = 5.0
    failures: int = 0

    def next(self, rand: float) -> float:
        """The delay before the next try; ``rand`` in [0, 1)."""
        self.failures += 1
        ceiling = min(self.cap_s, self.base_s * 2 ** (self.failures - 1))
        return ceiling / 2 + rand * ceiling / 2

    def reset(self) -> None:
        self.failures = 0


@dataclass
class Throttle:
    """``allow(key, now)``: True at most once per ``interval_s`` per key; counts the rest."""

    interval_s: float = 10.0
    last: dict[str, float] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)

    def allow(self, key: str, now: float) -> bool:
        if now - self.last.get(key, -1e18) >= self.interval_s:
            self.last[key] = now
            return True
        self.suppressed[key] = self.suppressed.get(key, 0) + 1
        return False

    def take_suppressed(self, key: str) -> int:
        return self.suppressed.pop(key, 0)


def report(log: logging.Logger, what: str, exc: BaseException, throttle: Throttle,
           **fields: object) -> Fault:
    """Log ``exc`` by its class (a dependency: a warning; a bug: an error with its traceback),
    at most once per ``throttle`` interval per (what, kind); return the kind."""
    kind = classify(exc)
    key = f"{what}:{kind}:{type(exc).__name__}"
    if throttle.allow(key, time.monotonic()):
        extra = {"what": what, "fault": str(kind), "error": f"{type(exc).__name__}: {exc}",
                 "suppressed": throttle.take_suppressed(key), **fields}
        if kind is Fault.DEPENDENCY:
            log.warning("%s: a dependency is down (%s); retrying", what, extra["error"],
                        extra=extra)
        else:
            log.error("%s: unexpected error (%s)", what, extra["error"], exc_info=exc,
                      extra=extra)
    return kind


async def periodic(what: str, interval_s: float, step: Callable[[], Awaitable[None]],
                   log: logging.Logger, throttle: Throttle | None = None,
                   on_fault: Callable[[Fault], None] | None = None) -> None:
    """Run ``step`` every ``interval_s`` until cancelled. A step that raises is reported and
    retried after a backoff; the timer itself never ends."""
    throttle = throttle or Throttle()
    backoff = Backoff(base_s=min(interval_s, 0.2), cap_s=max(interval_s, 5.0))
    while True:
        raise_if_cancelled()  # a stop's cancel lost in a step's Redis call (runtime.eventloop)
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            kind = report(log, what, exc, throttle)
            if on_fault is not None:
                on_fault(kind)
            await asyncio.sleep(backoff.next(random.random()))
            continue
        backoff.reset()
        await asyncio.sleep(interval_s)


async def supervised(what: str, run: Callable[[], Awaitable[None]], log: logging.Logger,
                     throttle: Throttle | None = None) -> None:
    """Run the long-running ``run``; if it raises, report it and start it again after a
    backoff. Returns when ``run`` returns."""
    throttle = throttle or Throttle()
    backoff = Backoff()
    while True:
        raise_if_cancelled()  # lost in ``run`` before it failed: do not start it again
        started = time.monotonic()
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            report(log, what, exc, throttle)
            if time.monotonic() - started > 60:   # it ran well for a while: a fresh failure
                backoff.reset()
            await asyncio.sleep(backoff.next(random.random()))
