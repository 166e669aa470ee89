"""Every user-visible feature, classified P1 or P2: the one registry the page and gateway honour.

P1 is what a viewer came for and must keep getting under load: the score and the wicket/result
notifications. P2 is what makes the experience richer and is shed first when the system is in
trouble. JioCinema serves feature flags from a config service, toggled by platform, geography
and load, and lets P1/P2 features fail silently (../shared/reference/industry.md §2, items 2-3);
Hotstar turns secondary systems off during spikes (same file, §3 item 4).

Each feature is also a flag of the same name (``schemas.flags``): its ``default`` is what a
client shows when it has never heard from the flag service (the safe default carried by the
page, ``gateway/web/static/js/features.js``, generated from here and kept in step by a test,
and by ``stumpcast watch``). ``degradable``: a P2 feature is off at degradation level >= 1
whatever its flag says; P1 features are never shed by the level (an operator can still turn
one off by hand).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Priority(StrEnum):
    P1 = "P1"
    P2 = "P2"


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    priority: Priority
    default: bool
    doc: str

    @property
    def degradable(self) -> bool:
        return self.priority is Priority.P2


FEATURES: tuple[Feature, ...] = (
    Feature("scores", Priority.P1, True, "live score updates (match:{id} updates and snapshots)"),
    Feature("notes_p1", Priority.P1, True, "wicket and result notifications (P1 notes, toasts)"),
    Feature("watching", Priority.P2, True, '"N watching" counter (analytics)'),
    Feature("notes_p2", Priority.P2, True, "other milestone notifications and their toasts "
            "(fifties, boundaries...: P2 notes)"),
    Feature("markers", Priority.P2, True, "ball markers on the video seek bar"),
    Feature("sync_video", Priority.P2, True, 'the "sync with video (no spoilers)" switch'),
    Feature("heartbeats_detailed", Priority.P2, True, "every player's heartbeats forwarded to "
            "analytics; off: a sticky sample of sessions only"),
)
BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}
P2_NAMES: frozenset[str] = frozenset(f.name for f in FEATURES if f.degradable)


def feature(name: str) -> Feature:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown feature {name!r}; known: {', '.join(BY_NAME)}") from None


def defaults() -> dict[str, bool]:
    """The safe defaults: what a client shows without the flag service."""
    return {f.name: f.default for f in FEATURES}


def page_module() -> str:
    """``gateway/web/static/js/features.js``: the registry for the page (generated; a test
    checks the file is in step: ``stumpcast flags page-defaults --check``)."""
    rows = "\n".join(f'  {{ name: "{f.name}", priority: "{f.priority}", default: '
                     f'{"true" if f.default else "false"} }},' for f in FEATURES)
    return ("// Generated from schemas/features.py by `stumpcast flags page-defaults`; do not "
            "edit.\n// The safe defaults the page uses until (or without) the flags channel.\n"
            f"export const FEATURES = [\n{rows}\n];\n"
            "export const DEFAULTS = Object.fromEntries(FEATURES.map((f) => [f.name, "
            "f.default]));\n")
