"""The page's patch applier against ``schemas.patch``, and the demo's live timing. No stack.

``patch.js`` must fold the writer's patches exactly as ``schemas.patch.apply`` does: every ball
of the 2023 IPL final is diffed in Python and applied in Node (the same ES module the browser
loads), and every intermediate card must come out equal. Match data: Cricsheet, ODC-BY 1.0.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from e2e_helpers import MATCH_FILE, ROOT, missing

from schemas import patch
from stumpcast.commands.demo import live_timeline, page_url

PATCH_JS = ROOT / "gateway" / "web" / "static" / "js" / "patch.js"
RUNNER = """
import { readFileSync } from "node:fs";
import { applyPatch, PatchError } from "%s";
const { first, patches, bad } = JSON.parse(readFileSync(0, "utf8"));
const cards = [];
let card = first;
for (const p of patches) { card = applyPatch(card, p); cards.push(card); }
const errors = bad.map((p) => { try { applyPatch(first, p); return null; }
                                catch (e) { return e instanceof PatchError; } });
process.stdout.write(JSON.stringify({ cards, errors, untouched: JSON.stringify(first) }));
"""


def _cards(match_id: str = "core") -> list[dict]:
    from streams import cricsheet
    from streams.fold import Card, apply

    card, out = Card.empty(match_id), []
    for event in cricsheet.import_match(cricsheet.load(MATCH_FILE), match_id):
        card = apply(card, event)
        out.append(card.scorecard().to_json())
    return out


def test_patch_js_applies_the_writers_patches_like_schemas_patch(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        missing("node is not installed (make setup installs npm and node)")
    cards = _cards()
    patches = [patch.diff(a, b) for a, b in zip(cards, cards[1:], strict=False)]
    bad = [[["d", []]], [["t", ["teams"], 99]], [["s", ["nope", "x"], 1]], [["q", []]],
           [["a", ["innings"], "not a list"]]]
    script = tmp_path / "run.mjs"
    script.write_text(RUNNER % PATCH_JS.as_uri())
    doc = json.dumps({"first": cards[0], "patches": patches, "bad": bad})
    out = subprocess.run([node, str(script)], input=doc, capture_output=True, text=True,
                         timeout=60, check=True)
    result = json.loads(out.stdout)
    assert result["cards"] == cards[1:]
    assert result["errors"] == [True] * len(bad)
    assert json.loads(result["untouched"]) == cards[0]  # apply never mutates its input
    for p in bad:  # and Python agrees that these are errors
        with pytest.raises(patch.PatchError):
            patch.apply(cards[0], p)


def test_live_timeline_keeps_order_and_shortens_breaks() -> None:
    from streams import cricsheet

    events = cricsheet.import_match(cricsheet.load(MATCH_FILE), "t")
    start = dt.datetime(2026, 5, 1, 14, 0, tzinfo=dt.UTC)
    timed = live_timeline(events, start, speed=60, max_gap_s=3)
    assert [e.seq for e in timed] == [e.seq for e in events]
    assert timed[0].ts == start
    gaps = [(b.ts - a.ts).total_seconds() for a, b in zip(timed, timed[1:], strict=False)]
    assert min(gaps) >= 0 and max(gaps) <= 3
    first_wicket = next(e for e in timed if getattr(e.payload, "wickets", ()))
    assert (first_wicket.ts - start).total_seconds() < 60  # a wicket within a minute
    with pytest.raises(ValueError):
        live_timeline(events, start, speed=0)


def test_page_url_names_the_media_origin_only_when_it_moved() -> None:
    from schemas.settings import Settings

    default = Settings.from_env({})
    assert page_url(default, "m1") == "http://127.0.0.1:18080/#/match/m1"
    moved = Settings.from_env({"STUMPCAST_MEDIA_HTTP_PORT": "19999"})
    assert "?media=http://127.0.0.1:19999#/match/m1" in page_url(moved, "m1")
