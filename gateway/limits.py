"""Limits as data, and a token bucket that takes the clock as an argument (no I/O, no time)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int = 4096          # a client frame above this gets "too_large"
    hard_max_frame_bytes: int = 65536      # websockets closes with 1009 above this
    max_subscriptions: int = 64            # per connection
    messages_per_second: float = 20.0      # per connection, sustained
    message_burst: int = 64                # per connection, burst
    max_violations: int = 50               # consecutive rate-limited frames before close 4029
    accepts_per_second: float = 2000.0     # per process: new connections (reconnect storms)
    accept_burst: int = 4000
    queue_bytes: int = 256 * 1024          # per client, beyond what the socket buffers hold
    write_high_water: int = 64 * 1024      # transport buffer above which we queue instead
    write_timeout: float = 10.0            # no progress for this long with data queued: slow
    recovery_max: int = 300                # updates replayed on resume before a snapshot


class TokenBucket:
    """Allows ``burst`` events at once and ``rate`` per second sustained."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float, n: float = 1.0) -> bool:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False
