"""The live page's connection (gateway/web/static/js/connection.js) leaves a gateway node that
has gone silent and resumes elsewhere by position. The load balancer keeps a tunnel open to a
node that fails its health checks (it only stops sending it new clients), so a paused node's
viewers would otherwise wait for ever. Run under Node with a fake WebSocket and a fake clock."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.tools import require_tool

JS = Path(__file__).resolve().parents[2] / "gateway" / "web" / "static" / "js"

DRIVER = """
import { MatchConnection } from "./connection.js";

let now = 0;
Date.now = () => now;
const timers = [];
globalThis.setInterval = (fn) => timers.push(fn);
globalThis.clearInterval = (id) => { if (id) timers[id - 1] = null; };
const later = [];
globalThis.setTimeout = (fn) => later.push(fn);
globalThis.clearTimeout = () => {};
const sockets = [];
globalThis.WebSocket = class {
  static OPEN = 1;
  constructor(url) {
    Object.assign(this, { url, readyState: 1, sent: [], closedWith: null });
    sockets.push(this);
  }
  send(data) { this.sent.push(JSON.parse(data)); }
  close(code, reason) { this.closedWith = [code, reason]; }
};
const tick = (t) => { now = t; timers.forEach((fn) => fn && fn()); };
const hear = (ws, msg) => ws.onmessage({ data: JSON.stringify({ v: 1, ...msg }) });

const handlers = { onCard() {}, onNote() {}, onStatus() {} };
const conn = new MatchConnection("ws://lb/ws", "m1", handlers);
conn.start();
const first = sockets[0];
first.onopen();
hear(first, { type: "snapshot", channel: "match:m1", match_id: "m1", epoch: 3, seq: 41,
              ts: "t", card: {} });
tick(15000);
hear(first, { type: "pong", id: "p" });            // answered: still alive
tick(30000);
tick(44000);                                       // 29 s of silence: not yet
const before = { closed: first.closedWith, sockets: sockets.length };
tick(46000);                                       // 31 s: the node is hung
const pings = first.sent.filter((m) => m.type === "ping").length;
const after = { closed: first.closedWith, pings };
later.splice(0).forEach((fn) => fn());             // the backoff elapses: a new connection
sockets[sockets.length - 1].onopen();
const resume = sockets[sockets.length - 1].sent.find((m) => m.channel === "match:m1");
console.log(JSON.stringify({ before, after, sockets: sockets.length, resume }));
"""


def test_the_page_leaves_a_silent_gateway_and_resumes_by_position(tmp_path: Path) -> None:
    node = require_tool("node", "make system-deps installs nodejs")
    for name in ("connection.js", "patch.js"):
        shutil.copy(JS / name, tmp_path / name)
    (tmp_path / "package.json").write_text('{"type": "module"}')
    (tmp_path / "driver.js").write_text(DRIVER)
    done = subprocess.run([node, "driver.js"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["before"] == {"closed": None, "sockets": 1}
    assert out["after"] == {"closed": [4000, "gateway silent"], "pings": 3}
    assert out["sockets"] == 2
    assert out["resume"]["since"] == {"epoch": 3, "seq": 41}
