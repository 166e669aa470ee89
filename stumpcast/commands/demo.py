"""``stumpcast demo`` (the whole pipeline on one machine) and ``stumpcast live-replay``.

The demo is a small process supervisor. It brings the local stack up if it is down (with
Prometheus, Alertmanager and the /ops page unless ``--no-observe``, and the two caching edges
unless ``--no-edge``), then starts the steering server, the streams worker, the gateway and the
media worker (its master listing both edges as content-steering pathways), each in its own
process group with its output in a log file, and waits for each one's ``/readyz``. It then
replays a real IPL match
"live" and shows ``stumpcast watch`` in the terminal (when the output is not a terminal, its
``--progress`` lines: one per over, wicket and milestone). Ctrl-C (or SIGTERM) is forwarded to
every child's process group; whatever has not exited after a grace period is killed, and the
stack's servers the demo started are stopped again.

``live-replay`` differs from ``stumpcast replay`` in one way that matters for video: it stamps
each event with the wall-clock instant it is sent (the match's own spacing divided by
``--speed``, long breaks shortened), so ball instants fall on the media worker's PDT timeline:
markers land on the live video and "sync with video" can compare them with the playhead.

Match data: Cricsheet (cricsheet.org), ODC-BY 1.0.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from schemas.scorecard import CREDIT
from schemas.settings import Settings

DEMO_MATCH = "1370353.json"  # the 2023 IPL final, in STUMPCAST_CRICSHEET_DIR
# 60x real time: the final's first wicket (6.6 ov) comes ~40 s after the first event.
DEFAULT_SPEED = 60.0
MAX_GAP_S = 3.0  # toss, innings break, rain: no wall-clock gap between events longer than this
DEMO_LADDER = "720p,360p"  # two rungs leave CPU for the rest of the demo on a 2-core machine
DEMO_PRESET = "superfast"
READY_TIMEOUT_S = 90.0
STOP_GRACE_S = 10.0
OBSERVERS = "prometheus,alertmanager,ops"  # what `stack up --observe` adds


# -- live timing (pure) ------------------------------------------------------------------------

def live_timeline(events: Sequence[Any], start: dt.datetime, speed: float,
                  max_gap_s: float = MAX_GAP_S) -> list[Any]:
    """The events re-stamped to happen from ``start`` at ``speed`` times real time.

    Gaps are divided by ``speed`` and then capped at ``max_gap_s``; order and spacing are
    otherwise kept, so ``ts`` stays non-decreasing and the fold sees the same match.
    """
    if speed <= 0:
        raise ValueError("speed must be positive")
    out, at, prev = [], start, None
    for event in events:
        if prev is not None:
            gap = (event.ts - prev).total_seconds() / speed
            at += dt.timedelta(seconds=min(max(gap, 0.0), max_gap_s))
        prev = event.ts
        out.append(dataclasses.replace(event, ts=at))
    return out


def due(events: Iterable[Any]) -> Iterator[tuple[float, Any]]:
    """(POSIX seconds at which to send, event): an event is sent at its own instant."""
    for event in events:
        yield event.ts.timestamp(), event


def live_replay(settings: Settings, path: Path, match_id: str, speed: float,
                max_gap_s: float = MAX_GAP_S, quiet: bool = False,
                lead_s: float = 0.5) -> int:
    """Produce the match to ``match.events`` in live time; return the number of events sent."""
    from streams import cricsheet
    from streams.producer import Ticker, scorer_producer

    events = cricsheet.import_match(cricsheet.load(path), match_id)
    start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lead_s)
    timed = live_timeline(events, start, speed, max_gap_s)
    producer, ticker = scorer_producer(settings, "cricsheet"), Ticker()
    for at, event in due(timed):
        wait = at - time.time()
        if wait > 0:
            time.sleep(wait)
        producer.send(event)
        ticker.see(event)
        if not quiet:
            print(f"{match_id} seq {event.seq}/{len(timed)}  {ticker.text()}", flush=True)
    left = producer.flush()
    if left or producer.failed:
        raise RuntimeError(f"{left} events unsent, {len(producer.failed)} failed: "
                           f"{producer.failed[:3]}")
    return producer.delivered


# -- the supervisor ----------------------------------------------------------------------------

@dataclass
class Child:
    name: str
    argv: list[str]
    ready_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    log: Path | None = None
    proc: subprocess.Popen[bytes] | None = None


class Supervisor:
    """Children in their own process groups; signals forwarded; all stopped on exit."""

    def __init__(self, log_dir: Path, out: IO[str] = sys.stdout) -> None:
        self.log_dir = log_dir
        self.out = out
        self.children: list[Child] = []

    def start(self, child: Child, foreground: bool = False) -> Child:
        env = {**os.environ, **child.env}
        if foreground:  # shares the terminal's output (stumpcast watch)
            child.proc = subprocess.Popen(child.argv, env=env, process_group=0)
        else:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            child.log = self.log_dir / f"{child.name}.log"
            with child.log.open("ab") as log:
                child.proc = subprocess.Popen(child.argv, env=env, stdout=log,
                                              stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, process_group=0)
        self.children.append(child)
        return child

    def wait_ready(self, child: Child, timeout: float = READY_TIMEOUT_S) -> None:
        assert child.proc is not None and child.ready_url
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.proc.poll() is not None:
                raise RuntimeError(f"{child.name} exited with {child.proc.returncode}; "
                                   f"see {child.log}")
            if http_ok(child.ready_url):
                return
            time.sleep(0.25)
        raise RuntimeError(f"{child.name} not ready after {timeout:.0f}s ({child.ready_url}); "
                           f"see {child.log}")

    def signal_all(self, signum: int) -> None:
        for child in reversed(self.children):
            if child.proc is not None and child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.proc.pid, signum)

    def stop_all(self, grace: float = STOP_GRACE_S) -> dict[str, int]:
        """SIGTERM every group, wait up to ``grace`` seconds, SIGKILL the rest."""
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children:
            assert child.proc is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(max(deadline - time.monotonic(), 0.05))
        self.signal_all(signal.SIGKILL)
        codes: dict[str, int] = {}
        for child in self.children:
            assert child.proc is not None
            codes[child.name] = child.proc.wait()
        return codes


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def page_url(settings: Settings, match_id: str) -> str:
    host, media = settings.gateway_host, settings.media_http_port
    query = "" if media == 18081 else f"?media=http://{host}:{media}"
    return f"http://{host}:{settings.gateway_port}/{query}#/match/{match_id}"


def edge_url(settings: Settings, edge: str = "cdn-a") -> str:
    port = settings.stack_cdn_a_port if edge == "cdn-a" else settings.stack_cdn_b_port
    return f"http://127.0.0.1:{port}"


def edge_page_url(settings: Settings, match_id: str, edge: str = "cdn-a") -> str:
    """The page, its API, its WebSocket and its video all through one caching edge."""
    base = edge_url(settings, edge)
    return f"{base}/?media={base}#/match/{match_id}"


def pathways(settings: Settings) -> str:
    """STUMPCAST_MEDIA_PATHWAYS for the local edges, unless the user set it."""
    return os.environ.get("STUMPCAST_MEDIA_PATHWAYS") or (
        f"cdn-a={edge_url(settings, 'cdn-a')},cdn-b={edge_url(settings, 'cdn-b')}")


def stumpcast_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "stumpcast", *args]


def gateway_stats_dir(run_dir: Path) -> str:
    """Where the demo's gateway leaves its load for the degradation controller to read."""
    return os.environ.get("STUMPCAST_GATEWAY_STATS_DIR", str(run_dir / "gateway-stats"))


def service_children(settings: Settings, match_id: str, ladder: str, preset: str,
                     run_dir: Path, edge: bool = False) -> list[Child]:
    host = settings.gateway_host
    # A fresh origin per demo run (unless set): no timeline or markers of an earlier match.
    # The child's environment, so os.environ and not Settings: a variable the user set wins
    # over the demo's choice, and Settings holds values, not whether they were set.
    media_env = {"STUMPCAST_MEDIA_LADDER": os.environ.get("STUMPCAST_MEDIA_LADDER", ladder),
                 "STUMPCAST_MEDIA_PRESET": os.environ.get("STUMPCAST_MEDIA_PRESET", preset),
                 "STUMPCAST_MEDIA_DIR": os.environ.get("STUMPCAST_MEDIA_DIR",
                                                       str(run_dir / "media"))}
    steering: list[Child] = []
    if edge:  # the master lists both edges as content-steering pathways
        media_env["STUMPCAST_MEDIA_PATHWAYS"] = pathways(settings)
        steering = [Child("steering", stumpcast_argv("steering", "serve"),
                          f"http://127.0.0.1:{settings.steering_port}/readyz",
                          {"STUMPCAST_MEDIA_PATHWAYS": pathways(settings)})]
    return steering + [
        Child("streams", stumpcast_argv("streams", "worker"),
              f"http://127.0.0.1:{settings.streams_metrics_port}/readyz"),
        Child("gateway", stumpcast_argv("gateway", "serve"),
              f"http://{host}:{settings.gateway_port}/readyz",
              {"STUMPCAST_GATEWAY_STATS_DIR": gateway_stats_dir(run_dir)}),
        Child("media", stumpcast_argv("media", "worker", "--match-id", match_id),
              f"http://127.0.0.1:{settings.media_http_port}/readyz", media_env),
    ]


# -- commands ----------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.match) if args.match else settings.cricsheet_dir / DEMO_MATCH
    if not path.is_file():
        print(f"demo: no match file {path} (see STUMPCAST_CRICSHEET_DIR)", file=sys.stderr)
        return 2
    match_id = args.match_id or f"{path.stem}-{time.strftime('%H%M%S')}"
    ports = [("gateway", settings.gateway_port), ("gateway admin", settings.gateway_admin_port),
             ("media", settings.media_http_port), ("streams", settings.streams_metrics_port)]
    if not args.no_edge:
        ports.append(("steering", settings.steering_port))
    busy = [(n, p) for n, p in ports if not port_free("127.0.0.1", p)]
    if busy:
        print("demo: ports in use: " + ", ".join(f"{n} {p}" for n, p in busy)
              + " (another demo running? set STUMPCAST_*_PORT to move)", file=sys.stderr)
        return 2
    log_dir = settings.run_dir / "demo" / time.strftime("%Y%m%d-%H%M%S")
    started: list[str] = []   # what `stack down --only` stops at the end
    sup = Supervisor(log_dir)
    # Explicit handlers: a shell may start us with SIGINT ignored (a background job).
    previous = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        started = _ensure_stack(settings, edge=not args.no_edge, observe=not args.no_observe)
        for child in service_children(settings, match_id, args.ladder, args.preset, log_dir,
                                      edge=not args.no_edge):
            print(f"demo: starting {child.name} ...", flush=True)
            sup.wait_ready(sup.start(child))
        # The degradation controller: levels 0-3 from the gateway's, Redis's and Kafka's load,
        # written as flag changes (stumpcast flags history degrade.level).
        sup.start(Child("degrade", stumpcast_argv(
            "flags", "controller", "--stats-dir", gateway_stats_dir(log_dir))))
        sup.start(Child("replay", stumpcast_argv(
            "live-replay", str(path), "--match-id", match_id, "--speed", str(args.speed))))
        _banner(settings, match_id, args.speed, log_dir, edge=not args.no_edge,
                observe=not args.no_observe)
        _show_match(sup, settings, match_id, watch=not args.no_watch and _has_watch())
        print("demo: the match is over; Ctrl-C stops everything", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\ndemo: stopping ...", flush=True)
    except RuntimeError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        codes = sup.stop_all()
        if codes:
            print("demo: stopped " + ", ".join(f"{n} ({c})" for n, c in codes.items())
                  + f"; logs in {log_dir}", flush=True)
        if started and not args.keep_stack:
            subprocess.run(stumpcast_argv("stack", "down", "--only", ",".join(started)),
                           check=False)
    return 0


def _show_match(sup: Supervisor, settings: Settings, match_id: str, watch: bool) -> None:
    """Until the replay is over: ``stumpcast watch`` on a terminal (until Ctrl-C), its
    progress lines on a pipe or a log, or nothing."""
    if not watch:
        _wait_for(sup, "replay")
    elif sys.stdout.isatty():
        _wait_for_card(settings, match_id)
        sup.start(Child("watch", stumpcast_argv("watch", match_id)), foreground=True)
        _wait_for(sup, "watch")
    else:
        sup.start(Child("watch", stumpcast_argv("watch", match_id, "--progress")),
                  foreground=True)
        _wait_for(sup, "replay")
        _wait_for_settled(settings, match_id)


def _raise_interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


CORE = ("kafka", "cassandra", "redis")
EDGES = ("cdn-a", "cdn-b")


def _ensure_stack(settings: Settings, edge: bool, observe: bool = True) -> list[str]:
    """Start the local stack's servers that are not up (with ``observe`` Prometheus,
    Alertmanager and the operations server, with ``edge`` the two edges); return the ones this
    call started, so the demo stops those and nothing a user started."""
    started: list[str] = []
    groups = ((CORE, "the local stack (Kafka, Cassandra, Redis)"),
              (tuple(OBSERVERS.split(",")) if observe else (),
               "Prometheus, Alertmanager and the /ops page"),
              (EDGES if edge else (), "the caching edges cdn-a and cdn-b (nginx)"))
    for group, what in groups:
        if not group:
            continue
        only = ",".join(group)
        if subprocess.run(stumpcast_argv("stack", "status", "--quiet", "--only", only),
                          check=False).returncode == 0:
            continue
        print(f"demo: starting {what} ...", flush=True)
        argv = ["stack", "up", "--only", only] + ([] if group is CORE else ["--no-init"])
        if subprocess.run(stumpcast_argv(*argv), check=False).returncode != 0:
            raise RuntimeError(f"`stumpcast {' '.join(argv)}` failed"
                               + (" (or run the demo with --no-edge)" if group is EDGES else ""))
        started += group
    return started


def _has_watch() -> bool:
    import importlib.util

    return importlib.util.find_spec("gateway.terminal") is not None


def _banner(settings: Settings, match_id: str, speed: float, log_dir: Path,
            edge: bool, observe: bool = True) -> None:
    ops = f"  Operations: http://127.0.0.1:{settings.ops_port}/ops\n" if observe else ""
    through = (f"  Via cdn-a:  {edge_page_url(settings, match_id)} (the caching edge; cdn-b "
               f"{edge_url(settings, 'cdn-b')})\n") if edge else ""
    print(f"\n  Live page:  {page_url(settings, match_id)}\n{through}{ops}"
          f"  Match:      {match_id}, replayed live at {speed:g}x\n"
          f"  Logs:       {log_dir}\n"
          f"  {CREDIT}\n"
          "  Ctrl-C stops everything.\n", flush=True)


def _wait_for_card(settings: Settings, match_id: str, timeout: float = 60.0) -> None:
    """Until the gateway has the match's scorecard (the first events went through)."""
    url = (f"http://{settings.gateway_host}:{settings.gateway_port}"
           f"/v1/matches/{match_id}/scorecard")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not http_ok(url):
        time.sleep(0.5)


def _wait_for_settled(settings: Settings, match_id: str, quiet_s: float = 2.0,
                      timeout: float = 30.0) -> None:
    """Until the match's scorecard has not moved for ``quiet_s`` (the last events sent have
    gone through the pipeline to the viewer), or ``timeout``."""
    url = (f"http://{settings.gateway_host}:{settings.gateway_port}"
           f"/v1/matches/{match_id}/scorecard")
    deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        seq = _card_seq(url)
        if seq != last:
            last, since = seq, time.monotonic()
        time.sleep(0.25)


def _card_seq(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            return int(json.loads(resp.read())["seq"])
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
        return None


def _wait_for(sup: Supervisor, name: str) -> None:
    """Until the child ``name`` exits (the terminal viewer runs until Ctrl-C); a service that
    dies meanwhile stops the demo."""
    child = next(c for c in sup.children if c.name == name)
    assert child.proc is not None
    while child.proc.poll() is None:
        _check_services(sup)
        time.sleep(1)


def _check_services(sup: Supervisor) -> None:
    for child in sup.children:
        if child.name in {"replay", "watch"} or child.proc is None:
            continue
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.proc.returncode}; "
                               f"see {child.log}")


def cmd_live_replay(args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.match)
    match_id = args.match_id or path.stem
    sent = live_replay(settings, path, match_id, args.speed, args.max_gap, args.quiet)
    print(f"live-replay: {match_id}: {sent} events delivered", flush=True)
    return 0


def register(sub: Any, bench: Any) -> None:
    d = sub.add_parser(
        "demo", help="the whole pipeline: stack, workers, gateway, video, a live IPL replay",
        description="Start the local stack (if down; with Prometheus, Alertmanager and the "
        "/ops page unless --no-observe), the caching edges cdn-a and cdn-b (nginx) and the "
        "steering server, the streams worker, the gateway and the "
        "media worker (synthetic live video with a score bug); replay a real IPL match live; "
        "print the live page's URL and show the scorecard in the terminal (a plain line per "
        "over, wicket and milestone when the output is not a terminal). Ctrl-C stops "
        f"everything. {CREDIT}.")
    d.add_argument("--match", default=None,
                   help=f"Cricsheet JSON file (default: {DEMO_MATCH}, the 2023 IPL final, in "
                   "STUMPCAST_CRICSHEET_DIR)")
    d.add_argument("--match-id", help="match id (default: file name and the time of day)")
    d.add_argument("--speed", type=float, default=DEFAULT_SPEED,
                   help=f"times real time (default {DEFAULT_SPEED:g}: a wicket within a minute)")
    d.add_argument("--ladder", default=DEMO_LADDER,
                   help=f"media ladder unless STUMPCAST_MEDIA_LADDER is set ({DEMO_LADDER})")
    d.add_argument("--preset", default=DEMO_PRESET,
                   help=f"x264 preset unless STUMPCAST_MEDIA_PRESET is set ({DEMO_PRESET})")
    d.add_argument("--no-watch", action="store_true", help="no terminal scorecard")
    d.add_argument("--no-observe", action="store_true",
                   help="no Prometheus, Alertmanager and /ops page (`stack up --observe`)")
    d.add_argument("--keep-stack", action="store_true",
                   help="leave the stack running on exit even if the demo started it")
    d.add_argument("--no-edge", action="store_true",
                   help="no caching edges (nginx) and no steering server")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser(
        "live-replay", help="replay a Cricsheet match stamped with live wall-clock times",
        description="Like `stumpcast replay`, but each event's ts is the instant it is sent "
        "(the match's spacing divided by --speed, breaks capped at --max-gap seconds), so "
        "balls line up with the live video's PDT timeline.")
    r.add_argument("match", help="path to a Cricsheet JSON file")
    r.add_argument("--match-id", help="match id (default: the file's name)")
    r.add_argument("--speed", type=float, default=DEFAULT_SPEED, help="times real time")
    r.add_argument("--max-gap", type=float, default=MAX_GAP_S,
                   help=f"longest wall-clock gap between events, seconds ({MAX_GAP_S:g})")
    r.add_argument("--quiet", action="store_true", help="no line per event")
    r.set_defaults(func=cmd_live_replay)
