"""Wire types: channels, positions, close code ranges, spliced (encode-once) messages."""

import orjson
import pytest

from schemas import protocol as p


def test_close_code_ranges_are_disjoint_and_documented():
    for code in p.CloseCode:
        assert 4000 <= code <= 4199
        assert p.should_reconnect(code) == (code < 4100), code.name
    assert p.should_reconnect(1006) and not p.should_reconnect(1008)


@pytest.mark.parametrize("raw", ["match:1370353", "notes:ipl-2023.final_1"])
def test_channels_round_trip(raw):
    assert p.parse_channel(raw).key == raw


def test_snapshot_and_note_splice_the_inner_json_verbatim():
    card = orjson.dumps({"runs": 5})
    doc = orjson.loads(p.snapshot("m", 2, 9, "2023-05-29T14:00:00Z", card))
    assert doc == {"type": "snapshot", "v": 1, "channel": "match:m", "match_id": "m",
                   "epoch": 2, "seq": 9, "ts": "2023-05-29T14:00:00Z", "card": {"runs": 5}}
    note = orjson.loads(p.note("m", 17, 1, b'{"type":"notification","v":1}'))
    assert (note["channel"], note["seq"], note["k"], note["epoch"]) == ("notes:m", 17, 1, 0)
    assert note["note"]["type"] == "notification"


def test_client_messages_build_what_the_parser_accepts():
    msg = p.parse_client_message(p.subscribe_message("notes:m", p.ChannelPosition(0, 3, 1), 5))
    assert msg == p.Subscribe(5, p.Channel("notes", "m"), p.ChannelPosition(0, 3, 1))
    assert p.channel_of({"type": "update", "match_id": "m"}) == "match:m"
