"""The scorer registry re-read while a service runs (``runtime.scorers.RegistryFile``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from runtime.scorers import RegistryFile
from schemas.signing import Registry, RegistryError, Scorer, generate_key

_, FEED = generate_key()
_, DESK = generate_key()
BOTH = Registry({"feed": Scorer("feed", FEED, ("cricsheet",)),
                 "desk": Scorer("desk", DESK, ("scorer:desk",))})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, registry: Registry | bytes) -> None:
    """Replace the file as `stumpcast scorers add` does (a new inode, atomically)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(registry if isinstance(registry, bytes) else registry.encode())
    os.replace(tmp, path)


def test_a_revoked_scorer_is_gone_after_the_check_interval(tmp_path: Path) -> None:
    path, clock = tmp_path / "scorers.json", Clock()
    write(path, BOTH)
    reg = RegistryFile(path, interval=2.0, clock=clock)
    assert set(reg.current().scorers) == {"feed", "desk"}
    write(path, Registry({"feed": BOTH.scorers["feed"]}))  # desk revoked
    clock.now += 1.0
    assert "desk" in reg.current().scorers  # bounded: not before the interval
    clock.now += 1.0
    assert set(reg.current().scorers) == {"feed"}
    write(path, BOTH)  # and added back
    clock.now += 2.0
    assert set(reg.current().scorers) == {"feed", "desk"} and reg.reloads == 2


def test_an_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    path, clock = tmp_path / "scorers.json", Clock()
    write(path, BOTH)
    reg = RegistryFile(path, interval=0.5, clock=clock)
    first = reg.current()
    for _ in range(5):
        clock.now += 1.0
        assert reg.current() is first
    assert reg.reloads == 0


def test_a_broken_file_keeps_the_registry_in_force(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    path, clock = tmp_path / "scorers.json", Clock()
    write(path, BOTH)
    reg = RegistryFile(path, interval=1.0, clock=clock)
    write(path, b'{"type": "scorer_registry", "v": 1, "scor')  # half-written by hand
    clock.now += 1.0
    with caplog.at_level(logging.ERROR):
        assert set(reg.current().scorers) == {"feed", "desk"}
    assert "registry unreadable" in caplog.text
    path.unlink()  # deleted: the same
    clock.now += 1.0
    assert set(reg.current().scorers) == {"feed", "desk"}


def test_a_service_does_not_start_without_a_registry(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="does not exist"):
        RegistryFile(tmp_path / "missing.json")
