"""Match events and their codec: round trips, strict validation with field paths, upcasting,
JSON Schemas in sync with the code, and a fuzz that decoding never crashes."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import decode, encode, json_schemas, to_wire
from schemas.events import (
    PAYLOAD_TYPES,
    Delivery,
    DeliveryCorrected,
    Event,
    EventValidationError,
    Extras,
    Fielder,
    MatchCreated,
    MatchDecided,
    Replacement,
    Squad,
    Wicket,
)

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "jsonschema"
TS = dt.datetime(2023, 5, 29, 14, 0, 5, 250000, tzinfo=dt.UTC)


def envelope(payload: Any, seq: int = 3) -> Event:
    return Event(event_id=f"e{seq}", match_id="m1", seq=seq, ts=TS, source="test",
                 payload=payload)


def ball(**kw: Any) -> Delivery:
    base: dict[str, Any] = dict(innings=1, over=0, ball=1, bowler="Siraj", batter="Kohli",
                                non_striker="du Plessis")
    return Delivery(**{**base, **kw})


SAMPLES = [
    MatchCreated(teams=("A", "B"), squads=(Squad(team="A", players=("a1", "a2")),
                                           Squad(team="B", players=("b1",))),
                 overs=20, venue="Eden Gardens", competition="IPL"),
    ball(runs_batter=4, extras=Extras(noballs=1),
         wickets=(Wicket(kind="run out", player_out="du Plessis",
                         fielders=(Fielder(name="Jadeja", substitute=True),)),),
         replacements=(Replacement(scope="match", reason="impact_player", player_in="x",
                                   player_out="y", team="A"),)),
    DeliveryCorrected(target_seq=2, delivery=ball(runs_batter=6)),
    MatchDecided(kind="bowl_out", winner="India"),
    MatchDecided(kind="par_score", winner="India", margin=2, method="DLS"),
    MatchDecided(kind="par_score", method="VJD"),  # level with par: a tie
    ball(replacements=(Replacement(scope="role", reason="injury", player_in="Rahane",
                                   role="captain"),)),  # no one named going out
]


@pytest.mark.parametrize("payload", SAMPLES, ids=lambda p: p.TYPE)
def test_round_trip_is_exact(payload: Any) -> None:
    event = envelope(payload)
    data = encode(event)
    assert decode(data) == event
    wire = orjson.loads(data)
    assert wire["type"] == payload.TYPE and wire["v"] == payload.VERSION
    assert "__" not in data.decode() and "schemas." not in data.decode()  # no class paths


@pytest.mark.parametrize("payload", SAMPLES, ids=lambda p: p.TYPE)
def test_encoded_events_validate_against_checked_in_schema(payload: Any) -> None:
    event = envelope(payload)
    schema = json.loads((SCHEMA_DIR / f"{payload.TYPE}.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(to_wire(event))


def test_checked_in_json_schemas_match_the_code() -> None:
    """Regenerate with `stumpcast event-schemas` when this fails."""
    expected = {f"{name}.json": orjson.dumps(s, option=orjson.OPT_INDENT_2) + b"\n"
                for name, s in json_schemas().items()}
    on_disk = {p.name: p.read_bytes() for p in SCHEMA_DIR.glob("*.json")}
    assert on_disk == expected
    assert set(json_schemas()) == {cls.TYPE for cls in PAYLOAD_TYPES}
    for schema in json_schemas().values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_event_schemas_command_check(tmp_path: Path) -> None:
    from stumpcast.cli import main

    assert main(["event-schemas", "--check"]) == 0
    assert main(["event-schemas", "--dir", str(tmp_path)]) == 0
    assert main(["event-schemas", "--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "toss.json").write_text("{}")
    assert main(["event-schemas", "--check", "--dir", str(tmp_path)]) == 1


def test_old_version_is_upcast_on_read() -> None:
    wire = to_wire(envelope(SAMPLES[0]))
    wire["v"] = 1
    wire["payload"].pop("balls_per_over", None)  # v1 had no such field
    event = decode(orjson.dumps(wire))
    assert isinstance(event.payload, MatchCreated) and event.payload.balls_per_over == 6
    assert event.v == 2


def test_match_decided_v1_is_upcast_on_read() -> None:
    wire = to_wire(envelope(SAMPLES[3]))
    wire["v"] = 1  # v1 had no par_score, margin or method: the same payload reads as v2
    event = decode(orjson.dumps(wire))
    assert event.payload == SAMPLES[3] and event.v == 2


def test_par_score_and_replacement_rules() -> None:
    with pytest.raises(EventValidationError, match="method: required"):
        MatchDecided(kind="par_score", winner="India", margin=2)
    with pytest.raises(EventValidationError, match="margin: null for a tie|margin: required"):
        MatchDecided(kind="par_score", margin=2, method="DLS")
    with pytest.raises(EventValidationError, match="method: must be null"):
        MatchDecided(kind="no_result", method="DLS")
    with pytest.raises(EventValidationError, match="player_out: required for a match"):
        Replacement(scope="match", reason="impact_player", player_in="x", team="A")


@pytest.mark.parametrize(("mutate", "path", "why"), [
    (lambda w: w["payload"].update(runs_batter=-1), "payload.runs_batter", ">= 0"),
    (lambda w: w["payload"].update(runs_batter="4"), "payload.runs_batter", "integer"),
    (lambda w: w["payload"].update(runs_batter=True), "payload.runs_batter", "integer"),
    (lambda w: w["payload"].update(colour="red"), "payload.colour", "unknown field"),
    (lambda w: w["payload"].pop("bowler"), "payload.bowler", "missing"),
    (lambda w: w["payload"]["wickets"][0].update(kind="bodyline"), "payload.wickets[0].kind",
     "one of"),
    (lambda w: w["payload"]["wickets"][0]["fielders"][0].update(name=""),
     "payload.wickets[0].fielders[0].name", "empty"),
    (lambda w: w["payload"].update(extras={"wides": 1, "noballs": 1}), "payload.extras.wides",
     "both a wide and a no-ball"),
    (lambda w: w["payload"].update(non_striker="Kohli"), "payload.non_striker", "differ"),
    (lambda w: w.update(seq=0), "seq", ">= 1"),
    (lambda w: w.update(ts="2023-05-29T14:00:00"), "ts", "UTC"),
    (lambda w: w.update(ts="yesterday"), "ts", "ISO 8601"),
    (lambda w: w.update(type="wicket"), "type", "unknown event type"),
    (lambda w: w.update(v=7), "v", "not known"),
    (lambda w: w.pop("event_id"), "event_id", "missing"),
    (lambda w: w.update(extra=1), "extra", "unknown envelope field"),
])
def test_malformed_events_name_the_field_and_reason(mutate: Any, path: str, why: str) -> None:
    wire = to_wire(envelope(SAMPLES[1]))
    mutate(wire)
    with pytest.raises(EventValidationError) as info:
        decode(orjson.dumps(wire))
    assert info.value.path == path
    assert why in info.value.reason


def test_construction_validates_too() -> None:
    with pytest.raises(EventValidationError, match="winner: required"):
        MatchDecided(kind="awarded")
    with pytest.raises(EventValidationError, match="ts: must be a UTC instant"):
        Event(event_id="x", match_id="m", seq=1, ts=dt.datetime(2023, 1, 1), source="s",
              payload=SAMPLES[3])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**6) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=12)


def _mutations() -> st.SearchStrategy[dict[str, Any]]:
    """Valid wire events with one field replaced by arbitrary JSON, or keys dropped."""
    bases = [to_wire(envelope(p)) for p in SAMPLES]
    keys = st.sampled_from(["type", "v", "event_id", "seq", "ts", "payload", "match_id"])
    pkeys = st.sampled_from(["innings", "over", "bowler", "extras", "wickets", "teams",
                             "squads", "kind", "winner", "delivery", "target_seq"])

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        wire = json.loads(json.dumps(draw(st.sampled_from(bases))))
        if draw(st.booleans()):
            wire[draw(keys)] = draw(json_values)
        elif isinstance(wire.get("payload"), dict):
            wire["payload"][draw(pkeys)] = draw(json_values)
        return wire

    return build()


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_values, _mutations()))
def test_fuzzed_input_is_rejected_cleanly_or_accepted(data: Any) -> None:
    try:
        event = decode(orjson.dumps(data))
    except EventValidationError as exc:
        assert str(exc) and exc.reason
    else:
        assert decode(encode(event)) == event


@given(st.binary(max_size=64))
def test_random_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(EventValidationError):
        decode(data)
