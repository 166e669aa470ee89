// "Sync with video": hold each scorecard state and notification until the video's playhead
// reaches the instant of its ball, so the page never tells the viewer what they have not seen.
//
// The instant of an update is its `ts` (the ball's UTC instant, schemas/view.py); the
// playhead's instant is hls.js's `playingDate` (the EXT-X-PROGRAM-DATE-TIME timeline, which the
// media worker anchors to the capture clock). Both are on the same clock, so the comparison is
// direct. With sync off, everything is shown as it arrives.

export class Reveal {
  // show(card, meta) and toast(note) draw; playingDate() is the playhead's Date or null.
  constructor({ show, toast, playingDate }) {
    Object.assign(this, { show, toast, playingDate });
    this.enabled = false;
    this.cards = []; // [{card, meta, at}] oldest first
    this.notes = []; // [{note, at}]
    this.log = []; // what was revealed when, for the browser tests
  }

  setEnabled(on) {
    this.enabled = on;
    this.tick();
  }

  offerCard(card, meta) {
    this.cards.push({ card, meta, at: Date.parse(meta.ts), received: Date.now() });
    this.tick();
  }

  offerNote(note) {
    this.notes.push({ note, at: Date.parse(note.ts), received: Date.now() });
    this.tick();
  }

  // The instant up to which things may be shown: +Infinity when not syncing.
  horizon() {
    if (!this.enabled) return Infinity;
    const date = this.playingDate();
    return date ? date.getTime() : -Infinity;
  }

  held() { return { cards: this.cards.length, notes: this.notes.length }; }

  tick() {
    const until = this.horizon();
    let last = null;
    while (this.cards.length && this.cards[0].at <= until) last = this.cards.shift();
    if (last) {
      this.record(last, until);
      this.show(last.card, last.meta);
    }
    while (this.notes.length && this.notes[0].at <= until) this.toast(this.notes.shift().note);
  }

  record(item, until) {
    this.log.push({ seq: item.meta.seq, ts: item.at, received: item.received, shown: Date.now(),
                    playhead: Number.isFinite(until) ? until : null });
    if (this.log.length > 2000) this.log.shift();
  }
}
