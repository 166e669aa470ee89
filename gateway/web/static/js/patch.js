// The scorecard patch format of schemas/patch.py, applied in the browser.
//
// A patch is an array of operations applied in order; `path` is an array of object keys
// (strings) and array indices (integers), [] being the value the patch applies to:
//   ["s", path, value]   set (creating a missing object key)
//   ["m", path, object]  set several keys of the object at path
//   ["k", path, [r, v, ...]] set existing keys of the object at path by rank: r is the key's
//                        index among the object's keys sorted by code point
//   ["d", path]          delete an object key
//   ["a", path, items]   append items to an array
//   ["t", path, n]       truncate an array to its first n items
//   ["h", path, n]       drop the first n items of an array
//   ["w", path, n, items] slide a window: drop its first n items, then append items
//   ["p", path, indices] the array's items at these indices, in this order (a reordering)
//   ["n", path, ops]     apply ops to the value at path, their paths relative to it
// applyPatch() never mutates its input: it copies the containers along each path only.

export class PatchError extends Error {}

// Each kind with the length of its operation (kind and path included).
const ARITY = new Map([["s", 3], ["m", 3], ["k", 3], ["d", 2], ["a", 3], ["t", 3], ["h", 3],
  ["w", 4], ["p", 3], ["n", 3]]);
const MISSING = Symbol("missing");
const DELETE = Symbol("delete");

export function applyPatch(doc, patch) {
  if (!Array.isArray(patch)) throw new PatchError("a patch must be an array of operations");
  return patch.reduce(applyOne, doc);
}

function applyOne(doc, op) {
  if (!Array.isArray(op) || op.length < 2 || ARITY.get(op[0]) !== op.length) {
    throw new PatchError(`not a patch operation: ${JSON.stringify(op)}`);
  }
  const [kind, path, arg, items] = op;
  if (!Array.isArray(path)) throw new PatchError("path must be an array");
  const result = at(doc, path, leaf(kind, arg, items));
  if (result === DELETE) throw new PatchError("'d' cannot delete the whole document");
  return result;
}

// What an operation does to the value at its path (MISSING if the key is absent).
function leaf(kind, arg, items) {
  switch (kind) {
    case "s": return () => arg;
    case "d": return () => DELETE;
    case "m": return (old) => merge(old, arg);
    case "k": return (old) => setByRank(old, arg);
    case "w": return (old) => listOp(listOp(old, "h", arg), "a", items);
    case "p": return (old) => pick(old, arg);
    case "n": return (old) => {
      if (old === MISSING) throw new PatchError("'n' needs an existing value at its path");
      return applyPatch(old, arg);
    };
    default: return (old) => listOp(old, kind, arg);
  }
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function at(node, path, fn) {
  if (!path.length) return fn(node);
  const [head, ...rest] = path;
  if (isObject(node) && typeof head === "string") {
    if (rest.length && !(head in node)) throw new PatchError(`no key ${head} on the path`);
    const value = at(head in node ? node[head] : MISSING, rest, fn);
    const out = { ...node };
    if (value === DELETE) delete out[head];
    else out[head] = value;
    return out;
  }
  if (Array.isArray(node) && Number.isInteger(head) && head >= 0 && head < node.length) {
    const value = at(node[head], rest, fn);
    if (value === DELETE) throw new PatchError("'d' removes object keys, not array items");
    const out = node.slice();
    out[head] = value;
    return out;
  }
  throw new PatchError(`path step ${JSON.stringify(head)} does not fit the document`);
}

function merge(target, keys) {
  if (!isObject(target) || !isObject(keys)) {
    throw new PatchError("'m' needs an object at the path and an object of keys");
  }
  return { ...target, ...keys };
}

// Python's sorted() order: by code point (a plain sort compares UTF-16 code units).
function byCodePoint(a, b) {
  for (let i = 0, j = 0; i < a.length && j < b.length;) {
    const x = a.codePointAt(i);
    const y = b.codePointAt(j);
    if (x !== y) return x < y ? -1 : 1;
    i += x > 0xffff ? 2 : 1;
    j += y > 0xffff ? 2 : 1;
  }
  return a.length === b.length ? 0 : (a.length < b.length ? -1 : 1);
}

function setByRank(target, pairs) {
  if (!isObject(target) || !Array.isArray(pairs) || pairs.length % 2) {
    throw new PatchError("'k' needs an object at the path and an array of rank, value pairs");
  }
  const keys = Object.keys(target).sort(byCodePoint);
  const out = { ...target };
  for (let i = 0; i < pairs.length; i += 2) {
    const rank = pairs[i];
    if (!Number.isInteger(rank) || rank < 0 || rank >= keys.length) {
      throw new PatchError(`'k' needs key ranks between 0 and ${keys.length - 1}`);
    }
    out[keys[rank]] = pairs[i + 1];
  }
  return out;
}

function pick(target, indices) {
  if (!Array.isArray(target) || !Array.isArray(indices)) {
    throw new PatchError("'p' needs an array at the path and an array of indices");
  }
  for (const i of indices) {
    if (!Number.isInteger(i) || i < 0 || i >= target.length) {
      throw new PatchError(`'p' needs indices between 0 and ${target.length - 1}`);
    }
  }
  return indices.map((i) => target[i]);
}

function listOp(target, kind, arg) {
  if (!Array.isArray(target)) throw new PatchError(`'${kind}' needs an array at its path`);
  if (kind === "a") {
    if (!Array.isArray(arg)) throw new PatchError("'a' needs an array of items");
    return [...target, ...arg];
  }
  if (!Number.isInteger(arg) || arg < 0 || arg > target.length) {
    throw new PatchError(`'${kind}' needs a count between 0 and ${target.length}`);
  }
  return kind === "t" ? target.slice(0, arg) : target.slice(arg);
}
