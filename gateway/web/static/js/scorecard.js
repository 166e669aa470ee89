// Draw the scorecard document (schemas/scorecard.py, Scorecard.to_json) into the page.

import { h } from "./dom.js";

const num = (v, digits = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

export function renderScorecard(root, card, meta) {
  const innings = card.innings ?? [];
  const current = innings[innings.length - 1];
  const parts = [
    header(card),
    h("ol", { class: "innings-list" }, innings.map(inningsLine)),
    current ? live(current) : h("p", { class: "muted" }, "Waiting for the first ball"),
    card.result ? h("p", { class: "result", id: "result" }, card.result.text) : null,
    current ? batting(current) : null,
    current ? bowling(current) : null,
    h("p", { class: "credit" }, card.credit ?? "Match data: Cricsheet (cricsheet.org), ODC-BY 1.0"),
  ];
  root.replaceChildren(...parts.filter(Boolean));
  root.dataset.seq = meta.seq;
  root.dataset.ts = meta.ts;
}

function header(card) {
  return h("header", { class: "card-head" },
    h("h2", {}, (card.teams ?? []).join(" v ")),
    h("p", { class: "muted" }, [card.competition, card.venue].filter(Boolean).join(" · ")),
    card.toss ? h("p", { class: "muted" }, card.toss) : null);
}

function inningsLine(inn) {
  const so = inn.super_over ? " (super over)" : "";
  return h("li", { dataset: { innings: inn.number } },
    h("span", { class: "team" }, `${inn.batting_team}${so}`),
    h("span", { class: "score" }, `${inn.runs}/${inn.wickets}`),
    h("span", { class: "muted" }, ` (${inn.overs} ov)`));
}

function live(inn) {
  const need = inn.target !== null && !inn.ended
    ? h("p", { class: "need" }, `Target ${inn.target}`,
        inn.target_balls ? ` · need ${Math.max(inn.target - inn.runs, 0)} from ${Math.max(inn.target_balls - inn.legal_balls, 0)} balls` : "",
        ` · required rate `, h("b", { id: "required-rate" }, num(inn.required_rate)))
    : null;
  const p = inn.partnership;
  return h("section", { class: "live" },
    h("div", { class: "big" },
      h("span", { id: "score" }, `${inn.runs}/${inn.wickets}`),
      h("span", { id: "overs" }, `${inn.overs} ov`),
      h("span", { class: "muted" }, `RR ${num(inn.run_rate)}`)),
    need,
    h("div", { class: "this-over", id: "this-over" },
      h("span", { class: "label" }, "This over"),
      (inn.this_over ?? []).map((b) => h("span", { class: `ball ${ballClass(b)}` }, b))),
    p ? h("p", { id: "partnership" }, "Partnership ",
      h("b", {}, `${p.runs} (${p.balls})`), ` ${p.batters.join(" & ")}`) : null,
    inn.ended && inn.end_reason ? h("p", { class: "muted" }, `Innings ended: ${inn.end_reason}`) : null);
}

function ballClass(b) {
  if (/W/.test(b) && !/wd/i.test(b)) return "ball-w";
  if (b === "4" || b === "6") return `ball-${b}`;
  return "";
}

function batting(inn) {
  const on = new Set(inn.batters_in ?? []);
  return h("table", { class: "batting" },
    h("caption", {}, `${inn.batting_team} batting`),
    h("thead", {}, h("tr", {}, ["Batter", "", "R", "B", "4s", "6s", "SR"]
      .map((c, i) => h("th", { class: i === 1 ? "dismissal" : null }, c)))),
    h("tbody", {}, (inn.batting ?? []).map((b) => h("tr", { class: on.has(b.name) ? "in" : null },
      h("td", {}, b.name, inn.batters_in?.[0] === b.name ? " *" : ""),
      h("td", { class: "muted dismissal" }, b.dismissal),
      h("td", {}, b.runs), h("td", {}, b.balls), h("td", {}, b.fours), h("td", {}, b.sixes),
      h("td", {}, num(b.strike_rate, 1))))),
    h("tfoot", {}, h("tr", {}, h("td", { colspan: 7 },
      `Extras ${inn.extras.total} (w ${inn.extras.wides}, nb ${inn.extras.noballs}, b ${inn.extras.byes}, lb ${inn.extras.legbyes})`))));
}

function bowling(inn) {
  return h("table", { class: "bowling" },
    h("caption", {}, `${inn.bowling_team} bowling`),
    h("thead", {}, h("tr", {}, ["Bowler", "O", "M", "R", "W", "Econ"].map((c) => h("th", {}, c)))),
    h("tbody", {}, (inn.bowling ?? []).map((b) => h("tr", { class: b.name === inn.bowler ? "in" : null },
      h("td", {}, b.name), h("td", {}, b.overs), h("td", {}, b.maidens), h("td", {}, b.runs),
      h("td", {}, b.wickets), h("td", {}, num(b.economy))))));
}
