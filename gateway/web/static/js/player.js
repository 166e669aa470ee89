// The live HLS player (hls.js) and its seek bar with ball markers.
//
// Markers come from the playlist's EXT-X-DATERANGE tags (media/markers.py): CLASS
// com.stumpcast.cricket.ball for a ball worth a marker, com.stumpcast.cricket.retraction for a
// marker a correction voided. hls.js parses them into `levels[i].details.dateRanges`, each with
// `startTime` on the video element's timeline (hls.js docs: prefer details.dateRanges to the
// metadata TextTrack). Clicking a marker seeks there.

import Hls from "/vendor/hls.mjs";

const BALL = "com.stumpcast.cricket.ball";
const RETRACTION = "com.stumpcast.cricket.retraction";
const MARKED = new Set(["wicket", "four", "six", "fifty", "hundred", "five_wickets", "hat_trick", "innings_end"]);

export class Player {
  constructor(video, bar, src) {
    Object.assign(this, { video, bar, src });
    this.markers = new Map(); // id -> {id, kind, over, text, startTime, startDate}
    this.hls = null;
    this.error = null;
  }

  start() {
    if (!Hls.isSupported()) {
      this.error = "this browser cannot play HLS with Media Source Extensions";
      return;
    }
    // Low-latency mode: on an LL-HLS playlist (parts, CAN-BLOCK-RELOAD) hls.js loads parts,
    // holds blocking reloads and plays PART-HOLD-BACK behind the edge; on a regular playlist it
    // changes nothing (HOLD-BACK, 3 target durations). A player that fell behind (a stall)
    // catches up at up to 1.1x speed instead of staying late (hls.js maxLiveSyncPlaybackRate,
    // default 1: no catch-up; edge.md §3.5). After each stall hls.js moves its target back by
    // liveSyncOnStallIncrease, up to one target duration, for the rest of the session (hls.js
    // 1.7 latency-controller: PART-HOLD-BACK + min(stalls x increase, TD)); one LL part (0.4 s)
    // rather than the default 1 s, so a stall or two on a busy machine does not leave a
    // low-latency viewer 2 s further behind for good.
    this.hls = new Hls({ enableWorker: true, lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.1,
                         liveSyncOnStallIncrease: 0.4 });
    this.hls.on(Hls.Events.LEVEL_UPDATED, (_e, data) => this.readMarkers(data.details));
    this.hls.on(Hls.Events.ERROR, (_e, data) => {
      if (!data.fatal) return;
      this.error = `${data.type}: ${data.details}`;
      // A live origin that restarts or is not up yet: retry rather than give up.
      setTimeout(() => (data.type === Hls.ErrorTypes.MEDIA_ERROR
        ? this.hls.recoverMediaError() : this.hls.startLoad()), 2000);
    });
    this.hls.loadSource(this.src);
    this.hls.attachMedia(this.video);
    this.video.muted = true; // autoplay policies allow muted playback
    this.hls.on(Hls.Events.MANIFEST_PARSED, () => this.video.play().catch(() => {}));
    this.bar.onSeek = (t) => { this.video.currentTime = t; };
  }

  // The instant at the playhead (EXT-X-PROGRAM-DATE-TIME timeline), or null before playback.
  playingDate() {
    return this.hls ? this.hls.playingDate : null;
  }

  liveEdge() { this.video.currentTime = this.hls?.liveSyncPosition ?? this.video.currentTime; }

  readMarkers(details) {
    const ranges = Object.values(details?.dateRanges ?? {}).filter((r) => r && r.isValid !== false);
    for (const r of ranges) {
      const kind = r.attr["X-COM-STUMPCAST-KIND"];
      if (r.class === RETRACTION) {
        this.markers.delete(r.attr["X-COM-STUMPCAST-RETRACTS"]);
      } else if (r.class === BALL && MARKED.has(kind) && !this.markers.has(r.id)) {
        this.markers.set(r.id, { id: r.id, kind, over: r.attr["X-COM-STUMPCAST-OVER"],
                                 text: r.attr["X-COM-STUMPCAST-TEXT"], startTime: r.startTime,
                                 startDate: r.startDate.getTime() });
      }
    }
    // startTime moves with the window's mapping; keep it fresh.
    for (const r of ranges) if (this.markers.has(r.id)) this.markers.get(r.id).startTime = r.startTime;
  }

  seekable() {
    const s = this.video.seekable;
    return s.length ? { start: s.start(0), end: s.end(s.length - 1) } : null;
  }
}
