// The live match page: the match list (#/) and a match view (#/match/{id}).
//
// Query parameters: media=<origin of the media worker> (default: this host, port 18081),
// sync=1 to start with "sync with video" on. Everything the browser tests read is on
// window.stumpcast; nothing else depends on it.

import { MatchConnection } from "./connection.js";
import { Heartbeat } from "./heartbeat.js";
import { showMatchList } from "./matches.js";
import { Player } from "./player.js";
import { renderScorecard } from "./scorecard.js";
import { SeekBar } from "./seekbar.js";
import { Reveal } from "./sync.js";
import { toaster } from "./toasts.js";

const params = new URLSearchParams(location.search);
const mediaOrigin = params.get("media") || `${location.protocol}//${location.hostname}:18081`;
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
  const player = new Player($("#video"), new SeekBar($("#seekbar")), `${mediaOrigin}/hls/master.m3u8`);
  const reveal = new Reveal({
    show: (card, meta) => renderScorecard($("#scorecard"), card, meta),
    toast: toaster($("#toasts")),
    playingDate: () => player.playingDate(),
  });
  const conn = new MatchConnection(wsUrl, matchId, {
    onCard: (card, meta) => reveal.offerCard(card, meta),
    onNote: (note) => reveal.offerNote(note),
    onStatus: (text, state) => { $("#status").textContent = text; $("#status").dataset.state = state; },
    onWatching: (w) => { $("#viewers").hidden = false; $("#viewers").textContent = `${w.concurrent.toLocaleString()} watching`; },
  });
  const sync = $("#sync");
  sync.checked = params.get("sync") === "1";
  reveal.setEnabled(sync.checked);
  sync.onchange = () => reveal.setEnabled(sync.checked);
  $("#go-live").onclick = () => player.liveEdge();

  const heartbeat = new Heartbeat(conn, player, matchId, mediaOrigin);

  player.start();
  conn.start();
  heartbeat.start();
  const timer = setInterval(() => frame(player, reveal), 250);
  window.stumpcast = { matchId, conn, player, reveal, mediaOrigin, heartbeat };
  return () => { clearInterval(timer); heartbeat.stop(); conn.stop(); player.hls?.destroy(); };
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
