"""Processes the stack starts: launch in their own group, record, recognise, stop, measure.

A pid alone is not proof: after a reboot or a long pause the number may belong to someone
else. A record keeps the pid, the kernel's start time of that process and a marker that is in
its command line (the run folder's path); we signal only a process that matches all three.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcRecord:
    pid: int
    start_ticks: int      # field 22 of /proc/<pid>/stat: distinguishes a reused pid
    marker: str           # a string in the command line of the process we started
    argv: list[str]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> ProcRecord | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) is in parentheses and may contain spaces: split after the last ")".
    return [raw[: raw.index("(")].strip(), "comm"] + raw[raw.rindex(")") + 2:].split()


def start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[21]) if fields else None


def is_alive(pid: int) -> bool:
    """Running and not a zombie (a zombie child of ours is reaped here)."""
    fields = _stat_fields(pid)
    if fields is None:
        return False
    if fields[2] in ("Z", "X"):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def is_ours(record: ProcRecord) -> bool:
    """The recorded process is still running and is the one we started."""
    return (is_alive(record.pid) and start_ticks(record.pid) == record.start_ticks
            and record.marker in cmdline(record.pid))


def launch(argv: list[str], log_path: Path, marker: str, cwd: Path,
           env: dict[str, str] | None = None) -> tuple[ProcRecord, Callable[[], int | None]]:
    """Start ``argv`` in its own session (own process group), output appended to ``log_path``.

    Returns the record and a function giving the exit code once the process has ended.

    Its own session: a Ctrl-C in the terminal that ran `stack up` does not reach it, and
    `stack down` can signal the whole group.
    """
    with log_path.open("ab") as log:
        log.write(f"\n--- stumpcast: starting {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                  f"{' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                start_new_session=True)
    ticks = start_ticks(proc.pid) or 0
    return ProcRecord(proc.pid, ticks, marker, argv), proc.poll


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.1)
    return not is_alive(pid)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # started with start_new_session: group id == pid
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop(record: ProcRecord, grace: float) -> str:
    """SIGTERM the process group, wait up to ``grace`` s, then SIGKILL. Returns what happened."""
    if not is_ours(record):
        return "not running"
    _signal_group(record.pid, signal.SIGTERM)
    if _wait_gone(record.pid, grace):
        return "stopped"
    _signal_group(record.pid, signal.SIGKILL)
    _wait_gone(record.pid, 10)
    return f"killed (still running {grace:.0f} s after SIGTERM)"


def rss_bytes(pid: int) -> int | None:
    """Resident set size from /proc/<pid>/status (VmRSS), in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a text file (whole file read: logs here stay small)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 256 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError:
        return []
    return data.splitlines()[-lines:] if lines > 0 else []
