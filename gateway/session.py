"""One client connection as a pure state machine: ``Session.receive(frame, now) -> [Outbound]``.

No sockets, no Redis, no clock of its own: the shell (``gateway.server``) passes each frame and
the time in, and carries out what comes back: ``Send`` bytes, ``Join``/``Leave`` a channel, or
``Close`` the connection. Every violation is answered to this client only; nothing here can
touch another connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.auth import Claims
from gateway.limits import Limits, TokenBucket
from schemas import protocol as p


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class Join:
    """Subscribe (or re-subscribe, to resume) this connection to a channel."""

    req_id: str | int | None
    channel: p.Channel
    since: p.ChannelPosition | None
    context: tuple[str, str] | None = None  # flags: (region, platform)


@dataclass(frozen=True, slots=True)
class Leave:
    req_id: str | int | None
    channel: p.Channel


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Beat:
    """Forward a viewer's heartbeat to the analytics topic."""

    fields: dict[str, object]


Outbound = Send | Join | Leave | Close | Beat


class Session:
    __slots__ = ("claims", "limits", "bucket", "channels", "violations", "closed", "session_id",
                 "last_beat")

    def __init__(self, claims: Claims, limits: Limits, now: float,
                 session_id: str = "anonymous") -> None:
        self.claims = claims
        self.limits = limits
        self.bucket = TokenBucket(limits.messages_per_second, limits.message_burst, now)
        self.channels: set[str] = set()
        self.violations = 0
        self.closed = False
        self.session_id = session_id  # issued by the gateway (gateway.auth.SessionIds)
        self.last_beat: float | None = None

    def receive(self, raw: bytes | str, now: float) -> list[Outbound]:
        if self.closed:
            return []
        if self.claims.expired(now):
            return self._close(p.CloseCode.TOKEN_EXPIRED, "token expired")
        if not self.bucket.take(now):
            self.violations += 1
            if self.violations > self.limits.max_violations:
                return self._close(p.CloseCode.RATE_LIMITED, "too many messages")
            limit = self.limits.messages_per_second
            return [Send(p.error(p.ErrorCode.RATE_LIMITED,
                                 f"more than {limit:g} messages per second; message ignored"))]
        self.violations = 0
        if len(raw) > self.limits.max_message_bytes:
            return [Send(p.error(p.ErrorCode.TOO_LARGE,
                                 f"messages are limited to {self.limits.max_message_bytes} bytes"))]
        try:
            msg = p.parse_client_message(raw)
        except p.ProtocolError as exc:
            return [Send(p.error(exc.code, str(exc), exc.req_id))]
        if isinstance(msg, p.Subscribe):
            return self._subscribe(msg)
        if isinstance(msg, p.Unsubscribe):
            return self._unsubscribe(msg)
        if isinstance(msg, p.Heartbeat):
            return self._beat(msg, now)
        return [Send(p.pong(msg.id))]

    def _beat(self, msg: p.Heartbeat, now: float) -> list[Outbound]:
        """A beat counts for this socket's own session, for a match it is subscribed to, at
        most once per interval, with a playhead that is not in the future: a socket cannot
        beat for another viewer (and release their no-spoiler hold), inflate a match's views,
        or push the analytics clock ahead."""
        fields = dict(msg.fields)
        match = f"{p.MATCH}:{fields['match_id']}"
        if match not in self.channels:
            return [Send(p.error(p.ErrorCode.NOT_SUBSCRIBED, f"heartbeats only for a match "
                                 f"this connection is subscribed to ({match})", msg.id))]
        if self.last_beat is not None and now - self.last_beat < self.limits.heartbeat_min_gap:
            return [Send(p.error(p.ErrorCode.RATE_LIMITED, "one heartbeat per "
                                 f"{self.limits.heartbeat_min_gap:g} s", msg.id))]
        playhead = fields["playhead_ms"]  # an int: checked by the heartbeat contract
        if isinstance(playhead, int) and playhead > now * 1000 + self.limits.max_clock_skew_ms:
            return [Send(p.error(p.ErrorCode.BAD_MESSAGE, "beat.playhead_ms is in the future",
                                 msg.id))]
        self.last_beat = now
        fields["session_id"] = self.session_id  # the client's own value is not trusted
        return [Beat(fields)]

    def _subscribe(self, msg: p.Subscribe) -> list[Outbound]:
        key = msg.channel.key
        # Flags are everyone's: a client needs them to know what to show, token or not.
        if msg.channel.kind != p.FLAGS and not self.claims.allows(key):
            return [Send(p.error(p.ErrorCode.FORBIDDEN, f"the token does not allow {key}",
                                 msg.id, key))]
        if key not in self.channels:  # a repeat subscribe is a resume on the same connection
            if len(self.channels) >= self.limits.max_subscriptions:
                return [Send(p.error(p.ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                                     f"at most {self.limits.max_subscriptions} subscriptions "
                                     "per connection", msg.id, key))]
            self.channels.add(key)
        return [Join(msg.id, msg.channel, msg.since, msg.context)]

    def _unsubscribe(self, msg: p.Unsubscribe) -> list[Outbound]:
        key = msg.channel.key
        if key not in self.channels:
            return [Send(p.error(p.ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {key}",
                                 msg.id, key))]
        self.channels.discard(key)
        return [Leave(msg.id, msg.channel)]

    def join_failed(self, channel_key: str) -> None:
        """The shell could not join (unknown match, feed down): free the slot."""
        self.channels.discard(channel_key)

    def tick(self, now: float) -> list[Outbound]:
        """Periodic check without a frame (the token may expire on an idle connection)."""
        if not self.closed and self.claims.expired(now):
            return self._close(p.CloseCode.TOKEN_EXPIRED, "token expired")
        return []

    def _close(self, code: int, reason: str) -> list[Outbound]:
        self.closed = True
        return [Close(code, reason)]
