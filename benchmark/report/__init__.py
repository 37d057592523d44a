"""A static HTML report over runs and leaderboards, opened from disk (file://, no server).

    write_report([Path("results/default-large-<hash>")], Path("report"), Path("leaderboards"))

What it writes (all links relative, so the folder can be moved or zipped):
    index.html                       leaderboard tables (95% CIs, significance marks, median costs per
                                     feature), each beside a quality-vs-cost plot where the rows carry
                                     costs; per metric the plots (by method, by LM size, low- vs
                                     high-level) as inline SVG, per-category means and pairwise-test
                                     matrices
    gallery.html                     every feature of the runs: filtered, sorted and paged in JavaScript
    feature.html#<source>/<id>       one feature: images, ground truth, each method's explanation,
                                     coefficient and scores
    data/index.js                    the gallery's index: per feature its key and ground truth
    data/label-<i>.js                one run's method: explanations and headline scores
    data/features/<source>-<n>.js    the feature-page records of feature ids n .. n + SHARD - 1
    img/<source>/<id>-heat.png, -masked.png  the top-k strips (`benchmark.report.images`)
    static/                          CSS and JavaScript
Data files are scripts calling `fbData(name, value)`, because Chromium blocks fetch() of file://.

Byte cost per feature, measured on the default world's 1,024 features with all nine methods and
eleven score columns: index 51 B; label files 79 B per method; feature records 2.5 KB (220 B per
method, plus 560 B of ground truth and top-image captions); images 1.4 KB
(`benchmark.report.images`); 4.7 KB in all, about 8 KB on a disk of 4 KB blocks. The gallery loads
the index, one label file and one page of `PAGE_SIZE` thumbnails; a feature page loads one shard
(at most `SHARD` features). So for 10,000 features a gallery view loads about 1.4 MB and a feature
page about 0.3 MB, whatever the folder's total (about 50 MB, or 120 MB on disk).

Every run is read one way, world or real models: run.json names its source's files, which are
opened again (`inputs.open_run_source`: refused if they changed since the run) and drawn from the
caches the run left (`images.FeatureImages`). Rows go by the source's name (the world preset's, or
the SAE's), and features of a source without ground truth say so.

The report is written into a temporary directory beside `out` and renamed into place only when
complete; an earlier report in `out` is replaced, any other non-empty directory is refused.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from benchmark.registry import UsageError
from benchmark.report import data, html
from benchmark.report.images import FeatureImages
from benchmark.report.inputs import Leaderboard, Run, check_out, first_runs, open_run_source, read_leaderboard, read_run
from benchmark.results.board_rows import COST_COLUMNS, KEYS, ROW_COLUMNS
from benchmark.results.leaderboard import category_table, headline_columns, main_table, pairwise_table

MARKER = ".featurebench-report"
"""A file every report holds, so that writing a report again may replace that directory."""
PAGE_SIZE = 50
"""Gallery rows per page."""
CHUNK = 256
"""Features whose images are drawn in one batch."""
STATIC = Path(__file__).parent / "static"
EXTRA_COLUMNS = ("run", "label", "multiplier", "coefficient")


def write_report(run_dirs: list[Path], out: Path, leaderboards: Path | None = None) -> Path:
    """Writes the report for `run_dirs` into `out` and returns `out`. The leaderboard tables come
    from the directory `leaderboards` (main.csv, per_category.csv, pairwise.csv) when given, else
    from the runs' own scores."""
    out = Path(out)
    if not run_dirs and leaderboards is None:
        raise UsageError("report: nothing to report; give --run RUN_DIR and/or --leaderboards DIR")
    check_out(out, MARKER)
    runs = [read_run(Path(d)) for d in run_dirs]
    board = read_leaderboard(Path(leaderboards)) if leaderboards is not None else None
    firsts = first_runs(runs)  # every check, and reading every cache, before anything is written
    images = {name: FeatureImages(open_run_source(run), max(r.top_k for r in runs if r.source == name), run.name)
              for name, run in firsts.items()}
    no_truth = sorted(name for name, run in firsts.items() if not run.groundtruth)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write(tmp, runs, board, images, no_truth, "leaderboards" if leaderboards is None else str(leaderboards))
        _replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write(dpath: Path, runs: list[Run], board: Leaderboard | None, images: dict[str, FeatureImages],
           no_truth: list[str], board_name: str) -> None:
    from benchmark.explaining import tuning
    from metrics import all_metrics

    shutil.copytree(STATIC, dpath / "static")
    (dpath / MARKER).write_text("a featurebench report: `python -m benchmark report` may replace this folder\n")
    readers = {f: set(tuning.readers(f)) for f in tuning.TUNABLE if f.endswith("_multiplier")}
    rows = data.combine_rows(runs, {s: im.scales for s, im in images.items()}, readers) if runs else None
    if board is None:
        board = _tables(data.table_rows(rows))
        note = "Tables computed from the runs below (bootstrap CIs and Mann–Whitney tests as for the leaderboards)."
    else:
        note = f"Tables from {board_name}/ (main.csv, per_category.csv, pairwise.csv)."
    higher = {m.headline: m.higher_is_better for m in all_metrics()}
    cells = data.marked_cells(board.main, board.pairwise, higher)
    lm_orders = {s: data.lm_order(list(board.main[board.main.source == s].lm)) for s in set(board.main.source)}
    (dpath / "index.html").write_text(html.index_page(cells, board, _run_summaries(runs), lm_orders,
                                                      data.category_levels(rows), note))
    (dpath / "gallery.html").write_text(html.gallery_page())
    (dpath / "feature.html").write_text(html.feature_page())
    _write_features(dpath, rows, images, no_truth)


def _write_features(dpath: Path, rows: pd.DataFrame | None, images: dict[str, FeatureImages],
                    no_truth: list[str]) -> None:
    """Images per feature (the slow part, under the progress bar), then the gallery's and the feature
    pages' data files; `no_truth`: the sources without ground truth."""
    if rows is None:
        rows = pd.DataFrame(columns=[*ROW_COLUMNS, *EXTRA_COLUMNS])
    features = data.feature_table(rows)
    extras: dict[tuple[str, int], dict] = {}
    with tqdm(total=len(features), desc="report", unit="feature") as bar:
        for source, part in features.groupby("source", sort=True):
            (dpath / "img" / source).mkdir(parents=True)
            ids = part.feature.astype(int).tolist()
            for start in range(0, len(ids), CHUNK):
                for f, drawn in images[source].draw(ids[start:start + CHUNK]).items():
                    (dpath / "img" / source / f"{f}-heat.png").write_bytes(drawn.pop("heat"))
                    (dpath / "img" / source / f"{f}-masked.png").write_bytes(drawn.pop("masked"))
                    extras[source, f] = drawn
                bar.update(len(ids[start:start + CHUNK]))
    headlines = headline_columns(rows)
    score_cols = [c for c in rows.columns if c not in (*ROW_COLUMNS, *EXTRA_COLUMNS, *COST_COLUMNS)]
    label_list = data.labels(rows)
    _write_js(dpath / "data" / "index.js", "index",
              data.gallery_index(features, label_list, headlines, PAGE_SIZE, no_truth))
    for i, label in enumerate(label_list):
        _write_js(dpath / "data" / f"label-{i}.js", f"label-{i}",
                  data.label_columns(rows, features, label["label"], headlines))
    for name, records in data.feature_records(rows, features, score_cols, extras, no_truth).items():
        _write_js(dpath / "data" / "features" / f"{name}.js", f"features/{name}", records)


def _tables(rows: pd.DataFrame) -> Leaderboard:
    headlines = headline_columns(rows)
    per_category = category_table(rows, headlines)
    if per_category.empty:  # no aligned features (a source without ground truth): the columns, no rows
        per_category = pd.DataFrame(columns=[*KEYS, "group_by", "group", "n_features", *headlines])
    return Leaderboard(main_table(rows, headlines), per_category, pairwise_table(rows, headlines))


def _run_summaries(runs: list[Run]) -> list[dict]:
    return [{"run": r.name, "source": r.source, "protocol": r.protocol,
             "lm": ", ".join(dict.fromkeys(r.scores.lm.astype(str))),
             "methods": list(dict.fromkeys(r.scores.method)), "features": int(r.scores.feature.nunique()),
             "steering_multiplier": r.meta.get("steering_multiplier"),
             "hybrid_multiplier": r.meta.get("hybrid_multiplier"), "git_sha": r.meta.get("git_sha")} for r in runs]


def _write_js(fpath: Path, name: str, value) -> None:
    fpath.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    fpath.write_text(f"fbData({json.dumps(name)},{payload});\n", encoding="utf-8")


def _replace(tmp: Path, out: Path) -> None:
    """Moves the finished report into place; an earlier one there is moved aside first, then removed."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
