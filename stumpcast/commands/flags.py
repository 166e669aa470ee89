"""``stumpcast flags list | set | rollout | history | sync | controller | page-defaults``.

Every change goes to Kafka first (``stumpcast.flags``, the audit trail: who, when, why), then
to Redis, where every gateway picks it up (``runtime.flags``). ``--why`` is required: a change
without a reason is refused. ``controller`` runs the degradation controller
(``runtime.degrade``); its level changes are flag changes like any other.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from schemas.settings import Settings


def _guarded(func: Any) -> Any:
    """Bad input and a store that is down answer with one clear line and exit code 2."""
    def run(args: argparse.Namespace, settings: Settings) -> int:
        from redis.exceptions import RedisError

        from runtime.flags import FlagWriteFailed

        try:
            return int(func(args, settings))
        except (ValueError, FlagWriteFailed) as exc:
            print(f"stumpcast flags: {exc}", file=sys.stderr)
        except RedisError as exc:
            print(f"stumpcast flags: redis unavailable ({exc}); a change that Kafka took is "
                  "applied by `stumpcast flags sync` later", file=sys.stderr)
        return 2
    return run


def _store(settings: Settings) -> Any:
    from runtime.flags import FlagStore

    return FlagStore(settings)


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _describe(state: Any) -> str:
    parts = ["on" if state.enabled else "off"]
    parts += [f"{r}={'on' if v else 'off'}" for r, v in sorted(state.regions.items())]
    parts += [f"platform {k}={'on' if v else 'off'}" for k, v in sorted(state.platforms.items())]
    if state.rollout < 100:
        parts.append(f"rollout {state.rollout:g}%")
    if state.value is not None:
        parts.append(f"value {state.value}")
    return ", ".join(parts)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.features import FEATURES
    from schemas.flags import CONTROL_FLAGS

    store = _store(settings)
    try:
        changes = store.current_changes()
    finally:
        store.close()
    if args.json:
        print(json.dumps({n: json.loads(c.encode()) for n, c in sorted(changes.items())}))
        return 0
    rows = [(f.name, f.priority.value, f"default {'on' if f.default else 'off'}") for f in FEATURES]
    rows += [(n, "control", "default 0") for n in sorted(CONTROL_FLAGS)]
    for name, prio, default in rows:
        c = changes.get(name)
        now = _describe(c.state) if c else f"(never set: {default})"
        tail = f"  v{c.version} by {c.who} at {_when(c.when_ms)}: {c.why}" if c else ""
        print(f"{name:<20} {prio:<8} {now}{tail}")
    return 0


def _targets(pairs: list[str] | None, what: str) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for raw in pairs or []:
        name, sep, value = raw.partition("=")
        if not sep or value not in ("on", "off"):
            raise ValueError(f"--{what} {raw!r}: expected NAME=on or NAME=off")
        out[name] = value == "on"
    return out


def _write(settings: Settings, flag: str, build: Any, args: argparse.Namespace) -> int:
    import time

    from runtime.flags import operator
    from schemas.flags import FlagChange, FlagState, check_name

    check_name(flag)
    store = _store(settings)
    try:
        old = store.current().get(flag)
        state: FlagState = build(old[1] if old else FlagState())
        change = FlagChange(flag, state, args.who or operator(), int(time.time() * 1000),
                            args.why)
        written = store.write(change)
    finally:
        store.close()
    print(f"{flag}: {_describe(written.state)} (version {written.version}, by {written.who})")
    return 0


def cmd_set(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    regions, platforms = _targets(args.region, "region"), _targets(args.platform, "platform")

    def build(old: Any) -> Any:
        state = old if not args.reset else type(old)()
        if args.state is not None:
            state = replace(state, enabled=args.state == "on")
        if args.value is not None:
            state = replace(state, value=args.value)
        return replace(state, regions={**state.regions, **regions},
                       platforms={**state.platforms, **platforms})

    if args.state is None and args.value is None and not regions and not platforms:
        raise ValueError("nothing to set: give on|off, --value, --region or --platform")
    return _write(settings, args.flag, build, args)


def cmd_rollout(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    if not 0 <= args.percent <= 100:
        raise ValueError(f"rollout {args.percent:g}: a percentage, 0 to 100")
    return _write(settings, args.flag,
                  lambda old: replace(old, enabled=True, rollout=args.percent), args)


def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.flags import check_name

    if args.flag:
        check_name(args.flag)
    store = _store(settings)
    try:
        changes = store.history(args.flag, args.limit)
    finally:
        store.close()
    for c in changes:
        if args.json:
            print(c.encode().decode())
        else:
            print(f"{_when(c.when_ms)}  v{c.version:<5} {c.flag:<18} {_describe(c.state):<28} "
                  f"by {c.who}: {c.why}")
    if not changes and not args.json:
        print("no flag changes on the topic yet")
    return 0


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    try:
        print(f"{store.sync()} change(s) applied to Redis from the topic")
    finally:
        store.close()
    return 0


def cmd_controller(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from runtime.degrade import run_controller

    stop = {"now": False}

    def halt(_sig: int, _frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, halt)
    signal.signal(signal.SIGINT, halt)
    run_controller(settings, args.stats_dir or settings.gateway_stats_dir, lambda: stop["now"],
                   down_seconds=args.down_seconds, max_level=args.max_level)
    return 0


def cmd_page_defaults(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.web.static import STATIC
    from schemas.features import page_module

    path = STATIC / "js" / "features.js"
    text = page_module()
    if args.check:
        if not path.exists() or path.read_text() != text:
            print(f"{path} is out of step with schemas/features.py: run "
                  "`stumpcast flags page-defaults`", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    print(f"wrote {path}")
    return 0


def register(sub: Any, bench: Any) -> None:
    flags = sub.add_parser("flags", help="feature flags and the degradation level: list, set, "
                           "rollout, history (an audit trail on Kafka)")
    cmds = flags.add_subparsers(dest="flags_command", metavar="ACTION")
    cmds.required = True
    p = cmds.add_parser("list", help="every flag's current state (Redis), who set it and why")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guarded(cmd_list))

    def audit(p: Any) -> None:
        p.add_argument("--why", required=True, help="the reason, kept with the change")
        p.add_argument("--who", help="who is changing it (default: login@host)")

    p = cmds.add_parser("set", help="turn a flag on/off, per region or platform, or set a value",
                        description="Examples: `flags set watching off --why 'redis hot'`; "
                        "`flags set sync_video --region north=off --why ...`; "
                        "`flags set degrade.override --value 2 --why ...` (pin the level; "
                        "`flags set degrade.override off --why ...` releases it).")
    p.add_argument("flag")
    p.add_argument("state", nargs="?", choices=("on", "off"))
    p.add_argument("--region", action="append", metavar="REGION=on|off")
    p.add_argument("--platform", action="append", metavar="PLATFORM=on|off")
    p.add_argument("--value", type=int, help="integer flags: degrade.level, degrade.override")
    p.add_argument("--reset", action="store_true", help="drop earlier region/platform targets")
    audit(p)
    p.set_defaults(func=_guarded(cmd_set))
    p = cmds.add_parser("rollout", help="on for a sticky share of sessions (percent)")
    p.add_argument("flag")
    p.add_argument("percent", type=float)
    audit(p)
    p.set_defaults(func=_guarded(cmd_rollout))
    p = cmds.add_parser("history", help="the changes on Kafka: when, version, state, who, why")
    p.add_argument("flag", nargs="?")
    p.add_argument("--limit", type=int, default=50, help="the newest N (0: all)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guarded(cmd_history))
    p = cmds.add_parser("sync", help="replay the topic into Redis (after Redis lost its copy)")
    p.set_defaults(func=_guarded(cmd_sync))
    p = cmds.add_parser("controller", help="run the degradation controller (levels 0-3)")
    p.add_argument("--stats-dir", type=Path_, help="the gateway workers' stats folder "
                   "(default STUMPCAST_GATEWAY_STATS_DIR)")
    p.add_argument("--down-seconds", type=float, default=5.0,
                   help="calm this long before each step down")
    p.add_argument("--max-level", type=int, choices=(1, 2, 3), default=3,
                   help="the highest level the controller sets on its own (an operator's "
                   "degrade.override may still set any)")
    p.set_defaults(func=cmd_controller)
    p = cmds.add_parser("page-defaults", help="write the page's copy of the feature registry")
    p.add_argument("--check", action="store_true", help="fail if the page's copy is stale")
    p.set_defaults(func=cmd_page_defaults)
    b = bench.add_parser("flags", help="flag change to 20,000 clients; the controller under "
                         "a synthetic overload")
    b.add_argument("--clients", type=int, default=20_000,
                   help="WebSocket clients subscribed to flags (default 20,000)")
    b.add_argument("--changes", type=int, default=10,
                   help="flag changes timed to every client (default 10)")
    b.add_argument("--procs", type=int, default=2, help="load client processes")
    b.add_argument("--workers", type=int, default=2, help="gateway worker processes")
    b.add_argument("--matches", type=int, default=20, help="matches the clients spread over")
    # 300/s: ~350,000 P2 deliveries/s at 20,000 clients over 20 matches, more than two
    # workers write on 2 cores. 100/s (the first default) stopped being an overload once the
    # watching relay and the flags push were sliced: the workers carried it at half a core
    # each with loop lag under the threshold (2026-12-07, BENCHMARKS.md).
    b.add_argument("--flood", type=float, default=300.0,
                   help="P2 notifications per second over all matches during the overload "
                   "(default 300: more than the gateway can deliver, so a real overload)")
    b.add_argument("--trace", action="store_true", help="print the controller's signals "
                   "each second of the overload phase")
    b.add_argument("--hold", type=float, default=8.0, help="seconds measured while shed")
    b.add_argument("--down-seconds", type=float, default=5.0,
                   help="the controller's calm period before each step down")
    b.add_argument("--max-level", type=int, choices=(1, 2, 3), default=1,
                   help="the controller's cap (1: the P1 figure is level 1's, not level 2's "
                   "deliberate conflation)")
    b.set_defaults(func=cmd_bench)


def Path_(raw: str) -> Any:  # noqa: N802 - an argparse type
    from pathlib import Path

    return Path(raw)


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from bench.flags import run_bench

    return run_bench(args, settings)
