"""The compact patch format for scorecard updates: ``diff(old, new)`` and ``apply(doc, patch)``.

A scorecard changes a little per ball (a few counters, one batter, one bowler, this over), so an
update carries only what changed. A patch is a JSON array of operations, applied in order:

* ``["s", path, value]``  set the value at ``path`` (creating a missing object key);
* ``["m", path, object]`` set several keys of the object at ``path`` at once;
* ``["d", path]``         delete the object key at ``path``;
* ``["a", path, items]``  append ``items`` to the array at ``path``;
* ``["t", path, n]``      truncate the array at ``path`` to its first ``n`` items;
* ``["h", path, n]``      drop the first ``n`` items of the array at ``path``;
* ``["n", path, ops]``    apply the patch ``ops`` to the value at ``path``, their paths
  relative to it.

``path`` is a JSON array of object keys (strings) and array indices (integers); ``[]`` is the
value the patch applies to. ``diff`` keeps patches small the way a ball changes a card: scalar
changes to one object travel as one ``m`` (a batter's runs, balls and strike rate together);
several changes under one subtree share its path through an ``n`` (everything in this innings);
a sliding window (the last N balls) moves by ``h`` and ``a``. Arrays of the same length are
diffed item by item, an array that only grew gets an ``a`` and one that only shrank a ``t``;
anything else is set whole.

Both functions are pure: ``apply`` copies only the containers along each path and never mutates
its input. The invariant, tested with hypothesis, is ``apply(old, diff(old, new)) == new``; the
page's ``patch.js`` follows the same rules and is tested against this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

Path = list[str | int]
Op = list[Any]

_MAX_SHIFT = 4  # a sliding window moves by one ball, a few at most after a correction
_KINDS = frozenset({"s", "m", "d", "a", "t", "h", "n"})
_MISSING = object()
_DELETE = object()


class PatchError(ValueError):
    """A patch does not fit the document it is applied to."""


# -- diff ----------------------------------------------------------------------------------


def diff(old: Any, new: Any) -> list[Op]:
    ops: list[Op] = []
    _diff(old, new, ops)
    return ops


def _diff(old: Any, new: Any, ops: list[Op]) -> None:
    """Append to ``ops`` the operations, relative to this value, that turn old into new."""
    if type(old) is not type(new):
        ops.append(["s", [], new])
    elif isinstance(new, dict):
        _diff_dict(old, new, ops)
    elif isinstance(new, list):
        _diff_list(old, new, ops)
    elif old != new:
        ops.append(["s", [], new])


def _child(old: Any, new: Any, step: str | int, ops: list[Op]) -> None:
    sub: list[Op] = []
    _diff(old, new, sub)
    if len(sub) == 1:
        kind, path, *rest = sub[0]
        op = [kind, [step, *path], *rest]
    elif sub:
        op = ["n", [step], sub]
    else:
        return
    # Never send more than the value itself: a two-name list that swapped is cheaper set whole.
    if op[0] != "s" and len(orjson.dumps(op)) >= len(orjson.dumps(new)) + len(str(step)) + 10:
        op = ["s", [step], new]
    ops.append(op)


def _diff_dict(old: dict[str, Any], new: dict[str, Any], ops: list[Op]) -> None:
    merged: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            merged[key] = value
        elif old[key] != value:
            if isinstance(value, (dict, list)) and type(old[key]) is type(value):
                _child(old[key], value, key, ops)
            else:
                merged[key] = value
    if len(merged) == 1:
        ((key, value),) = merged.items()
        ops.append(["s", [key], value])
    elif merged:
        ops.append(["m", [], merged])
    ops.extend(["d", [key]] for key in old if key not in new)


def _diff_list(old: list[Any], new: list[Any], ops: list[Op]) -> None:
    if old and new and old[0] != new[0]:
        for k in range(1, min(_MAX_SHIFT, len(old) - 1) + 1):
            kept = len(old) - k
            if kept <= len(new) and old[k:] == new[:kept]:
                ops.append(["h", [], k])
                if len(new) > kept:
                    ops.append(["a", [], new[kept:]])
                return
    common = min(len(old), len(new))
    changed = [i for i in range(common) if old[i] != new[i]]
    if len(changed) > max(1, common // 2):
        ops.append(["s", [], new])  # mostly different: one set is smaller than many edits
        return
    for i in changed:
        _child(old[i], new[i], i, ops)
    if len(new) > len(old):
        ops.append(["a", [], new[common:]])
    elif len(new) < len(old):
        ops.append(["t", [], len(new)])


# -- apply ---------------------------------------------------------------------------------


def apply(doc: Any, patch: list[Op]) -> Any:
    if not isinstance(patch, list):
        raise PatchError("a patch must be an array of operations")
    for op in patch:
        doc = _apply_one(doc, op)
    return doc


def _apply_one(doc: Any, op: Op) -> Any:
    if not isinstance(op, list) or len(op) < 2 or op[0] not in _KINDS:
        raise PatchError(f"not a patch operation: {op!r}")
    kind, path = op[0], op[1]
    if not isinstance(path, list):
        raise PatchError(f"path must be an array: {op!r}")
    result = _at(doc, path, _leaf(kind, op[2] if len(op) > 2 else None))
    if result is _DELETE:
        raise PatchError("'d' cannot delete the whole document")
    return result


def _leaf(kind: str, arg: Any) -> Callable[[Any], Any]:
    """What an operation does to the value at its path (``_MISSING`` if the key is absent)."""
    if kind == "s":
        return lambda _old: arg
    if kind == "d":
        return lambda _old: _DELETE
    if kind == "m":
        return lambda old: _merge(old, arg)
    if kind == "n":
        return lambda old: apply(_present(old, "n"), arg)
    return lambda old: _list_op(old, kind, arg)


def _at(node: Any, path: Path, leaf: Callable[[Any], Any]) -> Any:
    """Rebuild ``node`` with ``leaf`` applied at ``path``, copying only the containers on it."""
    if not path:
        return leaf(node)
    head, rest = path[0], path[1:]
    if isinstance(node, dict) and isinstance(head, str):
        if rest and head not in node:
            raise PatchError(f"no key {head!r} on the path")
        value = _at(node.get(head, _MISSING), rest, leaf)
        out = dict(node)
        if value is _DELETE:
            out.pop(head, None)
        else:
            out[head] = value
        return out
    if (isinstance(node, list) and isinstance(head, int) and not isinstance(head, bool)
            and 0 <= head < len(node)):
        value = _at(node[head], rest, leaf)
        if value is _DELETE:
            raise PatchError("'d' removes object keys, not array items")
        out_list = list(node)
        out_list[head] = value
        return out_list
    raise PatchError(f"path step {head!r} does not fit a {type(node).__name__}")


def _present(value: Any, kind: str) -> Any:
    if value is _MISSING:
        raise PatchError(f"'{kind}' needs an existing value at its path")
    return value


def _merge(target: Any, keys: Any) -> dict[str, Any]:
    if not isinstance(target, dict) or not isinstance(keys, dict):
        raise PatchError("'m' needs an object at the path and an object of keys")
    return {**target, **keys}


def _list_op(target: Any, kind: str, arg: Any) -> list[Any]:
    if not isinstance(target, list):
        raise PatchError(f"'{kind}' needs an array at its path")
    if kind == "a":
        if not isinstance(arg, list):
            raise PatchError("'a' needs an array of items")
        return [*target, *arg]
    if not isinstance(arg, int) or isinstance(arg, bool) or not 0 <= arg <= len(target):
        raise PatchError(f"'{kind}' needs a count between 0 and {len(target)}")
    return target[:arg] if kind == "t" else target[arg:]
