"""A program a test needs (haproxy, nginx, promtool, node, ...): its path, or a failure in CI
and a skip elsewhere. CI installs every one of them (``make system-deps``), so there a missing
program is a broken set-up, never a reason to skip."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str, install: str, *elsewhere: str) -> str:
    """The path of ``name`` (on PATH, or the first of ``elsewhere`` that exists); ``install``
    says how to get it (``apt-get install haproxy``)."""
    path = shutil.which(name) or next((p for p in elsewhere if Path(p).is_file()), None)
    if path is None:
        if in_ci():
            pytest.fail(f"CI=true and {name} is not installed ({install})")
        pytest.skip(f"{name} is not installed ({install})")
    return path
