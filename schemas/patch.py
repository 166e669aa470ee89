"""The compact patch format for scorecard updates: ``diff(old, new)`` and ``apply(doc, patch)``.

A scorecard changes a little per ball (a few counters, one batter, one bowler, this over), so an
update carries only what changed. A patch is a JSON array of operations, applied in order:

* ``["s", path, value]`` set the value at ``path`` (creating a missing object key);
* ``["d", path]``        delete the object key at ``path``;
* ``["a", path, items]`` append ``items`` to the array at ``path``;
* ``["t", path, n]``     truncate the array at ``path`` to its first ``n`` items.

``path`` is a JSON array of object keys (strings) and array indices (integers); ``[]`` is the
whole document. Arrays of the same length are diffed item by item; an array that only grew gets
an ``a``; one that only shrank gets a ``t``; anything else is set whole. Both functions are pure:
``apply`` never mutates its input. The invariant, tested with hypothesis, is
``apply(old, diff(old, new)) == new``.
"""

from __future__ import annotations

from typing import Any

Path = list[str | int]
Op = list[Any]


class PatchError(ValueError):
    """A patch does not fit the document it is applied to."""


def diff(old: Any, new: Any) -> list[Op]:
    ops: list[Op] = []
    _diff(old, new, [], ops)
    return ops


def _diff(old: Any, new: Any, path: Path, ops: list[Op]) -> None:
    if type(old) is not type(new):
        ops.append(["s", path, new])
    elif isinstance(new, dict):
        for key, value in new.items():
            if key not in old:
                ops.append(["s", [*path, key], value])
            elif old[key] != value:
                _diff(old[key], value, [*path, key], ops)
        ops.extend(["d", [*path, key]] for key in old if key not in new)
    elif isinstance(new, list):
        _diff_list(old, new, path, ops)
    elif old != new:
        ops.append(["s", path, new])


def _diff_list(old: list[Any], new: list[Any], path: Path, ops: list[Op]) -> None:
    common = min(len(old), len(new))
    changed = [i for i in range(common) if old[i] != new[i]]
    if len(changed) > max(1, common // 2):
        ops.append(["s", path, new])  # mostly different: one set is smaller than many edits
        return
    for i in changed:
        _diff(old[i], new[i], [*path, i], ops)
    if len(new) > len(old):
        ops.append(["a", path, new[common:]])
    elif len(new) < len(old):
        ops.append(["t", path, len(new)])


def apply(doc: Any, patch: list[Op]) -> Any:
    for op in patch:
        doc = _apply_one(doc, op)
    return doc


def _apply_one(doc: Any, op: Op) -> Any:
    if not isinstance(op, list) or len(op) < 2 or op[0] not in {"s", "d", "a", "t"}:
        raise PatchError(f"not a patch operation: {op!r}")
    kind, path = op[0], op[1]
    if not isinstance(path, list):
        raise PatchError(f"path must be an array: {op!r}")
    arg = op[2] if len(op) > 2 else None
    if path:
        return _rebuild(doc, path, kind, arg)
    if kind == "s":
        return arg
    if kind == "d":
        raise PatchError("'d' cannot delete the whole document")
    return _leaf_list(doc, kind, arg)


def _rebuild(node: Any, path: Path, kind: str, arg: Any) -> Any:
    """Copy the containers along ``path`` only, so ``doc`` itself is never mutated."""
    head, rest = path[0], path[1:]
    if isinstance(node, dict) and isinstance(head, str):
        out_d = dict(node)
        if rest:
            if head not in node:
                raise PatchError(f"no key {head!r} on the path")
            out_d[head] = _rebuild(node[head], rest, kind, arg)
        elif kind == "s":
            out_d[head] = arg
        elif kind == "d":
            out_d.pop(head, None)
        else:
            out_d[head] = _leaf_list(node.get(head), kind, arg)
        return out_d
    if isinstance(node, list) and isinstance(head, int) and 0 <= head < len(node):
        out_l = list(node)
        if rest:
            out_l[head] = _rebuild(node[head], rest, kind, arg)
        elif kind == "s":
            out_l[head] = arg
        elif kind in {"a", "t"}:
            out_l[head] = _leaf_list(node[head], kind, arg)
        else:
            raise PatchError("'d' removes object keys, not array items")
        return out_l
    raise PatchError(f"path step {head!r} does not fit a {type(node).__name__}")


def _leaf_list(target: Any, kind: str, arg: Any) -> list[Any]:
    if not isinstance(target, list):
        raise PatchError(f"'{kind}' needs an array, found {type(target).__name__}")
    if kind == "a":
        if not isinstance(arg, list):
            raise PatchError("'a' needs an array of items")
        return [*target, *arg]
    if not isinstance(arg, int) or not 0 <= arg <= len(target):
        raise PatchError(f"'t' needs a length between 0 and {len(target)}")
    return target[:arg]
