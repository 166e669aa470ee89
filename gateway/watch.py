"""`stumpcast watch MATCH_ID`: a live scorecard in the terminal (rich Live) over the client."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from gateway.client import ClientState, GatewayClient, GatewayClosed


def render(state: ClientState, match_id: str, status: str) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.pretty import Pretty
    from rich.table import Table

    match = state.channels[f"match:{match_id}"]
    notes = state.channels[f"notes:{match_id}"]
    pos = match.position
    title = f"match {match_id} · " + (f"epoch {pos.epoch} seq {pos.seq}" if pos else "waiting")
    card = match.card if isinstance(match.card, dict) else {}
    table = Table(show_header=False, box=None)
    for key, value in card.items():
        if not isinstance(value, dict | list):
            table.add_row(str(key), str(value))
    raw_innings = card.get("innings")
    innings: list[Any] = raw_innings if isinstance(raw_innings, list) else []
    for inn in innings[-2:]:
        if isinstance(inn, dict):
            table.add_row("innings", Pretty({k: v for k, v in inn.items()
                                             if not isinstance(v, dict | list)}))
    feed = Table(show_header=False, box=None)
    for n in notes.notes[-8:]:
        feed.add_row(str(n.get("over", "")), str(n.get("priority", "")), str(n.get("text", "")))
    return Group(Panel(table, title=title, subtitle=status), Panel(feed, title="notifications"))


def watch(url: str, match_id: str, token: str | None) -> int:
    from rich.live import Live

    session_id = f"watch-{uuid.uuid4().hex[:16]}"

    def heartbeat() -> dict[str, Any]:
        # A terminal shows the live edge: its "playhead" is now, and it never buffers.
        return {"session_id": session_id, "match_id": match_id, "region": "unknown",
                "cdn": "gateway", "bitrate_kbps": 0, "buffering_ms": 0,
                "playhead_ms": int(time.time() * 1000), "device": "terminal"}

    client = GatewayClient(url, [f"match:{match_id}", f"notes:{match_id}"], token,
                           heartbeat=heartbeat)

    async def main() -> int:
        with Live(render(client.state, match_id, "connecting"), refresh_per_second=8) as live:
            try:
                async for event in client.events():
                    status = f"{event.kind} · reconnects {client.reconnects}"
                    if event.kind == "error":
                        status = f"error: {event.message.get('message')}"
                    live.update(render(client.state, match_id, status))
            except GatewayClosed as exc:
                live.update(render(client.state, match_id, str(exc)))
                return 1
        return 0

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 0
