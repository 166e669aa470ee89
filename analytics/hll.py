"""HyperLogLog (Flajolet et al. 2007) for distinct sessions at 10^7-10^8 (industry.md §7).

Standard error is 1.04/sqrt(m): precision 14 (m = 16,384 registers, 16 KiB) gives ~0.81%,
inside stumpcast's 2% goal (industry.md §9.5). The hash is 64-bit BLAKE2b, stable across
processes (Python's ``hash`` is salted per process), with linear counting for small ranges.
Sketches merge by register-wise max, so windows and partitions combine without error growth.
"""

from __future__ import annotations

import math
from hashlib import blake2b

DEFAULT_PRECISION = 14
_POW = [2.0 ** -r for r in range(66)]


def hash64(value: str) -> int:
    return int.from_bytes(blake2b(value.encode(), digest_size=8).digest(), "little")


class HyperLogLog:
    __slots__ = ("p", "m", "registers", "_shift", "_mask")

    def __init__(self, precision: int = DEFAULT_PRECISION) -> None:
        if not 4 <= precision <= 18:
            raise ValueError("precision must be between 4 and 18")
        self.p = precision
        self.m = 1 << precision
        self.registers = bytearray(self.m)
        self._shift = 64 - precision
        self._mask = (1 << self._shift) - 1

    def add(self, value: str) -> None:
        h = hash64(value)
        idx = h >> self._shift
        rho = self._shift - (h & self._mask).bit_length() + 1
        if rho > self.registers[idx]:
            self.registers[idx] = rho

    def merge(self, other: HyperLogLog) -> HyperLogLog:
        """A new sketch of the union."""
        if other.p != self.p:
            raise ValueError("cannot merge sketches of different precision")
        out = HyperLogLog(self.p)
        out.registers = bytearray(map(max, self.registers, other.registers))
        return out

    def count(self) -> int:
        m = self.m
        alpha = 0.7213 / (1 + 1.079 / m)
        estimate = alpha * m * m / sum(_POW[r] for r in self.registers)
        zeros = self.registers.count(0)
        if estimate <= 2.5 * m and zeros:
            estimate = m * math.log(m / zeros)  # linear counting: exact-ish when small
        return int(round(estimate))

    @staticmethod
    def standard_error(precision: int = DEFAULT_PRECISION) -> float:
        return 1.04 / math.sqrt(1 << precision)
