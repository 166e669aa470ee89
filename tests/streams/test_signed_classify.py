"""``classify`` with a scorer registry: the signature first, then the scorer's sources."""

from __future__ import annotations

import dataclasses

from schemas import codec
from schemas.deadletter import Reason
from schemas.events import Event
from schemas.signing import Registry, Scorer, Signer, generate_key
from streams import cricsheet
from streams.pipeline import Rejected, classify
from tests.streams.cricsheet_data import DATA_DIR

ALLOWED = ("cricsheet", "scorer:*")
EVENT = codec.decode(codec.encode(  # as the wire carries it (ts in ms)
    cricsheet.import_match(cricsheet.load(sorted(DATA_DIR.glob("*.json"))[0]), "m1")[3]))
FEED_PEM, FEED_PUB = generate_key()
DESK_PEM, DESK_PUB = generate_key()
REGISTRY = Registry({"feed": Scorer("feed", FEED_PUB, ("cricsheet",)),
                     "desk": Scorer("desk", DESK_PUB, ("scorer:desk",))})


def test_a_signed_event_of_an_allowed_source_is_accepted() -> None:
    wire = Signer("feed", FEED_PEM).sign(codec.encode(EVENT))
    assert classify(wire, None, ALLOWED, REGISTRY) == EVENT
    assert classify(wire, None, ALLOWED) == EVENT  # readers that do not verify ignore "sig"


def test_unsigned_or_foreign_events_are_refused_with_their_ids() -> None:
    body = codec.encode(EVENT)
    for raw, reason in ((body, Reason.BAD_SIGNATURE),
                        (Signer("desk", DESK_PEM).sign(body), Reason.UNAUTHORISED),
                        (Signer("ghost", FEED_PEM).sign(body), Reason.BAD_SIGNATURE)):
        out = classify(raw, "tok", ALLOWED, REGISTRY)
        assert isinstance(out, Rejected) and out.reason is reason, out
        assert (out.match_id, out.seq, out.token) == ("m1", EVENT.seq, "tok")


def test_what_is_folded_is_what_was_signed() -> None:
    """A second "sig" member or junk after the signed body cannot smuggle fields in."""
    signed = Signer("feed", FEED_PEM).sign(codec.encode(EVENT))
    out = classify(signed, None, ALLOWED, REGISTRY)
    assert isinstance(out, Event)
    other = codec.encode(dataclasses.replace(EVENT, seq=99))
    spliced = other[:-1] + signed[signed.rindex(b',"sig"'):]
    rejected = classify(spliced, None, ALLOWED, REGISTRY)
    assert isinstance(rejected, Rejected) and rejected.reason is Reason.BAD_SIGNATURE
