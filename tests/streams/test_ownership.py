"""Partition ownership and the order acks go out in (pure: ``streams.ownership``)."""

from __future__ import annotations

from streams.ownership import OrderedAcks, Ownership


def test_each_assignment_is_a_new_generation() -> None:
    own = Ownership(())
    assert own.generation(2) is None  # the worker holds only what it was given
    own.assign([1, 2])
    first = own.generation(2)
    assert own.current(2, first) and own.partitions == {1, 2}
    own.revoke([2])
    assert own.generation(2) is None and not own.current(2, first)
    own.assign([2])
    assert own.generation(2) != first and not own.current(2, first)  # an old turn stays old
    assert own.current(1, own.generation(1))


def test_a_standalone_engine_takes_a_partition_on_first_sight() -> None:
    own = Ownership(None)
    g = own.generation(5)
    assert g is not None and own.generation(5) == g
    own.revoke([5])
    assert own.generation(5) not in (None, g)  # taken again, under a new generation


def test_acks_go_out_in_offset_order() -> None:
    """faust would commit past the head if it alone were unacked (faust-streaming #606)."""
    acks: OrderedAcks[str] = OrderedAcks()
    for offset in (10, 11, 12, 13):
        acks.take(offset, f"m{offset}")
    assert acks.done(11) == [] and acks.done(13) == []  # 10 still under way
    assert acks.head() == 10
    assert acks.done(10) == ["m10", "m11"]
    assert acks.done(12) == ["m12", "m13"] and acks.head() is None and len(acks) == 0


def test_a_closed_tracker_acks_nothing() -> None:
    acks: OrderedAcks[str] = OrderedAcks()
    acks.take(1, "a")
    acks.close()  # the partition was revoked: the new owner re-reads offset 1
    assert acks.done(1) == []


def test_after_a_seek_back_stale_copies_are_skipped() -> None:
    acks: OrderedAcks[str] = OrderedAcks(resume_at=40)
    assert not acks.accept(44) and not acks.accept(45)  # buffered before the seek
    assert acks.accept(40) and acks.accept(41) and acks.accept(44)  # the re-read
