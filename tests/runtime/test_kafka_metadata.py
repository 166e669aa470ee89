"""Every faust worker refreshes its Kafka metadata within seconds (``runtime.kafka``).

aiokafka 0.14 does not refresh metadata when a position reset is refused by a stale leader, so
after a broker pause a newly assigned partition waited for the periodic refresh (5 minutes by
default) and its match froze; `stumpcast chaos` (broker SIGSTOP) found it. The periodic
refresh is what ends that wait, so its period is the bound.
"""

from __future__ import annotations

import faust
import pytest

from analytics.faust_app import app_config as analytics_config
from schemas.settings import Settings
from streams.app import app_config as streams_config


@pytest.mark.parametrize("config", [streams_config, analytics_config])
def test_the_metadata_of_every_worker_is_at_most_seconds_old(config) -> None:
    app = faust.App("metadata-age-test", **config(Settings.from_env()))
    assert app.conf.consumer_metadata_max_age_ms <= 10_000
    assert app.conf.producer_metadata_max_age_ms <= 10_000
