// Generated from schemas/features.py by `stumpcast flags page-defaults`; do not edit.
// The safe defaults the page uses until (or without) the flags channel.
export const FEATURES = [
  { name: "scores", priority: "P1", default: true },
  { name: "notes_p1", priority: "P1", default: true },
  { name: "watching", priority: "P2", default: true },
  { name: "notes_p2", priority: "P2", default: true },
  { name: "markers", priority: "P2", default: true },
  { name: "sync_video", priority: "P2", default: true },
  { name: "heartbeats_detailed", priority: "P2", default: true },
];
export const DEFAULTS = Object.fromEntries(FEATURES.map((f) => [f.name, f.default]));
