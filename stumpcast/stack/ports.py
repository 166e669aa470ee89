"""Is a loopback port free, and if not, which process holds it?"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path


def is_free(port: int, host: str = "127.0.0.1", shared: bool = False) -> bool:
    """True if we could bind ``host:port`` now (SO_REUSEADDR: TIME_WAIT does not count).
    ``shared``: with SO_REUSEPORT too, so a port held only by listeners that share it (the
    other HAProxy process) counts as free, and one held by anything else does not."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def is_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout):
        return True
    return False


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                local, state, inode = parts[1], parts[3], parts[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                    inodes.add(inode)
    return inodes


def listeners(port: int) -> int:
    """How many sockets listen on ``port`` (several when they share it with SO_REUSEPORT)."""
    return len(_listening_inodes(port))


def holder(port: int) -> str | None:
    """``pid 1234 (redis-server ...)`` of the process listening on ``port``, if visible to us."""
    inodes = {f"socket:[{i}]" for i in _listening_inodes(port)}
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return f"pid {entry.name} ({_short_cmd(entry)})"
    return None


def _short_cmd(proc_dir: Path) -> str:
    try:
        raw = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"
    return raw if len(raw) <= 80 else raw[:77] + "..."
