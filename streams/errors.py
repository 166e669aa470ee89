"""What can go wrong while the streams worker handles an event, and what it does about it.

Principle 14 (STYLE.md): never ack what you did not do. Every failure falls in one branch of
this tree, and each branch has one policy::

    an event invalid in itself          not an exception: a ``pipeline.Rejected`` outcome
      (bad JSON, unknown source,          -> dead-lettered with its reason, then acked
       conflict, fold refusal, ...)
    a sequence gap                      not an exception: ``pipeline.Held``
                                          -> held (bounded), filled from the event store or by
                                             the producer's resend; never acked, never dead-lettered
    Unavailable (retriable)             a dependency is down
      ViewStoreError     Redis            -> the match's lane pauses and retries the same step
      EventStoreError    Cassandra           with backoff (50 ms doubling to 5 s); nothing is
      OutputError        Kafka producer      acked or dead-lettered meanwhile; the in-flight
                                             bound then stops the consumer
    FencedError (relay)                 another worker opened the partition's transactional id
                                          -> the relay re-opens after a pause (if this worker
                                             still owns the partition) and publishes only ids
                                             above the checkpoint it reads then
    anything else, on one event         a bug
                                          -> that event is dead-lettered as ``internal_error``
                                             with its traceback; the match goes back to its last
                                             good position (later events wait as a gap)

Foreign errors (redis, cassandra-driver, aiokafka) are translated into these at the seam that
calls the client (``viewstore``, ``eventstore``, ``streams.app.FaustOutputs``).
"""

from __future__ import annotations

import enum


class Unavailable(RuntimeError):
    """A dependency (Redis, Cassandra, Kafka) could not be reached or timed out: retriable."""


class OutputError(Unavailable):
    """The Kafka producer could not send a card or a dead letter (retriable)."""


class Policy(enum.Enum):
    RETRY = "retry"  # pause and retry the same step with backoff; ack nothing
    DEAD_LETTER = "dead_letter"  # a bug on this event: dead-letter it with its traceback


def policy(exc: BaseException) -> Policy:
    """The branch of the tree an exception raised while handling one event falls in."""
    if isinstance(exc, Unavailable):
        return Policy.RETRY
    return Policy.DEAD_LETTER


class Backoff:
    """Delays of a retry loop: ``first`` doubling up to ``cap`` seconds."""

    def __init__(self, first: float = 0.05, cap: float = 5.0) -> None:
        self.first, self.cap = first, cap
        self.delay = first

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, self.cap)
        return delay
