"""Feature flags as events: the change record, its topic, its Redis projection, and evaluation.

A flag change is an event ``{"type": "flag_change", "v": 1, "flag", "state", "who", "when_ms",
"why"}`` on the compacted topic ``stumpcast.flags``, keyed by flag name: the topic is the
source of truth and the audit trail (``min.compaction.lag.ms`` keeps every change for 30 days
before compaction may fold a flag's history down to its latest state). The Kafka offset of the
change is its ``version``: one partition, so versions are totally ordered. The writer
(``stumpcast flags set``, the degradation controller) then projects the change into Redis with
``APPLY_LUA``: the current state of every flag in the hash ``RedisKeys.flags`` (field = flag
name, value = the change JSON with its version) and the change appended to the stream
``RedisKeys.flags_log``, which every gateway follows; a version not newer than the stored one
is a no-op, so a replay of the topic into Redis (``stumpcast flags sync``) is harmless.

Evaluation is pure (``evaluate``): a flag is on for a client when it is enabled for the client's
region (a per-region override, else the flag's global ``enabled``), not turned off for its
platform, and the client's session falls in the rollout share. The share is sticky: the bucket
is a hash of flag name and session id, so a session keeps its answer across reconnects (the
gateway's session ids survive a reconnect: ``gateway.auth.SessionIds``) and raising the share
from 10% to 50% keeps the first 10% on.

Degradation levels (``LEVEL_FLAG``, an integer flag written by the controller;
``OVERRIDE_FLAG``, an operator's pin that the controller obeys): 1 sheds every P2 feature
(``schemas.features``) and samples heartbeats, 2 also conflates score updates to one per
``conflate_seconds``, 3 also turns on panic mode (static snapshots).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from schemas.features import BY_NAME, P2_NAMES
from schemas.topology import FLAGS, RedisKeys

VERSION = 1
FLAGS_TOPIC = FLAGS
FLAGS_KEY = RedisKeys.flags          # hash flag -> change JSON (with "version")
FLAGS_LOG_KEY = RedisKeys.flags_log  # stream of change JSON, field "u"; gateways follow
LOG_MAXLEN = 1000
LEVEL_FLAG = "degrade.level"
OVERRIDE_FLAG = "degrade.override"
CONTROL_FLAGS = frozenset({LEVEL_FLAG, OVERRIDE_FLAG})
MAX_LEVEL = 3
BUCKETS = 10_000
_NAME = re.compile(r"^[a-z][a-z0-9_.]{0,47}$")
_TARGET = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


class FlagError(ValueError):
    """A flag change or state that does not follow this contract."""


@dataclass(frozen=True, slots=True)
class FlagState:
    enabled: bool = True
    regions: dict[str, bool] = field(default_factory=dict)    # region -> on/off override
    platforms: dict[str, bool] = field(default_factory=dict)  # platform -> off (or on)
    rollout: float = 100.0                                    # percent of sessions, sticky
    value: int | None = None                                  # integer flags (levels)

    def to_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "regions": dict(sorted(self.regions.items())),
                "platforms": dict(sorted(self.platforms.items())), "rollout": self.rollout,
                "value": self.value}

    @staticmethod
    def from_json(doc: Any) -> FlagState:
        if not isinstance(doc, dict):
            raise FlagError("state must be an object")
        enabled, rollout, value = doc.get("enabled", True), doc.get("rollout", 100.0), \
            doc.get("value")
        if type(enabled) is not bool:
            raise FlagError("state.enabled must be true or false")
        if type(rollout) not in (int, float) or not 0 <= rollout <= 100:
            raise FlagError("state.rollout must be a percentage, 0 to 100")
        if value is not None and (type(value) is not int or not 0 <= value < 1000):
            raise FlagError("state.value must be an integer 0-999 or null")
        return FlagState(enabled, _targets(doc.get("regions", {}), "regions"),
                         _targets(doc.get("platforms", {}), "platforms"), float(rollout), value)


def _targets(raw: Any, what: str) -> dict[str, bool]:
    if not isinstance(raw, dict) or not all(
            isinstance(k, str) and _TARGET.match(k) and type(v) is bool for k, v in raw.items()):
        raise FlagError(f"state.{what} must map names [A-Za-z0-9_.-]{{1,32}} to true/false")
    return dict(raw)


def check_name(name: str) -> str:
    """A flag is a registered feature or a control flag; anything else is a typo."""
    if name in BY_NAME or name in CONTROL_FLAGS:
        return name
    if not _NAME.match(name):
        raise FlagError(f"flag name {name!r}: lower-case letters, digits, '_' and '.'")
    raise FlagError(f"unknown flag {name!r}; features: {', '.join(BY_NAME)}; control: "
                    f"{', '.join(sorted(CONTROL_FLAGS))}")


@dataclass(frozen=True, slots=True)
class FlagChange:
    flag: str
    state: FlagState
    who: str
    when_ms: int
    why: str
    version: int = -1  # the Kafka offset, once written

    def __post_init__(self) -> None:
        check_name(self.flag)
        if not self.who or len(self.who) > 128:
            raise FlagError("who: 1-128 characters (the operator or the controller)")
        if not self.why.strip() or len(self.why) > 500:
            raise FlagError("why: a reason is required (1-500 characters)")
        if self.flag in CONTROL_FLAGS and (self.state.value is None
                                           or self.state.value > MAX_LEVEL):
            raise FlagError(f"{self.flag} needs a value 0-{MAX_LEVEL}")

    def encode(self) -> bytes:
        doc = {"type": "flag_change", "v": VERSION, "flag": self.flag,
               "state": self.state.to_json(), "who": self.who, "when_ms": self.when_ms,
               "why": self.why}
        if self.version >= 0:
            doc["version"] = self.version
        return orjson.dumps(doc)

    def with_version(self, version: int) -> FlagChange:
        return replace(self, version=version)


def decode(raw: bytes | str) -> FlagChange:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise FlagError("not JSON") from None
    if not isinstance(doc, dict) or doc.get("type") != "flag_change":
        raise FlagError("not a flag_change record")
    if doc.get("v") != VERSION:
        raise FlagError(f"unsupported flag_change version {doc.get('v')!r}")
    try:
        return FlagChange(str(doc["flag"]), FlagState.from_json(doc["state"]), str(doc["who"]),
                          int(doc["when_ms"]), str(doc["why"]), int(doc.get("version", -1)))
    except (KeyError, TypeError) as exc:
        raise FlagError(f"flag_change: missing or bad {exc}") from None


# -- evaluation (pure) --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Context:
    region: str = "unknown"
    platform: str = "unknown"
    session: str = ""


def bucket(flag: str, session: str) -> int:
    """0..BUCKETS-1, sticky per (flag, session); independent across flags."""
    digest = hashlib.blake2b(f"{flag}\x00{session}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def evaluate(name: str, state: FlagState | None, ctx: Context, default: bool) -> bool:
    if state is None:
        return default
    on = state.regions.get(ctx.region, state.enabled)
    if on and ctx.platform in state.platforms:
        on = state.platforms[ctx.platform]
    if on and state.rollout < 100.0:
        on = bucket(name, ctx.session) < round(state.rollout * BUCKETS / 100)
    return on


def effective_level(states: dict[str, FlagState]) -> int:
    """The operator's pin when set (enabled with a value), else the controller's level."""
    pin = states.get(OVERRIDE_FLAG)
    if pin is not None and pin.enabled and pin.value is not None:
        return pin.value
    level = states.get(LEVEL_FLAG)
    return (level.value or 0) if level is not None and level.enabled else 0


def resolve(states: dict[str, FlagState], ctx: Context) -> dict[str, bool]:
    """Every feature's answer for one client: its flag, then the level (P2 off at >= 1)."""
    shed = effective_level(states) >= 1
    return {name: (not (shed and name in P2_NAMES))
            and evaluate(name, states.get(name), ctx, f.default) for name, f in BY_NAME.items()}


# -- the Redis projection -------------------------------------------------------------------------

# KEYS[1] hash, KEYS[2] stream; ARGV: flag, version, change JSON, stream maxlen.
# Applies only a newer version, so replaying the topic into Redis changes nothing.
APPLY_LUA = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local v = tonumber(cjson.decode(cur)['version'] or -1)
  if v >= tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'u', ARGV[3])
return 1
"""


def states_of(rows: dict[Any, Any]) -> dict[str, tuple[int, FlagState]]:
    """The hash ``FLAGS_KEY`` as ``flag -> (version, state)``; bad rows are skipped."""
    out: dict[str, tuple[int, FlagState]] = {}
    for raw in rows.values():
        try:
            change = decode(raw)
        except (FlagError, ValueError):
            continue
        out[change.flag] = (change.version, change.state)
    return out
