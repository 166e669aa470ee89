"""Where a running service says it is: one Prometheus ``file_sd`` file per process.

A service that serves ``/metrics`` writes ``<run_dir>/targets/<job>-<pid>.json`` while it runs::

    [{"targets": ["127.0.0.1:18090"],
      "labels": {"job": "streams", "__meta_stumpcast_pid": "4242"}}]

and removes it when it stops. The local Prometheus (``stumpcast stack up --observe``) reads the
folder with ``file_sd_configs`` and so scrapes whatever runs, on whatever port the settings gave
it, without a config change. The ``__meta_`` label is dropped by Prometheus after relabelling
(no series carries a pid); ``prune`` reads it to remove the files of processes that were killed
before they could clean up. ``job`` is one of a fixed set of service names, so the label is
bounded.

Nothing here needs Prometheus: the files are plain JSON, written atomically (a temporary file
and a rename) so a reader never sees half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

JOBS = ("streams", "gateway", "media", "analytics", "notifier", "ops")
PID_LABEL = "__meta_stumpcast_pid"


def targets_dir(run_dir: Path) -> Path:
    return run_dir.expanduser().resolve() / "targets"


def target_file(run_dir: Path, job: str, pid: int) -> Path:
    return targets_dir(run_dir) / f"{job}-{pid}.json"


def register(run_dir: Path, job: str, port: int, host: str = "127.0.0.1",
             pid: int | None = None) -> Path:
    """Write this process's target file; returns its path."""
    if job not in JOBS:
        raise ValueError(f"unknown job {job!r}; one of {', '.join(JOBS)}")
    pid = os.getpid() if pid is None else pid
    # A service bound to every address is still scraped over loopback.
    address = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    doc = [{"targets": [f"{address}:{port}"], "labels": {"job": job, PID_LABEL: str(pid)}}]
    path = target_file(run_dir, job, pid)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)
    return path


def unregister(path: Path) -> None:
    path.unlink(missing_ok=True)


@contextlib.contextmanager
def registered(run_dir: Path, job: str, port: int, host: str = "127.0.0.1") -> Iterator[Path]:
    """The target file exists while the block runs (also removed on an exception)."""
    path = register(run_dir, job, port, host)
    try:
        yield path
    finally:
        unregister(path)


def _pid_of(path: Path) -> int | None:
    try:
        doc = json.loads(path.read_text())
        return int(doc[0]["labels"][PID_LABEL])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def prune(run_dir: Path) -> list[Path]:
    """Remove the target files of processes that are gone (killed with SIGKILL, or a crash);
    an unreadable file is removed too. Returns what was removed."""
    removed = []
    folder = targets_dir(run_dir)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        pid = _pid_of(path)
        if pid is None or not _alive(pid):
            unregister(path)
            removed.append(path)
    return removed


def listed(run_dir: Path) -> list[tuple[str, str]]:
    """(job, address) of every target file now in the folder."""
    out = []
    folder = targets_dir(run_dir)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        with contextlib.suppress(OSError, ValueError, KeyError, IndexError, TypeError):
            doc = json.loads(path.read_text())
            out.append((str(doc[0]["labels"]["job"]), str(doc[0]["targets"][0])))
    return out
