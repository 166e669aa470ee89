"""The run folder: one place for every server's data, config, log and pid record.

::

    <run_dir>/
      conf/<server>/     generated config files (rewritten on every start)
      data/<server>/     what the server stores (kept across restarts)
      logs/<server>.log  the server's stdout and stderr
      pids/<server>.json the process we started: pid, start time, command line
      tmp/               JVM temp files (JNA needs an executable temp dir, infra.md §2.7)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @classmethod
    def at(cls, run_dir: Path) -> RunLayout:
        # Absolute, so pid records and config files stay valid whatever the caller's cwd.
        return cls(run_dir.expanduser().resolve())

    def conf(self, server: str) -> Path:
        return self.root / "conf" / server

    def data(self, server: str) -> Path:
        return self.root / "data" / server

    def log(self, server: str) -> Path:
        return self.root / "logs" / f"{server}.log"

    def pid_record(self, server: str) -> Path:
        return self.root / "pids" / f"{server}.json"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def prepare(self, server: str) -> None:
        for path in (self.conf(server), self.data(server), self.log(server).parent,
                     self.pid_record(server).parent, self.tmp):
            path.mkdir(parents=True, exist_ok=True)
