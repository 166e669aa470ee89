"""`stumpcast watch` and the Python client: safe defaults without the flag service, live flags
with it, and the registry honoured (a P2 note is not shown while notes_p2 is off)."""

from __future__ import annotations

import orjson

from gateway.client import ClientState
from gateway.terminal import frame_of
from schemas import protocol as p
from schemas.features import defaults


def note(seq: int, priority: str) -> bytes:
    return p.note("m", seq, 0, orjson.dumps({"id": f"{seq}-0", "priority": priority,
                                             "text": f"{priority} note"}))


def test_without_the_flag_service_the_registry_defaults_hold() -> None:
    st = ClientState(["match:m", "notes:m", p.FLAGS], context={"platform": "terminal"})
    assert st.flags == defaults() and st.level == 0
    st.apply(note(1, "P2"))
    assert frame_of(st, "m", "live").note is not None  # P2 notes show by default
    subscribe = [orjson.loads(m) for m in st.subscribe_messages()]
    assert {"type": "subscribe", "v": 1, "channel": "flags", "id": "flags",
            "context": {"platform": "terminal"}} in subscribe


def test_the_flags_channel_turns_p2_notes_off_and_shows_the_level() -> None:
    st = ClientState(["match:m", "notes:m", p.FLAGS])
    st.apply(p.flags(3, 1, {**defaults(), "notes_p2": False}))
    st.apply(note(1, "P1"))
    st.apply(note(2, "P2"))
    frame = frame_of(st, "m", "live")
    assert frame.note is not None and frame.note["priority"] == "P1"
    assert "degraded (level 1)" in frame.status
    st.apply(p.flags(4, 0, {"some_future_feature": True}))  # unknown names: ignored
    assert st.flags == {**defaults(), "some_future_feature": True} and st.flag("notes_p2")
