"""Last good scorecards on disk, served (marked stale) when Redis is unavailable or a flag is set.

One file per match, ``{dir}/{match_id}.json``, written atomically (temporary file + rename) and at
most every ``min_interval`` seconds per match, only when its position moved. The panic flag is a
file: creating it switches every gateway process on the machine to the disk copies, without a
restart; removing it switches back.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson


def envelope(match_id: str, epoch: int, seq: int, ts: str, card_json: bytes,
             stale: bool) -> bytes:
    head = orjson.dumps({"match_id": match_id, "epoch": epoch, "seq": seq, "ts": ts,
                         "stale": stale})
    return head[:-1] + b',"card":' + card_json + b"}"


class PanicStore:
    def __init__(self, directory: Path, flag: Path | None, min_interval: float = 2.0) -> None:
        self.directory = directory
        self.flag = flag
        self.min_interval = min_interval
        self._saved: dict[str, tuple[float, int, int]] = {}

    def flag_set(self) -> bool:
        return self.flag is not None and self.flag.exists()

    def save(self, match_id: str, epoch: int, seq: int, ts: str, card_json: bytes,
             now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        last = self._saved.get(match_id)
        if last is not None and (last[1:] == (epoch, seq) or now - last[0] < self.min_interval):
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / f"{match_id}.json"
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(envelope(match_id, epoch, seq, ts, card_json, stale=False))
        os.replace(tmp, target)
        self._saved[match_id] = (now, epoch, seq)
        return True

    def load(self, match_id: str) -> dict[str, Any] | None:
        try:
            doc = orjson.loads((self.directory / f"{match_id}.json").read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return doc if isinstance(doc, dict) else None

    def matches(self) -> list[tuple[str, int]]:
        """(match_id, mtime ms) of every stored snapshot, newest first."""
        try:
            files = list(self.directory.glob("*.json"))
        except OSError:
            return []
        out = [(f.stem, int(f.stat().st_mtime * 1000)) for f in files]
        return sorted(out, key=lambda x: -x[1])
