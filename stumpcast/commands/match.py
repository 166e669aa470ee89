"""`stumpcast scorecard`, `stumpcast event-schemas` and `stumpcast bench fold`.

Thin shells over the pure cores: the Cricsheet importer and the fold (``streams``), the codec and
the JSON Schemas (``schemas``). Match data: Cricsheet (cricsheet.org), ODC-BY 1.0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from schemas.settings import Settings

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "jsonschema"


def register(sub: Any, bench: Any) -> None:
    p = sub.add_parser("scorecard", help="import a Cricsheet match, fold it, print the scorecard",
                       description="Import a Cricsheet JSON match as events, fold them, and "
                       "print the scorecard (or the scorecard document with --json).")
    p.add_argument("match", type=Path, help="a Cricsheet JSON file")
    p.add_argument("--json", action="store_true", help="print the scorecard document as JSON")
    p.add_argument("--seed", type=int, default=0, help="seed for the ball timestamps")
    p.set_defaults(func=cmd_scorecard)

    s = sub.add_parser("event-schemas", help="regenerate schemas/jsonschema/*.json from the code")
    s.add_argument("--check", action="store_true",
                   help="only check that the files are up to date (exit 1 if not)")
    s.add_argument("--dir", type=Path, default=SCHEMA_DIR, help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_event_schemas)

    b = bench.add_parser("fold", help="fold throughput over the Cricsheet matches vs orjson decode")
    b.add_argument("--data", type=Path, default=None,
                   help="folder of Cricsheet JSON (default: STUMPCAST_CRICSHEET_DIR)")
    b.add_argument("--repeat", type=int, default=5, help="runs; medians are reported")
    b.set_defaults(func=cmd_bench_fold)


def cmd_scorecard(args: argparse.Namespace, settings: Settings) -> int:
    import orjson

    from streams.cricsheet import CricsheetError, import_match, load
    from streams.fold import replay

    try:
        events = import_match(load(args.match), args.match.stem, seed=args.seed)
    except CricsheetError as exc:  # it names the file, the JSON path and the reason
        print(f"stumpcast scorecard: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"stumpcast scorecard: {args.match}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    card = replay(events).scorecard()
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(card.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    _render(card)
    return 0


def schema_files() -> dict[str, bytes]:
    """File name -> bytes, exactly as checked in."""
    import orjson

    from schemas.codec import json_schemas

    return {f"{name}.json": orjson.dumps(schema, option=orjson.OPT_INDENT_2) + b"\n"
            for name, schema in json_schemas().items()}


def cmd_event_schemas(args: argparse.Namespace, settings: Settings) -> int:
    files = schema_files()
    stale = [name for name, data in files.items()
             if not (args.dir / name).exists() or (args.dir / name).read_bytes() != data]
    extra = sorted(p.name for p in args.dir.glob("*.json") if p.name not in files)
    if args.check:
        for name in stale + extra:
            print(f"out of date: {args.dir / name}", file=sys.stderr)
        return 1 if stale or extra else 0
    args.dir.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (args.dir / name).write_bytes(files[name])
        print(f"wrote {args.dir / name}")
    for name in extra:
        (args.dir / name).unlink()
        print(f"removed {args.dir / name}")
    return 0


def cmd_bench_fold(args: argparse.Namespace, settings: Settings) -> int:
    """Fold throughput against the cost of decoding the same events (``bench.fold``)."""
    from bench.fold import run_bench

    return run_bench(args.data or settings.cricsheet_dir, args.repeat,
                     record=not args.no_record)


# --- the printed scorecard ----------------------------------------------------------------------


def _render(card: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from schemas.scorecard import CREDIT

    console = Console(highlight=False)
    console.print(f"[bold]{' v '.join(card.teams)}[/bold]  {card.competition or ''}, "
                  f"{card.venue or ''}")
    if card.toss:
        console.print(card.toss)
    for inn in card.innings:
        title = (f"{inn.batting_team}{' (super over)' if inn.super_over else ''}: "
                 f"{inn.runs}/{inn.wickets} ({inn.overs} ov)")
        if inn.target is not None:
            title += f"  target {inn.target}{' (revised)' if inn.target_revised else ''}"
        bat = Table(title=title, title_justify="left")
        for col in ("Batter", "", "R", "B", "4s", "6s", "SR"):
            bat.add_column(col, justify="left" if col in ("Batter", "") else "right")
        for b in inn.batting:
            bat.add_row(b.name, b.dismissal, str(b.runs), str(b.balls), str(b.fours),
                        str(b.sixes), f"{b.strike_rate:.2f}" if b.strike_rate is not None else "-")
        ex = inn.extras
        bat.add_row("Extras", f"(w {ex.wides}, nb {ex.noballs}, b {ex.byes}, lb {ex.legbyes}, "
                    f"p {ex.penalty})", str(ex.total), "", "", "", "")
        console.print(bat)
        if inn.fall_of_wickets:
            console.print("Fall of wickets: " + ", ".join(
                f"{f.wicket}-{f.runs} ({f.player}, {f.overs} ov)" for f in inn.fall_of_wickets))
        bowl = Table()
        for col in ("Bowler", "O", "M", "R", "W", "Econ", "Wd", "NB"):
            bowl.add_column(col, justify="left" if col == "Bowler" else "right")
        for b in inn.bowling:
            bowl.add_row(b.name, b.overs, str(b.maidens), str(b.runs), str(b.wickets),
                         f"{b.economy:.2f}" if b.economy is not None else "-",
                         str(b.wides), str(b.noballs))
        console.print(bowl)
    if card.result is not None:
        console.print(f"[bold]{card.result.text}[/bold]")
    console.print(f"[dim]{CREDIT}[/dim]")
