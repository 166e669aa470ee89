"""The compact patch format for scorecard updates: ``diff(old, new)`` and ``apply(doc, patch)``.

A scorecard changes a little per ball (a few counters, one batter, one bowler, this over), so an
update carries only what changed. A patch is a JSON array of operations, applied in order:

* ``["s", path, value]``  set the value at ``path`` (creating a missing object key);
* ``["m", path, object]`` set several keys of the object at ``path`` at once;
* ``["k", path, [r1, v1, r2, v2, ...]]`` set keys the object at ``path`` already has, each
  named by its rank ``r``: its index among the object's keys sorted by code point (Python's
  ``sorted``), so key order in the holder's object does not matter;
* ``["d", path]``         delete the object key at ``path``;
* ``["a", path, items]``  append ``items`` to the array at ``path``;
* ``["t", path, n]``      truncate the array at ``path`` to its first ``n`` items;
* ``["h", path, n]``      drop the first ``n`` items of the array at ``path``;
* ``["w", path, n, items]`` slide the window at ``path``: drop its first ``n`` items, then
  append ``items``;
* ``["p", path, indices]`` replace the array at ``path`` by its items at ``indices``, in that
  order (a reordering: two batters swapping strike);
* ``["n", path, ops]``    apply the patch ``ops`` to the value at ``path``, their paths
  relative to it.

An operation has exactly the elements shown; anything else is a ``PatchError``. ``path`` is a
JSON array of object keys (strings) and array indices (integers); ``[]`` is the value the patch
applies to. ``diff`` keeps patches small the way a ball changes a card: scalar changes to one
object travel as one ``k`` (a batter's runs, balls and strike rate together, the keys by rank,
as the holder already has their names) or, when a key is new, one ``m``; several changes under
one subtree share its path through an ``n`` (everything in this innings); a sliding window (the
last N balls) moves by one ``w``, even when its first item looks unchanged ("1", "1", ...); two
names that swapped are a ``p``. Arrays of the same length are otherwise diffed item by item, an
array that only grew gets an ``a`` and one that only shrank a ``t``; where several of these fit,
the smallest is sent, and nothing is ever sent that is larger than setting the value whole.

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
_MAX_PICK = 16  # reorderings are looked for in short arrays only (the two batters in)
# Each kind with the length of its operation, kind and path included.
_ARITY = {"s": 3, "m": 3, "k": 3, "d": 2, "a": 3, "t": 3, "h": 3, "w": 4, "p": 3, "n": 3}
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
    if merged:
        ops.append(_set_keys(old, merged))
    ops.extend(["d", [key]] for key in old if key not in new)


def _set_keys(old: dict[str, Any], merged: dict[str, Any]) -> Op:
    """One ``s`` for one key, an ``m`` for several; a ``k`` instead when every key is already
    in the object and naming them by position is smaller (a batter's runs, balls and strike
    rate change every ball; their names do not)."""
    if len(merged) == 1:
        ((key, value),) = merged.items()
        op: Op = ["s", [key], value]
    else:
        op = ["m", [], merged]
    if all(key in old for key in merged):
        rank = {key: i for i, key in enumerate(sorted(old))}
        by_rank = sorted(((rank[key], value) for key, value in merged.items()),
                         key=lambda pair: pair[0])
        positional: Op = ["k", [], [x for pair in by_rank for x in pair]]
        if _size(positional) < _size(op):
            return positional
    return op


def _diff_list(old: list[Any], new: list[Any], ops: list[Op]) -> None:
    best = _edit_list(old, new)
    for k in range(1, min(_MAX_SHIFT, len(old) - 1) + 1):
        kept = len(old) - k
        if kept <= len(new) and old[k:] == new[:kept]:
            # A sliding window moved by k: with repeated items ("1", "1", "1") the unshifted
            # edit can look as plausible, so the smaller of the two is sent.
            shift: list[Op] = [["w", [], k, new[kept:]]] if len(new) > kept else [["h", [], k]]
            if best is None or _size(shift) < _size(best):
                best = shift
    if len(new) <= _MAX_PICK and new != old and all(item in old for item in new):
        pick: list[Op] = [["p", [], _pick(old, new)]]  # strike rotated: the two names swapped
        if best is None or _size(pick) < _size(best):
            best = pick
    ops.extend([["s", [], new]] if best is None else best)


def _pick(old: list[Any], new: list[Any]) -> list[int]:
    """Indices into ``old`` of the items of ``new``, each old item used once where it can be."""
    free = list(range(len(old)))
    out = []
    for item in new:
        i = next((i for i in free if old[i] == item), None)
        if i is None:
            i = old.index(item)
        else:
            free.remove(i)
        out.append(i)
    return out


def _edit_list(old: list[Any], new: list[Any]) -> list[Op] | None:
    """Item-by-item edits, then an append or a truncate; None if most items changed."""
    common = min(len(old), len(new))
    changed = [i for i in range(common) if old[i] != new[i]]
    if len(changed) > max(1, common // 2):
        return None  # mostly different: one set is smaller than many edits
    ops: list[Op] = []
    for i in changed:
        _child(old[i], new[i], i, ops)
    if len(new) > len(old):
        ops.append(["a", [], new[common:]])
    elif len(new) < len(old):
        ops.append(["t", [], len(new)])
    return ops


def _size(ops: list[Op]) -> int:
    return len(orjson.dumps(ops))


# -- apply ---------------------------------------------------------------------------------


def apply(doc: Any, patch: list[Op]) -> Any:
    if not isinstance(patch, list):
        raise PatchError("a patch must be an array of operations")
    for op in patch:
        doc = _apply_one(doc, op)
    return doc


def _apply_one(doc: Any, op: Op) -> Any:
    if (not isinstance(op, list) or len(op) < 2 or not isinstance(op[0], str)
            or _ARITY.get(op[0]) != len(op)):
        raise PatchError(f"not a patch operation: {op!r}")
    kind, path, *args = op
    if not isinstance(path, list):
        raise PatchError(f"path must be an array: {op!r}")
    result = _at(doc, path, _leaf(kind, args))
    if result is _DELETE:
        raise PatchError("'d' cannot delete the whole document")
    return result


def _leaf(kind: str, args: list[Any]) -> Callable[[Any], Any]:
    """What an operation does to the value at its path (``_MISSING`` if the key is absent)."""
    arg: Any = args[0] if args else None
    if kind == "s":
        return lambda _old: arg
    if kind == "d":
        return lambda _old: _DELETE
    if kind == "m":
        return lambda old: _merge(old, arg)
    if kind == "k":
        return lambda old: _set_by_rank(old, arg)
    if kind == "n":
        return lambda old: apply(_present(old, "n"), arg)
    if kind == "w":
        return lambda old: _list_op(_list_op(old, "h", arg), "a", args[1])
    if kind == "p":
        return lambda old: _pick_items(old, arg)
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


def _set_by_rank(target: Any, pairs: Any) -> dict[str, Any]:
    if not isinstance(target, dict) or not isinstance(pairs, list) or len(pairs) % 2:
        raise PatchError("'k' needs an object at the path and an array of rank, value pairs")
    keys = sorted(target)
    out = dict(target)
    for i in range(0, len(pairs), 2):
        rank = pairs[i]
        if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank < len(keys):
            raise PatchError(f"'k' needs key ranks between 0 and {len(keys) - 1}")
        out[keys[rank]] = pairs[i + 1]
    return out


def _pick_items(target: Any, indices: Any) -> list[Any]:
    if not isinstance(target, list) or not isinstance(indices, list):
        raise PatchError("'p' needs an array at the path and an array of indices")
    for i in indices:
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(target):
            raise PatchError(f"'p' needs indices between 0 and {len(target) - 1}")
    return [target[i] for i in indices]


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
