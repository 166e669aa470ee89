"""``stumpcast notifier worker | webhooks add | list | remove | dead-letters``.

Handlers are thin: they parse, build from ``Settings`` and call into ``notifier``. Heavy imports
happen inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from schemas.settings import Settings


def cmd_notifier_worker(args: argparse.Namespace, settings: Settings) -> int:
    from notifier.retry import RetryPolicy
    from notifier.worker import NotifierConfig, run_notifier
    from runtime.discovery import registered

    config = NotifierConfig(policy=RetryPolicy(max_attempts=settings.webhook_max_attempts))
    if args.topic or args.group or args.from_beginning:
        config = NotifierConfig(topic=args.topic or config.topic,
                                group=args.group or config.group,
                                start="earliest" if args.from_beginning else config.start,
                                policy=config.policy)
    with registered(settings.run_dir, "notifier", settings.notifier_metrics_port):
        return run_notifier(settings, config)


def _redis(settings: Settings) -> Any:
    from runtime.redisconn import sync_redis
    from schemas.store_access import RedisUser

    return sync_redis(settings, RedisUser.NOTIFIER)


SECRET_ENV = "STUMPCAST_WEBHOOK_SECRET"


def _secret(args: argparse.Namespace) -> str:
    """The signing secret from the environment or stdin: a command line is visible to every
    user of the machine (ps, /proc/<pid>/cmdline) and lands in shell history."""
    import os

    if args.secret is not None:
        raise ValueError(f"--secret is refused: pass the secret in ${SECRET_ENV} or on stdin "
                         "(--secret-stdin), never on the command line")
    if args.secret_stdin:
        return sys.stdin.readline().strip()
    return os.environ.get(SECRET_ENV, "").strip()


def cmd_webhooks_add(args: argparse.Namespace, settings: Settings) -> int:
    from urllib.parse import urlsplit

    from notifier import subscriptions, targets

    try:
        secret = _secret(args)
        if not secret:
            raise ValueError(f"no secret: set ${SECRET_ENV} or pipe it in with --secret-stdin")
        sub = subscriptions.make(args.url, secret, match_id=args.match,
                                 no_spoilers=args.no_spoilers, session_id=args.session)
        allow = targets.parse_allow(settings.webhook_allow_hosts)
        targets.check_url(sub.url, allow)
        parts = urlsplit(sub.url)
        targets.resolve_checked(parts.hostname or "", parts.port or 443, allow)
    except (ValueError, OSError) as exc:  # SubscriptionError, BlockedTarget, DNS failure
        print(f"webhooks add: {exc}", file=sys.stderr)
        return 2
    subscriptions.add(_redis(settings), sub)
    print(sub.id)
    return 0


def cmd_webhooks_list(args: argparse.Namespace, settings: Settings) -> int:
    from notifier import subscriptions
    from schemas.topology import RedisKeys

    subs = subscriptions.load_all(_redis(settings).hgetall(RedisKeys.webhooks))
    for sub in sorted(subs.values(), key=lambda s: s.id):
        spoil = f" no-spoilers session={sub.session_id}" if sub.no_spoilers else ""
        print(f"{sub.id}  {sub.url}  match={sub.match_id or '*'}{spoil}")
    return 0


def cmd_webhooks_remove(args: argparse.Namespace, settings: Settings) -> int:
    from notifier import subscriptions

    if subscriptions.remove(_redis(settings), args.id):
        return 0
    print(f"webhooks remove: no webhook {args.id}", file=sys.stderr)
    return 1


def cmd_webhooks_dead(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.topology import RedisKeys

    for entry_id, fields in _redis(settings).xrevrange(RedisKeys.webhook_dead_letters,
                                                       count=args.limit):
        f = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
        print(f"{entry_id.decode()}  {f.get('subscription')}  {f.get('id')}  "
              f"{f.get('attempts')} attempts  {f.get('reason')}")
    return 0


def register(sub: Any, bench: Any) -> None:
    p = sub.add_parser("notifier", help="webhook delivery of match notifications")
    ncmds = p.add_subparsers(dest="notifier_command", metavar="ACTION")
    ncmds.required = True
    w = ncmds.add_parser("worker", help="run one notifier",
                         description="Consume match.notifications and deliver signed webhooks "
                         "with retries, dead letters, idempotency by id and the no-spoilers "
                         "hold. /metrics, /healthz, /readyz on STUMPCAST_NOTIFIER_METRICS_PORT.")
    w.add_argument("--topic", help=argparse.SUPPRESS)        # tests and benches only
    w.add_argument("--group", help=argparse.SUPPRESS)
    w.add_argument("--from-beginning", action="store_true", help=argparse.SUPPRESS)
    w.set_defaults(func=cmd_notifier_worker)
    _register_webhooks(sub)


def _register_webhooks(sub: Any) -> None:
    p = sub.add_parser("webhooks", help="register webhooks for match notifications")
    wcmds = p.add_subparsers(dest="webhooks_command", metavar="ACTION")
    wcmds.required = True
    a = wcmds.add_parser("add", help="register (or update) a webhook; prints its id",
                         description="Deliveries are POSTs of the notification JSON, signed "
                         "with HMAC-SHA256 (X-Stumpcast-Signature: t=<unix>,v1=<hex>).")
    a.add_argument("url", help="a public http(s) URL (checked after DNS; see "
                   "STUMPCAST_WEBHOOK_ALLOW_HOSTS)")
    a.add_argument("--secret-stdin", action="store_true",
                   help=f"read the HMAC-SHA256 signing secret from stdin (default: ${SECRET_ENV})")
    a.add_argument("--secret", help=argparse.SUPPRESS)  # refused with a message: see _secret
    a.add_argument("--match", help="only this match (default: every match)")
    a.add_argument("--no-spoilers", action="store_true",
                   help="hold each notification until the session's video shows the ball")
    a.add_argument("--session", help="player session whose playhead gates --no-spoilers")
    a.set_defaults(func=cmd_webhooks_add)
    ls = wcmds.add_parser("list", help="list webhooks")
    ls.set_defaults(func=cmd_webhooks_list)
    rm = wcmds.add_parser("remove", help="remove a webhook by id")
    rm.add_argument("id")
    rm.set_defaults(func=cmd_webhooks_remove)
    d = wcmds.add_parser("dead-letters", help="show the newest undeliverable notifications")
    d.add_argument("--limit", type=int, default=20)
    d.set_defaults(func=cmd_webhooks_dead)
