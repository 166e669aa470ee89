"""Find a JDK 17 for Kafka and Cassandra.

Cassandra 5.0 runs on Java 11 or 17 only, never >= 18 (infra.md §2.1: its security manager
install throws on newer JDKs), and a newer JDK may be the machine's default, so we look for 17
explicitly and check what ``java -version`` says rather than trusting a path name.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

from stumpcast.stack.errors import ToolMissing

INSTALL_HINT = ("Install a JDK 17 (Debian/Ubuntu: apt-get install openjdk-17-jre-headless) "
                "or set STUMPCAST_JAVA_HOME to a JDK 17 home.")
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def java_major(java: Path) -> int | None:
    """The major version ``java -version`` reports, or None if it does not run."""
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True,
                             timeout=30, check=False)
    except OSError:
        return None
    match = _VERSION.search(out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8" style


def _candidates() -> list[Path]:
    found: list[Path] = []
    if os.environ.get("JAVA_HOME"):
        found.append(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    for pattern in ("/usr/lib/jvm/java-17-*", "/usr/lib/jvm/*-17-*", "/usr/lib/jvm/jdk-17*",
                    "/usr/lib/jvm/temurin-17*"):
        found += [Path(home) / "bin" / "java" for home in sorted(glob.glob(pattern))]
    on_path = shutil.which("java")
    if on_path:
        found.append(Path(on_path))
    return found


def find_java(java_home: str) -> Path:
    """The ``java`` binary of a JDK 17: ``java_home`` if set, else the first found."""
    if java_home:
        java = Path(java_home).expanduser() / "bin" / "java"
        if not java.exists():
            raise ToolMissing(f"STUMPCAST_JAVA_HOME={java_home} has no bin/java. "
                              + INSTALL_HINT)
        major = java_major(java)
        if major != 17:
            raise ToolMissing(f"STUMPCAST_JAVA_HOME={java_home}: {java} is Java {major}, "
                              "the stack needs 17 (Cassandra 5.0 refuses >= 18). "
                              + INSTALL_HINT)
        return java
    seen: set[Path] = set()
    for java in _candidates():
        if java in seen or not java.exists():
            continue
        seen.add(java)
        if java_major(java) == 17:
            return java
    raise ToolMissing("No Java 17 found (looked at $JAVA_HOME, /usr/lib/jvm/*17* and java on "
                      "PATH). " + INSTALL_HINT)
