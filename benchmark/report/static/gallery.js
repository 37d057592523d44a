"use strict";
// The feature gallery: filter by category, alignment and minimum score, sort by feature id or score,
// one method ("label") at a time, a page of rows at a time. data/index.js holds every feature's
// ground truth; data/label-<i>.js one label's explanations and scores, loaded when it is chosen.
// The state lives in the URL hash, so the back button returns to the same page of the same view.
const index = window.FB_DATA.index;
const ui = (id) => document.getElementById(id);
const state = {label: 0, metric: index.default_metric, category: "", min: "", aligned: false, sort: "feature", page: 0};
const sources = new Set(index.source);
const lms = new Set(index.labels.map((l) => l.source + "/" + l.lm));
const noTruth = new Set(index.no_truth || []);  // sources without ground truth
const anyTruth = index.source.some((s) => !noTruth.has(s));

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  for (const name of Object.keys(state)) {
    if (!params.has(name)) continue;
    const value = params.get(name);
    state[name] = typeof state[name] === "number" ? Number(value) || 0 : typeof state[name] === "boolean" ? value === "true" : value;
  }
  state.label = Math.min(Math.max(state.label, 0), Math.max(index.labels.length - 1, 0));
  if (!anyTruth) state.category = "";  // "all" is the only choice
}

function options(select, pairs, value) {
  select.replaceChildren(...pairs.map(([v, text]) => el("option", {value: v}, text)));
  select.value = String(value);
}

function labelName(label) {
  return label.label + (lms.size > 1 ? " · " + (sources.size > 1 ? label.source + " " : "") + label.lm : "");
}

function setUp() {
  options(ui("label"), index.labels.map((l, i) => [i, labelName(l)]), state.label);
  options(ui("metric"), index.metrics.map((m) => [m, m.replaceAll("_", " ")]), state.metric);
  options(ui("category"), anyTruth ? [["", "all"], ...index.categories.map((c) => [c, c]), ["none", "(no concept)"]]
    : [["", "all"]], state.category);
  ui("min").value = state.min;
  ui("aligned").checked = state.aligned;
  ui("sort").value = state.sort;
  for (const id of ["label", "metric", "category", "sort", "min", "aligned"]) {
    ui(id).addEventListener(id === "min" ? "input" : "change", () => {
      const input = ui(id);
      state[id] = id === "label" ? Number(input.value) : id === "aligned" ? input.checked : input.value;
      state.page = 0;
      render();
    });
  }
  ui("prev").addEventListener("click", () => { state.page -= 1; render(); });
  ui("next").addEventListener("click", () => { state.page += 1; render(); });
}

// Indices into the index of the rows that pass the filters, in the chosen order.
function select(column) {
  const scores = column.scores[state.metric] || [];
  const min = parseFloat(state.min);
  const rows = [];
  for (let i = 0; i < index.key.length; i++) {
    if (column.explanation[i] === null) continue;  // this label did not explain the feature
    if (state.category === "none" ? index.category[i] !== null : state.category && index.category[i] !== state.category) continue;
    if (state.aligned && !index.aligned[i]) continue;
    if (!Number.isNaN(min) && !(scores[i] !== null && scores[i] >= min)) continue;
    rows.push(i);
  }
  if (state.sort !== "feature") {
    const sign = state.sort === "asc" ? 1 : -1;
    const key = (i) => (scores[i] === null ? Infinity : sign * scores[i]);
    rows.sort((a, b) => key(a) - key(b) || a - b);
  }
  return {rows, scores};
}

function row(i, column, scores) {
  const link = "feature.html#" + encodeURIComponent(index.key[i]);
  const name = (sources.size > 1 ? index.source[i] + " " : "") + "#" + index.feature[i];
  const truth = noTruth.has(index.source[i]) ? el("span", {class: "note"}, "no ground truth")
    : index.concept[i] === null ? el("span", {class: "note"}, "no concept")
    : [el("b", {}, index.concept[i]), " ", el("span", {class: "note"}, index.category[i]),
       index.aligned[i] ? el("span", {class: "badge"}, "aligned") : null];
  return el("tr", {class: "feature-row"},
    el("td", {}, el("a", {href: link}, name)),
    el("td", {}, el("a", {href: link}, el("img", {class: "strip", alt: "top images of feature " + index.feature[i],
                                                  src: imagePath(index.source[i], index.feature[i], "heat")}))),
    el("td", {}, truth),
    el("td", {}, explanationText(column.explanation[i])),
    el("td", {class: "num"}, fmt(scores[i])));
}

async function render() {
  history.replaceState(null, "", "#" + new URLSearchParams(state));
  if (!index.labels.length) {
    ui("status").textContent = "no runs in this report";
    return;
  }
  let column;
  try {
    column = await fbLoad("label-" + state.label);
  } catch (error) {
    ui("status").textContent = error.message;
    return;
  }
  const {rows, scores} = select(column);
  const pages = Math.max(1, Math.ceil(rows.length / index.page_size));
  state.page = Math.min(Math.max(state.page, 0), pages - 1);
  const shown = rows.slice(state.page * index.page_size, (state.page + 1) * index.page_size);
  ui("gallery").tBodies[0].replaceChildren(...shown.map((i) => row(i, column, scores)));
  ui("status").textContent = rows.length + " of " + index.key.length + " features match";
  ui("page").textContent = "page " + (state.page + 1) + " of " + pages;
  ui("prev").disabled = state.page === 0;
  ui("next").disabled = state.page >= pages - 1;
}

readHash();
setUp();
render();
