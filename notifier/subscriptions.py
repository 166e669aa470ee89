"""Webhook subscriptions, stored in the Redis hash ``RedisKeys.webhooks`` (id -> JSON).

The id is derived from (url, match, session), so adding the same hook twice updates it. A
no-spoilers hook names a player session; that session is also put in
``RedisKeys.spoiler_sessions`` so the analytics worker records its playhead.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlparse

import orjson

from schemas.notifications import Notification
from schemas.topology import RedisKeys

log = logging.getLogger("stumpcast.notifier")


class SubscriptionError(ValueError):
    pass


@dataclass(frozen=True)
class Subscription:
    id: str
    url: str
    secret: str
    match_id: str | None = None
    no_spoilers: bool = False
    session_id: str | None = None

    def __post_init__(self) -> None:
        if urlparse(self.url).scheme not in ("http", "https"):
            raise SubscriptionError("url: must be http:// or https://")
        if not self.secret:
            raise SubscriptionError("secret: must not be empty")
        if self.no_spoilers and not self.session_id:
            raise SubscriptionError("no_spoilers needs the player session (--session)")

    def wants(self, note: Notification) -> bool:
        return self.match_id is None or self.match_id == note.match_id

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes | str) -> Subscription:
        return cls(**orjson.loads(raw))


def make(url: str, secret: str, match_id: str | None = None, no_spoilers: bool = False,
         session_id: str | None = None) -> Subscription:
    key = f"{url}|{match_id or ''}|{session_id or ''}".encode()
    return Subscription(hashlib.sha256(key).hexdigest()[:16], url, secret, match_id,
                        no_spoilers, session_id)


def add(r: Any, sub: Subscription) -> None:
    pipe = r.pipeline()
    pipe.hset(RedisKeys.webhooks, sub.id, sub.encode())
    if sub.no_spoilers and sub.session_id:
        pipe.sadd(RedisKeys.spoiler_sessions, sub.session_id)
    pipe.execute()


def remove(r: Any, sub_id: str) -> bool:
    raw = r.hget(RedisKeys.webhooks, sub_id)
    if raw is None:
        return False
    sub = Subscription.decode(raw)
    pipe = r.pipeline()
    pipe.hdel(RedisKeys.webhooks, sub_id)
    pipe.delete(RedisKeys.webhook_delivered(sub_id))
    if sub.session_id:
        pipe.srem(RedisKeys.spoiler_sessions, sub.session_id)
    pipe.execute()
    return True


def load_all(raw: dict[Any, Any]) -> dict[str, Subscription]:
    """Decode an HGETALL of ``RedisKeys.webhooks``. A malformed entry is skipped with a log
    line: one bad subscription must not stop delivery to every other one."""
    out = {}
    for k, v in raw.items():
        key = k.decode() if isinstance(k, bytes) else k
        try:
            out[key] = Subscription.decode(v)
        except (SubscriptionError, TypeError, ValueError) as exc:
            log.warning("bad webhook subscription skipped", extra={"subscription": key,
                                                                   "error": str(exc)[:200]})
    return out
