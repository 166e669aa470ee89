// The seek bar: the seekable window of the live stream, the playhead, and a button per marker.
// Wickets are red, boundaries blue, milestones gold (classes in app.css).

export class SeekBar {
  constructor(root) {
    this.root = root;
    this.track = root.querySelector(".track");
    this.fill = root.querySelector(".fill");
    this.layer = root.querySelector(".markers");
    this.buttons = new Map();
    this.onSeek = () => {};
    this.track.addEventListener("click", (ev) => {
      if (!this.window) return;
      const box = this.track.getBoundingClientRect();
      const f = (ev.clientX - box.left) / box.width;
      this.onSeek(this.window.start + f * (this.window.end - this.window.start));
    });
  }

  draw(window, currentTime, markers) {
    this.window = window;
    if (!window || window.end <= window.start) return;
    const span = window.end - window.start;
    const at = (t) => `${Math.min(100, Math.max(0, ((t - window.start) / span) * 100))}%`;
    this.fill.style.width = at(currentTime);
    for (const m of markers.values()) this.place(m, at, window);
    for (const [id, button] of this.buttons) {
      if (!markers.has(id)) { button.remove(); this.buttons.delete(id); }
    }
  }

  place(m, at, window) {
    let b = this.buttons.get(m.id);
    if (!b) {
      b = document.createElement("button");
      b.className = `marker marker-${m.kind}`;
      b.title = `${m.over} ov: ${m.text}`;
      b.setAttribute("aria-label", b.title);
      b.dataset.id = m.id;
      b.dataset.kind = m.kind;
      b.addEventListener("click", (ev) => { ev.stopPropagation(); this.onSeek(m.startTime); });
      this.layer.append(b);
      this.buttons.set(m.id, b);
    }
    b.dataset.startTime = m.startTime;
    b.hidden = m.startTime < window.start || m.startTime > window.end;
    b.style.left = at(m.startTime);
  }
}
