"""The scorecards that drive `stumpcast bench gateway`: a real match, folded ball by ball."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def match_cards(path: Path) -> list[dict[str, Any]]:
    """Every scorecard of a Cricsheet match, ball by ball, from the streams fold."""
    from streams.cricsheet import import_match, load
    from streams.fold import Card, apply

    card = Card.empty("bench")
    out = []
    for event in import_match(load(path), "bench"):
        card = apply(card, event)
        out.append(card.scorecard().to_json())
    return out
