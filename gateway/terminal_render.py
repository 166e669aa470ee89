"""The terminal scorecard of ``stumpcast watch``, as pure functions: document -> lines.

No I/O here: ``gateway.terminal`` is the shell that draws these lines (in place on a terminal, as
plain blocks or progress lines otherwise). The input is the scorecard document
(``schemas.scorecard.Scorecard.to_json()``, the ``card`` of the gateway's ``match:`` channel);
the fields shown are those of the live page (``gateway/web/static/js/scorecard.js``): the score
with overs and run rate, the chase, the batters at the crease, the current bowler, this over,
the partnership, the fall of wickets and the result. Every line fits ``width`` columns.
Missing fields are shown as absent, never raised on: a viewer must not crash on a newer card.
"""

from __future__ import annotations

from typing import Any

from schemas.scorecard import CREDIT

WIDTH = 80
NAME_W = 28  # "Batter"/"Bowler" column: long names are cut, the numbers always fit
Doc = dict[str, Any]


def _rate(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{float(value):.{digits}f}"


def clip(line: str, width: int = WIDTH) -> str:
    return line if len(line) <= width else line[:width - 1] + "…"


def current_innings(card: Doc) -> Doc | None:
    innings = card.get("innings") or []
    return innings[-1] if innings else None


def _team(inn: Doc) -> str:
    return f"{inn.get('batting_team', '?')}{' (super over)' if inn.get('super_over') else ''}"


def innings_summary(inn: Doc) -> str:
    """``Gujarat Titans 214/4 (20.0 ov)``: one innings, as in the page's innings list."""
    return f"{_team(inn)} {inn.get('runs', 0)}/{inn.get('wickets', 0)} ({inn.get('overs')} ov)"


def score_line(inn: Doc) -> str:
    """``Chennai Super Kings 149/4 (12.4 ov)  RR 11.76``."""
    return f"{innings_summary(inn)}  RR {_rate(inn.get('run_rate'))}"


def chasing(inn: Doc) -> bool:
    return inn.get("target") is not None and not inn.get("ended")


def need_text(inn: Doc) -> str:
    """``need 22 from 14 balls`` (``need 22`` without a ball limit, as in a Test)."""
    need = max(int(inn["target"]) - int(inn.get("runs", 0)), 0)
    balls = inn.get("target_balls")
    if not balls:
        return f"need {need}"
    return f"need {need} from {max(int(balls) - int(inn.get('legal_balls', 0)), 0)} balls"


def chase_line(inn: Doc) -> str | None:
    """``Target 171 (revised) · need 22 from 14 balls · RRR 9.43`` while chasing; the reason
    once the innings has ended; None otherwise."""
    if chasing(inn):
        revised = " (revised)" if inn.get("target_revised") else ""
        rrr = inn.get("required_rate")
        tail = "" if rrr is None else f" · RRR {_rate(rrr)}"
        return f"Target {inn['target']}{revised} · {need_text(inn)}{tail}"
    if inn.get("ended") and inn.get("end_reason"):
        return f"Innings ended: {str(inn['end_reason']).replace('_', ' ')}"
    return None


def _by_name(rows: Any, name: str) -> Doc:
    return next((r for r in rows or [] if r.get("name") == name), {"name": name})


def crease(inn: Doc) -> list[tuple[Doc, bool]]:
    """(batting row, on strike) for the batters at the crease, striker first; once the innings
    is over, the batters left not out."""
    names = list(inn.get("batters_in") or [])
    if names:
        return [(_by_name(inn.get("batting"), n), i == 0) for i, n in enumerate(names)]
    if inn.get("ended"):
        return [(b, False) for b in inn.get("batting") or [] if not b.get("out")]
    return []


def batter_row(row: Doc, striker: bool) -> str:
    # The fold keeps a batter dismissed by the last ball at the crease until the next one
    # comes in: say so rather than mark him on strike.
    mark = " (out)" if row.get("out") else (" *" if striker else "")
    name = clip(str(row.get("name", "?")), NAME_W - 1 - len(mark)) + mark
    return (f"{name:<{NAME_W}}{row.get('runs', 0):>5}{row.get('balls', 0):>5}"
            f"{row.get('fours', 0):>5}{row.get('sixes', 0):>5}"
            f"{_rate(row.get('strike_rate'), 1):>8}")


def batting_lines(inn: Doc) -> list[str]:
    rows = crease(inn)
    if not rows:
        return []
    head = f"{'Batter':<{NAME_W}}{'R':>5}{'B':>5}{'4s':>5}{'6s':>5}{'SR':>8}"
    return [head, *(batter_row(row, striker) for row, striker in rows)]


def bowling_lines(inn: Doc) -> list[str]:
    """The current bowler's figures (O M R W Econ); nothing once the innings is over."""
    name = inn.get("bowler")
    if not name:
        return []
    b = _by_name(inn.get("bowling"), name)
    head = f"{'Bowler':<{NAME_W}}{'O':>6}{'M':>4}{'R':>5}{'W':>4}{'Econ':>8}"
    row = (f"{clip(name, NAME_W - 1):<{NAME_W}}{b.get('overs', '0.0'):>6}"
           f"{b.get('maidens', 0):>4}{b.get('runs', 0):>5}{b.get('wickets', 0):>4}"
           f"{_rate(b.get('economy')):>8}")
    return [head, row]


def wrap_items(label: str, items: list[str], width: int = WIDTH) -> list[str]:
    """``label`` then the items, separated by ", " and wrapped between items (an item is only
    cut if it alone is wider than a line); continuation lines are indented under the first."""
    pieces = [item + ("," if i < len(items) - 1 else "") for i, item in enumerate(items)]
    lines: list[str] = []
    line: list[str] = []
    prefix = label
    for piece in pieces:
        if line and len(prefix + " ".join([*line, piece])) > width:
            lines.append(prefix + " ".join(line))
            prefix, line = " " * len(label), []
        line.append(piece)
    lines.append(prefix + " ".join(line))
    return [clip(x, width) for x in lines]


def fall_of_wickets(inn: Doc, width: int = WIDTH) -> list[str]:
    fow = inn.get("fall_of_wickets") or []
    items = [f"{f.get('wicket')}-{f.get('runs')} ({f.get('player')}, {f.get('overs')} ov)"
             for f in fow]
    return wrap_items("FoW ", items, width) if items else []


def detail_lines(inn: Doc, width: int = WIDTH) -> list[str]:
    """This over, the partnership, the fall of wickets."""
    out = []
    balls = inn.get("this_over") or []
    if balls and not inn.get("ended"):
        out.append(clip("This over  " + " ".join(str(b) for b in balls), width))
    p = inn.get("partnership")
    if p and not inn.get("ended"):
        who = " & ".join(p.get("batters") or [])
        out.append(clip(f"Partnership {p.get('runs', 0)} ({p.get('balls', 0)})  {who}", width))
    return out + fall_of_wickets(inn, width)


def header_lines(card: Doc, width: int = WIDTH) -> list[str]:
    teams = " v ".join(card.get("teams") or []) or str(card.get("match_id", "match"))
    where = " · ".join(str(x) for x in (card.get("competition"), card.get("venue")) if x)
    return [clip(x, width) for x in (teams, where) if x]


def card_lines(card: Doc, width: int = WIDTH) -> list[str]:
    """The whole terminal scorecard, top to bottom; no line wider than ``width``."""
    out = header_lines(card, width)
    innings = card.get("innings") or []
    out += [clip(innings_summary(i), width) for i in innings[:-1]]
    inn = current_innings(card)
    if inn is None:
        toss = [clip(card["toss"], width)] if card.get("toss") else []
        return [*out, *toss, "Waiting for the first ball"]
    out.append(clip(score_line(inn), width))
    chase = chase_line(inn)
    out += [clip(chase, width)] if chase else []
    result = card.get("result")
    out += [clip(f"Result: {result.get('text', '')}", width)] if result else []
    for block in (batting_lines(inn), bowling_lines(inn), detail_lines(inn, width)):
        out += ["", *(clip(x, width) for x in block)] if block else []
    return out


def note_line(note: Doc | None, width: int = WIDTH) -> str:
    if not note:
        return ""
    return clip(f"Latest: {note.get('over', '')} {note.get('text', '')}".replace("  ", " "),
                width)


def screen_lines(card: Doc | None, status: str, note: Doc | None = None, width: int = WIDTH,
                 height: int = 24, credit: str | None = None) -> list[str]:
    """Exactly ``height`` lines for a full-screen redraw: the card at the top (cut if the
    screen is short), then the latest notification, the status and the data's credit at the
    bottom."""
    width = max(width, 20)
    foot = [note_line(note, width), clip(status, width),
            clip(credit or (card or {}).get("credit") or CREDIT, width)]
    body = card_lines(card, width) if card else ["Waiting for the scorecard ..."]
    room = max(height - len(foot), 0)
    body = body[:room] + [""] * (room - min(len(body), room))
    return (body + foot)[-height:] if height > 0 else []


def progress_line(inn: Doc) -> str:
    """The score line, with what is needed while chasing (the demo's progress lines)."""
    return score_line(inn) + (f"  {need_text(inn)}" if chasing(inn) else "")


def _wicket_text(inn: Doc, fow: Doc) -> str:
    row = _by_name(inn.get("batting"), str(fow.get("player")))
    how = row.get("dismissal") or "out"
    return f"W {fow.get('player')} {how} {row.get('runs', 0)} ({row.get('balls', 0)})"


def _milestones(prev: Doc, inn: Doc) -> list[str]:
    before = {b.get("name"): b.get("runs", 0) for b in prev.get("batting") or []}
    out = []
    for b in inn.get("batting") or []:
        for mark, word in ((100, "hundred"), (50, "fifty")):
            if before.get(b.get("name"), 0) < mark <= b.get("runs", 0):
                out.append(f"{word} for {b.get('name')} {b.get('runs')} ({b.get('balls')})")
                break
    return out


def _revised(prev: Doc, inn: Doc) -> list[str]:
    """A target changed during the innings (rain: DLS)."""
    target, balls = inn.get("target"), inn.get("target_balls")
    if prev.get("target") is None or (target, balls) == (prev["target"], prev.get("target_balls")):
        return []
    return [f"target revised: {target}" + (f" from {balls} balls" if balls else "")]


def _happenings(prev: Doc | None, inn: Doc) -> list[str]:
    out = [] if prev else [f"innings {inn.get('number', '?')} started"]
    prev = prev or {}
    fow_before = len(prev.get("fall_of_wickets") or [])
    out += [_wicket_text(inn, f) for f in (inn.get("fall_of_wickets") or [])[fow_before:]]
    out += _milestones(prev, inn)
    out += _revised(prev, inn)
    overs = int(inn.get("legal_balls", 0)) // 6
    if overs > int(prev.get("legal_balls", 0)) // 6:
        out.append(f"end of over {overs}")
    if inn.get("ended") and not prev.get("ended"):
        out.append(chase_line(inn) or "innings ended")
    return out


def progress_lines(prev: Doc | None, card: Doc) -> list[str]:
    """Plain lines for what changed from ``prev`` to ``card``: the score when first seen, then
    a line per update that starts an innings, takes a wicket, brings a fifty or a hundred,
    revises the target, completes an over or ends an innings, and the result when it is new or
    changes. Works across skipped cards (one update may stand for several balls: the gateway
    conflates)."""
    innings = card.get("innings") or []
    out = []
    if prev is None:
        out += [progress_line(innings[-1])] if innings else []
    else:
        before = {i.get("number"): i for i in prev.get("innings") or []}
        for inn in innings:
            old = before.get(inn.get("number"))
            what = _happenings(old, inn) if old != inn else []
            out += ["  ".join([progress_line(inn), *what])] if what else []
    text = (card.get("result") or {}).get("text")
    if text and text != ((prev or {}).get("result") or {}).get("text"):
        out.append(f"Result: {text}")  # a tie, then the super over's result
    return out
