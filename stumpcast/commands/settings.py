"""``stumpcast settings``: every STUMPCAST_* setting, its default and its effective value."""

from __future__ import annotations

import argparse
from typing import Any

from schemas.settings import Settings, documented


def register(sub: Any, bench: Any) -> None:
    p = sub.add_parser(
        "settings", help="list every STUMPCAST_* setting with its effective value",
        description="Lists every STUMPCAST_* environment variable stumpcast reads, its default, "
        "its meaning and the value in effect now. --markdown prints the table kept in "
        "docs/operations.md.")
    p.add_argument("--markdown", action="store_true",
                   help="print the documentation table (variable, default, meaning)")
    p.set_defaults(func=run)


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for var, default, doc in documented():
        shown = f"`{default}`" if default not in (None, "") else "—"
        rows.append(f"| `{var}` | {shown} | {doc} |")
    return "\n".join(rows)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.markdown:
        print(markdown_table())
        return 0
    from dataclasses import fields

    for f in fields(Settings):
        value = getattr(settings, f.name)
        if "SECRET" in f.metadata["env"] and value:
            value = "(set)"
        elif isinstance(value, tuple):
            value = ",".join(value)
        print(f"{f.metadata['env']}={value}")
    return 0
