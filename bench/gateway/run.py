"""`stumpcast bench gateway`: the orchestration. Run it under ``flock /tmp/stumpcast-heavy.lock``.

Phases, each against the real gateway (``stumpcast gateway serve --workers W``) in its own
processes, with load-generator processes (``loadclient``) and this process driving updates into
Redis through the reference writer (the view contract):

1. connect N clients over M matches; RSS per connection;
2. latency at a steady rate; 3. a burst for deliveries/s and CPU;
4. reconnect storm: every client drops and resumes within 5 s while updates continue;
5. hot match: all N on one match, time until the last client has each update;
then the same hot phase against the "floor" server (one pre-encoded frame written to every
socket in a tight loop) and the burst against the syscall floor, same process shape
(``baselines``: the gateway on another hub, ``python -m bench.gateway.serve``).

``rig`` holds the processes and the driver, ``phases`` measures, this module puts it together
and adds the delta-size figures over real matches. With ``--scenarios`` it runs issue #21's
scenarios instead (``scenarios``: idle, spread, lockstep; the gateway in each ``--workers``
count, its floor, and with ``--peer`` Centrifugo in the same run).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path
from typing import Any

import orjson

from bench.gateway.cards import match_cards
from bench.gateway.phases import run_all
from bench.gateway.rig import Rig
from bench.log import median, record
from gateway.workers import raise_fd_limit
from schemas.view import make_update


def delta_bytes(cards: list[dict[str, Any]], match_id: str = "1370353") -> tuple[int, int, int]:
    """Over a whole match: (update records as sent, the same records carrying full cards,
    patch-or-card bodies alone). Records have a real match id and a full-length ``ts``, so
    the envelope every update carries is counted on both sides."""
    ts = "2023-05-29T16:02:11.123456Z"
    sent = full = body = 0
    for seq in range(1, len(cards)):
        update = make_update(match_id, 1, seq, seq - 1, ts, cards[seq - 1], cards[seq])
        sent += len(update.encode())
        full += len(make_update(match_id, 1, seq, seq - 1, ts, None, cards[seq]).encode())
        body += len(orjson.dumps(update.patch if update.card is None else update.card))
    return sent, full, body


def delta_rows(cards: list[dict[str, Any]], data_dir: Path) -> list[tuple[str, str]]:
    """The bench's match, then every real match in ``data_dir`` (Cricsheet, folded)."""
    sent, full, body = delta_bytes(cards)
    card_bytes = sum(len(orjson.dumps(c)) for c in cards[1:])
    rows = [("delta bytes / full cards, 1370353 (2023 final), update records as sent",
             f"{sent / full:.1%} (target ≤ 15%); patch bodies / card bodies alone "
             f"{body / card_bytes:.1%}")]
    ratios, tot_sent, tot_full = [], 0, 0
    for path in sorted(data_dir.glob("*.json")):
        try:
            folded = match_cards(path)
        except (OSError, ValueError, KeyError):
            continue
        if len(folded) < 2:
            continue
        s, f, _ = delta_bytes(folded, path.stem)
        ratios.append(s / f)
        tot_sent, tot_full = tot_sent + s, tot_full + f
    if ratios:
        ratios.sort()
        met = sum(1 for r in ratios if r <= 0.15)
        rows.append((f"delta bytes / full cards, {len(ratios)} real matches, records as sent",
                     f"{tot_sent / tot_full:.1%} overall; per match median "
                     f"{median(ratios):.1%}, max {ratios[-1]:.1%}; {met} of {len(ratios)} "
                     "matches ≤ 15%"))
    return rows


def run_bench(args: Any, settings: Any, cards: list[dict[str, Any]]) -> int:
    if getattr(args, "scenarios", None):
        return run_scenarios(args, settings, cards)
    raise_fd_limit()
    rig = Rig(args, settings, cards)
    rig.start_redis()
    try:
        rows, notes = asyncio.run(run_all(rig))
    finally:
        close(rig)
    rows += delta_rows(cards, args.match_file.parent)
    for name, value in rows:
        print(f"{name:60s} {value}")
    if not getattr(args, "no_record", False):
        record(f"gateway fanout, {args.connections} connections, {args.workers} workers",
               rows, notes)
    return 0


def close(rig: Rig) -> None:
    """Every process the run started: the gateway, the load clients, the private Redis."""
    rig.stop_gateway() if rig.gateway is not None else None
    for pipe in rig.pipes:
        with contextlib.suppress(OSError):
            pipe.send(("quit", None))
    for proc in rig.procs:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
    rig.stop_redis()
    shutil.rmtree(rig.stats_dir, ignore_errors=True)  # the workers' counters


def run_scenarios(args: Any, settings: Any, cards: list[dict[str, Any]]) -> int:
    """``--scenarios``: issue #21's scenarios, recorded as one section."""
    from bench.gateway.rig import free_port
    from bench.gateway.scenarios import Plan, make_peer, run_plan

    raise_fd_limit()
    plan = Plan(args.scenarios, args.workers, args.peer, args.connections, args.duration,
                args.lockstep_updates)
    rig = Rig(args, settings, cards)
    peer = (make_peer(args.peer, Path(settings.run_dir) / "bench-centrifugo", free_port(), cards)
            if args.peer else None)
    rig.start_redis()
    try:
        rows, notes = asyncio.run(run_plan(rig, plan, peer))
    finally:
        if peer is not None:
            with contextlib.suppress(Exception):  # stopped already unless a scenario failed
                peer.stop()
        close(rig)
    for name, value in rows:
        print(f"{name:60s} {value}")
    if not getattr(args, "no_record", False):
        workers = ",".join(map(str, args.workers))
        record(f"gateway scenarios ({', '.join(plan.scenarios)}), workers {workers}"
               + (f", peer {args.peer}" if args.peer else ""), rows, notes)
    return 0
