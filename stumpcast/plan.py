"""``stumpcast plan``: the fleet to prescale before a match, with its arithmetic shown.

Both platforms prescale on ladders keyed to expected concurrency and never autoscale during a
match (industry.md §0, §8: Hotstar "no auto-scaling, headroom", 3x peak; JioCinema pre-scales
its databases, ~45 min to add 5 DB instances; ladders applied at T-60 min, §9.8). So the plan
takes the expected peak, multiplies by the headroom (default 3x: "prepare for 3x peak", §1c),
rounds up to a ladder rung, and sizes each service from per-process figures measured on this
code and recorded in BENCHMARKS.md (the newest run of each). A figure not yet recorded is
replaced by a labelled assumption with its source, and the output says so.

Parsing and arithmetic are pure (``parse``, ``figures``, ``plan``); ``plan_text`` reads the file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LADDER = (1_000_000, 5_000_000, 10_000_000, 25_000_000, 50_000_000, 75_000_000, 100_000_000,
          150_000_000, 200_000_000, 300_000_000)   # §9.8's 5M/10M/25M/50M, extended


@dataclass(frozen=True)
class Section:
    title: str
    stamp: str
    rows: dict[str, str]


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    source: str
    measured: bool


def parse(text: str) -> list[Section]:
    """Every ``### title — stamp`` section of BENCHMARKS.md with its table rows, oldest first."""
    out: list[Section] = []
    for chunk in re.split(r"^### ", text, flags=re.M)[1:]:
        head, _, body = chunk.partition("\n")
        title, _, stamp = head.partition(" — ")
        rows = {}
        for line in body.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("|") and len(cells) >= 2 and cells[0] not in ("figure", "---"):
                rows[cells[0]] = cells[1]
        out.append(Section(title.strip(), stamp.strip(), rows))
    return out


def number(text: str) -> float | None:
    m = re.search(r"(-?\d[\d,]*\.?\d*)\s*([kKM]?)", text)
    if not m:
        return None
    scale = {"k": 1e3, "K": 1e3, "M": 1e6}.get(m.group(2), 1.0)
    return float(m.group(1).replace(",", "")) * scale


@dataclass(frozen=True)
class Lookup:
    name: str
    section: str                 # regex on the section title
    row: str                     # regex on the row name
    assumption: float
    why: str                     # the assumption's source
    derive: Callable[[Section, float], float] = lambda _s, v: v


def _per_worker(section: Section, value: float) -> float:
    m = re.search(r"(\d+) workers", section.title)
    return value / int(m.group(1)) if m else value


LOOKUPS = (
    Lookup("gateway connections per process", r"^gateway fanout", r"^connections held$",
           20_000, "5K-30K connections per tuned WebSocket node (industry.md §6, tier C)",
           _per_worker),
    Lookup("gateway deliveries/s per process", r"^gateway fanout", r"^burst hub: updates delivered",
           20_000, "1 msg/s to each of 20K sockets (Hotstar PubSub ~1 msg/s, industry.md §6)",
           _per_worker),
    Lookup("streams events/s per worker", r"^streams:", r"^throughput, worker",
           1_000, "conservative guess for a faust worker (infra.md §3: 'tens of thousands')"),
    Lookup("heartbeats/s per analytics worker", r"^analytics: heartbeats", r"^worker \(exact\)"
           r": heartbeats/s", 50_000, "the issue's target per worker (issue 7)"),
)


def figures(sections: list[Section]) -> dict[str, Figure]:
    out = {}
    for lk in LOOKUPS:
        found = None
        for s in reversed(sections):   # newest first
            if re.search(lk.section, s.title):
                row = next((v for k, v in s.rows.items() if re.search(lk.row, k)), None)
                if row is not None and (v := number(row)) is not None and v > 0:
                    found = Figure(lk.name, lk.derive(s, v),
                                   f"BENCHMARKS.md '{s.title}' ({s.stamp})", True)
                    break
        out[lk.name] = found or Figure(lk.name, lk.assumption,
                                       f"NOT YET MEASURED - assumption: {lk.why}", False)
    return out


# Assumptions that no benchmark here measures; each cites where it comes from.
HEARTBEAT_INTERVAL_S = 10             # issue 7 default; Pulse used ~1/min (industry.md §7)
HEARTBEAT_BYTES = 250                 # an encoded Heartbeat with a UUID session: 247 B
UPDATE_BYTES = 1_000                  # score update payload <= 1 KB (industry.md §9.2)
UPDATES_PER_S = 1.0                   # 1 msg/s per match topic (Hotstar PubSub, §6, §9.2)
VIDEO_MBPS_PER_VIEWER = 0.55          # 5.7 Tbps at 10.3M viewers (Hotstar 2018 slides, §1c, A)
PARTITION_MSGS_PER_S = 50_000         # keep each heartbeat partition <= ~13 MB/s (assumption)
REDIS_ELEMENTS_PER_S = 500_000        # SADD members/s per shard, pipelined (assumption, measure)
ARRIVALS_PER_S = 5_000_000 / 30       # 50 lakh joined in 20-30 s (Akamai, industry.md §1c)
REDIS_GB_PER_SHARD = 25.0             # usable memory per shard (assumption)
SET_BYTES_PER_SESSION = 80            # Redis set member overhead, exact views (assumption)


@dataclass(frozen=True)
class Line:
    what: str
    count: float
    arithmetic: str


def rung(n: float) -> int:
    return next((r for r in LADDER if r >= n), int(math.ceil(n / 1e8) * 1e8))


def plan(viewers: int, matches: int, figs: dict[str, Figure], headroom: float = 3.0,
         interval_s: int = HEARTBEAT_INTERVAL_S) -> list[Line]:
    design = rung(viewers * headroom)
    conns, deliv = (figs["gateway connections per process"].value,
                    figs["gateway deliveries/s per process"].value)
    hb_worker = figs["heartbeats/s per analytics worker"].value
    streams = figs["streams events/s per worker"].value
    hb_rate = design / interval_s
    gw = max(math.ceil(design / conns), math.ceil(design * UPDATES_PER_S / deliv))
    analytics = math.ceil(hb_rate / hb_worker)
    hb_parts = max(analytics, math.ceil(hb_rate / PARTITION_MSGS_PER_S))
    views_gb = design * SET_BYTES_PER_SESSION / 1e9
    arrivals = ARRIVALS_PER_S * headroom   # exact views SADD arrivals only, not every beat
    redis = max(1, math.ceil(arrivals / REDIS_ELEMENTS_PER_S),
                math.ceil(views_gb / REDIS_GB_PER_SHARD))
    return [
        Line("design load", design, f"{viewers:,} expected x {headroom:g} headroom = "
             f"{viewers * headroom:,.0f} -> ladder rung {design:,}"),
        Line("gateway processes", gw, f"max(ceil({design:,} / {conns:,.0f} conns), "
             f"ceil({design:,} x {UPDATES_PER_S:g} msg/s / {deliv:,.0f} deliveries/s))"),
        Line("analytics workers", analytics, f"ceil({design:,} / {interval_s} s = "
             f"{hb_rate:,.0f} heartbeats/s / {hb_worker:,.0f} per worker)"),
        Line("viewer.heartbeats partitions", hb_parts, f"max({analytics} workers, ceil("
             f"{hb_rate:,.0f} / {PARTITION_MSGS_PER_S:,} msgs/s per partition))"),
        Line("match.events partitions", max(8, matches), f"max(8 as in schemas/topology, "
             f"{matches} matches: one match = one partition, in order)"),
        Line("streams workers", max(2, math.ceil(matches * 2 / streams)),
             f"max(2 for failover, ceil({matches} matches x 2 events/s burst / {streams:,.0f}))"),
        Line("notifier processes", 2, "2 for failover; the push providers' quotas bound sends "
             "(FCM 600K/min default, industry.md §5), not this process"),
        Line("Redis shards (primaries)", redis, f"max(1, ceil({arrivals:,.0f} arrivals/s SADD / "
             f"{REDIS_ELEMENTS_PER_S:,}), ceil({views_gb:,.1f} GB exact views / "
             f"{REDIS_GB_PER_SHARD:g} GB)), each with a replica; hll views: 12 KB per match"),
        Line("video egress, Tbps (CDN)", design * VIDEO_MBPS_PER_VIEWER / 1e6,
             f"{design:,} x {VIDEO_MBPS_PER_VIEWER} Mbps (5.7 Tbps / 10.3M, Hotstar 2018)"),
        Line("WebSocket egress, Gbps (gateways)", design * UPDATE_BYTES * 8 * UPDATES_PER_S / 1e9,
             f"{design:,} x {UPDATE_BYTES} B x 8 x {UPDATES_PER_S:g}/s"),
        Line("heartbeat ingest, Gbps", hb_rate * HEARTBEAT_BYTES * 8 / 1e9,
             f"{hb_rate:,.0f}/s x {HEARTBEAT_BYTES} B x 8"),
    ]


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 or x == int(x) else f"{x:,.2f}"


def ladder(viewers: int, matches: int, figs: dict[str, Figure], headroom: float,
           interval_s: int = HEARTBEAT_INTERVAL_S) -> list[tuple[int, list[Line]]]:
    """Fleet at each rung up to the design load: step up at T-60 min, down in the same steps."""
    top = rung(viewers * headroom)
    return [(r, plan(r, matches, figs, 1.0, interval_s)) for r in LADDER if r <= top]


def plan_text(viewers: int, matches: int, benchmarks: Path, headroom: float = 3.0,
              interval_s: int = HEARTBEAT_INTERVAL_S) -> str:
    text = benchmarks.read_text() if benchmarks.exists() else ""
    figs = figures(parse(text))
    out = [f"Prescale plan: {viewers:,} peak concurrent viewers, {matches} live matches, "
           f"{headroom:g}x headroom", "", "Per-process figures:"]
    for f in figs.values():
        out.append(f"  {f.name}: {f.value:,.0f}  [{f.source}]")
    out += ["", "Fleet at the design load:"]
    for line in plan(viewers, matches, figs, headroom, interval_s):
        out.append(f"  {line.what:36} {_fmt(line.count):>12}   = {line.arithmetic}")
    out += ["", "Ladder (apply the rung at T-60 min; no scale-down until the match ends, then "
            "step down rung by rung; industry.md §8, §9.8):",
            "  rung         gateways  analytics  hb-parts  redis  video Tbps"]
    for r, lines in ladder(viewers, matches, figs, headroom, interval_s):
        v = {ln.what: ln.count for ln in lines}
        out.append(f"  {r:>11,}  {v['gateway processes']:>8,.0f}  "
                   f"{v['analytics workers']:>9,.0f}  {v['viewer.heartbeats partitions']:>8,.0f}"
                   f"  {v['Redis shards (primaries)']:>5,.0f}  "
                   f"{v['video egress, Tbps (CDN)']:>10.2f}")
    missing = [f.name for f in figs.values() if not f.measured]
    if missing:
        out += ["", "Not yet measured here (assumptions used above): " + ", ".join(missing) +
                ". Run the matching `stumpcast bench ...` to replace them."]
    return "\n".join(out)
