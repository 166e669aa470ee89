"""Running ffmpeg: the synthetic source piped into the encoder, progress, stderr, exit causes.

``classify_exit`` and ``Backoff`` are pure; ``FfmpegProcs`` is the asyncio shell. The encoder
writes ``-progress`` blocks to stdout; stderr (warnings and errors only) is kept as a short tail
so a failure can be reported in one clear line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field

_INPUT_ERRORS = ("Invalid data found", "Error opening input", "No such file",
                 "Connection refused", "does not contain any stream", "matches no streams",
                 "Input/output error", "Operation not permitted")


@dataclass
class Backoff:
    """Exponential restart delay, reset after a launch that ran well."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    _next: float = field(default=0.0, init=False)

    def next(self) -> float:
        self._next = self.initial if not self._next else min(self._next * self.factor, self.cap)
        return self._next

    def reset(self) -> None:
        self._next = 0.0


# How a live input that was flowing ends when its publisher goes away (RTMP/SRT socket closed
# or reset): ffmpeg reports an I/O error on the input and still exits 0.
_INPUT_GONE = ("Input/output error", "Connection reset", "End of file")


def classify_exit(rc: int | None, stderr_tail: Sequence[str], stopping: bool = False,
                  had_frames: bool = False) -> str:
    """A short, stable reason for an encoder exit: the worker's status and a metric label.

    ``had_frames``: the input delivered frames before the end, so an I/O error means the
    publisher went away (``input_ended``), not a source that could not be read.
    """
    if stopping:
        return "stopped"
    if rc is not None and rc < 0:
        return f"encoder_crashed:{signal.Signals(-rc).name}" if -rc in signal.valid_signals() \
            else f"encoder_crashed:{-rc}"
    text = "\n".join(stderr_tail)
    if had_frames and rc == 0 and any(marker in text for marker in _INPUT_GONE):
        return "input_ended"
    if any(marker in text for marker in _INPUT_ERRORS):
        return "input_error"
    if rc == 0:
        return "input_ended"
    return f"encoder_failed:rc={rc}"


class FfmpegProcs:
    """The encoder and, for the synthetic source, its generator, joined by an OS pipe."""

    def __init__(self, encoder: list[str], generator: list[str] | None) -> None:
        self.encoder_argv = encoder
        self.generator_argv = generator
        self.encoder: asyncio.subprocess.Process | None = None
        self.generator: asyncio.subprocess.Process | None = None
        self.stderr_tail: deque[str] = deque(maxlen=20)

    async def start(self) -> None:
        read_fd: int | None = None
        if self.generator_argv is not None:
            read_fd, write_fd = os.pipe()
            try:
                self.generator = await asyncio.create_subprocess_exec(
                    *self.generator_argv, stdout=write_fd, stderr=asyncio.subprocess.PIPE,
                    stdin=asyncio.subprocess.DEVNULL)
            finally:
                os.close(write_fd)
        try:
            self.encoder = await asyncio.create_subprocess_exec(
                *self.encoder_argv, stdin=read_fd if read_fd is not None else
                asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        finally:
            if read_fd is not None:
                os.close(read_fd)

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in
                (("encoder", self.encoder), ("generator", self.generator)) if proc}

    async def progress_lines(self) -> AsyncGenerator[str, None]:
        assert self.encoder is not None and self.encoder.stdout is not None
        while line := await self.encoder.stdout.readline():
            yield line.decode(errors="replace")

    async def collect_stderr(self) -> None:
        streams = [p.stderr for p in (self.encoder, self.generator) if p and p.stderr]
        await asyncio.gather(*(self._tail(s) for s in streams))

    async def _tail(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            if text:
                self.stderr_tail.append(text)

    async def wait(self) -> int | None:
        assert self.encoder is not None
        return await self.encoder.wait()

    async def close(self) -> None:
        """Read both processes' pipes to EOF and reap them, so asyncio closes the transports
        now rather than in a finaliser after the loop is gone ("Event loop is closed")."""
        await self.stop()
        for proc in (self.generator, self.encoder):
            if proc is None:
                continue
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(Exception):
                        await stream.read()
            await proc.wait()

    async def stop(self, grace: float = 5.0) -> None:
        """SIGINT (ffmpeg closes its outputs cleanly), then SIGKILL after ``grace``."""
        for proc in (self.generator, self.encoder):
            if proc is None or proc.returncode is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
