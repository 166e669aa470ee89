"""The edge's config: one template, rendered per edge, accepted by nginx; fault includes.

``nginx -t`` runs on the rendered file (Debian's nginx: missing, it skips, or fails under
CI=true). The behaviour of a running edge is in ``test_edge_stack.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from schemas.settings import Settings
from stumpcast.stack.edge_server import (
    CdnA,
    CdnB,
    EdgeConfig,
    check_conf,
    edge_conf,
    fault_files,
    render,
    template_text,
)
from stumpcast.stack.errors import StackError
from stumpcast.stack.layout import RunLayout
from tests.tools import require_tool


def nginx() -> str:
    return require_tool("nginx", "apt-get install nginx", "/usr/sbin/nginx")


def configs(tmp_path: Path) -> list[EdgeConfig]:
    settings = Settings.from_env({"STUMPCAST_STACK_CDN_A_PORT": "28101",
                                  "STUMPCAST_STACK_CDN_B_PORT": "28102",
                                  "STUMPCAST_MEDIA_HTTP_PORT": "28081",
                                  "STUMPCAST_GATEWAY_PORT": "28080"})
    layout = RunLayout.at(tmp_path)
    return [cls(settings, layout).config() for cls in (CdnA, CdnB)]


def test_both_edges_come_from_the_one_template(tmp_path: Path) -> None:
    a, b = (edge_conf(c) for c in configs(tmp_path))
    assert "{{" not in a and "{{" not in b
    assert "listen 127.0.0.1:28101" in a and "listen 127.0.0.1:28102" in b
    assert "server 127.0.0.1:28081" in a and "server 127.0.0.1:28080" in a
    # The same rules on both: only names, ports and paths differ.
    strip = re.compile(r"cdn[-_][ab]|2810[12]")
    assert strip.sub("X", a) == strip.sub("X", b)
    for rule in ("proxy_cache_lock on;", "proxy_cache_background_update on;", "updating error",
                 "proxy_no_cache $authorised;", "proxy_set_header Upgrade $http_upgrade;"):
        assert rule in a, rule


def test_a_placeholder_without_a_value_or_a_value_never_used_is_an_error() -> None:
    assert render("a {{ x }} b {{y}}", {"x": "1", "y": "2"}) == "a 1 b 2"
    with pytest.raises(KeyError, match="no value for"):
        render("{{ x }} {{ z }}", {"x": "1"})
    with pytest.raises(KeyError, match="never used: y"):
        render("{{ x }}", {"x": "1", "y": "2"})
    assert "{{ name }}" in template_text()


def test_nginx_accepts_the_rendered_config(tmp_path: Path) -> None:
    binary = nginx()
    for cfg in configs(tmp_path):
        for sub in ("hls", "api", "tmp"):
            (cfg.data_dir / sub).mkdir(parents=True, exist_ok=True)
        cfg.fault_dir.mkdir(parents=True, exist_ok=True)
        cfg.log_dir.mkdir(parents=True, exist_ok=True)
        conf = cfg.conf_dir / "nginx.conf"
        conf.write_text(edge_conf(cfg))
        check_conf(binary, conf)
        for name, text in fault_files("throttle", "100k").items():
            (cfg.fault_dir / name).write_text(text)
        check_conf(binary, conf)  # the fault includes land where their directives are valid
    conf.write_text(conf.read_text().replace("proxy_cache_lock on;", "proxy_cache_lock maybe;"))
    with pytest.raises(StackError, match="nginx refuses"):
        check_conf(binary, conf)


def test_fault_files_check_what_they_are_given() -> None:
    assert fault_files(None) == {}
    assert fault_files("throttle", "100k")["location.conf"] == "limit_rate 100k;\n"
    assert fault_files("status", "503") == {
        "location.conf": "return 503;\n", "server.conf": 'set $edge_fault "status 503";\n'}
    for kind, value in (("throttle", "fast"), ("throttle", "0"), ("status", "200"),
                        ("status", "5xx"), ("latency", "1s")):
        with pytest.raises(ValueError):
            fault_files(kind, value)


def test_a_reload_is_done_when_only_new_workers_accept(tmp_path: Path) -> None:
    """After a reload, workers not yet told to stop still serve the old config: they count
    until their title says "shutting down" (nginx's own process titles)."""
    import subprocess
    import time

    from stumpcast.stack.edge_server import _worker_processes, accepting_workers

    assert _worker_processes("user x;\nworker_processes 2;\n") == 2
    assert _worker_processes("events {}\n") == 1
    titles = ["nginx: worker process", "nginx: worker process is shutting down",
              "nginx: cache manager process"]
    kids = [subprocess.Popen(["bash", "-c", f'exec -a "{t}" sleep 30']) for t in titles]
    try:
        deadline = time.monotonic() + 5
        while len(accepting_workers(os.getpid())) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)  # until bash has exec'd
        time.sleep(0.2)
        assert accepting_workers(os.getpid()) == [kids[0].pid]
    finally:
        for k in kids:
            k.kill()
            k.wait()
