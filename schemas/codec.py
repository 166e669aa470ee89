"""The wire codec for match events: JSON via orjson, one encoding per event.

Wire shape (payload fields equal to their default are omitted)::

    {"type": "delivery", "v": 1, "event_id": "...", "match_id": "...", "seq": 12,
     "ts": "2023-05-29T14:02:05.000Z", "source": "cricsheet", "payload": {...}}

``decode`` is strict: unknown fields, wrong types and out-of-range values are rejected with an
:class:`~schemas.events.EventValidationError` that names the field path. Old versions are
upcast on read (``UPCASTERS``); a version newer than this reader is rejected. ``json_schemas``
derives a JSON Schema per event type from the same dataclasses, so the checked-in files under
``schemas/jsonschema/`` cannot drift from the code unnoticed (a test compares them).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, get_args, get_origin

import orjson

from schemas.events import (
    PAYLOAD_TYPES,
    Event,
    EventValidationError,
    Payload,
    field_specs,
)

JsonDict = dict[str, Any]
ENVELOPE_KEYS = frozenset({"type", "v", "event_id", "match_id", "seq", "ts", "source", "payload"})
# The producer's signature (schemas.signing): optional on read, ignored by the decoder; the
# streams worker verifies it and decodes the signed bytes without it.
OPTIONAL_ENVELOPE_KEYS = frozenset({"sig"})


def _match_created_v1(payload: JsonDict) -> JsonDict:
    # v1 predates balls_per_over: every match then had six-ball overs (Law 17.1).
    return {**payload, "balls_per_over": 6}


def _match_decided_v1(payload: JsonDict) -> JsonDict:
    # v2 added the par_score kind with its margin and method, all optional: a v1 payload reads
    # as the same v2 payload. The bump tells a v1 reader it cannot know what a v2 one means.
    return payload


# (type, old version) -> function returning the payload at old version + 1.
UPCASTERS: dict[tuple[str, int], Callable[[JsonDict], JsonDict]] = {
    ("match.created", 1): _match_created_v1,
    ("match.decided", 1): _match_decided_v1,
}


@functools.cache
def payload_classes() -> dict[str, type[Payload]]:
    return {cls.TYPE: cls for cls in PAYLOAD_TYPES}


# --- encoding ------------------------------------------------------------------------------------


def encode(event: Event) -> bytes:
    """The event's wire bytes. Encode once and share the bytes with every consumer."""
    return orjson.dumps(to_wire(event))


def to_wire(event: Event) -> JsonDict:
    return {
        "type": event.payload.TYPE, "v": event.payload.VERSION, "event_id": event.event_id,
        "match_id": event.match_id, "seq": event.seq, "ts": format_ts(event.ts),
        "source": event.source, "payload": _obj_to_wire(event.payload),
    }


def format_ts(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


_DEFAULTS: dict[type, dict[str, Any]] = {}
_REQUIRED: dict[type, frozenset[str]] = {}


def _defaults(cls: type) -> dict[str, Any]:
    if cls not in _DEFAULTS:
        _DEFAULTS[cls] = {f.name: f.default for f in dataclasses.fields(cls)
                          if f.default is not dataclasses.MISSING}
    return _DEFAULTS[cls]


def _obj_to_wire(obj: Any) -> JsonDict:
    defaults = _defaults(type(obj))
    out: JsonDict = {}
    for name, _hint, _rules in field_specs(type(obj)):
        value = getattr(obj, name)
        if name in defaults and value == defaults[name]:
            continue
        out[name] = _value_to_wire(value)
    return out


def _value_to_wire(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_value_to_wire(v) for v in value]
    if dataclasses.is_dataclass(value):
        return _obj_to_wire(value)
    if isinstance(value, dt.datetime):
        return format_ts(value)
    return value


# --- decoding ------------------------------------------------------------------------------------


def decode(data: bytes | str) -> Event:
    """Parse and validate one event; raise EventValidationError, never anything else."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise EventValidationError("", f"not valid JSON: {exc}") from None
    return from_wire(raw)


def from_wire(raw: Any) -> Event:
    if not isinstance(raw, dict):
        raise EventValidationError("", f"an event must be a JSON object, got {_jtype(raw)}")
    extra = raw.keys() - ENVELOPE_KEYS - OPTIONAL_ENVELOPE_KEYS
    if extra:
        raise EventValidationError(sorted(extra)[0], "unknown envelope field")
    type_name = raw.get("type")
    cls = payload_classes().get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise EventValidationError("type", f"unknown event type {type_name!r}")
    payload = _upcast(type_name, raw.get("v"), raw.get("payload"), cls)  # type: ignore[arg-type]
    for key in ("event_id", "match_id", "seq", "ts", "source"):
        if key not in raw:
            raise EventValidationError(key, "required field missing")
    return Event(event_id=raw["event_id"], match_id=raw["match_id"], seq=raw["seq"],
                 ts=_parse_ts(raw["ts"], "ts"), source=raw["source"],
                 payload=_decode_obj(cls, payload, "payload"))


def _upcast(type_name: str, v: Any, payload: Any, cls: type[Payload]) -> Any:
    if type(v) is not int:
        raise EventValidationError("v", f"must be an integer version, got {_jtype(v)}")
    if v < 1 or v > cls.VERSION:
        raise EventValidationError("v", f"{type_name} v{v} is not known to this reader "
                                        f"(current v{cls.VERSION})")
    if not isinstance(payload, dict):
        raise EventValidationError("payload", f"must be an object, got {_jtype(payload)}")
    while v < cls.VERSION:
        payload = UPCASTERS[(type_name, v)](payload)
        v += 1
    return payload


def _parse_ts(value: Any, path: str) -> dt.datetime:
    if not isinstance(value, str):
        raise EventValidationError(path, f"must be an ISO 8601 string, got {_jtype(value)}")
    try:
        ts = dt.datetime.fromisoformat(value)
    except ValueError:
        raise EventValidationError(path, f"not an ISO 8601 instant: {value[:40]!r}") from None
    if ts.tzinfo is None:
        raise EventValidationError(path, "must carry a UTC offset (e.g. 'Z')")
    return ts.astimezone(dt.UTC)


def _required(cls: type) -> frozenset[str]:
    if cls not in _REQUIRED:
        _REQUIRED[cls] = frozenset(f.name for f in dataclasses.fields(cls)
                                   if f.default is dataclasses.MISSING
                                   and f.default_factory is dataclasses.MISSING)
    return _REQUIRED[cls]


def _decode_obj(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise EventValidationError(path, f"must be an object, got {_jtype(data)}")
    specs = field_specs(cls)
    known = {name for name, _, _ in specs}
    for key in data:
        if key not in known:
            raise EventValidationError(f"{path}.{key}", "unknown field")
    kwargs: JsonDict = {}
    for name, hint, _rules in specs:
        if name in data:
            kwargs[name] = _decode_value(hint, data[name], f"{path}.{name}")
        elif name in _required(cls):
            raise EventValidationError(f"{path}.{name}", "required field missing")
    try:
        return cls(**kwargs)
    except EventValidationError as exc:
        raise exc.under(path) from None


def _decode_value(hint: Any, value: Any, path: str) -> Any:
    origin = get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        inner = [a for a in get_args(hint) if a is not type(None)][0]
        return _decode_value(inner, value, path)
    if origin is tuple:
        if not isinstance(value, list):
            raise EventValidationError(path, f"must be an array, got {_jtype(value)}")
        item = get_args(hint)[0]
        return tuple(_decode_value(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        return _decode_obj(hint, value, path)  # type: ignore[arg-type]
    if hint is dt.datetime:
        return _parse_ts(value, path)
    return value  # scalars and literals: checked by the dataclass, path re-rooted by caller


def _jtype(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", int: "integer", float: "number",
             bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# --- JSON Schema -----------------------------------------------------------------------------


def json_schemas() -> dict[str, JsonDict]:
    """One JSON Schema (draft 2020-12) per event type, keyed by wire type name."""
    return {cls.TYPE: _event_schema(cls) for cls in PAYLOAD_TYPES}


def _event_schema(cls: type[Payload]) -> JsonDict:
    defs: dict[str, JsonDict] = {}
    payload = _obj_schema(cls, defs)
    str_id = {"type": "string", "minLength": 1}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://stumpcast.example/schemas/events/{cls.TYPE}.json",
        "title": f"{cls.TYPE} v{cls.VERSION}",
        "description": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else cls.TYPE,
        "type": "object",
        "additionalProperties": False,
        "required": sorted(ENVELOPE_KEYS),
        "properties": {
            "type": {"const": cls.TYPE}, "v": {"const": cls.VERSION},
            "event_id": {**str_id, "maxLength": 128}, "match_id": {**str_id, "maxLength": 64},
            "seq": {"type": "integer", "minimum": 1},
            "ts": {"type": "string", "format": "date-time"},
            "source": {**str_id, "maxLength": 64}, "payload": payload,
            "sig": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,31}:[A-Za-z0-9_-]{86}$",
                    "description": "The scorer's Ed25519 signature over the event's bytes "
                    "without this member: <scorer id>:<base64url>. Last member on the wire."},
        },
        **({"$defs": dict(sorted(defs.items()))} if defs else {}),
    }


def _obj_schema(cls: type, defs: dict[str, JsonDict]) -> JsonDict:
    props: JsonDict = {}
    for name, hint, rules in field_specs(cls):
        props[name] = {"description": rules["doc"], **_hint_schema(hint, rules, defs)}
    return {"type": "object", "additionalProperties": False,
            "required": sorted(_required(cls)), "properties": props}


def _hint_schema(hint: Any, rules: dict[str, Any], defs: dict[str, JsonDict]) -> JsonDict:
    origin = get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in get_args(hint) if a is not type(None)][0]
        return {"anyOf": [_hint_schema(inner, rules, defs), {"type": "null"}]}
    if origin is Literal:
        return {"enum": list(get_args(hint))}
    if origin is tuple:
        out: JsonDict = {"type": "array", "items": _hint_schema(get_args(hint)[0], {}, defs)}
        out |= {k2: rules[k1] for k1, k2 in (("min_len", "minItems"), ("max_len", "maxItems"))
                if k1 in rules}
        return out
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        name = hint.__name__
        if name not in defs:
            defs[name] = {}
            defs[name] = _obj_schema(hint, defs)  # type: ignore[arg-type]
        return {"$ref": f"#/$defs/{name}"}
    if hint is int:
        out = {"type": "integer"}
        out |= {k2: rules[k1] for k1, k2 in (("min", "minimum"), ("max", "maximum"))
                if k1 in rules}
        return out
    if hint is bool:
        return {"type": "boolean"}
    if hint is str:
        return {"type": "string", "minLength": rules.get("min_len", 1),
                "maxLength": rules.get("max_len", 200)}
    raise TypeError(f"no JSON Schema for {hint!r}")  # pragma: no cover
