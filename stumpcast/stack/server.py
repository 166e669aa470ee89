"""What the stack needs to know about a server, whatever it is."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from schemas.settings import Settings
from stumpcast.stack.java import find_java
from stumpcast.stack.layout import RunLayout


@dataclass(frozen=True)
class Port:
    number: int
    setting: str    # the STUMPCAST_* variable that changes it
    role: str       # "broker", "controller", "cql", ...
    host: str = "127.0.0.1"  # the loopback address it binds (multi-node: 127.0.0.1-3)
    shared: bool = False     # bound with SO_REUSEPORT by twins (the two HAProxy processes)


class StartContext:
    """What starting needs besides settings: where to report progress, which java, which
    Maven repository (None: the user's ~/.m2; the cold benchmark passes an empty one)."""

    def __init__(self, settings: Settings, say: Callable[[str], None],
                 maven_repo: Path | None = None) -> None:
        self.settings = settings
        self.say = say
        self.maven_repo = maven_repo

    @cache  # noqa: B019 - one context per command run; finding java runs `java -version`
    def java(self) -> Path:
        return find_java(self.settings.java_home)


class Server(ABC):
    """One server of the local stack. Subclasses render config and know how to probe."""

    name: str = ""
    stop_grace: float = 30.0   # seconds between SIGTERM and SIGKILL

    def __init__(self, settings: Settings, layout: RunLayout) -> None:
        self.settings = settings
        self.layout = layout

    @abstractmethod
    def ports(self) -> list[Port]:
        """Every port it binds; the first is the one clients use."""

    @abstractmethod
    def prepare(self, ctx: StartContext) -> list[str]:
        """Fetch what is missing, write config, return the command line to start it."""

    @abstractmethod
    def probe(self, timeout: float = 5.0) -> bool:
        """A real request to the server on its stack port."""

    def needs_java(self) -> bool:
        return False

    @property
    def wave(self) -> int:
        """Launch wave: `up` starts wave n + 1 once every server of wave n is healthy (the
        Cassandra nodes of `--nodes 3` must join one at a time). Most servers: 0."""
        return 0

    @property
    def marker(self) -> str:
        """A string only our process of this server has in its command line."""
        return str(self.layout.conf(self.name))

    @property
    def log_path(self) -> Path:
        return self.layout.log(self.name)
