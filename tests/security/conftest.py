"""The security suite: each test tries attacks on the real stack and asserts each is refused.

Every attempt is recorded with ``attacks.check(name, refused)``; the run ends with one line,
``security: N attacks tried, M accepted`` (M must be 0), also written to
``<run folder>/security-attacks.txt`` with each attack's name and outcome.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import match_id, redis, writer  # noqa: F401 - shared fixtures


@dataclass
class Attacks:
    tried: list[tuple[str, bool]] = field(default_factory=list)  # (attack, accepted)

    def check(self, name: str, refused: bool, detail: Any = "") -> None:
        """Record one attack; fail the test if it was not refused."""
        self.tried.append((name, not refused))
        assert refused, f"attack accepted: {name} {detail}"

    @property
    def accepted(self) -> list[str]:
        return [name for name, ok in self.tried if ok]


_ATTACKS = Attacks()


@pytest.fixture
def attacks() -> Iterator[Attacks]:
    yield _ATTACKS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _ATTACKS.tried:
        return
    line = f"security: {len(_ATTACKS.tried)} attacks tried, {len(_ATTACKS.accepted)} accepted"
    terminalreporter.write_line(line)
    for name in _ATTACKS.accepted:
        terminalreporter.write_line(f"  ACCEPTED: {name}")
    from schemas.settings import Settings

    report = Path(Settings.from_env().run_dir) / "security-attacks.txt"
    if report.parent.exists():
        report.write_text(line + "\n" + "".join(
            f"{'ACCEPTED' if ok else 'refused '}  {name}\n" for name, ok in _ATTACKS.tried))
