"""``stumpcast steering serve | status | pin | drain | clear``: the multi-CDN optimizer.

``serve`` runs ``media.steering_server``; the others are the operators' controls, written to
the Redis hash ``RedisKeys.steering_overrides`` that every steering server reads once a second
(so they reach every replica and survive a restart), and ``status`` reads a server's state.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from schemas.settings import Settings, pathway_id


def _pathways(settings: Settings) -> tuple[str, ...]:
    return tuple(ident for ident, _ in settings.media_pathways) or ("cdn-a", "cdn-b")


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import signal

    from media.steering import Policy
    from media.steering_server import SteeringConfig, SteeringServer
    from runtime import redisconn
    from runtime.kafka import client_config
    from schemas.access import Principal
    from schemas.store_access import RedisUser

    policy = Policy(_pathways(settings),
                    hold_down_ms=int(settings.steering_hold_down * 1000),
                    ramp_step_ms=int(settings.steering_ramp_step * 1000))
    cfg = SteeringConfig(policy, settings.steering_port, settings.steering_ttl,
                         None if args.no_kafka else client_config(settings, Principal.ANALYST),
                         None if args.no_redis else settings.redis_url,
                         redis_auth=None if args.no_redis
                         else redisconn.credentials(settings, RedisUser.MEDIA),
                         redis_cluster=() if args.no_redis else settings.redis_cluster)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await SteeringServer(cfg).run(stop)

    asyncio.run(main())
    return 0


def _redis(settings: Settings) -> Any:
    from runtime.redisconn import sync_redis
    from schemas.store_access import RedisUser

    return sync_redis(settings, RedisUser.OPS, decode_responses=True)


def _cdn(settings: Settings, raw: str) -> str:
    """A pathway id the settings know (any well-formed id when none are configured)."""
    try:
        cdn = pathway_id(raw)
    except ValueError as exc:
        raise SystemExit(f"steering: {exc}") from None
    known = _pathways(settings)
    if cdn not in known:
        raise SystemExit(f"steering: unknown CDN {cdn!r}; known: {', '.join(known)} "
                         "(STUMPCAST_MEDIA_PATHWAYS)")
    return cdn


def _region(raw: str | None) -> str:
    from media.steering import ALL_REGIONS, valid_region

    region = raw or ALL_REGIONS
    if region != ALL_REGIONS and not valid_region(region):
        raise SystemExit(f"steering: region {region!r}: 1-32 of a-z 0-9 _ - (or * for all)")
    return region


def cmd_pin(args: argparse.Namespace, settings: Settings) -> int:
    from media.steering import pin_field
    from schemas.topology import RedisKeys

    cdn, region = _cdn(settings, args.cdn), _region(args.region)
    _redis(settings).hset(RedisKeys.steering_overrides, pin_field(region), cdn)
    print(f"pinned {cdn} first for {'every region' if region == '*' else region}")
    return 0


def cmd_drain(args: argparse.Namespace, settings: Settings) -> int:
    from media.steering import drain_field
    from schemas.topology import RedisKeys

    cdn = _cdn(settings, args.cdn)
    _redis(settings).hset(RedisKeys.steering_overrides, drain_field(cdn), "1")
    print(f"drained {cdn}: last in every region's priority")
    return 0


def cmd_clear(args: argparse.Namespace, settings: Settings) -> int:
    from media.steering import drain_field, pin_field
    from schemas.topology import RedisKeys

    client = _redis(settings)
    if args.all:
        client.delete(RedisKeys.steering_overrides)
        print("cleared every pin and drain")
        return 0
    fields = []
    if args.pin is not None:
        fields.append(pin_field(_region(args.pin)))
    if args.drain is not None:
        fields.append(drain_field(_cdn(settings, args.drain)))
    removed = client.hdel(RedisKeys.steering_overrides, *fields)
    print(f"cleared {removed} override(s)")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    url = f"http://127.0.0.1:{settings.steering_port}/v1/steering/state"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            doc = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"steering status: no steering server at {url} ({exc})", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    over = doc["overrides"]
    print(f"pathways {', '.join(doc['pathways'])}; TTL {doc['ttl']} s; pins {over['pins'] or '-'};"
          f" drained {', '.join(over['drained']) or '-'}")
    for region, route in doc["routes"].items():
        probe = f", {route['share']}% probing {route['away']}" if route["away"] else ""
        print(f"  {region}: {route['primary']}{probe}")
    for event in doc["events"][-10:]:
        at = time.strftime("%H:%M:%S", time.gmtime(event["at_ms"] / 1000))
        print(f"  {at} UTC {event['region']}: {event['what']}")
    return 0


def register(sub: Any, bench: Any) -> None:
    s = sub.add_parser("steering", help="the multi-CDN optimizer (HLS content steering)",
                       description="Serve steering manifests (PATHWAY-PRIORITY per region, from "
                       "the analytics worker's quality per CDN, with hysteresis), and pin or "
                       "drain a CDN.")
    cmds = s.add_subparsers(dest="steering_command", metavar="COMMAND")
    cmds.required = True
    p = cmds.add_parser("serve", help="run the steering server until interrupted",
                        description="Serve /v1/steering on STUMPCAST_STEERING_PORT, fed by "
                        "analytics.concurrency (Kafka) and the overrides in Redis.")
    p.add_argument("--no-kafka", action="store_true", help="no quality input (static order)")
    p.add_argument("--no-redis", action="store_true", help="no operator overrides")
    p.set_defaults(func=cmd_serve)
    p = cmds.add_parser("status", help="the running server's decisions, health and events")
    p.add_argument("--json", action="store_true", help="the whole state document")
    p.set_defaults(func=cmd_status)
    p = cmds.add_parser("pin", help="put a CDN first in a region (default: every region)")
    p.add_argument("cdn")
    p.add_argument("--region", help="a region, or * for every region (default *)")
    p.set_defaults(func=cmd_pin)
    p = cmds.add_parser("drain", help="put a CDN last in every region (maintenance)")
    p.add_argument("cdn")
    p.set_defaults(func=cmd_drain)
    p = cmds.add_parser("clear", help="remove overrides")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--pin", metavar="REGION", help="the pin of a region (* for the global one)")
    how.add_argument("--drain", metavar="CDN", help="the drain of a CDN")
    how.add_argument("--all", action="store_true", help="every pin and drain")
    p.set_defaults(func=cmd_clear)
