"""The page's patch applier against ``schemas.patch``, and the demo's live timing. No stack.

``patch.js`` must fold the writer's patches exactly as ``schemas.patch.apply`` does: every ball
of the 2023 IPL final is diffed in Python and applied in Node (the same ES module the browser
loads), and every intermediate card must come out equal. Match data: Cricsheet, ODC-BY 1.0.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

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
           [["a", ["innings"], "not a list"]], [["s", ["venue"]]], [["d", ["venue"], 1]],
           [["k", [], [99, 1]]], [["k", [], [0]]], [["k", ["teams"], [0, 1]]],
           [["w", ["teams"], 3, []]], [["w", ["teams"], 1]], [["p", ["teams"], [2]]],
           [["p", ["venue"], [0]]]]
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


def _random_doc(rng: random.Random, depth: int = 0) -> Any:
    keys = ["a", "b", "B", "runs", "é", "\uff01", "\U0001f600", "10", "2"]  # ranks by code point
    pick = rng.random()
    if depth < 3 and pick < 0.3:
        return {k: _random_doc(rng, depth + 1) for k in rng.sample(keys, rng.randint(0, 5))}
    if depth < 3 and pick < 0.55:
        return [rng.choice(["1", "•", "4", 6, None]) if rng.random() < 0.7
                else _random_doc(rng, depth + 1) for _ in range(rng.randint(0, 6))]
    return rng.choice([0, 1, 7, "x", "•", True, None, 2.5])


def _mutate(rng: random.Random, doc: Any) -> Any:
    """A small change to ``doc``, the way a ball changes a card (keys set, added or removed;
    items appended, dropped, swapped, slid)."""
    if isinstance(doc, dict):
        out = {k: (_mutate(rng, v) if rng.random() < 0.4 else v) for k, v in doc.items()}
        if out and rng.random() < 0.2:
            del out[rng.choice(list(out))]
        if rng.random() < 0.2:
            out[rng.choice(["new", "b", "\U0001f600"])] = _random_doc(rng, 2)
        return out
    if isinstance(doc, list):
        items = [_mutate(rng, v) if rng.random() < 0.2 else v for v in doc]
        roll = rng.random()
        if roll < 0.25:
            return [*items[rng.randint(1, 3):], *rng.sample(["1", "•", "4"], rng.randint(0, 2))]
        if roll < 0.4:
            return items[::-1]
        if roll < 0.55:
            return [*items, rng.choice(["1", "•"])]
        if roll < 0.7:
            return items[: rng.randint(0, len(items))]
        return items
    return _random_doc(rng, 3) if rng.random() < 0.7 else doc


def test_patch_js_applies_every_kind_of_operation_like_schemas_patch(tmp_path: Path) -> None:
    """Random documents (repeated items, swaps, keys whose code-point and UTF-16 orders differ),
    so that every operation kind, "k", "w" and "p" included, is applied in Node."""
    node = shutil.which("node")
    if node is None:
        missing("node is not installed (make setup installs npm and node)")
    rng = random.Random(5)
    pairs = []
    for _ in range(400):
        old = {"x": _random_doc(rng), "y": _random_doc(rng)}
        pairs.append((old, _mutate(rng, old)))
    pairs.append(({"w": ["1", "1", "•", "1"]}, {"w": ["1", "•", "1", "4"]}))
    pairs.append(({"p": ["A", "B"]}, {"p": ["B", "A"]}))
    patches = [patch.diff(a, b) for a, b in pairs]
    kinds = {op[0] for p in patches for op in _flat(p)}
    assert {"s", "m", "k", "d", "a", "t", "h", "w", "p", "n"} <= kinds
    runner = tmp_path / "pairs.mjs"
    runner.write_text(f"""
import {{ readFileSync }} from "node:fs";
import {{ applyPatch }} from "{PATCH_JS.as_uri()}";
const pairs = JSON.parse(readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(pairs.map(([old, p]) => applyPatch(old, p))));
""")
    doc = json.dumps([[a, p] for (a, _), p in zip(pairs, patches, strict=True)])
    out = subprocess.run([node, str(runner)], input=doc, capture_output=True, text=True,
                         timeout=60, check=True)
    assert json.loads(out.stdout) == [b for _, b in pairs]


def _flat(ops: list[Any]) -> list[Any]:
    return [x for op in ops for x in ([op, *_flat(op[2])] if op[0] == "n" else [op])]


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
