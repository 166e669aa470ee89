"""Where the Cricsheet test data lives, and a folded-match cache shared by the streams tests.

Match data: Cricsheet (cricsheet.org), ODC-BY 1.0. The 194 files are read-only material beside
the repository (``../shared/data/cricsheet``); ``STUMPCAST_CRICSHEET_DIR`` points elsewhere
(``Settings.cricsheet_dir``, as for the demo and the benchmarks).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import orjson

from schemas.events import Event
from schemas.settings import Settings

DATA_DIR = Settings.from_env().cricsheet_dir


def match_files() -> list[Path]:
    files = sorted(DATA_DIR.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no Cricsheet files in {DATA_DIR} (set STUMPCAST_CRICSHEET_DIR)")
    return files


@functools.cache
def raw(stem: str) -> dict[str, Any]:
    return orjson.loads((DATA_DIR / f"{stem}.json").read_bytes())  # type: ignore[no-any-return]


@functools.cache
def events(stem: str) -> tuple[Event, ...]:
    from streams.cricsheet import import_match

    return tuple(import_match(raw(stem), stem))
