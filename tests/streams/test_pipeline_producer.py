"""The producer's pure parts: pacing, line validation, the progress ticker."""

from __future__ import annotations

from schemas import codec
from streams import cricsheet
from streams.producer import Ticker, pace, parse_lines
from tests.streams.cricsheet_data import DATA_DIR

DATA = DATA_DIR
MATCH = sorted(DATA.glob("*.json"))[0]


def events() -> list:
    return cricsheet.import_match(cricsheet.load(MATCH), "p1")


def test_pace_divides_real_time_by_speed_and_zero_is_flat_out() -> None:
    ev = events()
    real = [due for due, _ in pace(ev, 1.0)]
    fast = [due for due, _ in pace(ev, 60.0)]
    assert real[0] == 0.0 and real == sorted(real)
    assert abs(real[-1] - (ev[-1].ts - ev[0].ts).total_seconds()) < 1e-6
    assert abs(fast[-1] - real[-1] / 60) < 1e-6
    assert {due for due, _ in pace(ev, 0)} == {0.0}


def test_parse_lines_reports_bad_lines_by_number_and_keeps_going() -> None:
    ev = events()[:3]
    lines = [codec.encode(ev[0]), b"{oops", b"", codec.encode(ev[1]),
             b'{"type": "delivery", "v": 1}', codec.encode(ev[2])]
    results = list(parse_lines(lines))
    assert [r.lineno for r in results] == [1, 2, 4, 5, 6]
    assert [r.event.seq if r.event else None for r in results] == [1, None, 2, None, 3]
    assert "not valid JSON" in (results[1].error or "")


def test_ticker_shows_over_and_score() -> None:
    t = Ticker()
    for e in events():
        t.see(e)
    text = t.text()
    assert "inns 2:" in text and " & " not in text.split("|")[-1] and "ov)" in text
