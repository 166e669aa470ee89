// The scorecard patch format of schemas/patch.py, applied in the browser.
//
// A patch is an array of operations applied in order; `path` is an array of object keys
// (strings) and array indices (integers), [] being the whole document:
//   ["s", path, value]  set (creating a missing object key)
//   ["d", path]         delete an object key
//   ["a", path, items]  append items to an array
//   ["t", path, n]      truncate an array to its first n items
// apply() never mutates its input: it copies the containers along each path only.

export class PatchError extends Error {}

export function applyPatch(doc, patch) {
  if (!Array.isArray(patch)) throw new PatchError("a patch must be an array");
  return patch.reduce(applyOne, doc);
}

function applyOne(doc, op) {
  if (!Array.isArray(op) || op.length < 2 || !["s", "d", "a", "t"].includes(op[0])) {
    throw new PatchError(`not a patch operation: ${JSON.stringify(op)}`);
  }
  const [kind, path, arg] = op;
  if (!Array.isArray(path)) throw new PatchError("path must be an array");
  if (path.length) return rebuild(doc, path, kind, arg);
  if (kind === "s") return arg;
  if (kind === "d") throw new PatchError("'d' cannot delete the whole document");
  return leafList(doc, kind, arg);
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function rebuild(node, path, kind, arg) {
  const [head, ...rest] = path;
  if (isObject(node) && typeof head === "string") {
    const out = { ...node };
    if (rest.length) {
      if (!(head in node)) throw new PatchError(`no key ${head} on the path`);
      out[head] = rebuild(node[head], rest, kind, arg);
    } else if (kind === "s") out[head] = arg;
    else if (kind === "d") delete out[head];
    else out[head] = leafList(node[head], kind, arg);
    return out;
  }
  if (Array.isArray(node) && Number.isInteger(head) && head >= 0 && head < node.length) {
    const out = node.slice();
    if (rest.length) out[head] = rebuild(node[head], rest, kind, arg);
    else if (kind === "s") out[head] = arg;
    else if (kind === "a" || kind === "t") out[head] = leafList(node[head], kind, arg);
    else throw new PatchError("'d' removes object keys, not array items");
    return out;
  }
  throw new PatchError(`path step ${JSON.stringify(head)} does not fit the document`);
}

function leafList(target, kind, arg) {
  if (!Array.isArray(target)) throw new PatchError(`'${kind}' needs an array`);
  if (kind === "a") {
    if (!Array.isArray(arg)) throw new PatchError("'a' needs an array of items");
    return [...target, ...arg];
  }
  if (!Number.isInteger(arg) || arg < 0 || arg > target.length) {
    throw new PatchError(`'t' needs a length between 0 and ${target.length}`);
  }
  return target.slice(0, arg);
}
