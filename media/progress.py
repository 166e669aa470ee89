"""ffmpeg ``-progress`` parsing and the encoder speed guard. Pure: no clock, no I/O.

``-progress pipe:1`` writes ``key=value`` lines and ends each block with ``progress=continue``
(or ``progress=end``). With a live (paced) source ffmpeg's own ``speed=`` stays near 1.0 even
when the encoder starves its input, because input is throttled, not dropped; the honest measure
is frames encoded per wall second over the source frame rate, which is what the guard uses.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Progress:
    frame: int
    out_time_us: int
    speed: float | None
    end: bool


class ProgressParser:
    """Feed lines; get a ``Progress`` at the end of every block."""

    def __init__(self) -> None:
        self._block: dict[str, str] = {}

    def feed(self, line: str) -> Progress | None:
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        self._block[key] = value.strip()
        if key != "progress":
            return None
        block, self._block = self._block, {}
        return Progress(frame=_int(block.get("frame")),
                        out_time_us=_int(block.get("out_time_us")),
                        speed=_speed(block.get("speed")), end=value.strip() == "end")


def _int(raw: str | None) -> int:
    try:
        return int(raw) if raw is not None else 0
    except ValueError:
        return 0  # ffmpeg writes "N/A" before the first frame


def _speed(raw: str | None) -> float | None:
    if not raw or not raw.endswith("x"):
        return None
    try:
        return float(raw[:-1])
    except ValueError:
        return None


@dataclass
class SpeedGuard:
    """Windowed encode speed (x real time) and the decision to step the ladder down.

    ``observe(now, frame)`` returns True once the windowed speed stayed below ``threshold``
    for ``hold`` seconds; the caller steps the ladder (faster preset, then drop the top rung)
    and calls ``reset``. The first ``warmup`` seconds after a launch are ignored.
    """

    fps: float
    threshold: float = 0.9
    window: float = 5.0
    hold: float = 10.0
    warmup: float = 6.0
    _samples: deque[tuple[float, int]] = field(default_factory=deque)
    _started: float | None = None
    _slow_since: float | None = None

    def reset(self) -> None:
        self._samples.clear()
        self._started = None
        self._slow_since = None

    def speed(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t_a, f_a), (t_b, f_b) = self._samples[0], self._samples[-1]
        if t_b - t_a <= 0:
            return None
        return (f_b - f_a) / (t_b - t_a) / self.fps

    def observe(self, now: float, frame: int) -> bool:
        if self._started is None:
            self._started = now
        self._samples.append((now, frame))
        while self._samples and now - self._samples[0][0] > self.window:
            self._samples.popleft()
        speed = self.speed()
        if now - self._started < self.warmup or speed is None:
            return False
        if speed >= self.threshold:
            self._slow_since = None
            return False
        if self._slow_since is None:
            self._slow_since = now
        return now - self._slow_since >= self.hold
