"""The dead-letter record of ``match.events.dlq``: round trip, old records upcast, bad ones
named."""

import orjson
import pytest

from schemas import deadletter as d


def test_round_trip_keeps_the_refused_bytes_as_json_or_text():
    dead = d.DeadLetter.of(d.Reason.CONFLICT, "seq 4 already holds event 'a', not 'b'",
                           b'{"type": "delivery", "seq": 4}', "m1", 4, "delivery")
    assert dead.event == {"type": "delivery", "seq": 4}
    doc = orjson.loads(dead.encode())
    assert (doc["type"], doc["v"], doc["reason"], doc["event_type"]) == \
        ("dead_letter", 1, "conflict", "delivery")
    assert d.decode(dead.encode()) == dead
    junk = d.DeadLetter.of(d.Reason.INVALID, "not JSON", b'{"type": "delivery", "v": 1')
    assert junk.event == '{"type": "delivery", "v": 1' and junk.match_id is None
    assert d.decode(junk.encode()) == junk


def test_records_written_by_the_old_code_are_read():
    # The exact bytes the worker wrote before the contract (engine.dlq_record, version 0).
    old = (b'{"reason":"sequence_gap","detail":"missing seq 2..3 for 5s","match_id":"m1",'
           b'"seq":4,"type":"delivery","event":{"type":"delivery","v":1,"seq":4}}')
    dead = d.decode(old)
    assert dead == d.DeadLetter(d.Reason.SEQUENCE_GAP, "missing seq 2..3 for 5s",
                                {"type": "delivery", "v": 1, "seq": 4}, "m1", 4, "delivery")
    invalid = d.decode(b'{"reason":"invalid","detail":"x","match_id":null,"seq":null,'
                       b'"type":null,"event":"{not json"}')
    assert invalid.reason is d.Reason.INVALID and invalid.event == "{not json"
    assert invalid.event_type is None


@pytest.mark.parametrize("raw, field", [
    (b"{", "not JSON"),
    (b"[1]", "object"),
    (b'{"type": "delivery", "v": 1}', "type"),
    (b'{"type": "dead_letter", "v": 2, "reason": "invalid"}', "v"),
    (b'{"type": "dead_letter", "v": 1, "reason": "invalid", "event": 1}', "detail"),
    (b'{"type": "dead_letter", "v": 1, "reason": "bored", "detail": "", "event": 1}', "reason"),
    (b'{"type": "dead_letter", "v": 1, "reason": "invalid", "detail": "", "event": 1, '
     b'"seq": "4"}', "seq"),
    (b'{"reason": "conflict", "detail": "", "event": 1, "match_id": 7}', "match_id"),
])
def test_bad_records_name_the_field(raw, field):
    with pytest.raises(d.DeadLetterError, match=field):
        d.decode(raw)
