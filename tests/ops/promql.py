"""Series names in PromQL, for the checks that every name a rule or a panel reads exists."""

from __future__ import annotations

import re

# Prometheus' own series that the rules and panels may read.
BUILTIN = {"up"}


def metric_names(expr: str) -> set[str]:
    """Series names in a PromQL expression (label values, strings and ranges removed first)."""
    bare = re.sub(r'"[^"]*"', '""', expr)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare))
    return {w for w in words if w.startswith("stumpcast") or w in BUILTIN}
