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
    connections_per_ip: int = 1000         # open connections from one address (CGNAT: many
                                           # viewers share one; a flood is still bounded)
    accepts_per_ip: float = 50.0           # new connections per second from one address
    accept_burst_per_ip: int = 100
    heartbeat_min_gap: float = 8.0         # seconds between two forwarded beats of a socket
                                           # (0.8 x the interval: client timers jitter)
    max_clock_skew_ms: int = 60_000        # a beat's playhead at most this far in the future


class PerAddress:
    """Per-IP accept buckets and open-connection counts, so one address cannot use up the
    accept budget or the connection slots of everyone. Pure: the clock is passed in."""

    PRUNE_AT = 100_000  # addresses kept before idle (fully refilled) buckets are dropped

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.buckets: dict[str, TokenBucket] = {}
        self.open: dict[str, int] = {}

    def admit(self, ip: str, now: float) -> str | None:
        """None if a new connection from ``ip`` may go ahead, else why not."""
        if self.open.get(ip, 0) >= self.limits.connections_per_ip:
            return f"more than {self.limits.connections_per_ip} connections from this address"
        bucket = self.buckets.get(ip)
        if bucket is None:
            if len(self.buckets) >= self.PRUNE_AT:
                self._prune(now)
            bucket = self.buckets[ip] = TokenBucket(self.limits.accepts_per_ip,
                                                    self.limits.accept_burst_per_ip, now)
        if not bucket.take(now):
            return f"more than {self.limits.accepts_per_ip:g} new connections per second " \
                   "from this address"
        return None

    def opened(self, ip: str) -> None:
        self.open[ip] = self.open.get(ip, 0) + 1

    def closed(self, ip: str) -> None:
        left = self.open.get(ip, 0) - 1
        if left > 0:
            self.open[ip] = left
        else:
            self.open.pop(ip, None)

    def _prune(self, now: float) -> None:
        refill = self.limits.accept_burst_per_ip / self.limits.accepts_per_ip
        self.buckets = {ip: b for ip, b in self.buckets.items() if now - b.stamp < refill}


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
