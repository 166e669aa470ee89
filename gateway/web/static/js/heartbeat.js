// The player's heartbeat (schemas/heartbeats.py, sent as {"type": "heartbeat"} on the page's
// gateway connection, docs/protocol.md): every INTERVAL_MS, the session, match, CDN, rendition
// bitrate, time spent buffering since the last beat and the playhead's program date time. The
// analytics worker counts concurrent viewers and quality per CDN from these, and the notifier
// uses the playhead to hold spoilers. The gateway stamps the time of receipt.

export const INTERVAL_MS = 10_000;
const FIRST_BEAT_MS = 3_000;

export class Heartbeat {
  constructor(conn, player, matchId, mediaOrigin) {
    this.conn = conn;
    this.player = player;
    this.matchId = matchId;
    this.cdn = new URL(mediaOrigin, location.href).host || "origin";
    this.bufferingMs = 0;
    this.waitingSince = null;
    const video = player.video;
    video.addEventListener("waiting", () => { this.waitingSince ??= performance.now(); });
    video.addEventListener("playing", () => this.endWait());
  }

  // The gateway issues the session id (in its "subscribed" replies) and counts beats for it
  // only, whatever a beat says, so one page cannot beat for another viewer.
  get sessionId() { return this.conn.session || "pending"; }

  endWait() {
    if (this.waitingSince !== null) this.bufferingMs += performance.now() - this.waitingSince;
    this.waitingSince = null;
  }

  start() {
    // A first beat soon after the start (once the connection is up), then every interval.
    this.first = setTimeout(() => this.beat(), FIRST_BEAT_MS);
    this.timer = setInterval(() => this.beat(), INTERVAL_MS);
  }

  stop() { clearTimeout(this.first); clearInterval(this.timer); }

  beat() {
    if (this.waitingSince !== null) { this.endWait(); this.waitingSince = performance.now(); }
    const hls = this.player.hls;
    const level = hls && hls.currentLevel >= 0 ? hls.levels[hls.currentLevel] : null;
    const playhead = this.player.playingDate();
    this.conn.send({
      type: "heartbeat",
      beat: {
        session_id: this.sessionId, match_id: this.matchId, region: "unknown", cdn: this.cdn,
        bitrate_kbps: level ? Math.round(level.bitrate / 1000) : 0,
        buffering_ms: Math.round(this.bufferingMs),
        playhead_ms: playhead ? playhead.getTime() : 0, device: "web",
      },
    });
    this.bufferingMs = 0;
  }
}
