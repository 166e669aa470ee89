// Feature flags on the page: the registry's safe defaults (features.js, generated from
// schemas/features.py) until the gateway's `flags` channel answers, then what it says; the last
// answer stays in force while the connection is down, so the page works without the flag
// service. An element with data-feature="NAME" is hidden while NAME is off.

import { DEFAULTS } from "./features.js";

export class Flags {
  constructor(root) {
    this.root = root;
    this.values = { ...DEFAULTS };
    this.version = null; // null: defaults, never heard from the gateway
    this.level = 0;
    this.log = []; // {at, version, level} of each message applied, for the browser tests
    this.apply();
  }

  on(name) { return this.values[name] ?? DEFAULTS[name] ?? true; }

  receive(msg) {
    // Whole sets, never diffs: a message simply replaces what the page holds. Names the page
    // does not know yet are ignored; names missing from the message keep their default.
    this.values = { ...DEFAULTS, ...msg.flags };
    this.version = msg.version;
    this.level = msg.level;
    this.log.push({ at: Date.now(), version: msg.version, level: msg.level });
    if (this.log.length > 200) this.log.shift();
    this.apply();
  }

  apply() {
    for (const el of this.root.querySelectorAll("[data-feature]")) {
      el.classList.toggle("feature-off", !this.on(el.dataset.feature));
    }
    this.root.body.dataset.level = String(this.level);
  }
}
