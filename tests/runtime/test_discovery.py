"""file_sd target files: written while a service runs, removed when it stops or dies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import discovery


def test_registered_writes_and_removes_the_file(tmp_path: Path) -> None:
    with discovery.registered(tmp_path, "streams", 18090) as path:
        doc = json.loads(path.read_text())
        assert doc == [{"targets": ["127.0.0.1:18090"],
                        "labels": {"job": "streams", discovery.PID_LABEL: str(os.getpid())}}]
        assert discovery.listed(tmp_path) == [("streams", "127.0.0.1:18090")]
    assert not path.exists()


def test_removed_on_an_exception_too(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), discovery.registered(tmp_path, "gateway", 1, "0.0.0.0"):
        assert discovery.listed(tmp_path) == [("gateway", "127.0.0.1:1")]
        raise RuntimeError
    assert discovery.listed(tmp_path) == []


def test_an_unknown_job_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown job"):
        discovery.register(tmp_path, "match-1370353", 1)


def test_prune_removes_the_files_of_dead_processes(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    gone = discovery.register(tmp_path, "media", 2, pid=int(dead.stdout))
    mine = discovery.register(tmp_path, "ops", 3)
    junk = discovery.targets_dir(tmp_path) / "junk.json"
    junk.write_text("{")
    assert sorted(discovery.prune(tmp_path)) == sorted([gone, junk])
    assert mine.exists() and not gone.exists()
