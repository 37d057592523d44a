"use strict";
// One feature's page, named by the URL hash ("source/feature"): loads the shard of feature records
// that holds it (data/features/<source>-<first id of the shard>.js) and shows its images, ground
// truth and every method's explanation with its coefficient and scores.
const ui = (id) => document.getElementById(id);
const shardSize = Number(document.body.dataset.shardSize);

function parse(hash) {
  const key = decodeURIComponent(hash.slice(1));
  const cut = key.lastIndexOf("/");
  return {key, source: key.slice(0, cut), feature: Number(key.slice(cut + 1))};
}

function strip(record, kind, caption) {
  return el("figure", {},
    el("img", {class: "strip big", id: kind, alt: caption, src: imagePath(record.source, record.feature, kind)}),
    el("figcaption", {}, caption));
}

function truth(record) {
  if (record.truth === false) return el("p", {class: "note"}, "No ground truth: this source does not know what its features mean.");
  if (record.concept === null) return el("p", {class: "note"}, "The source has no concept for this feature (dead or unlabelled).");
  return el("dl", {class: "truth"},
    el("dt", {}, "concept"), el("dd", {}, el("b", {}, record.concept)),
    el("dt", {}, "category"), el("dd", {}, record.category + " (" + record.level + "-level)"),
    el("dt", {}, "aligned"), el("dd", {}, record.aligned ? "yes" : "no"));
}

function topImages(record) {
  if (!record.captions) return null;
  return el("ol", {class: "captions"}, record.captions.map((caption, i) =>
    el("li", {}, caption, el("span", {class: "note"}, " · mean activation " + fmt(record.activations[i])))));
}

function explanations(record, columns) {
  const head = el("tr", {}, el("th", {}, "method"), el("th", {}, "LM"), el("th", {}, "explanation"),
    el("th", {class: "num"}, "coefficient"), columns.map((c) => el("th", {class: "num"}, c.replaceAll("_", " "))));
  const rows = record.explanations.map((e) => el("tr", {class: "explanation-row"},
    el("th", {scope: "row"}, e.label), el("td", {}, e.lm), el("td", {class: "explanation"}, explanationText(e.explanation)),
    el("td", {class: "num", title: e.multiplier === null ? "this method does not steer" : e.multiplier + " × the feature's mean top activation"},
       e.coefficient === null ? "–" : fmt(e.coefficient)),
    e.scores.map((v) => el("td", {class: "num"}, fmt(v)))));
  return el("div", {class: "scroll"}, el("table", {id: "explanations"}, el("caption", {}, "Explanations and their scores"),
    el("thead", {}, head), el("tbody", {}, rows)));
}

function link(id, key) {
  const a = ui(id);
  if (key === null) a.removeAttribute("href");
  else a.href = "feature.html#" + encodeURIComponent(key);
}

async function show() {
  const {key, source, feature} = parse(location.hash);
  const shard = "features/" + source + "-" + Math.floor(feature / shardSize) * shardSize;
  let shardData, record;
  try {
    shardData = await fbLoad(shard);
    record = shardData.features.find((r) => r.key === key);
  } catch (error) {
    record = undefined;
  }
  if (!record) {
    ui("status").textContent = "no feature " + key + " in this report";
    ui("feature").replaceChildren();
    return;
  }
  document.title = "feature " + record.feature + " · featurebench";
  ui("title").textContent = "Feature " + record.feature + " · " + record.source;
  ui("status").textContent = record.explanations.some((e) => e.scores.some((v) => v !== null))
    ? "" : "dead feature: never active on the scoring pool, so no scores";
  link("prev", record.prev);
  link("next", record.next);
  ui("feature").replaceChildren(
    el("section", {class: "cols"},
      el("div", {}, el("h2", {}, "Ground truth"), truth(record)),
      el("div", {}, el("h2", {}, "Top images"),
        strip(record, "heat", "top images of the topk pool; where the feature fires, a heat map of its activation per patch (yellow: weak, crimson: strongest); elsewhere dimmed"),
        strip(record, "masked", "the same images masked to where the feature fires: what top-k and hybrid show the VLM"),
        topImages(record))),
    explanations(record, shardData.columns));
}

window.addEventListener("hashchange", show);
show();
