"""The LL-HLS side of the origin: blocking playlist reload, delta updates, preload-hint holds.

The decisions are ``media.llhls`` (pure); this is the aiohttp shell. A held request waits on
an asyncio event the publisher pulses after every part, so waiting costs no polling and no
thread. Held requests are bounded (``max_blocked``): one more is answered at once with 503 and
``Retry-After: 1`` (hls.js retries 5xx, not 4xx), and a request still unsatisfied after 3
target durations gets 503 too (bis §6.2.5.2). Cache policy (bis Appendix B.1): a blocking
response is a snapshot of a named msn/part, so edges may keep it 6 target durations under its
own query key; the plain playlist is kept at most 1 s.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from aiohttp import web

from media.ll_publisher import LLPublisher
from media.llhls import BadDirective, Directives, check_reachable, parse_directives, ready

_PART = re.compile(r"^(?P<rung>[^/]+)/(?P<msn>\d+)\.(?P<part>\d+)-(?P<tag>[^/]+)\.m4s$")


class LiveOrigin:
    def __init__(self, publisher: LLPublisher, max_blocked: int,
                 on_reject: Callable[[str], None] = lambda reason: None) -> None:
        self.pub = publisher
        self.max_blocked = max_blocked
        self.blocked = 0
        self.on_reject = on_reject
        self._event = asyncio.Event()
        publisher.on_change = self.pulse

    @property
    def td(self) -> int:
        return self.pub.timeline.target_duration

    def pulse(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def _error(self, status: int, text: str, **headers: str) -> web.Response:
        self.on_reject(str(status))
        return web.Response(status=status, text=text + "\n",
                            headers={"Cache-Control": "no-store", **headers,
                                     "Access-Control-Allow-Origin": "*"})

    async def _hold(self, satisfied: Callable[[], bool]) -> web.Response | None:
        """Wait until ``satisfied()``; None when it is, else the error response to send."""
        if satisfied():
            return None
        if self.blocked >= self.max_blocked:
            return self._error(503, f"too many blocked playlist requests (limit "
                                    f"{self.max_blocked}); retry", **{"Retry-After": "1"})
        self.blocked += 1
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 3 * self.td
            while not satisfied():
                left = deadline - loop.time()
                if left <= 0:
                    return self._error(503, "not available within 3 target durations")
                try:
                    await asyncio.wait_for(self._event.wait(), left)
                except TimeoutError:
                    continue
        finally:
            self.blocked -= 1
        return None

    async def playlist(self, request: web.Request, rendition: str) -> web.Response:
        try:
            d = parse_directives(request.query)
            if rendition in self.pub.ended:
                d = Directives()  # bis §6.2.5: directives are ignored once ENDLIST is there
            check_reachable(d, self.pub.timeline, self.pub.book, self.pub.cfg)
        except BadDirective as exc:
            return self._error(400, str(exc))
        error = await self._hold(lambda: ready(d, self.pub.timeline, self.pub.book))
        if error is not None:
            return error
        text = self.pub.playlist(rendition, skip=d.skip)
        if text is None:
            return web.Response(status=404, text="not found\n",
                                headers={"Cache-Control": "max-age=1"})
        age = 6 * self.td if d.blocking else 1
        resp = web.Response(text=text, content_type="application/vnd.apple.mpegurl",
                            headers={"Cache-Control": f"public, max-age={age}",
                                     "Access-Control-Allow-Origin": "*"})
        resp.enable_compression()
        return resp

    async def hold_part(self, rel: str) -> web.Response | None:
        """A part not written yet but next in line (the preload hint): wait for it (bis
        §4.4.5.3); None when it exists now or is not a part we expect."""
        m = _PART.match(rel)
        if m is None or m["tag"] != self.pub.book.open_tag:
            return None
        wanted = (int(m["msn"]), int(m["part"]))
        newest = self.pub.book.newest(self.pub.timeline)
        if wanted <= newest or int(m["msn"]) > self.pub.book.open_msn + 1:
            return None
        path = self.pub.origin / rel
        return await self._hold(path.is_file)
