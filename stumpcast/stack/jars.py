"""Fetch the Kafka and Cassandra jars from Maven Central into the cache folder.

Neither server is packaged by Debian or PyPI (infra.md §0), so a tiny wrapper pom per server
lists the artifact and Maven's ``copy-dependencies`` copies its runtime closure into
``<cache>/kafka-<v>/libs`` or ``<cache>/cassandra-<v>/lib``. Separate poms and folders keep the
two SLF4J bindings apart (infra.md §1.2). A ``.complete`` marker is written only after a full
download, so an interrupted one is redone rather than half-used.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stumpcast.stack.errors import DownloadFailed, ToolMissing

# Maven 3.8 defaults to maven-dependency-plugin 2.8; always call a pinned 3.x (infra.md §0).
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
# One log4j2 version for api, core and the SLF4J binding, matching what kafka-server 4.3 brings
# (infra.md §1.2). Without the binding the broker logs nothing.
LOG4J2_VERSION = "2.25.1"
MARKER = ".complete"


@dataclass(frozen=True)
class Artifact:
    group: str
    artifact: str
    version: str

    def xml(self) -> str:
        return (f"    <dependency><groupId>{self.group}</groupId>"
                f"<artifactId>{self.artifact}</artifactId>"
                f"<version>{self.version}</version></dependency>")


@dataclass(frozen=True)
class JarSet:
    """The jars of one server version: what to fetch and where they go."""

    server: str          # "kafka" or "cassandra"
    version: str
    folder: str          # "libs" (Kafka's layout) or "lib" (Cassandra's)
    artifacts: tuple[Artifact, ...]

    def home(self, cache_dir: Path) -> Path:
        return cache_dir / f"{self.server}-{self.version}"

    def lib_dir(self, cache_dir: Path) -> Path:
        return self.home(cache_dir) / self.folder

    def pom(self) -> str:
        deps = "\n".join(a.xml() for a in self.artifacts)
        return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>stumpcast.tools</groupId>
  <artifactId>{self.server}-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}
  </dependencies>
</project>
"""


def kafka_jars(version: str) -> JarSet:
    log4j = "org.apache.logging.log4j"
    return JarSet("kafka", version, "libs", (
        Artifact("org.apache.kafka", "kafka_2.13", version),
        Artifact(log4j, "log4j-api", LOG4J2_VERSION),
        Artifact(log4j, "log4j-core", LOG4J2_VERSION),
        Artifact(log4j, "log4j-slf4j-impl", LOG4J2_VERSION),
    ))


def cassandra_jars(version: str) -> JarSet:
    return JarSet("cassandra", version, "lib", (
        Artifact("org.apache.cassandra", "cassandra-all", version),
    ))


def is_complete(jars: JarSet, cache_dir: Path) -> bool:
    return (jars.home(cache_dir) / MARKER).exists()


def mvn_command(jars: JarSet, pom: Path, out_dir: Path, maven_repo: Path | None) -> list[str]:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ToolMissing("mvn (Apache Maven) is not on PATH; it downloads the Kafka and "
                          "Cassandra jars. Install it (Debian/Ubuntu: apt-get install maven).")
    cmd = [mvn, "-B", "-q", "-f", str(pom), f"{DEPENDENCY_PLUGIN}:copy-dependencies",
           "-DincludeScope=runtime", f"-DoutputDirectory={out_dir}"]
    if maven_repo is not None:
        cmd.append(f"-Dmaven.repo.local={maven_repo}")
    return cmd


def ensure_jars(jars: JarSet, cache_dir: Path, say: Callable[[str], None],
                maven_repo: Path | None = None) -> Path:
    """The lib folder of ``jars``, downloading it first if the cache does not have it.

    One Maven at a time (a file lock in the cache folder): parallel runs on one local
    repository can corrupt it, and two ``stack up`` may race on a fresh machine.
    """
    if is_complete(jars, cache_dir):
        return jars.lib_dir(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".maven.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_complete(jars, cache_dir):  # another process may have finished it
            _download(jars, cache_dir, say, maven_repo)
    return jars.lib_dir(cache_dir)


def _download(jars: JarSet, cache_dir: Path, say: Callable[[str], None],
              maven_repo: Path | None) -> None:
    home, lib = jars.home(cache_dir), jars.lib_dir(cache_dir)
    if lib.exists():
        shutil.rmtree(lib)  # a partial earlier attempt
    home.mkdir(parents=True, exist_ok=True)
    pom = home / "pom.xml"
    pom.write_text(jars.pom())
    cmd = mvn_command(jars, pom, lib, maven_repo)
    say(f"downloading {jars.server} {jars.version} jars from Maven Central into {lib} "
        "(first run only) ...")
    started = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        last = (out.stdout + out.stderr).strip().splitlines()[-25:]
        raise DownloadFailed(
            f"Maven could not download {jars.server} {jars.version} (exit {out.returncode}). "
            f"Check that Maven Central is reachable and the version exists "
            f"(STUMPCAST_{jars.server.upper()}_VERSION). Command: {' '.join(cmd)}\n"
            "Last lines of Maven's output:\n" + "\n".join(f"  | {x}" for x in last))
    files = list(lib.glob("*.jar"))
    size = sum(f.stat().st_size for f in files) / 2**20
    (home / MARKER).write_text(f"{len(files)} jars\n")
    say(f"{jars.server} {jars.version}: {len(files)} jars, {size:.0f} MiB "
        f"in {time.monotonic() - started:.1f} s")
