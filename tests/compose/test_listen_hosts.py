"""Every service's HTTP server listens where its setting says (compose sets 0.0.0.0)."""

import argparse
from pathlib import Path

from schemas.settings import Settings
from stumpcast.commands.media import worker_config

ROOT = Path(__file__).resolve().parents[2]


def test_the_listen_host_settings_default_to_loopback():
    s = Settings.from_env({})
    assert {s.streams_metrics_host, s.media_http_host, s.analytics_metrics_host,
            s.notifier_metrics_host} == {"127.0.0.1"}


def test_the_media_worker_listens_on_its_host_setting():
    args = argparse.Namespace(source="synthetic", input="", match_id="m", no_kafka=True,
                              no_redis=True, no_guard=False)
    cfg = worker_config(args, Settings.from_env({"STUMPCAST_MEDIA_HTTP_HOST": "0.0.0.0"}))
    assert cfg.http_host == "0.0.0.0"


def test_the_metrics_servers_pass_their_host_setting():
    """The workers hand their host setting to the endpoint server (a source check: these
    servers start inside the workers' event loops and faust apps)."""
    for path, attr in [("streams/app.py", "streams_metrics_host"),
                       ("analytics/worker.py", "analytics_metrics_host"),
                       ("analytics/faust_app.py", "analytics_metrics_host"),
                       ("notifier/worker.py", "notifier_metrics_host")]:
        assert f"settings.{attr}" in (ROOT / path).read_text(), path

