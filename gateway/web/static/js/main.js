// The live match page: the match list (#/) and a match view (#/match/{id}).
//
// Query parameters: media=<origin of the media worker, or of a caching edge> (default: this
// host, port 18081), sync=1 to start with "sync with video" on, region=<region> (the player's
// region for content steering and its heartbeats; default "unknown"), beat=<seconds between
// heartbeats> (default 10; the steering tests use 2). Everything the browser tests read is on
// window.stumpcast; nothing else depends on it.

import { MatchConnection } from "./connection.js";
import { SnapshotPoller } from "./fallback.js";
import { Flags } from "./flags.js";
import { Heartbeat, INTERVAL_MS } from "./heartbeat.js";
import { showMatchList } from "./matches.js";
import { Player } from "./player.js";
import { renderScorecard } from "./scorecard.js";
import { SeekBar } from "./seekbar.js";
import { Reveal } from "./sync.js";
import { toaster } from "./toasts.js";

const params = new URLSearchParams(location.search);
const mediaOrigin = params.get("media") || `${location.protocol}//${location.hostname}:18081`;
const region = params.get("region");
const platform = params.get("platform") || "web";
const beatMs = Number(params.get("beat")) > 0 ? Number(params.get("beat")) * 1000 : INTERVAL_MS;
const masterUrl = `${mediaOrigin}/hls/master.m3u8${region ? `?region=${encodeURIComponent(region)}` : ""}`;
const FALLBACK_AFTER_MS = 3000;
const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
const $ = (sel) => document.querySelector(sel);

let teardown = () => {};

function route() {
  teardown();
  const m = location.hash.match(/^#\/match\/([A-Za-z0-9_.-]{1,64})$/);
  $("#list-view").hidden = Boolean(m);
  $("#match-view").hidden = !m;
  teardown = m ? openMatch(m[1]) : showMatchList($("#list-view"), (id) => `#/match/${id}`);
}

function openMatch(matchId) {
  $("#match-title").textContent = matchId;
  const player = new Player($("#video"), new SeekBar($("#seekbar")), masterUrl);
  const flags = new Flags(document);
  const toast = toaster($("#toasts"));
  const reveal = new Reveal({
    show: (card, meta) => renderScorecard($("#scorecard"), card, meta),
    // The registry (schemas/features.py): P1 notes are notes_p1, every other one notes_p2.
    toast: (note) => { if (flags.on(note.priority === "P1" ? "notes_p1" : "notes_p2")) toast(note); },
    playingDate: () => player.playingDate(),
  });
  const poller = new SnapshotPoller(matchId, {
    onCard: (card, meta, how) => showSnapshot(card, meta, how),
    // Only while falling back: before a match starts its snapshot is a plain 404.
    onError: (text) => { if (poller.running) { $("#stale").hidden = false; $("#stale").textContent = text; } },
  });
  let notLive = null; // timer: poll the HTTP snapshot once the WebSocket has been down a while
  const onStatus = (text, state) => {
    $("#status").textContent = text;
    $("#status").dataset.state = state;
    if (state === "live") {
      clearTimeout(notLive);
      notLive = null;
      poller.stop();
      $("#stale").hidden = true;
    } else if (notLive === null && !poller.running) {
      notLive = setTimeout(() => poller.start(), FALLBACK_AFTER_MS);
    }
  };
  const showSnapshot = (card, meta, how) => {
    // What the WebSocket already gave is newer (or as new, when the copy is live anyway).
    if (conn.match.card !== null && (meta.seq < conn.match.seq || (meta.seq === conn.match.seq && !how.stale))) return;
    if (!how.stale && reveal.enabled) { reveal.offerCard(card, meta); return; } // no spoilers
    renderScorecard($("#scorecard"), card, meta);
    const badge = $("#stale");
    badge.hidden = !how.stale;
    badge.dataset.cache = how.cache || "";
    const made = how.madeAt ? new Date(how.madeAt).toISOString().slice(11, 19) + " UTC" : "?";
    badge.textContent = `Stale: the last scorecard, as of ${made}; live updates unavailable`;
  };
  const conn = new MatchConnection(wsUrl, matchId, {
    onCard: (card, meta) => reveal.offerCard(card, meta),
    onNote: (note) => reveal.offerNote(note),
    onStatus,
    onWatching: (w) => { $("#viewers").hidden = false; $("#viewers").textContent = `${w.concurrent.toLocaleString()} watching`; },
    onFlags: (msg) => {
      flags.receive(msg);
      if (!flags.on("sync_video") && sync.checked) { sync.checked = false; reveal.setEnabled(false); }
    },
  });
  conn.context = { region: region || "unknown", platform };
  const sync = $("#sync");
  sync.checked = params.get("sync") === "1";
  reveal.setEnabled(sync.checked);
  sync.onchange = () => reveal.setEnabled(sync.checked);
  $("#go-live").onclick = () => player.liveEdge();

  const heartbeat = new Heartbeat(conn, player, matchId, mediaOrigin,
                                  { region: region || "unknown", intervalMs: beatMs });

  player.start();
  conn.start();
  // The snapshot over HTTP first: cacheable at the edges (a join storm stays there), and the
  // edges' copy is what the page falls back on if the gateway goes away.
  poller.poll();
  heartbeat.start();
  const timer = setInterval(() => frame(player, reveal), 250);
  window.stumpcast = { matchId, conn, player, reveal, mediaOrigin, heartbeat, poller, flags };
  return () => {
    clearInterval(timer); clearTimeout(notLive); poller.stop(); heartbeat.stop(); conn.stop();
    player.hls?.destroy();
  };
}

// Four times a second: reveal what the playhead has reached, redraw the seek bar and clock.
function frame(player, reveal) {
  reveal.tick();
  player.bar.draw(player.seekable(), player.video.currentTime, player.markers);
  const date = player.playingDate();
  $("#playhead").textContent = date ? date.toISOString().slice(11, 19) + " UTC" : "–";
  const held = reveal.held();
  $("#held").textContent = reveal.enabled && held.cards ? `${held.cards} update(s) held for the video` : "";
  if (player.error) $("#video-status").textContent = player.error;
}

window.addEventListener("hashchange", route);
route();
