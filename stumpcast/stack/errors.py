"""What can go wrong with the local stack, as one small tree.

::

    StackError                 every error `stumpcast stack` reports; the CLI prints it, exit 1
    ├── ToolMissing            java 17 or mvn or redis-server is not installed / not usable
    ├── DownloadFailed         Maven could not fetch the server jars
    ├── PortInUse              a port of the stack is held by another process
    └── ServerFailed           a server did not become healthy
        ├── ServerDied         ... because its process exited while starting
        └── StartTimeout       ... because it was still not healthy after the timeout

Every message says what to do next. ``ServerFailed`` carries the log file and its last lines,
because that is where the real reason is.
"""

from __future__ import annotations

from pathlib import Path


class StackError(Exception):
    """Base class. ``str(exc)`` is a complete, user-facing message."""


class ToolMissing(StackError):
    """A program the stack needs (java 17, mvn, redis-server) is missing or unusable."""


class DownloadFailed(StackError):
    """Maven failed to download the jars of a server."""


class PortInUse(StackError):
    """A port the stack needs is already taken by someone else."""

    def __init__(self, server: str, port: int, setting: str, holder: str | None,
                 host: str = "127.0.0.1") -> None:
        who = f" by {holder}" if holder else " by another process"
        super().__init__(
            f"{server}: port {host}:{port} is already in use{who}. Stop that process, or "
            f"choose another port with {setting}=<port>.")
        self.server = server
        self.port = port
        self.setting = setting
        self.holder = holder


class ServerFailed(StackError):
    """A server did not become healthy; the log tail explains why."""

    def __init__(self, server: str, reason: str, log_path: Path, tail: list[str]) -> None:
        shown = "\n".join(f"  | {line}" for line in tail) or "  | (log is empty)"
        super().__init__(
            f"{server} {reason}.\nLast lines of its log {log_path}:\n{shown}\n"
            f"Full log: {log_path}  (also: stumpcast stack logs {server})")
        self.server = server
        self.log_path = log_path
        self.tail = tail


class ServerDied(ServerFailed):
    """The server's process exited before it became healthy."""


class StartTimeout(ServerFailed):
    """The server was still not healthy when the start timeout ran out."""
