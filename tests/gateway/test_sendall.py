"""gateway.sendall: one byte string to many sockets in one call, native and pure Python.

Real loopback TCP connections (listen on 127.0.0.1, connect, accept), no servers: the accepted
side is the one written to, non-blocking as the gateway's are; the connecting side reads. Every
scenario runs on both implementations (the ``impl`` fixture), so the fallback is held to the
extension's results. Without the extension the native runs skip locally and FAIL in CI
(``CI=true``): there a missing component is a failure (STYLE.md, principle 11).
"""

from __future__ import annotations

import errno
import os
import resource
import select
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from gateway import sendall

IN_CI = os.environ.get("CI") == "true"
MANY = 600                     # > 2 x 128: threads=2 really splits the fds
DATA = bytes(range(256)) * 4   # 1 KiB, past the small-int cache, and each byte distinct


@dataclass(frozen=True)
class Impl:
    name: str
    send_all: Callable[..., list[int]]
    send_all_failures: Callable[..., list[tuple[int, int]]]


def native_or_skip() -> None:
    if not sendall.NATIVE:
        if IN_CI:
            sendall.require_native()   # fails the test with the build step in the message
        pytest.skip(f"gateway._sendall is not built ({sendall.BUILD_HINT})")


@pytest.fixture(params=["native", "python"])
def impl(request: pytest.FixtureRequest) -> Impl:
    if request.param == "python":
        return Impl("python", sendall.py_send_all, sendall.py_send_all_failures)
    native_or_skip()
    return Impl("native", sendall.send_all, sendall.send_all_failures)


@dataclass
class Pairs:
    """Connected loopback TCP pairs: ``senders[i]`` (accepted, non-blocking) to
    ``receivers[i]`` (connected, blocking with a timeout)."""

    senders: list[socket.socket]
    receivers: list[socket.socket]

    @property
    def fds(self) -> list[int]:
        return [s.fileno() for s in self.senders]

    def received(self, i: int, size: int) -> bytes:
        """``size`` bytes from receiver i, then nothing more."""
        chunks, got = [], 0
        while got < size:
            chunk = self.receivers[i].recv(size - got)
            assert chunk, f"receiver {i}: closed after {got} of {size} bytes"
            chunks.append(chunk)
            got += len(chunk)
        assert self.nothing_more(i), f"receiver {i}: more than {size} bytes"
        return b"".join(chunks)

    def nothing_more(self, i: int) -> bool:
        """Nothing to read (on loopback a send has reached the peer when it returns)."""
        poller = select.poll()   # not select.select: the fds here go past 1024
        poller.register(self.receivers[i], select.POLLIN)
        return not poller.poll(0)

    def reset(self, i: int) -> None:
        """Receiver i goes away with a RST (SO_LINGER 0): the sender's next send fails."""
        self.receivers[i].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        self.receivers[i].close()

    def fill(self, i: int) -> int:
        """Fill sender i's buffers (its peer does not read) until a send would block; returns
        how many bytes went in."""
        total, block = 0, b"\xee" * 4096
        while True:
            try:
                total += self.senders[i].send(block)
            except BlockingIOError:
                return total


@pytest.fixture(scope="module", autouse=True)
def _enough_fds() -> None:
    """Room for a few hundred connections (2 fds each), up to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * MANY + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@pytest.fixture
def make_pairs() -> Iterator[Callable[..., Pairs]]:
    opened: list[socket.socket] = []

    def make(count: int, small_buffers: frozenset[int] = frozenset()) -> Pairs:
        """``count`` pairs; those in ``small_buffers`` have small socket buffers, to be filled
        quickly."""
        with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
            pairs = Pairs([], [])
            for i in range(count):
                receiver = socket.socket()
                opened.append(receiver)
                if i in small_buffers:   # before connect, so the window is small from the start
                    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                receiver.connect(listener.getsockname())
                sender, _ = listener.accept()
                opened.append(sender)
                if i in small_buffers:
                    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
                sender.setblocking(False)
                receiver.settimeout(5)
                pairs.senders.append(sender)
                pairs.receivers.append(receiver)
            return pairs

    yield make
    for s in opened:
        s.close()


@pytest.mark.parametrize("threads", [1, 2])
def test_every_socket_gets_the_data_once(impl: Impl, make_pairs: Callable[..., Pairs],
                                         threads: int) -> None:
    pairs = make_pairs(MANY)
    assert impl.send_all(pairs.fds, DATA, threads) == [len(DATA)] * MANY
    assert all(pairs.received(i, len(DATA)) == DATA for i in range(MANY))

    assert impl.send_all_failures(pairs.fds, DATA, threads=threads) == []
    assert all(pairs.received(i, len(DATA)) == DATA for i in range(MANY))


def test_bytes_like_data_and_no_fds(impl: Impl, make_pairs: Callable[..., Pairs]) -> None:
    pairs = make_pairs(2)
    assert impl.send_all(pairs.fds, bytearray(b"ab")) == [2, 2]
    assert impl.send_all(tuple(pairs.fds), memoryview(b"xcdx")[1:3]) == [2, 2]
    assert [pairs.received(i, 4) for i in range(2)] == [b"abcd", b"abcd"]
    assert impl.send_all([], DATA, 2) == []
    assert impl.send_all_failures([], DATA) == []


@pytest.mark.parametrize("threads", [1, 2])
def test_a_full_socket_takes_what_fits_and_the_others_everything(
        impl: Impl, make_pairs: Callable[..., Pairs], threads: int) -> None:
    full = 300   # in the second half: the other thread's chunk when threads=2
    pairs = make_pairs(MANY, small_buffers=frozenset({full}))
    filled = pairs.fill(full)

    results = impl.send_all(pairs.fds, DATA, threads)
    assert 0 <= results[full] < len(DATA)   # EAGAIN is 0, not an error
    assert results[:full] + results[full + 1:] == [len(DATA)] * (MANY - 1)
    assert all(pairs.received(i, len(DATA)) == DATA for i in range(MANY) if i != full)
    # the count is what really went in: the reader gets the filling, then that much of DATA
    got = pairs.received(full, filled + results[full])
    assert got[filled:] == DATA[:results[full]]

    failures = impl.send_all_failures(pairs.fds, DATA, threads)
    assert [index for index, _ in failures] == []   # drained: room again everywhere


@pytest.mark.parametrize("threads", [1, 2])
def test_a_reset_peer_is_a_negative_errno_without_sigpipe(
        impl: Impl, make_pairs: Callable[..., Pairs], threads: int) -> None:
    # both ends of the split (299 | 300) and of the list: the results keep the order of fds
    dead = [0, 299, 300, MANY - 1]
    pairs = make_pairs(MANY)
    for i in dead:
        pairs.reset(i)
    gone = {-errno.EPIPE, -errno.ECONNRESET}

    sigpipes: list[int] = []
    previous = signal.signal(signal.SIGPIPE, lambda signum, _frame: sigpipes.append(signum))
    try:
        first = impl.send_all(pairs.fds, DATA, threads)
        # the first send reports the RST (ECONNRESET); a second one, EPIPE: the one that
        # would raise SIGPIPE without MSG_NOSIGNAL
        second = impl.send_all_failures(pairs.fds, DATA, threads)
    finally:
        signal.signal(signal.SIGPIPE, previous)

    assert [i for i, r in enumerate(first) if r != len(DATA)] == dead
    assert all(first[i] in gone for i in dead), first
    assert [index for index, _ in second] == dead
    assert all(result == -errno.EPIPE for _, result in second), second
    if impl.name == "native":   # os.write (the fallback) does raise it; Python ignores it
        assert sigpipes == []
    alive = [i for i in range(MANY) if i not in dead]
    assert all(pairs.received(i, 2 * len(DATA)) == DATA * 2 for i in alive)


@pytest.mark.parametrize("bad, error", [
    ("5", TypeError), (5.0, TypeError), (None, TypeError), (-1, ValueError),
    (2**31, ValueError), (2**70, ValueError),
])
def test_a_bad_fd_raises_before_anything_is_sent(
        impl: Impl, make_pairs: Callable[..., Pairs], bad: object, error: type) -> None:
    pairs = make_pairs(2)
    fds: list[object] = [pairs.fds[0], bad, pairs.fds[1]]
    with pytest.raises(error, match=r"fds\[1\]"):
        impl.send_all(fds, DATA)
    with pytest.raises(error, match=r"fds\[1\]"):
        impl.send_all_failures(fds, DATA, 2)
    assert pairs.nothing_more(0) and pairs.nothing_more(1)


@pytest.mark.parametrize("data", ["text", 5, None, [1, 2]])
def test_data_that_is_not_bytes_like_is_a_type_error(
        impl: Impl, make_pairs: Callable[..., Pairs], data: object) -> None:
    pairs = make_pairs(1)
    with pytest.raises(TypeError):
        impl.send_all(pairs.fds, data)
    with pytest.raises(TypeError):
        impl.send_all_failures(pairs.fds, data)
    assert pairs.nothing_more(0)


def test_other_bad_arguments(impl: Impl, make_pairs: Callable[..., Pairs]) -> None:
    pairs = make_pairs(1)
    with pytest.raises(ValueError, match="threads"):
        impl.send_all(pairs.fds, DATA, 0)
    with pytest.raises(TypeError):
        impl.send_all(5, DATA)
    assert pairs.nothing_more(0)


def test_the_fallback_gives_the_native_results(make_pairs: Callable[..., Pairs]) -> None:
    """One mixed fanout (ok, full, reset, ok ...) through each implementation, side by side."""
    native_or_skip()
    full, dead = 3, 5

    def run(send: Callable[..., list[int]]) -> list[int]:
        pairs = make_pairs(8, small_buffers=frozenset({full}))
        pairs.fill(full)
        pairs.reset(dead)
        return send(pairs.fds, DATA)

    native, python = run(sendall.send_all), run(sendall.py_send_all)
    assert native[dead] in (-errno.EPIPE, -errno.ECONNRESET)
    assert python[dead] in (-errno.EPIPE, -errno.ECONNRESET)
    assert 0 <= native[full] < len(DATA) and 0 <= python[full] < len(DATA)
    others = [i for i in range(8) if i not in (full, dead)]
    assert [native[i] for i in others] == [python[i] for i in others] == [len(DATA)] * 6


def test_without_the_extension_the_wrapper_falls_back(
        make_pairs: Callable[..., Pairs], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sendall, "_native", None)
    with pytest.raises(RuntimeError, match="pip install -e"):
        sendall.require_native()
    pairs = make_pairs(2)
    pairs.reset(1)
    assert sendall.send_all(pairs.fds, DATA)[0] == len(DATA)
    assert [index for index, _ in sendall.send_all_failures(pairs.fds, DATA)] == [1]


def test_the_extension_is_built_in_ci() -> None:
    if not IN_CI and not sendall.NATIVE:
        pytest.skip(f"gateway._sendall is not built; CI requires it ({sendall.BUILD_HINT})")
    assert sendall.NATIVE, (
        f"gateway._sendall did not import: the install did not build it ({sendall.BUILD_HINT})")
    sendall.require_native()
