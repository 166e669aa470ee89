"""Benchmark plumbing: percentiles, and appending a run's figures to BENCHMARKS.md.

Machines here are shared and noisy, so every benchmark reports medians and percentiles and a
ratio against a baseline measured in the same run. This module records them with the date, the
commit and the machine, so figures in BENCHMARKS.md can always be traced.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path


def add_no_record(parser: argparse.ArgumentParser) -> None:
    """``--no-record`` on a bench subcommand. Its default is SUPPRESS so that the parent's
    ``stumpcast bench --no-record WHAT`` is not reset to False by the subcommand's default."""
    parser.add_argument("--no-record", action="store_true", default=argparse.SUPPRESS,
                        help="print the figures without appending them to BENCHMARKS.md")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
        sha = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=False)
        return sha + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{platform.node()}: {os.cpu_count()} cores, {cpu}, {mem_gib:.0f} GiB, "
            f"Python {platform.python_version()}")


def record(title: str, rows: Sequence[tuple[str, str]], notes: str = "",
           path: Path = Path("BENCHMARKS.md")) -> str:
    """Append one run as a Markdown section; return the text written."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"\n### {title} — {stamp}\n",
             f"commit `{commit()}` · {machine()}\n",
             "| figure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    if notes:
        lines += ["", notes]
    text = "\n".join(lines) + "\n"
    if not path.exists():
        path.write_text("# Benchmarks\n\nAppended by `stumpcast bench <what>`; newest last.\n")
    with path.open("a") as fh:
        fh.write(text)
    return text
