"""The notification relay on an in-memory transactional log: exactly once, acks held, fencing.

The Kafka log itself (transactions, fencing, read_committed checkpoints) is tested against the
real broker in ``test_relay_kafka.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from schemas.notifications import note_id
from streams.relay import FencedError, InMemoryTxnLog, NoteRelay


def notes(*keys: tuple[int, int]) -> list[tuple[tuple[int, int], bytes]]:
    return [(k, note_id(*k).encode()) for k in keys]


def relay(shared: dict[str, Any], **kwargs: Any) -> NoteRelay:
    return NoteRelay(lambda p: InMemoryTxnLog(shared, p), retry_max=0.01, reopen_pause=0.01,
                     **kwargs)


def published(shared: dict[str, Any]) -> list[bytes]:
    return [raw for _, raw in shared.get("topic", [])]


async def test_notes_are_published_once_and_acks_wait_for_them() -> None:
    shared: dict[str, Any] = {}
    r, acked = relay(shared), []
    r.publish("m", 0, notes((3, 0), (3, 1)))
    r.gate("m", 0, 2, lambda: acked.append(2))  # its event caused nothing pending: ...
    r.gate("m", 0, 3, lambda: acked.append(3))  # ... but the log is not open yet
    r.publish("m", 0, notes((3, 0), (3, 1)))  # the same notes again (a re-recovery)
    await r.drained()
    assert published(shared) == [b"3-0", b"3-1"]
    assert sorted(acked) == [2, 3]
    assert shared["checkpoints"][0] == {"m": (3, 1)}
    await r.close()


async def test_a_new_owner_skips_what_was_committed() -> None:
    """Killed after the commit, before the acks: the restarted worker re-folds the same events
    and hands the relay the same ids, which the checkpoint filters out."""
    shared: dict[str, Any] = {}
    first = relay(shared)
    first.publish("m", 1, notes((5, 0), (9, 0)))
    await first.drained()
    second, acked = relay(shared), []  # no close(): a SIGKILLed worker closes nothing
    second.publish("m", 1, notes((5, 0), (9, 0), (12, 0)))
    second.gate("m", 1, 9, lambda: acked.append(9))
    second.gate("m", 1, 12, lambda: acked.append(12))
    await second.drained()
    assert published(shared) == [b"5-0", b"9-0", b"12-0"]
    assert acked == [9, 12]
    await second.close()


async def test_failed_commits_are_retried_and_hold_the_acks() -> None:
    shared: dict[str, Any] = {"fail_commits": 3}
    r, acked = relay(shared), []
    r.publish("m", 0, notes((1, 0)))
    r.gate("m", 0, 1, lambda: acked.append(1))
    for _ in range(200):
        if acked:
            break
        assert published(shared) == []
        await asyncio.sleep(0.005)
    await r.drained()
    assert published(shared) == [b"1-0"] and acked == [1] and shared["fail_commits"] == 0
    await r.close()


async def test_a_fenced_relay_reopens_and_keeps_its_notes_and_acks() -> None:
    """Another worker opened the partition (this one was a zombie, or the other one is): the
    fenced relay opens it again, reads the checkpoint then, and publishes only what is above
    it; its held acks are released, nothing is published twice. (Old code: the relay gave
    the partition up and dropped its held acks, so their offsets were never committed.)"""
    shared: dict[str, Any] = {}
    old, acked = relay(shared), []
    old.publish("a", 2, notes((1, 0)))
    await old.drained()
    new = relay(shared)
    new.publish("a", 2, notes((1, 0), (4, 0)))  # the new owner opens partition 2 ...
    await new.drained()
    old.publish("a", 2, notes((4, 0), (6, 0)))  # ... so the old one's next commit is fenced
    old.gate("a", 2, 6, lambda: acked.append(6))
    await old.drained()
    assert acked == [6]
    assert published(shared) == [b"1-0", b"4-0", b"6-0"]  # 4-0 was out: not again
    assert shared["checkpoints"][2] == {"a": (6, 0)}
    await new.close()
    await old.close()


async def test_revoke_finishes_the_partition_and_drops_its_notes_and_acks() -> None:
    shared: dict[str, Any] = {"fail_commits": 10_000}  # Kafka refuses: everything is held
    r, acked = relay(shared), []
    r.publish("a", 1, notes((3, 0)))
    r.gate("a", 1, 3, lambda: acked.append(3))
    r.publish("b", 2, notes((5, 0)))
    await asyncio.sleep(0.05)
    assert r.held() == 3
    await r.revoke([1])
    assert r.held() == 1  # partition 2 is untouched
    shared["fail_commits"] = 0
    r.publish("b", 2, notes((6, 0)))
    await r.drained()
    assert published(shared) == [b"5-0", b"6-0"] and acked == []  # 3-0 is the new owner's
    await r.close()


async def test_held_notes_and_acks_are_bounded() -> None:
    shared: dict[str, Any] = {"fail_commits": 10_000}
    r = relay(shared, max_held=4)
    for seq in (1, 2):
        r.publish("a", 0, notes((seq, 0)))
        r.gate("a", 0, seq, lambda: None)
    room = asyncio.create_task(r.room())
    await asyncio.sleep(0.05)
    assert r.held() == 4 and not room.done()  # the engine would wait here: consumption pauses
    shared["fail_commits"] = 0
    await asyncio.wait_for(room, 2)
    await r.drained()
    assert r.held() == 0
    await r.close()


async def test_matches_and_partitions_are_independent() -> None:
    shared: dict[str, Any] = {}
    r = relay(shared)
    r.publish("a", 0, notes((1, 0)))
    r.publish("b", 3, notes((2, 0)))
    r.publish("c", 0, notes((1, 0)))
    await r.drained()
    assert sorted(published(shared)) == [b"1-0", b"1-0", b"2-0"]
    assert shared["checkpoints"] == {0: {"a": (1, 0), "c": (1, 0)}, 3: {"b": (2, 0)}}
    await r.close()


def test_in_memory_log_fences_like_a_transactional_id() -> None:
    shared: dict[str, Any] = {}
    a, b = InMemoryTxnLog(shared, 0), InMemoryTxnLog(shared, 0)
    a.open()
    b.open()
    try:
        a.commit([("m", b"x")], {"m": (1, 0)})
    except FencedError:
        pass
    else:
        raise AssertionError("the older owner committed")


async def test_a_busy_partition_batches_and_a_sparse_note_goes_at_once() -> None:
    shared: dict[str, Any] = {}
    r = NoteRelay(lambda p: InMemoryTxnLog(shared, p), min_interval=0.2)
    r.publish("m", 0, notes((1, 0)))
    await r.drained()
    assert shared["commits"] == 1  # the first note did not wait
    loop = asyncio.get_running_loop()
    started = loop.time()
    for seq in (2, 3, 4):  # a burst right after: one transaction, 0.2 s after the last
        r.publish("m", 0, notes((seq, 0)))
        await asyncio.sleep(0.01)
    await r.drained()
    assert shared["commits"] == 2 and published(shared) == [b"1-0", b"2-0", b"3-0", b"4-0"]
    assert loop.time() - started >= 0.15
    await r.close()
