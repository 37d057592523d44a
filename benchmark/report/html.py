"""The report's HTML pages. `index.html` is rendered whole here (tables and inline SVG plots, every
metric's view present and all but one hidden until the metric selector shows it); `gallery.html`
and `feature.html` are shells that `static/*.js` fill from the data files."""
from __future__ import annotations

import math
from html import escape

import pandas as pd

from benchmark.report.data import (
    SHARD,
    by_level,
    by_lm,
    by_method,
    category_pivot,
    cost_columns,
    default_metric,
    metric_columns,
    pairwise_matrix,
    pairwise_noise,
    quality_cost,
)
from benchmark.report.inputs import Leaderboard
from benchmark.report.svg import dot_plot, line_plot, scatter_plot
from benchmark.scoring.stats import ALPHA

NAV = (("index.html", "Leaderboard"), ("gallery.html", "Features"))


def page(title: str, body: str, scripts: list[str], active: str, attrs: str = "") -> str:
    nav = "".join(f'<a href="{href}"{" class=active" if href == active else ""}>{name}</a>' for href, name in NAV)
    tags = "".join(f'<script src="{escape(s)}"></script>' for s in scripts)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="stylesheet" href="static/report.css"></head>\n<body{attrs}><header><b>featurebench</b>'
            f'<nav>{nav}</nav></header><main>\n{body}\n</main>{tags}</body></html>\n')


def index_page(cells: pd.DataFrame, board: Leaderboard, runs: list[dict], lm_orders: dict[str, list[str]],
               level_of: dict[str, str], note: str) -> str:
    """The leaderboard tables with CIs, marks and median costs, each beside its quality-vs-cost plot
    (where the table has costs), then per metric: plots, per-category means (their columns in
    `data.group_order`, with `level_of`) and the pairwise test matrices."""
    metrics = list(dict.fromkeys(cells.metric))
    costs = cost_columns(board.main)
    body = [f"<h1>Leaderboard</h1><p class=note>{escape(note)}</p>", runs_table(runs) if runs else "",
            "<h2>Headline means</h2>", LEGEND, cost_note(board.main) if costs else ""]
    for source in dict.fromkeys(cells.source):
        for lm in lm_orders[source]:
            cost_rows = board.main[(board.main.source == source) & (board.main.lm == lm)].set_index("method")[costs]
            table = main_table(cells[(cells.source == source) & (cells.lm == lm)], cost_rows)
            plot = cost_plot(board.main, source, lm)
            body.append(f"<div class=beside>{table}{plot}</div>" if plot else table)
    shown = default_metric(metrics)
    options = "".join(f'<option value="{escape(m)}"{" selected" if m == shown else ""}>{escape(_name(m))}</option>'
                      for m in metrics)
    body.append(f'<h2>By metric <select id="metric" aria-label="metric">{options}</select></h2>')
    for metric in metrics:
        hidden = "" if metric == shown else " hidden"
        body.append(f'<section class="by-metric" data-metric="{escape(metric)}"{hidden}>')
        body += [metric_views(board, source, metric, lm_orders[source], level_of)
                 for source in dict.fromkeys(board.main.source)]
        body.append("</section>")
    return page("featurebench report", "\n".join(body), ["static/index.js"], "index.html")


LEGEND = (f"<p class=note>Mean over alive features, 95% bootstrap CI below. <b>Bold</b>: the best method of its "
          f"source and LM. <span class=tied>≈</span>: not significantly below the best (one-sided Mann–Whitney, "
          f"p ≥ {ALPHA}); unmarked: significantly below it. Click a column to sort.</p>")


def cost_note(main: pd.DataFrame) -> str:
    metric = _name(default_metric(metric_columns(main)))
    return (f"<p class=note>Cost columns: the median per feature of the explaining step's wall seconds, the prompt "
            f"tokens sent to the explainer (image tokens included), the answer tokens and the images shown; – where "
            f"unknown. Beside each table: {escape(metric)} against median seconds per feature.</p>")


def cost_plot(main: pd.DataFrame, source: str, lm: str) -> str:
    """One (source, LM)'s methods as points of quality (`data.quality_cost`'s metric) against median
    seconds per feature; empty where no method has both."""
    metric, points = quality_cost(main, source, lm)
    if not points:
        return ""
    return scatter_plot(points, f"{source} · {lm}: quality vs cost", "median seconds per feature", _name(metric))


def main_table(cells: pd.DataFrame, costs: pd.DataFrame | None = None) -> str:
    """One (source, LM)'s table: per method n, each metric's marked cell, then its median costs
    (`costs`: indexed by method, one column per `data.cost_columns`)."""
    source, lm, protocol = cells.source.iloc[0], cells.lm.iloc[0], cells.protocol.iloc[0]
    metrics = list(dict.fromkeys(cells.metric))
    costs = pd.DataFrame() if costs is None else costs
    head = "".join(f'<th class=num data-sort=num>{escape(_name(m))}</th>' for m in metrics)
    head += "".join(f'<th class="num cost" data-sort=num title="median per feature">'
                    f'{escape(_name(c.removeprefix("cost_").removesuffix("_median")))}</th>' for c in costs.columns)
    rows = []
    for method, group in cells.groupby("method", sort=False):
        by = group.set_index("metric")
        tds = "".join(_cell(by.loc[m]) for m in metrics)
        tds += "".join(_cost_cell(float(costs.at[method, c]) if method in costs.index else math.nan)
                       for c in costs.columns)  # a column of whole numbers reads back from CSV as integers
        rows.append(f'<tr><th scope=row>{escape(method)}</th><td class=num>{int(by.n_features.iloc[0])}</td>{tds}</tr>')
    return (f'<table class="board sortable" data-source="{escape(source)}" data-lm="{escape(lm)}">'
            f'<caption>{escape(source)} · {escape(lm)} LM · {escape(protocol)} protocol</caption><thead><tr>'
            f'<th data-sort=text>method</th>'
            f'<th class=num data-sort=num>n</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _cell(c: pd.Series) -> str:
    if not _finite(c["mean"]):
        return "<td class=num data-value=''>–</td>"
    mean = f"<b>{c['mean']:.3f}</b>" if c["mark"] == "best" else f"{c['mean']:.3f}"
    mark = "<span class=tied>≈</span>" if c["mark"] == "tied" else ""
    ci = f"<small>[{c['low']:.3f}, {c['high']:.3f}]</small>" if _finite(c["low"]) else ""
    tip = f' title="best vs this: p = {c["p"]:.3g}"' if _finite(c["p"]) else ""
    return f'<td class="num {c["mark"]}" data-value="{c["mean"]:.6g}"{tip}>{mean}{mark}{ci}</td>'


def _cost_cell(value: float) -> str:
    if not _finite(value):
        return '<td class="num cost" data-value="">–</td>'
    shown = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f'<td class="num cost" data-value="{value:.6g}">{shown}</td>'


def metric_views(board: Leaderboard, source: str, metric: str, lms: list[str], level_of: dict[str, str]) -> str:
    """One source's plots, per-category table and pairwise matrices for one metric."""
    main = board.main[board.main.source == source]
    lms = [lm for lm in lms if lm in set(main.lm)]
    name = _name(metric)
    methods, series = by_method(main, source, metric, lms)
    plots = [dot_plot(methods, series, f"{source}: {name} by method (95% CI)", name)]
    if len(lms) > 1:
        plots.append(line_plot(lms, by_lm(main, source, metric, lms), f"{source}: {name} by LM size", name))
    for lm in lms:
        level_methods, levels = by_level(board.per_category, source, lm, metric)
        if level_methods:
            plots.append(dot_plot(level_methods, levels, f"{source} · {lm}: low- vs high-level (aligned)", name))
    out = [f"<h3>{escape(source)}</h3><div class=plots>{''.join(plots)}</div>"]
    per_category = board.per_category[board.per_category.source == source]
    if len(per_category):
        out.append(category_table(category_pivot(per_category, metric, level_of), name))
    matrices = []
    for lm in lms:
        methods, p = pairwise_matrix(board.pairwise, source, lm, metric)
        matrices.append(pairwise_table(lm, methods, p, *pairwise_noise(board.pairwise, source, lm, metric, methods)))
    out.append(f"<p class=note>Pairwise tests on {escape(name)}: ✓ where the row's method scores significantly "
               f"better than the column's (higher, or lower where the metric says so; one-sided Mann–Whitney, p &lt; {ALPHA}; hover a cell for p "
               f"and the difference of means). Beside each matrix its minimum reliable difference (MRD): a difference "
               f"below it is within the reseed spread or the bootstrap CI, whatever p says.</p>"
               f"<div class=matrices>{''.join(matrices)}</div>")
    return "".join(out)


def category_table(pivot: pd.DataFrame, name: str) -> str:
    head = "".join(f"<th class=num data-sort=num>{escape(str(g))}</th>" for g in pivot.columns)
    rows = []
    for (_source, lm, method), values in pivot.iterrows():
        tds = "".join(f'<td class=num data-value="{v:.6g}">{v:.3f}</td>' if _finite(v) else "<td class=num>–</td>"
                      for v in values)
        rows.append(f"<tr><td>{escape(lm)}</td><th scope=row>{escape(method)}</th>{tds}</tr>")
    return (f'<table class="sortable categories"><caption>{escape(name)} on aligned features, by level and '
            f'category</caption><thead><tr><th data-sort=text>LM</th><th data-sort=text>method</th>{head}</tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table>')


def pairwise_table(lm: str, methods: list[str], p: list[list[float]], mrd: float = float("nan"),
                   diff: list[list[float]] | None = None) -> str:
    """Row method a, column method b: ✓ where a scores significantly better than b; the MRD in the
    caption and each cell's difference of means in its tooltip (where the table has them)."""
    if not methods:
        return ""
    head = "".join(f"<th class=vertical><span>{escape(m)}</span></th>" for m in methods)
    rows = []
    for a, ps in zip(methods, p):
        tds = []
        for j, (b, value) in enumerate(zip(methods, ps)):
            if a == b or not _finite(value):
                tds.append("<td class=na></td>")
            else:
                sig = value < ALPHA
                tip = f"{escape(a)} &gt; {escape(b)}: p = {value:.3g}"
                gap = diff[methods.index(a)][j] if diff is not None else float("nan")
                if _finite(gap):
                    tip += f", difference {gap:+.3g}" + (f" ({'beyond' if gap > mrd else 'within'} the MRD)"
                                                         if _finite(mrd) else "")
                tds.append(f'<td class="{"sig" if sig else "ns"}" title="{tip}">{"✓" if sig else ""}</td>')
        rows.append(f"<tr><th scope=row>{escape(a)}</th>{''.join(tds)}</tr>")
    noise = f" · MRD {mrd:.3g}" if _finite(mrd) else ""
    return (f'<table class=pairwise><caption>{escape(lm)} LM: row beats column{noise}</caption><thead><tr><th></th>{head}'
            f'</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def runs_table(runs: list[dict]) -> str:
    rows = "".join(
        f"<tr><td>{escape(r['run'])}</td><td>{escape(r['source'])}</td><td>{escape(r['protocol'])}</td>"
        f"<td>{escape(r['lm'])}</td>"
        f"<td>{escape(', '.join(r['methods']))}</td><td class=num>{r['features']}</td>"
        f"<td class=num>{_multiplier(r['steering_multiplier'])}</td>"
        f"<td class=num>{_multiplier(r['hybrid_multiplier'])}</td>"
        f"<td><code>{escape(str(r['git_sha'] or '–')[:10])}</code></td></tr>" for r in runs)
    return ("<table class=runs><caption>Runs</caption><thead><tr><th>run</th><th>source</th><th>protocol</th><th>LM</th>"
            "<th>methods</th>"
            "<th class=num>features</th><th class=num>steering ×</th><th class=num>hybrid ×</th><th>git</th></tr>"
            f"</thead><tbody>{rows}</tbody></table>")


def gallery_page() -> str:
    body = ("<h1>Features</h1><form id=filters onsubmit='return false'>"
            "<label>method <select id=label></select></label>"
            "<label>metric <select id=metric></select></label>"
            "<label>category <select id=category></select></label>"
            "<label>min score <input id=min type=number step=0.05 size=5></label>"
            "<label><input id=aligned type=checkbox> aligned only</label>"
            "<label>sort <select id=sort><option value=feature>feature id</option>"
            "<option value=desc>score, high first</option><option value=asc>score, low first</option></select></label>"
            "</form><p id=status class=note>loading…</p>"
            "<table id=gallery><thead><tr><th>feature</th><th>top images (activation heat map)</th>"
            "<th>ground truth</th><th>explanation</th><th class=num>score</th></tr></thead><tbody></tbody></table>"
            "<nav class=pager><button id=prev type=button>← previous</button><span id=page></span>"
            "<button id=next type=button>next →</button></nav>")
    return page("featurebench features", body, ["static/data.js", "data/index.js", "static/gallery.js"],
                "gallery.html")


def feature_page() -> str:
    body = ("<nav class=pager><a id=prev>← previous</a><a href=gallery.html>gallery</a><a id=next>next →</a></nav>"
            "<h1 id=title>Feature</h1><p id=status class=note>loading…</p><div id=feature></div>")
    return page("featurebench feature", body, ["static/data.js", "static/feature.js"], "gallery.html",
                f' data-shard-size="{SHARD}"')


def _name(metric: str) -> str:
    return metric.replace("_", " ")


def _multiplier(value) -> str:
    return f"{value:g}" if _finite(value) else "–"


def _finite(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
