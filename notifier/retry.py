"""When to retry a webhook, and after how long: exponential backoff with full jitter.

``delay = random() * min(cap, base * 2**(failures - 1))`` ("full jitter": spreads a herd of
retries evenly over the interval, so a receiver that comes back is not hit by every sender at
once; the clients of both platforms use jitter + exponential back-off: industry.md §0, §8).
2xx is delivered; 408, 425, 429, 5xx and network errors are worth retrying; other 4xx will not
get better and go to the dead letters at once; so does anything after ``max_attempts``.
"""

from __future__ import annotations

from dataclasses import dataclass

RETRIABLE_4XX = frozenset({408, 425, 429})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_s: float = 0.5
    cap_s: float = 60.0

    def ceiling(self, failures: int) -> float:
        return min(self.cap_s, self.base_s * 2 ** max(0, failures - 1))

    def delay(self, failures: int, rand: float) -> float:
        """Seconds to wait after the ``failures``-th failed attempt; ``rand`` in [0, 1)."""
        return rand * self.ceiling(failures)


@dataclass(frozen=True)
class Delivered:
    status: int


@dataclass(frozen=True)
class Retry:
    delay_s: float
    reason: str


@dataclass(frozen=True)
class DeadLetter:
    reason: str


Step = Delivered | Retry | DeadLetter


def next_step(policy: RetryPolicy, attempt: int, status: int | None, error: str | None,
              rand: float) -> Step:
    """What follows attempt number ``attempt`` (1-based) that got ``status`` or ``error``."""
    if status is not None and 200 <= status < 300:
        return Delivered(status)
    reason = f"HTTP {status}" if status is not None else (error or "network error")
    retriable = status is None or status >= 500 or status in RETRIABLE_4XX
    if not retriable:
        return DeadLetter(f"{reason} (not retriable)")
    if attempt >= policy.max_attempts:
        return DeadLetter(f"{reason} after {attempt} attempts")
    return Retry(policy.delay(attempt, rand), reason)
