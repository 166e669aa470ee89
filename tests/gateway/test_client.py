"""The client library's pure state and backoff; and one reconnect against a real gateway."""

import asyncio

import orjson
import pytest

from gateway.client import ClientState, GatewayClient, backoff
from schemas import protocol as p
from schemas.view import make_update


def test_full_jitter_backoff_is_bounded_and_spread():
    assert backoff(0, 0.5, 30, lambda: 1.0) == 0.5
    assert backoff(10, 0.5, 30, lambda: 1.0) == 30
    assert backoff(3, 0.5, 30, lambda: 0.0) == 0.0


def test_state_applies_snapshot_and_patches_and_asks_resync_on_a_gap():
    st = ClientState(["match:m"])
    st.apply(p.snapshot("m", 1, 1, "t", orjson.dumps({"runs": 1})))
    st.apply(make_update("m", 1, 2, 1, "t", {"runs": 1}, {"runs": 5}).encode())
    assert st.channels["match:m"].card == {"runs": 5}
    assert st.apply(make_update("m", 1, 2, 1, "t", {"runs": 1}, {"runs": 5}).encode()) == []
    gap = st.apply(make_update("m", 1, 9, 8, "t", {"runs": 5}, {"runs": 9}).encode())
    assert gap[0].kind == "resync" and st.channels["match:m"].position.seq == 2
    assert orjson.loads(st.subscribe_messages()[0])["since"] == {"epoch": 1, "seq": 2, "k": 0}


@pytest.mark.stack
async def test_client_reconnects_and_resumes_without_loss(gateway, writer, match_id):
    await writer.publish(match_id, {"runs": 0})
    client = GatewayClient(f"ws://127.0.0.1:{gateway.port}/ws", [f"match:{match_id}"],
                           base=0.05, cap=0.2)
    seen: list[int] = []

    async def consume():
        async for event in client.events():
            if event.kind in {"snapshot", "update"}:
                seen.append(event.message["seq"])
                if event.message["seq"] == 12:
                    return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    for runs in range(1, 6):
        await writer.publish(match_id, {"runs": runs})
    await asyncio.sleep(0.3)
    for conn in list(gateway.conns):  # drop everyone, as a restart would
        conn.abort()
    for runs in range(6, 12):
        await writer.publish(match_id, {"runs": runs})
    await asyncio.wait_for(task, 10)
    assert client.reconnects >= 1
    assert seen == list(range(1, 13)) and client.state.channels[f"match:{match_id}"].card == \
        {"runs": 11}
