// The scorecard patch format of schemas/patch.py, applied in the browser.
//
// A patch is an array of operations applied in order; `path` is an array of object keys
// (strings) and array indices (integers), [] being the value the patch applies to:
//   ["s", path, value]   set (creating a missing object key)
//   ["m", path, object]  set several keys of the object at path
//   ["d", path]          delete an object key
//   ["a", path, items]   append items to an array
//   ["t", path, n]       truncate an array to its first n items
//   ["h", path, n]       drop the first n items of an array
//   ["n", path, ops]     apply ops to the value at path, their paths relative to it
// applyPatch() never mutates its input: it copies the containers along each path only.

export class PatchError extends Error {}

const KINDS = new Set(["s", "m", "d", "a", "t", "h", "n"]);
const MISSING = Symbol("missing");
const DELETE = Symbol("delete");

export function applyPatch(doc, patch) {
  if (!Array.isArray(patch)) throw new PatchError("a patch must be an array of operations");
  return patch.reduce(applyOne, doc);
}

function applyOne(doc, op) {
  if (!Array.isArray(op) || op.length < 2 || !KINDS.has(op[0])) {
    throw new PatchError(`not a patch operation: ${JSON.stringify(op)}`);
  }
  const [kind, path, arg] = op;
  if (!Array.isArray(path)) throw new PatchError("path must be an array");
  const result = at(doc, path, leaf(kind, arg));
  if (result === DELETE) throw new PatchError("'d' cannot delete the whole document");
  return result;
}

// What an operation does to the value at its path (MISSING if the key is absent).
function leaf(kind, arg) {
  switch (kind) {
    case "s": return () => arg;
    case "d": return () => DELETE;
    case "m": return (old) => merge(old, arg);
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
