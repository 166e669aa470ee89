"""``stumpcast``: one command line for the stack, the pipeline, the tools and the benchmarks.

Each group of subcommands lives in its own module under ``stumpcast.commands`` and exposes
``register(sub, bench)``: ``sub`` takes top-level commands, ``bench`` takes ``stumpcast bench
<what>`` targets. Handlers are ``func(args, settings) -> int`` and import heavy modules lazily,
so ``--help`` stays fast and nothing runs at import.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from runtime.secrets import SecretMissing
from schemas.settings import Settings, SettingsError
from schemas.signing import RegistryError

COMMAND_MODULES: tuple[str, ...] = (
    "stumpcast.commands.stack",
    "stumpcast.commands.settings",
    "stumpcast.commands.smoke",
    "stumpcast.commands.match",
    "stumpcast.commands.media",
    "stumpcast.commands.steering",
    "stumpcast.commands.gateway",
    "stumpcast.commands.streams",
    "stumpcast.commands.analytics",
    "stumpcast.commands.notifier",
    "stumpcast.commands.plan",
    "stumpcast.commands.demo",
    "stumpcast.commands.ops",
    "stumpcast.commands.scorers",
    "stumpcast.commands.flags",
    "stumpcast.commands.chaos",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stumpcast",
        description="Event-sourced real-time cricket data: Kafka, Redis, Cassandra, WebSockets, "
        "HLS. Match data: Cricsheet (cricsheet.org), ODC-BY 1.0.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    bench_parser = sub.add_parser(
        "bench", help="run a benchmark; prints figures and appends them to BENCHMARKS.md",
        description="Benchmarks print medians and percentiles, compare against a baseline "
        "measured in the same run, and append the figures with date, commit and machine to "
        "BENCHMARKS.md.")
    bench_parser.add_argument("--no-record", action="store_true",
                              help="print the figures but do not append them to BENCHMARKS.md")
    bench = bench_parser.add_subparsers(dest="bench", metavar="WHAT")
    bench.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command group not built yet
                continue
            raise
        module.register(sub, bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"stumpcast: bad setting: {exc}", file=sys.stderr)
        return 2
    from runtime.logs import configure

    configure(settings)
    try:
        return int(args.func(args, settings) or 0)
    except (SecretMissing, RegistryError) as exc:  # credentials not where expected
        print(f"stumpcast: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stumpcast: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `stumpcast tail ... | head`: the reader left; not an error
        sys.stderr.close()
        return 0
