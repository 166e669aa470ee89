"""``stumpcast ops serve``: the exporter thread, the HTTP app, the run folder's target files.

Runs until SIGTERM or SIGINT. While it runs it is a Prometheus target itself (job ``ops``) and
every ``PRUNE_EVERY`` seconds removes the target files of services that died without removing
their own (``runtime.discovery.prune``), so Prometheus stops scraping a port nobody holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from runtime.discovery import prune, registered
from schemas.settings import Settings
from stumpcast.ops.exporter import Exporter
from stumpcast.ops.routes import build_app
from stumpcast.ops.server import OpsApp, OpsConfig

log = logging.getLogger(__name__)
PRUNE_EVERY = 10.0


async def serve(config: OpsConfig, settings: Settings) -> None:
    from runtime.endpoints import serve as serve_app

    exporter = Exporter(settings)
    exporter.start()
    ops = OpsApp(config, exporter)
    runner = await serve_app(build_app(ops), config.port, config.host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("operations server up", extra={"port": config.port,
                                            "prometheus": config.prometheus})
    try:
        with registered(config.run_dir, "ops", config.port, config.host):
            while not stop.is_set():
                for path in prune(config.run_dir):
                    log.info("removed the target file of a dead process",
                             extra={"path": str(path)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), PRUNE_EVERY)
    finally:
        exporter.stop()
        await ops.close()
        await runner.cleanup()


def run(config: OpsConfig, settings: Settings) -> int:
    asyncio.run(serve(config, settings))
    return 0
