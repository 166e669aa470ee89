"""The scorer registry as a file that may change while a service runs.

``RegistryFile(path, interval).current()`` is the registry as the file last read: at most once
per ``interval`` seconds it compares the file's (inode, size, mtime) with what it read, and
reads it again when they differ (``stumpcast scorers add`` replaces the file atomically, so a
new inode). A scorer added, rotated or revoked therefore takes effect within ``interval``
seconds in the streams worker (signature checks) and the ingest API (bearer tokens), without a
restart. A file that cannot be read or decoded keeps the registry in force (logged at error
level once per change of the file): a half-edited registry must not open or close the gate.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from schemas.signing import Registry, RegistryError

log = logging.getLogger(__name__)

Stamp = tuple[int, int, int]


def _stamp(path: Path) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class RegistryFile:
    def __init__(self, path: Path, interval: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Reads the file now (RegistryError if it is not a registry: a service does not
        start without one)."""
        self.path, self.interval, self.clock = path, interval, clock
        self._stamp = _stamp(path)
        self._registry = Registry.load(path)
        self._checked = clock()
        self.reloads = 0

    def current(self) -> Registry:
        now = self.clock()
        if now - self._checked >= self.interval:
            self._checked = now
            stamp = _stamp(self.path)
            if stamp != self._stamp:
                self._stamp = stamp
                self._reload()
        return self._registry

    def _reload(self) -> None:
        try:
            registry = Registry.load(self.path)
        except (RegistryError, OSError) as exc:
            log.error("scorer registry unreadable; the previous one stays in force",
                      extra={"path": str(self.path), "error": str(exc)})
            return
        before, after = set(self._registry.scorers), set(registry.scorers)
        self._registry = registry
        self.reloads += 1
        log.warning("scorer registry re-read", extra={
            "path": str(self.path), "scorers": len(after),
            "added": sorted(after - before), "removed": sorted(before - after)})
