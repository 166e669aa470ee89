"""A Go toolchain for building a peer server from the Go module proxy, kept under one folder.

``stumpcast bench gateway --peer centrifugo`` compiles Centrifugo with ``go install
module@version``. Everything Go writes (module cache, build cache, binaries, a fetched toolchain)
stays under the bench's work folder, never in ``~/go``, so a run leaves no trace elsewhere and a
second run reuses the first one's build.

Choosing the toolchain: the ``go`` on PATH when it is new enough for the module's ``go.mod``,
else ``/usr/local/go/bin/go`` when that is, else a toolchain fetched from the module proxy, which
serves Go releases as the module ``golang.org/toolchain`` at ``v0.0.1-go1.X.Y.<os>-<arch>``
(https://go.dev/doc/toolchain, "Downloading toolchains"). A fetched zip is checked against its
``h1:`` hash from the checksum database (sum.golang.org) before it is unpacked.
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import re
import shutil
import subprocess
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

GOPROXY = "https://proxy.golang.org"
SUMDB = "https://sum.golang.org"
TOOLCHAIN_MODULE = "golang.org/toolchain"
SYSTEM_GO = Path("/usr/local/go/bin/go")
# A Go release zip is well over 50 MiB (go1.26 linux-amd64: ~70 MiB); much less is an error page.
MIN_TOOLCHAIN_BYTES = 50 << 20

Version = tuple[int, int, int]


class GoToolError(RuntimeError):
    """No usable Go toolchain, or a download that failed its check."""


# -- pure helpers: version strings, go.mod, the environment, the command line -----------------

def parse_go_version(text: str) -> Version | None:
    """``go version go1.26.8 linux/amd64`` (or ``go1.26``, ``go1.26rc1``) -> (1, 26, 8)."""
    m = re.search(r"\bgo(\d+)\.(\d+)(?:\.(\d+))?", text)
    if m is None:
        return None
    return int(m[1]), int(m[2]), int(m[3] or 0)


def required_go(gomod: str) -> Version:
    """The ``go`` directive of a go.mod: the oldest toolchain that may build the module."""
    m = re.search(r"^go\s+(\d+)\.(\d+)(?:\.(\d+))?\s*$", gomod, re.MULTILINE)
    if m is None:
        raise GoToolError("go.mod has no go directive")
    return int(m[1]), int(m[2]), int(m[3] or 0)


def choose_go(required: Version, candidates: list[tuple[str, str]]) -> str | None:
    """The first candidate (path, its ``go version`` output) new enough, or None."""
    for path, output in candidates:
        found = parse_go_version(output)
        if found is not None and found >= required:
            return path
    return None


def escape_path(module: str) -> str:
    """Module path as the proxy spells it: upper case letters become ``!`` + lower case."""
    return re.sub(r"[A-Z]", lambda m: "!" + m[0].lower(), module)


def go_env(work_dir: Path, base: Mapping[str, str]) -> dict[str, str]:
    """The build environment: every Go folder under work_dir, the proxy's default, no surprises.

    GOTOOLCHAIN=local: the toolchain was chosen here, go must not switch to another on its own.
    GOWORK=off and GOENV under work_dir: no workspace or user go.env from elsewhere changes the
    build. CGO_ENABLED=0 as Centrifugo's own release build (.goreleaser.yml at v6.9.1).
    """
    env = {k: v for k, v in base.items() if not k.startswith("GO") and k != "CGO_ENABLED"}
    env.update({
        "GOPATH": str(work_dir / "gopath"),
        "GOMODCACHE": str(work_dir / "gopath" / "pkg" / "mod"),
        "GOCACHE": str(work_dir / "gocache"),
        "GOBIN": str(work_dir / "bin"),
        "GOENV": str(work_dir / "go.env"),
        "GOFLAGS": "-mod=mod",
        # the go command's default, set in case the shell changed it
        "GOPROXY": f"{GOPROXY},direct",
        "GOTOOLCHAIN": "local",
        "GOWORK": "off",
        "CGO_ENABLED": "0",
    })
    env["HOME"] = base.get("HOME", str(work_dir))
    return env


def install_command(go: str, module: str, version: str, ldflags: str) -> list[str]:
    """``go install -v`` prints each package as it compiles: the progress of a long build."""
    return [go, "install", "-v", "-trimpath", f"-ldflags={ldflags}", f"{module}@{version}"]


def zip_h1(path: Path) -> str:
    """The go.sum hash of a module zip (golang.org/x/mod/sumdb/dirhash, Hash1 over HashZip).

    SHA-256 over the lines "<sha256 hex of a file>  <its name in the zip>\\n", names sorted.
    """
    summary = hashlib.sha256()
    with zipfile.ZipFile(path) as z:
        for name in sorted(z.namelist()):
            if "\n" in name:
                raise GoToolError(f"{path}: a file name with a newline")
            digest = hashlib.sha256()
            with z.open(name) as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            summary.update(f"{digest.hexdigest()}  {name}\n".encode())
    return "h1:" + base64.b64encode(summary.digest()).decode()


def sum_line_hash(lookup: str, module: str, version: str) -> str:
    """The ``h1:`` hash of module@version in a sum.golang.org lookup answer."""
    for line in lookup.splitlines():
        parts = line.split()
        if parts[:2] == [module, version] and len(parts) == 3:
            return parts[2]
    raise GoToolError(f"the checksum database has no hash for {module}@{version}")


def toolchain_version(versions: list[str], required: Version, goos: str, arch: str) -> str:
    """The newest ``v0.0.1-go1.X.Y.<os>-<arch>`` of the required minor release, at least
    ``required``."""
    pattern = re.compile(rf"^v0\.0\.1-go(\d+)\.(\d+)\.(\d+)\.{goos}-{arch}$")
    fit = []
    for v in versions:
        m = pattern.match(v.strip())
        if m and (int(m[1]), int(m[2])) == required[:2] and int(m[3]) >= required[2]:
            fit.append((int(m[3]), v.strip()))
    if not fit:
        raise GoToolError(f"the module proxy lists no toolchain go{required[0]}.{required[1]} "
                          f"for {goos}-{arch}")
    return max(fit)[1]


# -- the shell: run go, download from the proxy ------------------------------------------------

def _get(url: str, timeout: float = 60) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (fixed https hosts)
        data: bytes = r.read()
        return data


def module_gomod(work_dir: Path, module: str, version: str) -> str:
    """The module's go.mod from the proxy, cached under work_dir."""
    cached = work_dir / "gomod" / f"{escape_path(module).replace('/', '_')}@{version}.mod"
    if not cached.exists():
        text = _get(f"{GOPROXY}/{escape_path(module)}/@v/{version}.mod").decode()
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(text)
    return cached.read_text()


def version_output(go: str) -> str:
    """``go version`` of a candidate, or "" when it does not run."""
    try:
        done = subprocess.run([go, "version"], capture_output=True, text=True, timeout=30,
                              env={**os.environ, "GOTOOLCHAIN": "local"}, check=False)
    except OSError:
        return ""
    return done.stdout if done.returncode == 0 else ""


def find_go(work_dir: Path, required: Version, say: Callable[[str], None]) -> str:
    """A go binary new enough for ``required``: PATH, then /usr/local/go, then the proxy."""
    candidates = [p for p in (shutil.which("go"), str(SYSTEM_GO)) if p and Path(p).exists()]
    chosen = choose_go(required, [(p, version_output(p)) for p in candidates])
    if chosen is not None:
        return chosen
    need = ".".join(map(str, required))
    say(f"no go >= {need} on this machine ({', '.join(candidates) or 'none found'}): "
        "fetching one from the module proxy")
    return str(fetch_toolchain(work_dir, required, say))


def fetch_toolchain(work_dir: Path, required: Version, say: Callable[[str], None]) -> Path:
    """Download, check and unpack ``golang.org/toolchain``; returns its bin/go."""
    goos, arch = "linux", {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), "")
    if not arch:
        raise GoToolError(f"no Go toolchain known for the machine {platform.machine()!r}")
    listing = _get(f"{GOPROXY}/{TOOLCHAIN_MODULE}/@v/list").decode().splitlines()
    version = toolchain_version(listing, required, goos, arch)
    root = work_dir / "toolchain" / version
    go = root / f"{TOOLCHAIN_MODULE}@{version}" / "bin" / "go"
    if go.exists():
        return go
    archive = work_dir / "toolchain" / f"{version}.zip"
    archive.parent.mkdir(parents=True, exist_ok=True)
    say(f"downloading {TOOLCHAIN_MODULE}@{version}")
    archive.write_bytes(_get(f"{GOPROXY}/{TOOLCHAIN_MODULE}/@v/{version}.zip", timeout=600))
    if archive.stat().st_size < MIN_TOOLCHAIN_BYTES:
        raise GoToolError(f"{archive}: {archive.stat().st_size} bytes is too small for a Go "
                          "release")
    # The lookup answer is trusted through TLS to sum.golang.org; its signed tree note is not
    # verified here (the go command would), which is enough for a benchmark's build tool.
    lookup = _get(f"{SUMDB}/lookup/{TOOLCHAIN_MODULE}@{version}").decode()
    want, got = sum_line_hash(lookup, TOOLCHAIN_MODULE, version), zip_h1(archive)
    if want != got:
        raise GoToolError(f"{archive}: hash {got}, the checksum database says {want}")
    _unpack(archive, root)
    archive.unlink()
    return go


def _unpack(archive: Path, root: Path) -> None:
    """Extract with the Unix modes kept (zipfile drops them: bin/go must stay executable)."""
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            target = z.extract(info, root)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(target, mode)
