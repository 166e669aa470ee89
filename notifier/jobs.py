"""The notifier's configuration and its units of work: a job (one notification for one webhook)
and a subscriber's ordered queue of them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import Any

from notifier.retry import RetryPolicy
from notifier.subscriptions import Subscription
from schemas.notifications import Notification
from schemas.topology import GROUP_NOTIFIER, NOTIFICATIONS


@dataclass(frozen=True)
class NotifierConfig:
    topic: str = NOTIFICATIONS.name
    group: str = GROUP_NOTIFIER
    start: str = "latest"            # a new group starts at new notifications, not last week's
    policy: RetryPolicy = RetryPolicy()
    timeout_s: float = 5.0
    max_hold_ms: int = 15 * 60 * 1000
    refresh_s: float = 2.0
    hold_tick_s: float = 0.25
    gateway_check_s: float = 5.0
    max_in_work: int = 10_000        # messages not finished; intake pauses above it
    revoke_grace_s: float = 6.0      # a revoke waits this long for attempts in flight
    max_checks: int = 10_000         # gateway checks waiting; beyond, the oldest are skipped
    allow_hosts: tuple[str, ...] = ()  # non-public addresses or networks hooks may reach
    queue_max: int = 10_000            # jobs waiting per subscriber; beyond, dead-lettered

    @classmethod
    def of(cls, settings: Any, **overrides: Any) -> NotifierConfig:
        """The settings' retry budget, allow-list and queue bound, then ``overrides``: every
        way of starting a notifier honours STUMPCAST_WEBHOOK_* alike."""
        base = cls(policy=RetryPolicy(max_attempts=settings.webhook_max_attempts),
                   allow_hosts=settings.webhook_allow_hosts, queue_max=settings.webhook_queue)
        return replace(base, **overrides)


@dataclass
class Job:
    partition: int
    offset: int
    note: Notification
    raw: bytes
    generation: int
    released: bool = False


@dataclass
class Sub:
    sub: Subscription
    queue: asyncio.Queue[Job] = field(default_factory=asyncio.Queue)
    retracted: dict[int, set[str]] = field(default_factory=dict)   # partition -> ids
    task: asyncio.Task[None] | None = None
    removed: bool = False
