// The match list: live matches from the gateway's HTTP API (GET /v1/matches), newest first.

import { h } from "./dom.js";

const REFRESH_MS = 5000;

export function showMatchList(root, hrefFor) {
  const draw = async () => {
    let rows = [];
    try {
      const resp = await fetch("/v1/matches", { cache: "no-store" });
      rows = (await resp.json()).matches ?? [];
    } catch {
      root.replaceChildren(h("p", { class: "muted" }, "The gateway is not answering; retrying…"));
      return;
    }
    rows.sort((a, b) => b.updated_ms - a.updated_ms);
    root.replaceChildren(
      h("h2", {}, "Matches"),
      rows.length
        ? h("ul", { class: "match-list" }, rows.map((m) => h("li", {},
            h("a", { href: hrefFor(m.match_id), dataset: { match: m.match_id } }, m.match_id),
            h("span", { class: "muted" }, ` updated ${new Date(m.updated_ms).toLocaleTimeString()}`))))
        : h("p", { class: "muted" }, "No live matches yet. Start one with `stumpcast demo`."));
  };
  draw();
  const timer = setInterval(draw, REFRESH_MS);
  return () => clearInterval(timer);
}
