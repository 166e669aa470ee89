"""The relay checkpoint of ``match.notifications.relay``: both versions read, bad ones named."""

import orjson
import pytest

from schemas import relay as r


def test_version_1_round_trips():
    mark = r.Checkpoint("m1", 12, 3)
    raw = mark.encode(1)
    assert orjson.loads(raw) == {"type": "relay_checkpoint", "v": 1, "match_id": "m1",
                                 "seq": 12, "k": 3}
    assert r.decode(mark.key, raw) == mark and mark.position == (12, 3)


def test_records_written_by_the_old_code_are_read_and_still_written():
    # The old relay wrote the bare position, key the match id (key_str((12, 3)).encode()).
    assert r.decode(b"m1", b"12-3") == r.Checkpoint("m1", 12, 3)
    assert r.decode("m1", "1-0").position == (1, 0)
    # Old readers cannot read version 1: the relay writes version 0 until they are gone.
    assert r.WRITE_VERSION == 0 and r.Checkpoint("m1", 12, 3).encode() == b"12-3"


@pytest.mark.parametrize("key, value, field", [
    (b"m1", b"12", "note id"),
    (b"m1", b"twelve-3", "note id"),
    (b"m1", b"{", "not JSON"),
    (b"m1", b'{"type": "notification", "v": 1}', "type"),
    (b"m1", b'{"type": "relay_checkpoint", "v": 2}', "v"),
    (b"m1", b'{"type": "relay_checkpoint", "v": 1, "match_id": "m2", "seq": 1, "k": 0}',
     "match_id"),
    (b"m1", b'{"type": "relay_checkpoint", "v": 1, "match_id": "m1", "seq": 0, "k": 0}', "seq"),
    (b"m1", b'{"type": "relay_checkpoint", "v": 1, "match_id": "m1", "seq": 1}', "k"),
    (b"", b"1-0", "match_id"),
])
def test_bad_checkpoints_name_the_field(key, value, field):
    with pytest.raises(r.CheckpointError, match=field):
        r.decode(key, value)


def test_unknown_versions_are_not_written():
    with pytest.raises(r.CheckpointError, match="v"):
        r.Checkpoint("m1", 1, 0).encode(2)
