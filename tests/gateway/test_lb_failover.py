"""Two gateway nodes (real `stumpcast gateway serve` processes) behind the stack's two HAProxy
processes on one port (`stack up --only lb,lb-2`, health-checked through /readyz): a client of
the node that is SIGKILLed reconnects through the load balancer to the other node and resumes
by position, with every update once and no second snapshot; an HAProxy process that is
SIGKILLed leaves the port served by its twin."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.client import GatewayClient
from schemas.settings import Settings
from stumpcast.stack import control, ports
from stumpcast.stack.lb_server import LB_TYPES, admin_command, backend_sessions
from stumpcast.stack.procs import ProcRecord
from tests.replicas import Replica, free_port
from tests.tools import require_tool

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def _haproxy() -> None:
    require_tool("haproxy", "apt-get install haproxy")


def _lb_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.fixture
def lb(settings: Settings, redis: object, tmp_path: Path
       ) -> Iterator[tuple[Settings, list[Replica]]]:
    _haproxy()
    gws = [Replica(f"gw{i}", ["gateway", "serve"], "STUMPCAST_GATEWAY_PORT", tmp_path,
                   env={"STUMPCAST_GATEWAY_ADMIN_PORT": str(free_port())}) for i in (1, 2)]
    lb_settings = dataclasses.replace(
        settings, run_dir=tmp_path / "run", stack_lb_port=free_port(),
        stack_lb_gateways=tuple(f"127.0.0.1:{g.port}" for g in gws))
    try:
        for g in gws:
            g.wait_ready(60)
        control.up(lb_settings, list(LB_TYPES), say=lambda _: None)
        socks = _sockets(lb_settings)
        deadline = time.monotonic() + 20
        while not (_lb_ready(lb_settings.stack_lb_port) and len(backend_sessions(*socks)) == 2):
            assert time.monotonic() < deadline, "the load balancer saw no ready gateway"
            time.sleep(0.2)
        yield lb_settings, gws
    finally:
        control.down(lb_settings, list(LB_TYPES))
        for g in gws:
            g.stop()


async def test_a_client_of_a_killed_gateway_resumes_through_the_lb(lb, writer, match_id):
    settings, gws = lb
    socks = _sockets(settings)   # the client's session is on either HAProxy process
    await writer.publish(match_id, {"runs": 0})
    client = GatewayClient(f"ws://127.0.0.1:{settings.stack_lb_port}/ws",
                           [f"match:{match_id}"], base=0.05, cap=0.5)
    seen: list[int] = []
    kinds: list[str] = []

    async def consume() -> None:
        async for event in client.events():
            if event.kind in {"snapshot", "update"}:
                kinds.append(event.kind)
                seen.append(event.message["seq"])
                if event.message["seq"] == 21:
                    return

    task = asyncio.create_task(consume())
    for runs in range(1, 6):
        await asyncio.sleep(0.1)
        await writer.publish(match_id, {"runs": runs})
    deadline = time.monotonic() + 10
    while not any(backend_sessions(*socks).values()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    sessions = backend_sessions(*socks)
    victim = gws[int(max(sessions, key=lambda k: sessions[k]).removeprefix("gw")) - 1]
    victim.kill()
    killed = time.monotonic()
    for runs in range(6, 21):
        await writer.publish(match_id, {"runs": runs})
        await asyncio.sleep(0.1)
    await asyncio.wait_for(task, 30)
    print(f"{victim.name} killed; the client had seq 21 {time.monotonic() - killed:.1f} s "
          f"later after {client.reconnects} reconnect(s)")
    assert client.reconnects >= 1
    assert seen == list(range(1, 22))           # every update, once, in order
    assert kinds.count("snapshot") == 1          # resumed by position, not a fresh snapshot
    assert client.state.channels[f"match:{match_id}"].card == {"runs": 20}


def test_the_port_stays_served_when_one_haproxy_dies(lb):
    """Both HAProxy processes listen on the port (the kernel spreads new connections); with
    one SIGKILLed every new connection goes to the other, and `stack up` brings it back."""
    settings, _ = lb
    layout = control.RunLayout.at(settings.run_dir)
    socks = _sockets(settings)
    pids = {int(line.split(": ")[1]) for sock in socks
            for line in admin_command(sock, "show info").splitlines() if line.startswith("Pid:")}
    assert len(pids) == 2                               # two processes, one port
    record = ProcRecord.load(layout.pid_record("lb-2"))
    assert record is not None and record.pid in pids
    assert ports.listeners(settings.stack_lb_port) == 2
    os.kill(record.pid, 9)
    # Its listening socket closes when the last of its threads exits, which can be after the
    # main thread shows as a zombie; a connection the kernel queued on it meanwhile is reset
    # (docs/operations.md). From then on every new connection goes to the other process.
    deadline = time.monotonic() + 5
    while _alive(record.pid) or ports.listeners(settings.stack_lb_port) > 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert all(_lb_ready(settings.stack_lb_port) for _ in range(20))   # each one answered
    control.up(settings, ["lb-2"], say=lambda _: None)
    assert LB_TYPES["lb-2"](settings, layout).probe()


def _sockets(settings: Settings) -> list[str]:
    layout = control.RunLayout.at(settings.run_dir)
    return [kind(settings, layout).socket_path for kind in LB_TYPES.values()]


def _alive(pid: int) -> bool:
    try:   # a zombie ("Z") until its parent reaps it counts as dead
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False
