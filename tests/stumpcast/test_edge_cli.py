"""The edge's and the steering server's commands: bad input answered clearly, which servers
`stack` chooses, the demo's wiring, and the edge bench's log reading. No servers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.edge import upstream_counts
from schemas.settings import Settings
from stumpcast.commands.demo import edge_page_url, pathways, service_children
from stumpcast.stack import control
from stumpcast.stack.layout import RunLayout
from stumpcast.stack.procs import ProcRecord

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("STUMPCAST_")}
    return subprocess.run([sys.executable, "-m", "stumpcast", *argv], capture_output=True,
                          text=True, cwd=ROOT, env={**base, **(env or {})}, timeout=60)


@pytest.mark.parametrize("argv", [
    ["bench", "edge", "--players", "0"], ["bench", "edge", "--players", "1000,x"],
    ["stack", "fault", "cdn-c", "--clear"], ["stack", "fault", "cdn-a"],
    ["stack", "fault", "cdn-a", "--status", "x"], ["steering", "clear"],
    ["steering", "pin"], ["stack", "up", "--only", "cdn-z"]])
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    out = run(*argv)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr


def test_a_bad_pathway_setting_names_the_variable() -> None:
    out = run("settings", env={"STUMPCAST_MEDIA_PATHWAYS": "cdn a=http://x:1"})
    assert out.returncode == 2 and "STUMPCAST_MEDIA_PATHWAYS" in out.stderr
    assert "not a pathway id" in out.stderr
    for bad in ("cdn-a=ftp://x", "cdn-a", "a=http://x:1,a=http://y:2"):
        with pytest.raises(ValueError):
            Settings.from_env({"STUMPCAST_MEDIA_PATHWAYS": bad})


def test_a_fault_on_an_edge_that_is_not_running_says_how_to_start_it(tmp_path: Path) -> None:
    out = run("stack", "fault", "cdn-a", "--throttle", "100k",
              env={"STUMPCAST_RUN_DIR": str(tmp_path)})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "cdn-a is not running" in out.stderr and "stack up --edge" in out.stderr


def test_the_edges_join_the_stack_with_up_edge_or_a_record(tmp_path: Path) -> None:
    settings = Settings.from_env({"STUMPCAST_RUN_DIR": str(tmp_path)})
    names = [s.name for s in control.servers(settings)]
    assert names == ["kafka", "cassandra", "redis"]
    assert [s.name for s in control.servers(settings, edge=True)][-2:] == ["cdn-a", "cdn-b"]
    layout = RunLayout.at(tmp_path)
    layout.prepare("cdn-b")
    ProcRecord(1, 1, "x", ["nginx"]).save(layout.pid_record("cdn-b"))
    assert [s.name for s in control.servers(settings)][-1] == "cdn-b"   # down, status see it
    assert "cdn-b" not in [s.name for s in control.servers(settings, recorded=False)]  # up no
    assert [s.name for s in control.servers(settings, ["cdn-a"])] == ["cdn-a"]


def test_the_demo_puts_the_page_video_and_steering_through_the_edges(tmp_path: Path) -> None:
    settings = Settings.from_env({"STUMPCAST_STACK_CDN_A_PORT": "28101",
                                  "STUMPCAST_STACK_CDN_B_PORT": "28102"})
    assert edge_page_url(settings, "m1") == \
        "http://127.0.0.1:28101/?media=http://127.0.0.1:28101#/match/m1"
    assert pathways(settings) == "cdn-a=http://127.0.0.1:28101,cdn-b=http://127.0.0.1:28102"
    with_edge = {c.name: c for c in service_children(settings, "m1", "360p", "ultrafast",
                                                     tmp_path, edge=True)}
    assert with_edge["media"].env["STUMPCAST_MEDIA_PATHWAYS"] == pathways(settings)
    assert with_edge["steering"].argv[-2:] == ["steering", "serve"]
    plain = {c.name: c for c in service_children(settings, "m1", "360p", "ultrafast",
                                                 tmp_path)}
    assert "steering" not in plain and "STUMPCAST_MEDIA_PATHWAYS" not in plain["media"].env


def test_upstream_requests_are_the_log_lines_with_an_upstream_address() -> None:
    lines = [
        '100.5 200 GET "/hls/720p/1.ts" 900 cache=MISS up=127.0.0.1:1 ust=200 rt=0.001',
        '100.6 200 GET "/hls/720p/1.ts" 900 cache=HIT up=- ust=- rt=0.000',
        '100.7 200 GET "/hls/720p/index.m3u8" 90 cache=STALE up=- ust=- rt=0.000',
        '100.7 200 GET "/hls/720p/index.m3u8" 90 cache=EXPIRED up=127.0.0.1:1 ust=200 rt=0',
        '100.8 200 GET "/hls/master.m3u8?region=s" 90 cache=MISS up=127.0.0.1:1 ust=200 rt=0',
        '100.9 200 GET "/v1/matches/m/scorecard" 9 cache=REVALIDATED up=127.0.0.1:2 ust=304 rt=0',
        '99.0 200 GET "/hls/720p/0.ts" 900 cache=MISS up=127.0.0.1:1 ust=200 rt=0.001',
        'garbage', '101.0 200 GET "/edge/healthz" 17 cache=- up=- ust=- rt=0.000',
    ]
    got = upstream_counts(lines, since=100.0, until=101.0)
    assert got == {"segment": 1, "playlist": 1, "master": 1, "api": 1}
