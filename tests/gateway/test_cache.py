"""The per-process match cache: sequence discipline and resume decisions, without Redis."""

import orjson

from gateway.cache import MatchCache, NotesCache, Outcome
from schemas import patch as patch_format
from schemas import protocol as p
from schemas.view import decode_update, make_update


def cards(n: int) -> list[dict]:
    return [{"runs": i, "overs": f"{i // 6}.{i % 6}", "batters": [{"name": "A", "r": i}],
             "pad": "x" * 200} for i in range(n)]


def build(n: int, keep: int = 300) -> tuple[MatchCache, list[bytes]]:
    cs = cards(n + 1)
    raws = [make_update("m", 1, i, i - 1, f"t{i}", cs[i - 1] if i > 1 else None, cs[i]).encode()
            for i in range(1, n + 1)]
    cache = MatchCache("m", 1, 1, "t1", cs[1], [(1, raws[0])], recovery_max=keep)
    for raw in raws[1:]:
        assert cache.apply(decode_update(raw), raw) is Outcome.APPLIED
    return cache, raws


def replay_client(messages: list[bytes], card=None):
    """What a client ends with after applying gateway messages in order."""
    for raw in messages:
        doc = orjson.loads(raw)
        if doc["type"] == "snapshot" or "card" in doc:
            card = doc["card"]
        else:
            card = patch_format.apply(card, doc["patch"])
    return card


class TestSequence:
    def test_duplicate_gap_and_epoch_are_typed_outcomes(self):
        cache, raws = build(5)
        assert cache.apply(decode_update(raws[2]), raws[2]) is Outcome.DUPLICATE
        gap = make_update("m", 1, 8, 7, "t", None, {"runs": 8})
        assert cache.apply(gap, gap.encode()) is Outcome.GAP
        new_epoch = make_update("m", 2, 1, 0, "t", None, {"runs": 0})
        assert cache.apply(new_epoch, new_epoch.encode()) is Outcome.EPOCH_CHANGED
        assert cache.seq == 5

    def test_a_patch_that_does_not_fit_is_a_gap(self):
        cache, _ = build(2)
        from schemas.view import ViewUpdate

        bad = ViewUpdate("m", 1, 3, 2, "t", patch=[["s", ["a", "b"], 2]])
        assert cache.apply(bad, bad.encode()) is Outcome.GAP

    def test_cache_card_follows_the_updates(self):
        cache, _ = build(30)
        assert cache.card == cards(31)[30]


class TestResume:
    def test_exactly_the_missed_updates(self):
        cache, raws = build(30)
        catch = cache.catch_up(p.ChannelPosition(1, 20))
        assert catch.recovered and catch.frames == raws[20:30]
        assert catch.position == p.ChannelPosition(1, 30)
        assert replay_client(catch.frames, cards(31)[20]) == cards(31)[30]

    def test_up_to_date_or_ahead_gets_nothing(self):
        cache, _ = build(5)
        assert cache.catch_up(p.ChannelPosition(1, 5)).frames == []
        ahead = cache.catch_up(p.ChannelPosition(1, 9))
        assert ahead.recovered and ahead.position.seq == 9

    def test_gap_beyond_history_gets_a_snapshot(self):
        cache, _ = build(30, keep=5)
        catch = cache.catch_up(p.ChannelPosition(1, 10))
        assert not catch.recovered
        assert orjson.loads(catch.frames[0])["card"] == cards(31)[30]

    def test_other_epoch_or_no_since_gets_a_snapshot(self):
        cache, _ = build(5)
        for since in (None, p.ChannelPosition(7, 3)):
            catch = cache.catch_up(since)
            assert not catch.recovered and orjson.loads(catch.frames[0])["type"] == "snapshot"

    def test_snapshot_is_encoded_once_per_position(self):
        cache, _ = build(3)
        assert cache.snapshot_frame() is cache.snapshot_frame()

    def test_loaded_history_keeps_only_the_contiguous_tail(self):
        cache = MatchCache("m", 1, 10, "", {}, [(3, b"a"), (8, b"b"), (9, b"c"), (10, b"d")])
        assert [s for s, _ in cache.history] == [8, 9, 10]
        assert cache.catch_up(p.ChannelPosition(1, 7)).recovered
        assert not cache.catch_up(p.ChannelPosition(1, 6)).recovered


class TestNotes:
    def test_resume_by_seq_and_k(self):
        notes = NotesCache("m", [(3, 0, b'{"n":1}'), (3, 1, b'{"n":2}'), (5, 0, b'{"n":3}')])
        catch = notes.catch_up(p.ChannelPosition(0, 3, 0))
        assert catch is not None and catch.recovered
        assert [orjson.loads(f)["note"]["n"] for f in catch.frames] == [2, 3]
        assert notes.add(3, 1, b"{}") is None  # already seen

    def test_unprovable_continuity_asks_redis(self):
        notes = NotesCache("m", [(i, 0, b"{}") for i in range(1, 11)], keep=4)
        assert not notes.complete
        assert notes.catch_up(p.ChannelPosition(0, 2)) is None
        assert notes.catch_up(p.ChannelPosition(0, 8)).recovered
