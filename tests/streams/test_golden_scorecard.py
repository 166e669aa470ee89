"""The 2023 IPL final (1370353.json) scorecard document, generated once, reviewed against the
published scorecard (GT 214/4, Sai Sudharsan 96 off 47; CSK 171/5 in 15 overs chasing a DLS
target of 171, Mohit Sharma 3-0-36-3, Jadeja 15* off 6), and checked in.

Match data: Cricsheet (cricsheet.org), ODC-BY 1.0. If the document changes on purpose,
regenerate with ``stumpcast scorecard --json ../shared/data/cricsheet/1370353.json``, review the
diff, and check it in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stumpcast.cli import main
from tests.streams.cricsheet_data import DATA_DIR

GOLDEN = Path(__file__).parent / "golden" / "1370353.scorecard.json"


def test_final_scorecard_document_matches_golden(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scorecard", "--json", str(DATA_DIR / "1370353.json")]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got == json.loads(GOLDEN.read_text())
    assert got["result"]["text"] == (
        "Chennai Super Kings won by 5 wickets (0 balls left, DLS method)")


def test_contract_names_are_present() -> None:
    doc = json.loads(GOLDEN.read_text())
    assert {"match_id", "teams", "innings", "result"} <= doc.keys()
    assert {"winner", "kind", "margin", "method", "text"} <= doc["result"].keys()
    inn = doc["innings"][0]
    assert {"batting_team", "super_over", "runs", "wickets", "legal_balls", "overs", "extras",
            "target", "batting", "bowling", "fall_of_wickets"} <= inn.keys()
    assert {"wides", "noballs", "byes", "legbyes", "penalty"} <= inn["extras"].keys()
    assert {"name", "runs", "balls", "fours", "sixes", "out", "dismissal"} <= \
        inn["batting"][0].keys()
    assert {"name", "legal_balls", "overs", "maidens", "runs", "wickets", "wides", "noballs"} <= \
        inn["bowling"][0].keys()


def test_printed_table_credits_cricsheet(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scorecard", str(DATA_DIR / "1216517.json")]) == 0
    out = capsys.readouterr().out
    assert "Match tied (Kings XI Punjab won the Super Over)" in out
    assert "Match data: Cricsheet (cricsheet.org), ODC-BY 1.0" in out


def test_scorecard_of_a_missing_file_fails_cleanly(tmp_path: Path) -> None:
    assert main(["scorecard", str(tmp_path / "nope.json")]) == 1
