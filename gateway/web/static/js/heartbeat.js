// The player's heartbeat (schemas/heartbeats.py, sent as {"type": "heartbeat"} on the page's
// gateway connection, docs/protocol.md): every INTERVAL_MS, the session, match, CDN, rendition
// bitrate, time spent buffering since the last beat and the playhead's program date time. The
// analytics worker counts concurrent viewers and quality per CDN from these, and the notifier
// uses the playhead to hold spoilers. The gateway stamps the time of receipt.
//
// The CDN is the content-steering pathway the player is on (its current level's PATHWAY-ID,
// which changes when the steering server or hls.js's own failover moves it), or, without
// steering, the host the video comes from; the region is the page's `region` parameter. The
// steering server reads these figures back per region and CDN (media/steering.py).

export const INTERVAL_MS = 10_000;
const FIRST_BEAT_MS = 3_000;

export class Heartbeat {
  constructor(conn, player, matchId, mediaOrigin, { region = "unknown", intervalMs = INTERVAL_MS } = {}) {
    this.conn = conn;
    this.player = player;
    this.matchId = matchId;
    this.region = region;
    this.intervalMs = intervalMs;
    this.host = new URL(mediaOrigin, location.href).host || "origin";
    this.bufferingMs = 0;
    this.waitingSince = null;
    this.started = false;
    const video = player.video;
    // Rebuffering only: the wait before the first frame (joining) and a wait the viewer caused
    // by seeking are not stalls; counting them would make every join look like a bad CDN.
    video.addEventListener("waiting", () => {
      if (this.started && !video.seeking) this.waitingSince ??= performance.now();
    });
    video.addEventListener("playing", () => { this.started = true; this.endWait(); });
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
    this.first = setTimeout(() => this.beat(), Math.min(FIRST_BEAT_MS, this.intervalMs));
    this.timer = setInterval(() => this.beat(), this.intervalMs);
  }

  stop() { clearTimeout(this.first); clearInterval(this.timer); }

  // The pathway of the level being played; "." is hls.js's name for "no steering".
  cdn() {
    const hls = this.player.hls;
    const level = hls && hls.currentLevel >= 0 ? hls.levels[hls.currentLevel] : null;
    const pathway = level?.pathwayId;
    return pathway && pathway !== "." ? pathway : this.host;
  }

  beat() {
    if (this.waitingSince !== null) { this.endWait(); this.waitingSince = performance.now(); }
    const hls = this.player.hls;
    const level = hls && hls.currentLevel >= 0 ? hls.levels[hls.currentLevel] : null;
    const playhead = this.player.playingDate();
    this.conn.send({
      type: "heartbeat",
      beat: {
        session_id: this.sessionId, match_id: this.matchId, region: this.region, cdn: this.cdn(),
        bitrate_kbps: level ? Math.round(level.bitrate / 1000) : 0,
        buffering_ms: Math.round(this.bufferingMs),
        playhead_ms: playhead ? playhead.getTime() : 0, device: "web",
      },
    });
    this.bufferingMs = 0;
  }
}
