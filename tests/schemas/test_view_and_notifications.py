"""The Redis view record and the notification contract round-trip and reject bad input."""

from typing import Any

import pytest

from schemas import notifications as n
from schemas import view


def test_small_change_becomes_a_patch_and_big_one_a_card():
    old = {"match_id": "m", "innings": [{"runs": 10, "wickets": 0, "name": "x" * 50}]}
    new = {"match_id": "m", "innings": [{"runs": 14, "wickets": 0, "name": "x" * 50}]}
    up = view.make_update("m", 1, 5, 4, "2023-05-29T14:00:00Z", old, new)
    assert up.patch == [["k", ["innings", 0], [1, 14]]] and up.card is None  # "runs", rank 1
    first = view.make_update("m", 1, 1, 0, "2023-05-29T14:00:00Z", None, new)
    assert first.card == new and first.patch is None
    assert view.decode_update(up.encode()) == up


@pytest.mark.parametrize("raw, message", [
    (b"{", "not JSON"),
    (b'{"type": "update", "v": 9}', "version"),
    (b'{"type": "update", "v": 1, "match_id": "m"}', "missing"),
    (b'{"type": "update", "v": 1, "match_id": "m", "epoch": 1, "seq": 2, "prev_seq": 1, '
     b'"ts": "t"}', "exactly one"),
])
def test_bad_update_records_are_rejected_clearly(raw, message):
    with pytest.raises(view.ViewUpdateError, match=message):
        view.decode_update(raw)


def _note(**over):
    fields: dict[str, Any] = dict(id="m:1:wicket", match_id="m", kind="wicket", priority="P1",
                                  ts="2023-05-29T14:00:00Z", seq=7, innings=1, over="0.6",
                                  text="WICKET! Gill st Dhoni b Jadeja")
    fields.update(over)
    return n.Notification(**fields)


def test_notification_round_trip_and_retraction():
    note = _note()
    assert n.decode(note.encode()) == note
    back = n.retraction(note, "2023-05-29T14:02:00Z", 9)
    assert back.retracts == note.id and back.kind is n.Kind.RETRACTION
    assert n.decode(back.encode()) == back


@pytest.mark.parametrize("over, field", [
    ({"kind": "boundary"}, "kind"), ({"seq": 0}, "seq"), ({"ts": "2023-05-29 14:00"}, "ts"),
    ({"text": ""}, "text"), ({"retracts": "x"}, "retracts"),
])
def test_bad_notifications_name_the_field(over, field):
    with pytest.raises(n.NotificationError, match=field):
        _note(**over)


def test_note_ids_round_trip_as_text_and_bytes():
    assert n.note_id(12, 3) == "12-3"
    assert n.parse_note_id("12-3") == (12, 3) == n.parse_note_id(b"12-3")
    assert n.parse_note_id(n.note_id(1, 0)) == (1, 0)


@pytest.mark.parametrize("text", ["12", "12-", "-3", "a-1", "1-2-3", "12:3", "", "1-+2", "١-٢"])
def test_bad_note_ids_are_rejected_clearly(text):
    with pytest.raises(n.NotificationError, match="note id"):
        n.parse_note_id(text)
