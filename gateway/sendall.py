"""One byte string to many sockets in one call: the fanout's write loop, in C when built.

Why: a fanout writes the same frame to thousands of sockets. On loopback one TCP send costs
5-10 µs of kernel time on the 2-core VM (the receiver's TCP input runs inside the sender's
system call: ~5 µs to idle peers, 7-10 µs per delivery in `stumpcast bench gateway --scenarios
lockstep`, where 10,000 peers are awake and reading). A Python loop of ``os.write`` over the
sockets costs ~2 µs more per socket there (BENCHMARKS.md, "the syscall floor" against "the
native floor"), with the GIL held throughout. ``gateway._sendall`` runs the loop in C with the
GIL released, which removes the Python share, and with ``threads=2`` it splits the sockets over
two threads, so one large fanout can use both cores and its last socket is written sooner.

Semantics, the same for the extension and the pure-Python fallback: each fd (a non-blocking
socket) gets exactly one send of ``data``. The result per fd is the number of bytes sent
(``0..len(data)``; 0 when the send buffer is full, since nothing was sent) or ``-errno``. A
partial write is not completed here: the caller hands the rest to the connection's event loop
transport, which waits for the socket to become writable. A peer that has gone away gives
``-EPIPE`` or ``-ECONNRESET``, never SIGPIPE and never an exception. Bad arguments (an fd that is
not an int or is negative, ``data`` that is not bytes-like) raise TypeError or ValueError before
anything is sent.

The fallback (``py_send_all``, ``py_send_all_failures``) uses ``os.write``: on a socket that is
``send`` without flags, so it relies on the fds being non-blocking (asyncio's are) and on
Python's default of ignoring SIGPIPE.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType

try:
    import gateway._sendall as _native_module

    _native: ModuleType | None = _native_module
except ImportError:  # not built: the pure-Python loop below
    _native = None

NATIVE: bool = _native is not None

# setuptools >= 77 (pyproject.toml's build requirement) builds it; pip fetches that itself
BUILD_HINT = "`pip install -e '.[test]'` (make venv) builds it, with gcc and the Python headers"

_FD_MAX = 2**31 - 1   # a C int, as the extension takes it


def require_native() -> None:
    """Raise RuntimeError when the extension is not built (CI: a missing component fails)."""
    if _native is None:
        raise RuntimeError(
            f"gateway._sendall (the native fanout writer) is not built: {BUILD_HINT}")


def send_all(fds: Sequence[int], data: bytes, threads: int = 1) -> list[int]:
    """One send of ``data`` on each fd; per fd, in order: bytes sent or ``-errno``."""
    if _native is not None:
        result: list[int] = _native.send_all(fds, data, threads)
        return result
    return py_send_all(fds, data, threads)


def send_all_failures(fds: Sequence[int], data: bytes, threads: int = 1) -> list[tuple[int, int]]:
    """As `send_all`, but only the ``(index, result)`` pairs whose result is not ``len(data)``:
    the partial writes and the errors. Empty in the common case, so cheaper to build."""
    if _native is not None:
        result: list[tuple[int, int]] = _native.send_all_failures(fds, data, threads)
        return result
    return py_send_all_failures(fds, data, threads)


def py_send_all(fds: Sequence[int], data: bytes, threads: int = 1) -> list[int]:
    """The pure-Python `send_all` (``threads`` is validated, then ignored: one thread)."""
    _check(fds, data, threads)
    return [_write(fd, data) for fd in fds]


def py_send_all_failures(
    fds: Sequence[int], data: bytes, threads: int = 1
) -> list[tuple[int, int]]:
    """The pure-Python `send_all_failures`."""
    _check(fds, data, threads)
    size = memoryview(data).nbytes
    failures = []
    for index, fd in enumerate(fds):
        sent = _write(fd, data)
        if sent != size:
            failures.append((index, sent))
    return failures


def _check(fds: Sequence[int], data: bytes, threads: int) -> None:
    """The extension's argument checks, all before anything is sent."""
    memoryview(data)   # TypeError unless bytes-like, as the extension's buffer protocol
    if threads < 1:
        raise ValueError("threads must be >= 1")
    for index, fd in enumerate(fds):
        if not isinstance(fd, int):
            raise TypeError(f"fds[{index}] must be an int, not {type(fd).__name__}")
        if not 0 <= fd <= _FD_MAX:
            raise ValueError(f"fds[{index}] is not a valid file descriptor")


def _write(fd: int, data: bytes) -> int:
    try:
        return os.write(fd, data)
    except BlockingIOError:   # the send buffer is full: nothing was sent
        return 0
    except OSError as exc:
        return -(exc.errno or 0)
