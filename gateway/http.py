"""The HTTP API served on the WebSocket port (``Gateway.admit`` routes its paths here).

``GET /v1/matches/{id}/scorecard`` carries an ETag (the position) and a short max-age with
stale-while-revalidate, so a CDN absorbs the read load; ``If-None-Match`` gets a 304. In panic
mode (Redis unavailable, or the panic flag file present) the last good snapshots on disk are
served, marked ``"stale": true`` and ``X-Stumpcast-Stale: 1``. ``/healthz`` says the process
runs; ``/readyz`` says Redis answers and the feed is not lagging (both answered by
``runtime.endpoints``, as in every service). ``/metrics`` is not served here but on the
gateway's admin port: counters say who is connected and how much, which is the operator's
business, not the public's.

With auth on, the API applies a token's channel claims as the WebSocket does: a scorecard needs
a token (``Authorization: Bearer`` or ``?token=``) allowing ``match:<id>`` (401 without a valid
token, 403 with one that does not allow it), and ``/v1/matches`` lists only the matches the
token allows. Such answers are per token, so they are marked ``private`` for caches.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import orjson

from gateway.auth import ANONYMOUS, AuthConfig, Claims, token_from_request, verify_token
from gateway.errors import AuthFailed, FeedUnavailable
from gateway.feed import Feed, UnknownMatch
from gateway.metrics import GatewayMetrics
from gateway.panic import PanicStore, envelope
from runtime.endpoints import Health, Readiness

LIVE_CACHE = "public, max-age=1, stale-while-revalidate=10"
STALE_CACHE = "public, max-age=5, stale-if-error=300"
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = JSON


def json_error(status: int, code: str, message: str,
               headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    return HttpResponse(status, orjson.dumps({"error": code, "message": message}), headers)


class HttpApi:
    def __init__(self, feed: Feed, panic: PanicStore, metrics: GatewayMetrics,
                 max_lag: float = 5.0, ready_window: float = 5.0,
                 auth: AuthConfig | None = None) -> None:
        self.auth = auth or AuthConfig()
        self.feed = feed
        self.panic = panic
        self.metrics = metrics
        self.max_lag = max_lag
        self.ready_window = ready_window
        # Degradation level 3 (gateway.flags) turns panic mode on like the flag file does.
        self.forced_panic: Callable[[], bool] = lambda: False
        self.health = Health(metrics.render, self.readiness)

    async def handle(self, method: str, path: str, headers: Any) -> HttpResponse:
        route = path.split("?", 1)[0].rstrip("/") or "/"
        if method != "GET":
            return json_error(405, "method_not_allowed", "only GET is served here")
        if route == "/metrics":
            return json_error(404, "not_found", "metrics are served on the admin port")
        reply = self.health.answer(route)
        if reply is not None:
            return HttpResponse(reply.status, reply.body, content_type=reply.content_type)
        try:
            claims = verify_token(token_from_request(path, headers), self.auth, time.time())
        except AuthFailed as exc:
            return json_error(401, "unauthorized", str(exc)[:200])
        if route == "/v1/matches":
            return _private(await self.matches(headers.get("If-None-Match"), claims), claims)
        parts = route.split("/")
        if len(parts) == 5 and parts[:3] == ["", "v1", "matches"] and parts[4] == "scorecard":
            if not claims.allows(f"match:{parts[3]}"):
                return json_error(403, "forbidden", f"the token does not allow match:{parts[3]}")
            return _private(await self.scorecard(parts[3], headers.get("If-None-Match")), claims)
        return json_error(404, "not_found", f"no route {route}")

    def panic_mode(self) -> bool:
        """The flag is set, or Redis has not answered for ``ready_window`` seconds: either
        way scorecards come from the disk copies."""
        return (self.panic.flag_set() or self.forced_panic()
                or time.monotonic() - self.feed.last_ok > self.ready_window)

    def readiness(self) -> Readiness:
        age = time.monotonic() - self.feed.last_ok
        lag = self.feed.stats.lag_seconds
        problems = []
        if age > self.ready_window:
            problems.append(f"redis: no successful command for {age:.1f}s")
        if lag > self.max_lag:
            problems.append(f"feed lag {lag:.1f}s > {self.max_lag:g}s")
        return Readiness(not problems, {"problems": problems, "feed_lag_seconds": lag})

    async def scorecard(self, match_id: str, if_none_match: str | None) -> HttpResponse:
        if not (self.panic.flag_set() or self.forced_panic()):
            try:
                epoch, seq, ts, card_json = await self.feed.view(match_id)
            except UnknownMatch:
                return json_error(404, "unknown_match", f"no scorecard for {match_id}")
            except FeedUnavailable:
                pass
            else:
                self.panic.save(match_id, epoch, seq, ts, card_json)
                body = envelope(match_id, epoch, seq, ts, card_json, stale=False)
                return _cached(body, f'"{epoch}-{seq}"', if_none_match, LIVE_CACHE, False)
        doc = self.panic.load(match_id)
        if doc is None:
            return json_error(503, "unavailable", "live data unavailable and no stored copy",
                              (("Retry-After", "2"),))
        doc["stale"] = True
        etag = f'"{doc.get("epoch")}-{doc.get("seq")}-stale"'
        return _cached(orjson.dumps(doc), etag, if_none_match, STALE_CACHE, True)

    async def matches(self, if_none_match: str | None,
                      claims: Claims = ANONYMOUS) -> HttpResponse:
        stale = self.panic.flag_set() or self.forced_panic()
        rows: list[tuple[str, int]] = []
        if not stale:
            try:
                rows = await self.feed.live_matches()
            except FeedUnavailable:
                stale = True
        if stale:
            rows = self.panic.matches()
        rows = [(m, ms) for m, ms in rows if claims.allows(f"match:{m}")]
        body = orjson.dumps({"stale": stale, "matches": [
            {"match_id": m, "updated_ms": ms} for m, ms in rows]})
        etag = '"' + hashlib.blake2b(body, digest_size=8).hexdigest() + '"'
        return _cached(body, etag, if_none_match, STALE_CACHE if stale else LIVE_CACHE, stale)


def _private(resp: HttpResponse, claims: Claims) -> HttpResponse:
    """An answer that depends on the token must not be shared by a cache."""
    if claims is ANONYMOUS:
        return resp
    headers = tuple((k, "private, max-age=1") if k == "Cache-Control" else (k, v)
                    for k, v in resp.headers)
    return HttpResponse(resp.status, resp.body, headers, resp.content_type)


def _cached(body: bytes, etag: str, if_none_match: str | None, cache_control: str,
            stale: bool) -> HttpResponse:
    # Date (RFC 9110 §6.6.1): the instant of this answer. The edges pass it through, so a
    # client served a cached copy (a CDN in panic) can tell how old it is.
    headers: tuple[tuple[str, str], ...] = (
        ("ETag", etag), ("Cache-Control", cache_control), ("Date", formatdate(usegmt=True)))
    if stale:
        headers += (("X-Stumpcast-Stale", "1"),)
    if if_none_match and etag in {t.strip() for t in if_none_match.split(",")}:
        return HttpResponse(304, b"", headers)
    return HttpResponse(200, body, headers)
