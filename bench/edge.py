"""``stumpcast bench edge``: origin offload of the two caching edges as the audience grows.

Everything on loopback, in a temporary folder, on free ports, stopped at the end:

* the origin: ``bench.edge_origin`` (the media worker's publisher and origin app; synthetic
  segment bytes), counting every request it serves;
* the gateway: ``stumpcast gateway serve`` on the stack's Redis, serving a bench match whose
  scorecard changes every second (so its ETag moves as in a live match);
* the edges: ``stumpcast stack up --only cdn-a,cdn-b`` in the temporary run folder, restarted
  with empty caches before each audience size, so every step begins with a join storm on a
  cold cache;
* the audience: ``bench.edge_load`` processes (players and scorecard pollers, split evenly over
  the two edges).

Per audience size and object class it reports the requests the audience made, the requests
that reached the origin or the gateway (edge access-log lines with an upstream address,
background refreshes included: ``log_subrequest on``; the origin's own count for HLS as a
cross-check), offload = 1 - origin / audience, origin requests per second, and the audience's
lateness (how far behind their schedule requests started: a generator that cannot keep up
shows here).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench import log as benchlog
from bench.edge_origin import object_class
from runtime.redisconn import async_redis, sync_redis
from schemas.settings import Settings
from schemas.store_access import RedisUser

CLASSES = ("master", "playlist", "segment", "api")
EDGES = ("cdn-a", "cdn-b")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def upstream_counts(lines: Iterable[str], since: float, until: float) -> collections.Counter[str]:
    """Requests that went to the origin or the gateway, per class, from edge access-log lines
    (``log_format edge``: ``$msec $status $method "$uri" $bytes cache=… up=<addr> …``) logged
    in [since, until]. A collapsed waiter or a cache hit has ``up=-``."""
    out: collections.Counter[str] = collections.Counter()
    for line in lines:
        parts = line.split()
        if len(parts) < 7 or not parts[5].startswith("cache="):
            continue
        try:
            at = float(parts[0])
        except ValueError:
            continue
        if not since <= at <= until or parts[6] == "up=-":
            continue
        path = parts[3].strip('"')
        out["api" if path.startswith("/v1/") else object_class(path)] += 1
    return out


class Rig:
    """The processes of one benchmark run; ``close`` stops all of them."""

    def __init__(self, settings: Settings, folder: Path, td: int) -> None:
        self.settings = settings
        self.folder = folder
        self.td = td
        self.ports = {"origin": free_port(), "gateway": free_port(), "cdn-a": free_port(),
                      "cdn-b": free_port()}
        self.match_id = f"bench-edge-{uuid.uuid4().hex[:8]}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {**os.environ, "STUMPCAST_RUN_DIR": str(folder / "run"),
                    "STUMPCAST_LOG_FORMAT": "text", "STUMPCAST_REDIS_URL": settings.redis_url,
                    "STUMPCAST_MEDIA_HTTP_PORT": str(self.ports["origin"]),
                    "STUMPCAST_GATEWAY_PORT": str(self.ports["gateway"]),
                    "STUMPCAST_GATEWAY_PANIC_DIR": str(folder / "panic"),
                    "STUMPCAST_GATEWAY_PANIC_FLAG": str(folder / "PANIC"),
                    "STUMPCAST_STACK_CDN_A_PORT": str(self.ports["cdn-a"]),
                    "STUMPCAST_STACK_CDN_B_PORT": str(self.ports["cdn-b"])}

    def spawn(self, name: str, argv: list[str], ready: str) -> None:
        log = (self.folder / f"{name}.log").open("ab")
        proc = subprocess.Popen([sys.executable, *argv], env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                process_group=0)
        self.procs.append(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}); see {log.name}")
            with contextlib.suppress(OSError), urllib.request.urlopen(ready, timeout=2):
                return
            time.sleep(0.25)
        raise RuntimeError(f"{name} not ready in 60 s; see {log.name}")

    def start(self) -> None:
        o = self.ports["origin"]
        self.spawn("origin", ["-m", "bench.edge_origin", "--dir", str(self.folder / "media"),
                              "--port", str(o), "--td", str(self.td)],
                   f"http://127.0.0.1:{o}/bench/counts")
        g = self.ports["gateway"]
        self.spawn("gateway", ["-m", "stumpcast", "gateway", "serve"],
                   f"http://127.0.0.1:{g}/readyz")

    def stack(self, *args: str) -> None:
        out = subprocess.run([sys.executable, "-m", "stumpcast", "stack", *args], env=self.env,
                             capture_output=True, text=True, timeout=120, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"stack {' '.join(args)}: {out.stderr.strip()}")

    def fresh_edges(self) -> None:
        """Edges with empty caches and empty logs."""
        self.stack("down", "--only", "cdn-a,cdn-b")
        run = self.folder / "run"
        for name in EDGES:
            shutil.rmtree(run / "data" / name, ignore_errors=True)
            (run / "logs" / f"{name}.access.log").unlink(missing_ok=True)
        self.stack("up", "--only", "cdn-a,cdn-b", "--no-init")

    def edge_lines(self) -> list[str]:
        lines: list[str] = []
        for name in EDGES:
            path = self.folder / "run" / "logs" / f"{name}.access.log"
            if path.exists():
                lines += path.read_text(errors="replace").splitlines()
        return lines

    def origin_counts(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.ports['origin']}/bench/counts"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return dict(json.loads(resp.read()))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.stack("down")
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


async def _scores(settings: Settings, match_id: str, stop: threading.Event) -> None:
    """A live scorecard: one update a second, as a match in play."""
    from bench.gateway.writer import ViewWriter

    client = async_redis(settings, RedisUser.ADMIN)
    writer = ViewWriter(client)
    runs = 0
    try:
        while not stop.is_set():
            runs += 1
            await writer.publish(match_id, {"match_id": match_id, "teams": ["A", "B"],
                                            "innings": [{"runs": runs, "wickets": 0}]})
            await asyncio.sleep(1.0)
    finally:
        await writer.delete(match_id)
        await client.aclose()


def _load(rig: Rig, players: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run the audience in ``args.procs`` processes; their JSON results."""
    procs = []
    share = -(-players // args.procs)
    edges = f"{rig.ports['cdn-a']},{rig.ports['cdn-b']}"
    for i in range(args.procs):
        n = min(share, players - i * share)
        if n <= 0:
            break
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "bench.edge_load", "--players", str(n),
             "--offset", str(i * share), "--edges", edges, "--seconds", str(args.seconds),
             "--ramp", str(args.ramp), "--td", str(args.td), "--poll", str(args.poll),
             "--match", rig.match_id, "--seed", str(i + 1),
             "--out", str(rig.folder / f"load-{i}.json")],
            env=rig.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    results = []
    for i, proc in enumerate(procs):
        _, err = proc.communicate(timeout=args.seconds + 120)
        if proc.returncode != 0:
            raise RuntimeError(f"load generator failed: {err.decode()[-2000:]}")
        results.append(json.loads((rig.folder / f"load-{i}.json").read_bytes()))
    return results


def step(rig: Rig, players: int, args: argparse.Namespace) -> dict[str, Any]:
    rig.fresh_edges()
    before = rig.origin_counts()
    since = time.time()
    results = _load(rig, players, args)
    time.sleep(1.5)  # the edges' access logs are flushed every second
    until = time.time()
    after = rig.origin_counts()
    seconds = until - since
    upstream = upstream_counts(rig.edge_lines(), since, until)
    asked: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    cache: collections.Counter[str] = collections.Counter()
    late: list[float] = []
    took: dict[str, list[float]] = collections.defaultdict(list)
    for r in results:
        asked.update(r["requests"])
        errors.update(r["errors"])
        cache.update(r["cache"])
        late += r["late_ms"]
        for cls, values in r["took_ms"].items():
            took[cls] += values
    origin_seen = {c: after[c] - before[c] for c in ("master", "playlist", "segment")}
    return {"players": players, "seconds": seconds, "asked": dict(asked),
            "upstream": dict(upstream), "origin_seen": origin_seen, "errors": dict(errors),
            "cache": dict(cache), "late_p50": benchlog.percentile(late, 50) if late else 0.0,
            "late_p99": benchlog.percentile(late, 99) if late else 0.0,
            "took": {c: (benchlog.percentile(v, 50), benchlog.percentile(v, 99))
                     for c, v in took.items() if v}}


def rows_of(s: dict[str, Any]) -> list[tuple[str, str]]:
    n, secs = s["players"], s["seconds"]
    rows = []
    for cls in CLASSES:
        asked, up = s["asked"].get(cls, 0), s["upstream"].get(cls, 0)
        offload = 1 - up / asked if asked else 0.0
        seen = s["origin_seen"].get(cls)
        cross = f"; origin counted {seen}" if seen is not None else ""
        rows.append((f"{n:,} players: {cls} offload",
                     f"{offload:.2%} ({asked:,} requests, {up:,} upstream{cross})"))
        rows.append((f"{n:,} players: {cls} origin requests/s", f"{up / secs:.2f}"))
        states = sorted(((k.split(":", 1)[1], v) for k, v in s["cache"].items()
                         if k.startswith(f"{cls}:")), key=lambda kv: -kv[1])
        rows.append((f"{n:,} players: {cls} X-Cache", ", ".join(
            f"{k} {v / max(asked, 1):.1%}" for k, v in states[:4])))
        p50, p99 = s["took"].get(cls, (0.0, 0.0))
        rows.append((f"{n:,} players: {cls} response time p50 / p99",
                     f"{p50:.1f} / {p99:.0f} ms"))
    total = sum(s["asked"].values())
    rows.append((f"{n:,} players: audience requests/s", f"{total / secs:,.0f}"))
    rows.append((f"{n:,} players: request lateness p50 / p99",
                 f"{s['late_p50']:.0f} / {s['late_p99']:.0f} ms"))
    errors = sum(s["errors"].values())
    rows.append((f"{n:,} players: failed requests", f"{errors:,}"
                 + (f" {dict(list(s['errors'].items())[:4])}" if errors else "")))
    return rows


def _check(settings: Settings) -> str | None:
    import redis

    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").is_file()):
        return "nginx is not installed (apt-get install nginx; `make setup` does)"
    try:
        sync_redis(settings, RedisUser.ADMIN, socket_timeout=2).ping()
    except (redis.RedisError, OSError):
        return (f"Redis does not answer at {settings.redis_url} (the gateway needs it): "
                "`stumpcast stack up --only redis`")
    return None


def run(args: argparse.Namespace, settings: Settings) -> int:
    problem = _check(settings)
    if problem:
        print(f"bench edge: {problem}", file=sys.stderr)
        return 2
    sizes = args.players
    load0 = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="stumpcast-bench-edge-"))
    rig = Rig(settings, folder, args.td)
    stop = threading.Event()
    scores = threading.Thread(target=lambda: asyncio.run(
        _scores(settings, rig.match_id, stop)), name="scores", daemon=True)
    scores.start()
    steps = []
    try:
        rig.start()
        for n in sizes:
            print(f"bench edge: {n:,} players for {args.seconds:g} s ...", flush=True)
            steps.append(step(rig, n, args))
            for name, value in rows_of(steps[-1]):
                print(f"  {name}: {value}", flush=True)
    except RuntimeError as exc:
        print(f"bench edge: {exc} (logs in {folder})", file=sys.stderr)
        return 1
    finally:
        stop.set()
        scores.join(5)
        rig.close()
    rows = [r for s in steps for r in rows_of(s)]
    rows.append(("load average (1 min) before / after", f"{load0:.1f} / {os.getloadavg()[0]:.1f}"))
    notes = (f"Two nginx edges (cdn-a, cdn-b, one worker each) from stumpcast/stack/"
             f"edge.nginx.conf, cold caches at the start of each size; players join over "
             f"{args.ramp:g} s, split evenly over the edges, each fetching its media playlist "
             f"every {args.td} s (target duration) and each new segment once, and polling the "
             f"scorecard every {args.poll:g} s; {args.procs} load process(es), 64 keep-alive "
             "connections per edge each. Origin: the media worker's publisher and origin app "
             "with synthetic segments (2% of the rung's bytes); gateway: the real one on Redis, "
             "its card changing every second. Upstream = edge log lines with an upstream "
             "address (background refreshes included); 'origin counted' = the origin's own "
             "count over the same span. Loopback only, machine shared with other work.")
    if not getattr(args, "no_record", False):
        benchlog.record(f"edge: origin offload, {', '.join(f'{n:,}' for n in sizes)} players",
                        rows, notes)
    shutil.rmtree(folder, ignore_errors=True)
    return 0
