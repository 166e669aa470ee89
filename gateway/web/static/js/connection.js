// One WebSocket to the gateway (protocol v1, schemas/protocol.py): subscribe to a match's
// scorecard and notifications, keep the position of each, and after any drop reconnect with
// full-jitter exponential backoff and resubscribe with `since`, so the gateway replays what was
// missed (or sends a fresh snapshot when it cannot prove continuity).
//
// Sequence discipline on the match channel: an update whose prev_seq is not our seq is a gap
// (resubscribe from our position), an older seq a duplicate (ignored), another epoch or a patch
// that does not fit means our card is wrong (resubscribe without a position: fresh snapshot).

import { applyPatch, PatchError } from "./patch.js";

const V = 1;
const BACKOFF_BASE_MS = 250;
const BACKOFF_CAP_MS = 8000;
const PING_MS = 15000;
// Nothing heard for this long, not even the pong of the last ping: the gateway is hung (paused,
// or its host gone without a reset). The load balancer keeps a tunnel open to a node that fails
// its health checks (it only sends it no new clients), so the page leaves by itself.
const SILENT_MS = 2 * PING_MS;
const UNKNOWN_MATCH_RETRY_MS = 1000;

// Close codes (schemas/protocol.py): 4000-4099 reconnect and resume; 4100-4199 terminal.
export function shouldReconnect(code) {
  return (code >= 4000 && code <= 4099) || [1000, 1001, 1005, 1006, 1011, 1012, 1013].includes(code);
}

export class MatchConnection {
  // handlers: onCard(card, {seq, ts, epoch, kind}), onNote(note), onStatus(text, state)
  constructor(url, matchId, handlers) {
    Object.assign(this, { url, matchId, handlers });
    this.match = { epoch: null, seq: 0, card: null };
    this.notes = null; // {seq, k} once subscribed
    this.attempt = 0;
    this.stopped = false;
    this.stats = { connects: 0, snapshots: 0, updates: 0, gaps: 0, notes: 0 };
    this.journal = []; // subscribed replies and applied positions, for the browser tests
  }

  start() { this.stopped = false; this.connect(); }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.ws) this.ws.close(1000, "page closed");
  }

  connect() {
    if (this.stopped) return;
    this.status("connecting", "connecting");
    // The session id the gateway issued is presented again, so a reconnect keeps it.
    const url = this.session ? `${this.url}${this.url.includes("?") ? "&" : "?"}session=${
      encodeURIComponent(this.session)}` : this.url;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.stats.connects += 1;
      this.status("live", "live");
      this.subscribeMatch(true);
      this.subscribeNotes();
      this.subscribeFlags();
      this.heardAt = Date.now();
      this.pingTimer = setInterval(() => this.keepAlive(ws), PING_MS);
    };
    ws.onmessage = (ev) => {
      this.heardAt = Date.now();
      this.receive(JSON.parse(ev.data));
    };
    ws.onclose = (ev) => this.closed(ws, ev.code, ev.reason);
  }

  closed(ws, code, reason) {
    if (ws !== this.ws) return;
    clearInterval(this.pingTimer);
    if (this.stopped) return;
    if (!shouldReconnect(code)) {
      this.status(`disconnected (${code} ${reason || ""}); reload to retry`, "terminal");
      return;
    }
    // Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): spread a storm.
    const cap = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const delay = Math.random() * cap;
    this.attempt += 1;
    this.status(`reconnecting in ${(delay / 1000).toFixed(1)} s`, "reconnecting");
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  keepAlive(ws) {
    if (Date.now() - this.heardAt < SILENT_MS) return this.send({ type: "ping", id: "p" });
    // A close handshake with a hung peer would wait for it: let go now and reconnect.
    ws.onclose = null;
    ws.close(4000, "gateway silent");
    return this.closed(ws, 4000, "gateway silent");
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ v: V, ...msg }));
  }

  subscribeMatch(resume) {
    const msg = { type: "subscribe", id: "m", channel: `match:${this.matchId}` };
    if (resume && this.match.epoch !== null) msg.since = { epoch: this.match.epoch, seq: this.match.seq };
    this.send(msg);
  }

  // The flags channel (docs/protocol.md): region and platform for the flags' targeting.
  subscribeFlags() {
    if (!this.handlers.onFlags) return;
    this.send({ type: "subscribe", id: "f", channel: "flags", context: this.context || {} });
  }

  subscribeNotes() {
    const msg = { type: "subscribe", id: "n", channel: `notes:${this.matchId}` };
    if (this.notes) msg.since = { epoch: 0, seq: this.notes.seq, k: this.notes.k };
    this.send(msg);
  }

  receive(msg) {
    switch (msg.type) {
      case "subscribed": return this.subscribed(msg);
      case "snapshot": return this.snapshot(msg);
      case "update": return this.update(msg);
      case "note": return this.note(msg);
      case "error": return this.error(msg);
      case "watching": return this.handlers.onWatching?.(msg); // analytics' "N watching"
      case "flags": return this.handlers.onFlags?.(msg);
      default: return undefined; // pong, unsubscribed, and types added later
    }
  }

  subscribed(msg) {
    this.attempt = 0; // a working subscription resets the backoff
    if (msg.session) this.session = msg.session; // heartbeats count for this id only
    if (msg.channel.startsWith("match:")) this.status("live", "live");
    if (msg.channel === "flags") return;
    if (msg.channel.startsWith("notes:") && !this.notes) this.notes = { seq: msg.seq, k: msg.k };
    this.remember({ subscribed: msg.channel, seq: msg.seq, recovered: msg.recovered });
    this.handlers.onSubscribed?.(msg);
  }

  snapshot(msg) {
    this.stats.snapshots += 1;
    this.match = { epoch: msg.epoch, seq: msg.seq, card: msg.card };
    this.remember({ snapshot: msg.seq });
    this.handlers.onCard(msg.card, { seq: msg.seq, ts: msg.ts, epoch: msg.epoch, kind: "snapshot" });
  }

  update(msg) {
    const m = this.match;
    if (m.card === null) return; // before our snapshot: the snapshot will include it
    if (msg.epoch !== m.epoch) return this.resync("epoch changed");
    if (msg.seq <= m.seq) return undefined; // duplicate
    if (msg.prev_seq !== m.seq) {
      this.stats.gaps += 1;
      return this.subscribeMatch(true); // the gateway replays from our position
    }
    let card;
    try {
      card = msg.card ?? applyPatch(m.card, msg.patch);
    } catch (err) {
      if (err instanceof PatchError) return this.resync(err.message);
      throw err;
    }
    this.stats.updates += 1;
    this.match = { epoch: m.epoch, seq: msg.seq, card };
    this.remember({ update: msg.seq, prev: msg.prev_seq });
    this.handlers.onCard(card, { seq: msg.seq, ts: msg.ts, epoch: m.epoch, kind: "update", prev: msg.prev_seq });
  }

  resync(why) {
    console.warn("scorecard resync:", why);
    this.match = { epoch: null, seq: 0, card: this.match.card };
    this.subscribeMatch(false);
  }

  note(msg) {
    const pos = { seq: msg.seq, k: msg.k };
    if (this.notes && (pos.seq < this.notes.seq || (pos.seq === this.notes.seq && pos.k <= this.notes.k))) return;
    this.notes = pos;
    this.stats.notes += 1;
    this.remember({ note: msg.note.id });
    this.handlers.onNote(msg.note);
  }

  error(msg) {
    if (msg.code === "unknown_match" || msg.code === "unavailable") {
      // The match has no scorecard yet (or the feed is down): ask again shortly.
      this.status(msg.code === "unknown_match" ? "waiting for the match to start" : "feed unavailable", "waiting");
      const again = msg.channel?.startsWith("notes:") ? () => this.subscribeNotes() : () => this.subscribeMatch(true);
      setTimeout(again, UNKNOWN_MATCH_RETRY_MS);
    } else {
      console.warn("gateway error", msg);
    }
  }

  remember(entry) {
    this.journal.push(entry);
    if (this.journal.length > 5000) this.journal.shift();
  }

  status(text, state) { this.handlers.onStatus?.(text, state); }
}
