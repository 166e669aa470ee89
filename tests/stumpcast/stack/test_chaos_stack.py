"""`stumpcast chaos`, short: every fault once (and then all together) on the session's
multi-node stack, with a few hundred WebSocket clients through HAProxy and a fast replay. The
command itself checks, after every fault, that each card in Redis, in Cassandra (QUORUM) and at
the WebSocket clients equals the pure fold, that every notification is on Kafka exactly once,
that every client is at the final position and that nothing was dead-lettered; it exits
non-zero otherwise."""

from __future__ import annotations

import pytest

from bench.chaos_core import FAULTS, TOGETHER
from tests.multinode import MultiNode

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def test_every_fault_once_then_together_and_every_view_checked(nodes3: MultiNode) -> None:
    done = nodes3.cli("chaos", "--clients", "300", "--client-procs", "2", "--window", "6",
                      "--settle", "90", "--faults", "all", "--no-record", timeout=900)
    print(done.stdout[-6000:])
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if "views moving again" in line]
    for name in (*FAULTS, TOGETHER):
        assert any(line.startswith(f"{name}: ") and "checks passed" in line
                   for line in rows), name
    assert "checks: every round passed" in done.stdout
    # the gateway kill really moved clients: they came back by position
    gateway = next(line for line in rows if line.startswith("gateway-kill: "))
    assert " 0 connections dropped" not in gateway and " 0 resumed by position" not in gateway
