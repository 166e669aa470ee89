// Panic through the edge: while the page's WebSocket is not live (the gateway is down, or the
// edge in front of it cannot reach it), poll the scorecard snapshot over HTTP. Through a
// caching edge (docs/operations.md, "The edge") the snapshot still comes back when the gateway
// and the origin are both down: the edge's last copy, served stale. The page then shows that
// card marked stale, with the time it was made, rather than an error.
//
// Stale means: the gateway itself says so (panic mode, `"stale": true`), or the copy is older
// than any live answer can be. The gateway dates each answer (Date) and the edges pass that
// Date on, so the age is now - Date; a live answer is at most max-age 1 s + 10 s
// stale-while-revalidate old.

const POLL_MS = 3000;
const STALE_AFTER_MS = 15000;

export class SnapshotPoller {
  // onCard(card, {seq, ts, epoch, kind: "http"}, {stale, madeAt, cache}); onError(text)
  constructor(matchId, { onCard, onError }) {
    Object.assign(this, { matchId, onCard, onError });
    this.timer = null;
    this.polls = 0;
    this.last = null; // {seq, stale, madeAt, cache} of the last snapshot, for the tests
  }

  get running() { return this.timer !== null; }

  start() {
    if (this.timer !== null) return;
    this.poll();
    this.timer = setInterval(() => this.poll(), POLL_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async poll() {
    this.polls += 1;
    let resp, doc;
    try {
      // The edge is the cache here; the browser's own would only hide its answers.
      resp = await fetch(`/v1/matches/${encodeURIComponent(this.matchId)}/scorecard`, { cache: "no-store" });
      doc = await resp.json();
    } catch (err) {
      this.onError(`no scorecard: ${err.message || err}`);
      return;
    }
    if (!resp.ok || !doc.card) {
      this.onError(doc.message || `no scorecard (HTTP ${resp.status})`);
      return;
    }
    const date = Date.parse(resp.headers.get("Date") || "");
    const madeAt = Number.isNaN(date) ? null : date;
    const stale = Boolean(doc.stale) || (madeAt !== null && Date.now() - madeAt > STALE_AFTER_MS);
    const cache = resp.headers.get("X-Cache");
    this.last = { seq: doc.seq, stale, madeAt, cache };
    this.onCard(doc.card, { seq: doc.seq, ts: doc.ts, epoch: doc.epoch, kind: "http" }, this.last);
  }
}
