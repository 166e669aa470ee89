"""The flag contract: change records, evaluation, sticky rollout, levels, the page's registry."""

from __future__ import annotations

import os

import pytest

from gateway.auth import SessionIds
from schemas import features
from schemas.flags import (
    LEVEL_FLAG,
    OVERRIDE_FLAG,
    Context,
    FlagChange,
    FlagError,
    FlagState,
    decode,
    effective_level,
    evaluate,
    resolve,
)


def sessions(n: int) -> list[str]:
    """Session ids as the gateway issues them (HMAC-signed random ids)."""
    ids = SessionIds(os.urandom(32))
    return [ids.issue(None) for _ in range(n)]


def test_a_change_round_trips_with_its_audit_fields() -> None:
    change = FlagChange("watching", FlagState(False, {"north": True}, {"ios": False}, 40.0),
                        "alice@ops", 1_700_000_000_000, "redis is hot").with_version(7)
    back = decode(change.encode())
    assert back == change
    assert (back.who, back.when_ms, back.why, back.version) == (
        "alice@ops", 1_700_000_000_000, "redis is hot", 7)


@pytest.mark.parametrize("bad", [
    dict(flag="nope"), dict(flag="Watching!"), dict(why=" "), dict(who=""),
    dict(flag=LEVEL_FLAG), dict(flag=LEVEL_FLAG, state=FlagState(value=4)),
])
def test_bad_changes_are_refused_with_a_reason(bad: dict) -> None:
    args = dict(flag="watching", state=FlagState(), who="a", when_ms=0, why="x") | bad
    with pytest.raises(FlagError):
        FlagChange(**args)


@pytest.mark.parametrize("raw", [b"{", b"[]", b'{"type":"flag_change","v":2}',
                                 b'{"type":"flag_change","v":1,"flag":"watching"}',
                                 b'{"type":"flag_change","v":1,"flag":"watching","who":"a",'
                                 b'"when_ms":1,"why":"x","state":{"rollout":101}}'])
def test_bad_records_are_flag_errors(raw: bytes) -> None:
    with pytest.raises(FlagError):
        decode(raw)


def test_region_and_platform_targeting() -> None:
    state = FlagState(True, {"north": False}, {"tv": False})
    assert not evaluate("markers", state, Context("north", "web", "s"), True)
    assert evaluate("markers", state, Context("south", "web", "s"), True)
    assert not evaluate("markers", state, Context("south", "tv", "s"), True)
    on_in_one = FlagState(False, {"west": True})
    assert evaluate("markers", on_in_one, Context("west"), True)
    assert not evaluate("markers", on_in_one, Context("east"), True)
    assert evaluate("markers", None, Context(), True) and not evaluate("x", None, Context(), False)


@pytest.mark.parametrize("percent", [1.0, 10.0, 25.0, 50.0, 90.0])
def test_a_rollout_reaches_its_share_of_10000_sessions_within_2_points(percent: float) -> None:
    ids = sessions(10_000)
    on = sum(evaluate("markers", FlagState(rollout=percent), Context(session=s), True)
             for s in ids)
    assert abs(on / 100 - percent) <= 2.0, f"{on / 100:.2f}% on for a {percent}% rollout"


def test_a_rollout_is_sticky_and_growing_it_keeps_the_sessions_already_in() -> None:
    ids = sessions(2_000)

    def on(flag: str, percent: float) -> set[str]:
        return {s for s in ids if evaluate(flag, FlagState(rollout=percent), Context(session=s),
                                           True)}

    first, again, wider = on("markers", 10), on("markers", 10), on("markers", 50)
    assert first == again and first <= wider and len(wider) > len(first)
    other = on("watching", 10)
    assert other != first  # flags bucket independently


def test_the_level_sheds_p2_features_only_and_an_operator_pin_wins() -> None:
    states = {LEVEL_FLAG: FlagState(value=1)}
    answers = resolve(states, Context())
    assert answers["scores"] and answers["notes_p1"]
    assert not any(answers[n] for n in features.P2_NAMES)
    assert effective_level({**states, OVERRIDE_FLAG: FlagState(value=0)}) == 0
    assert effective_level({**states, OVERRIDE_FLAG: FlagState(False, value=3)}) == 1
    assert all(resolve({}, Context()).values())


def test_every_feature_is_p1_or_p2_and_scores_and_p1_notes_are_p1() -> None:
    assert features.feature("scores").priority is features.Priority.P1
    assert features.feature("notes_p1").priority is features.Priority.P1
    assert {"watching", "notes_p2", "heartbeats_detailed"} <= features.P2_NAMES
    with pytest.raises(KeyError):
        features.feature("nope")


def test_the_page_carries_the_registry_s_defaults() -> None:
    from gateway.web.static import STATIC

    assert (STATIC / "js" / "features.js").read_text() == features.page_module(), \
        "run `stumpcast flags page-defaults`"
