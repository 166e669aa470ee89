"""``python -m bench.gateway.serve --mode floor|syscall``: the gateway on a baseline hub.

What `stumpcast gateway serve` runs, with the fanout replaced by one of ``baselines`` (the
gateway's own command has no such switch: the baselines are the benchmark's, not the gateway's).
Started by ``rig.Rig.start_gateway``; W workers share the port as in the real gateway.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bench.gateway.baselines import BASELINES
from gateway.workers import run
from runtime.logs import configure
from schemas.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway.serve")
    parser.add_argument("--mode", choices=sorted(BASELINES), required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--worker-id", default="0")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure(settings)
    return run(settings, args.workers, port=args.port, worker_id=args.worker_id,
               hub=BASELINES[args.mode], label=args.mode,
               command=("-m", "bench.gateway.serve", "--mode", args.mode))


if __name__ == "__main__":
    sys.exit(main())
