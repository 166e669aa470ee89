"""The ingest API's decisions (pure): who may send what, and what a claim found."""

from __future__ import annotations

import dataclasses

import pytest

from schemas import codec
from schemas.signing import Registry, Scorer, generate_key, token_hash
from streams import cricsheet
from streams.ingest import Answer, admit, bearer, verdict
from tests.streams.cricsheet_data import DATA_DIR

EVENT = dataclasses.replace(
    cricsheet.import_match(cricsheet.load(sorted(DATA_DIR.glob("*.json"))[0]), "m1")[0],
    source="scorer:desk")
REGISTRY = Registry({"desk": Scorer("desk", generate_key()[1], ("scorer:desk",),
                                    token_hash("desk-token"))})


def test_a_valid_request_names_its_scorer_and_event() -> None:
    scorer, event = admit(REGISTRY, "desk-token", "m1", codec.encode(EVENT))  # type: ignore[misc]
    assert scorer.id == "desk" and event == EVENT


@pytest.mark.parametrize("token, match_id, body, status", [
    (None, "m1", codec.encode(EVENT), 401),
    ("guess", "m1", codec.encode(EVENT), 401),
    ("desk-token", "m1", b"{nope", 400),
    ("desk-token", "m2", codec.encode(EVENT), 400),
    ("desk-token", "m1", codec.encode(dataclasses.replace(EVENT, source="cricsheet")), 403),
    ("desk-token", "m1", b"{" + b" " * 70_000 + b"}", 413),
])
def test_refusals(token, match_id, body, status) -> None:
    answer = admit(REGISTRY, token, match_id, body)
    assert isinstance(answer, Answer) and answer.status == status


@pytest.mark.parametrize("kind, value, status", [
    ("claimed", "", None),
    ("held", EVENT.event_id, 200),                 # the same event again: a duplicate
    ("held", "~" + EVENT.event_id, 503),           # the same event, still being written
    ("held", "another", 409),                      # the seq holds another event_id
    ("held", "~another", 409),
    ("reused", "7", 409),                          # this event_id holds another seq
])
def test_verdicts(kind, value, status) -> None:
    answer = verdict(kind, value, EVENT)
    assert (answer.status if answer else None) == status


def test_bearer() -> None:
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    assert bearer(None) is None and bearer("Basic abc") is None and bearer("Bearer ") is None
