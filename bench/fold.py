"""``stumpcast bench fold``: fold throughput against the cost of decoding the same events.

Baseline measured in the same run, on the same events: ``orjson.loads`` of every event's wire
bytes (the least any consumer pays to look at an event). The fold figure is ``replay(events)``
over decoded events (``apply`` per event, sequence checks included) plus building the final
document once per match. Decode and fold are timed back to back in each run and the median of
the per-run ratios is reported: the machine is shared and noisy.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

from bench.log import median
from bench.log import record as write

TARGET_RATIO = 3.0


def _load(data: Path) -> tuple[list[list[object]], list[list[bytes]]]:
    from schemas.codec import encode
    from streams.cricsheet import import_match, load

    matches, wires = [], []
    for path in sorted(data.glob("*.json")):
        events = import_match(load(path), path.stem)
        matches.append(list(events))
        wires.append([encode(e) for e in events])
    return matches, wires  # type: ignore[return-value]


def _time_decode(wires: list[list[bytes]]) -> float:
    import orjson

    loads = orjson.loads
    start = time.perf_counter()
    for match in wires:
        for raw in match:
            loads(raw)
    return time.perf_counter() - start


def _time_fold(matches: list[list[object]]) -> float:
    from streams.fold import replay

    start = time.perf_counter()
    for events in matches:
        replay(events).scorecard()  # type: ignore[arg-type]
    return time.perf_counter() - start


def _time_validate(wires: list[list[bytes]]) -> float:
    from schemas.codec import decode

    start = time.perf_counter()
    for match in wires:
        for raw in match:
            decode(raw)
    return time.perf_counter() - start


def run_bench(data: Path, repeat: int, record: bool) -> int:
    matches, wires = _load(data)
    n = sum(len(m) for m in matches)
    decode_s, fold_s, ratios = [], [], []
    _time_fold(matches)  # warm caches (type hints, dispatch tables) outside the timing
    gc.collect()
    for _ in range(repeat):
        d, f = _time_decode(wires), _time_fold(matches)
        decode_s.append(d)
        fold_s.append(f)
        ratios.append(f / d)
    validate = _time_validate(wires)
    ratio = median(ratios)
    rows = [
        ("matches / events", f"{len(matches)} / {n}"),
        ("orjson.loads only: events/s (median)", f"{n / median(decode_s):,.0f}"),
        ("fold (apply + final document): events/s (median)", f"{n / median(fold_s):,.0f}"),
        ("fold cost / decode cost (median of per-run ratios)", f"{ratio:.2f}x"),
        ("per-run ratios", ", ".join(f"{r:.2f}" for r in ratios)),
        ("for context: codec.decode (validate) events/s", f"{n / validate:,.0f}"),
        ("target", f"fold <= {TARGET_RATIO:.0f}x decode: {'met' if ratio <= 3 else 'NOT met'}"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if record:
        write("fold: scorecard fold vs orjson decode, 194 Cricsheet matches", rows,
              notes=f"{repeat} runs, medians; fold input is decoded Event objects; "
                    "`flock /tmp/stumpcast-heavy.lock stumpcast bench fold`.")
    return 0
