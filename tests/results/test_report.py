"""The HTML report's data, images and plots on known inputs, its errors, and a leaderboard-only
report written whole (no world needed). The browser test is in test_report_browser.py."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.activations.passes import write_store
from benchmark.activations.stores import Codes, TopImages
from benchmark.activations.top_images import masked
from benchmark.config.models import PoolSpec
from benchmark.registry import UsageError
from benchmark.report import MARKER, data, html, svg, write_report
from benchmark.report.images import DIM, caption_column, heat_colours, heat_overlay, strip, top_image_arrays
from benchmark.report.inputs import Run, first_runs
from benchmark.results.board_rows import COST_COLUMNS
from benchmark.results.leaderboard import regenerate
from benchmark.sources.image_pools import ImagePool

LEADERBOARDS = Path(__file__).resolve().parents[2] / "leaderboards"
SOURCE_ID = "0123456789ab"
"""The content identity rows and run.json carry of the source they were computed on."""


def test_marks_best_tied_and_significantly_worse():
    main = pd.DataFrame([
        {"source": "w", "lm": "s", "method": m, "n_features": 10, "up": up, "up_ci_low": up - 0.1,
         "up_ci_high": up + 0.1, "down": down, "down_ci_low": down, "down_ci_high": down}
        for m, up, down in (("a", 0.8, 0.1), ("b", 0.75, 0.3), ("c", 0.5, 0.2))])
    p = {("up", "a", "b"): 0.2, ("up", "a", "c"): 0.001, ("down", "a", "b"): 0.01, ("down", "a", "c"): 0.3}
    pairwise = pd.DataFrame([{"source": "w", "lm": "s", "metric": m, "method_a": a, "method_b": b, "p_value": v}
                             for (m, a, b), v in p.items()])
    cells = data.marked_cells(main, pairwise, {"down": False}).set_index(["metric", "method"])
    assert cells.loc[("up", "a"), "mark"] == "best" and math.isnan(cells.loc[("up", "a"), "p"])
    assert cells.loc[("up", "b"), ["mark", "p"]].tolist() == ["tied", 0.2]
    assert cells.loc[("up", "c"), "mark"] == "" and cells.loc[("up", "c"), "low"] == pytest.approx(0.4)
    # lower is better: a is best; better than b at p 0.01 (pairwise tests "better"), not than c (p 0.3)
    assert [cells.loc[("down", m), "mark"] for m in "abc"] == ["best", "", "tied"]


def test_pairwise_matrix_and_category_pivot_orders():
    pairwise = pd.DataFrame([{"source": "w", "lm": "s", "metric": "m", "method_a": a, "method_b": b, "p_value": p}
                             for a, b, p in (("x", "y", 0.01), ("y", "x", 0.99))])
    methods, p = data.pairwise_matrix(pairwise, "w", "s", "m")
    assert methods == ["x", "y"] and p[0][1] == 0.01 and p[1][0] == 0.99 and math.isnan(p[0][0])
    per_category = pd.DataFrame([{"source": "w", "lm": "s", "method": "x", "group_by": by, "group": g, "m": v}
                                 for by, g, v in (("category", "shape", 1.0), ("level", "high", 2.0),
                                                  ("category", "colour", 3.0), ("level", "low", 4.0))])
    pivot = data.category_pivot(per_category, "m", {})
    assert list(pivot.columns) == ["low", "high", "colour", "shape"] and pivot.iloc[0].tolist() == [4.0, 2.0, 3.0, 1.0]
    # categories under their level as the rows give it: high-level shape before low-level texture and zebra
    rows = pd.DataFrame({"category": ["texture", "shape", None, "zebra", "texture"],
                         "level": ["low", "high", None, "odd", "high"]})
    assert data.category_levels(rows) == {"texture": "low", "shape": "high", "zebra": "odd"}
    assert data.group_order(["odd", "high", "low"], ["zebra", "texture", "shape", "spot"], {"texture": "high",
                            "shape": "high", "zebra": "odd"}) == ["low", "high", "odd", "shape", "texture", "zebra",
                                                                   "spot"]
    assert data.lm_order(["large", "xl", "other", "small", "medium"]) == ["small", "medium", "large", "xl", "other"]
    assert data.lm_order(["llava-1.5-13b", "llava-1.5-7b", "opt-350m"]) == ["opt-350m", "llava-1.5-7b", "llava-1.5-13b"]


def test_plot_series_follow_lm_order_and_leave_gaps():
    main = pd.DataFrame([{"source": "w", "lm": lm, "method": m, "n_features": 3, "d": v, "d_ci_low": v - 0.1,
                          "d_ci_high": v + 0.1} for lm, m, v in (("large", "a", 0.5), ("small", "a", 0.25),
                                                                 ("small", "b", 0.75))])
    lms = data.lm_order(list(main.lm))
    methods, series = data.by_method(main, "w", "d", lms)
    assert methods == ["a", "b"] and list(series) == ["small", "large"]
    assert series["small"][1] == pytest.approx((0.75, 0.65, 0.85)) and series["large"][1] is None
    by_lm = data.by_lm(main, "w", "d", lms)
    assert by_lm["a"] == [0.25, 0.5] and by_lm["b"][0] == 0.75 and math.isnan(by_lm["b"][1])
    per_category = pd.DataFrame([{"source": "w", "lm": "small", "method": "a", "group_by": "level", "group": g, "d": v}
                                 for g, v in (("high", 0.5), ("low", 0.25))])
    assert data.by_level(per_category, "w", "small", "d") == (["a"], {"low": [(0.25,)], "high": [(0.5,)]})


def _run(name: str, lm: str, methods: tuple[str, ...], features: range, steering: float = 8.0,
         identity: dict | None = None) -> Run:
    rows = [{"source": "w", "source_id": SOURCE_ID, "protocol": "featurebench", "lm": lm, "method": m, "feature": f,
             "explanation": f"{m} says {f}", "concept": "red" if f % 2 else None,
             "category": "colour" if f % 2 else None, "level": "low" if f % 2 else None, "aligned": f % 4 == 1,
             "detection_auroc": f / 1000, "oracle": 1.0}
            for m in methods for f in features]
    source = {"name": "w", "lm": lm, "source_id": SOURCE_ID, "identity": identity or {"sae": "s1", "pools": "p1"},
              "models": {}, "capabilities": ["groundtruth"]}
    meta = {"config": {"method": {"top_k": 5}}, "source": source, "steering_multiplier": steering,
            "hybrid_multiplier": 0.5}
    return Run(name, pd.DataFrame(rows), meta)


READERS = {"steering_multiplier": frozenset({"steering"}), "hybrid_multiplier": frozenset({"hybrid"})}


def test_combined_rows_label_methods_and_record_coefficients():
    scales = {"w": pd.Series([2.0] * 300, index=range(300))}
    runs = [_run("r1", "s", ("steering", "topk"), range(3)), _run("r2", "s", ("steering", "hybrid"), range(3), 4.0)]
    rows = data.combine_rows(runs, scales, READERS)
    labels = {(r, m): lb for r, m, lb in zip(rows.run, rows.method, rows.label)}
    assert labels == {("r1", "steering"): "steering (r1)", ("r1", "topk"): "topk", ("r2", "steering"): "steering (r2)",
                      ("r2", "hybrid"): "hybrid"}
    coeff = rows.groupby("label").coefficient.first()
    assert coeff["steering (r1)"] == 16.0 and coeff["steering (r2)"] == 8.0 and coeff["hybrid"] == 1.0
    assert math.isnan(coeff["topk"])
    assert sorted(data.table_rows(rows).method.unique()) == ["hybrid", "steering (r1)", "steering (r2)", "topk"]


def test_gallery_index_labels_and_shards():
    scales = {"w": pd.Series([1.0] * 300, index=range(300))}
    runs = [_run("r1", "s", ("steering",), range(250)), _run("r2", "s", ("topk",), range(10))]
    runs[1].scores.loc[3, "explanation"] = None  # an empty answer, as read back from scores.csv
    rows = data.combine_rows(runs, scales, READERS)
    features = data.feature_table(rows)
    index = data.gallery_index(features, data.labels(rows), ["detection_auroc", "oracle"], page_size=50)
    assert len(index["key"]) == 250 and index["key"][:2] == ["w/0", "w/1"] and index["concept"][:2] == [None, "red"]
    assert index["categories"] == ["colour"] and [lb["label"] for lb in index["labels"]] == ["steering", "topk"]
    assert index["aligned"][1] and not index["aligned"][3] and index["default_metric"] == "detection_auroc"
    topk = data.label_columns(rows, features, "topk", ["detection_auroc"])
    assert topk["explanation"][9] == "topk says 9" and topk["explanation"][10] is None and topk["explanation"][3] == ""
    assert topk["scores"]["detection_auroc"][9] == 0.009 and topk["scores"]["detection_auroc"][10] is None
    shards = data.feature_records(rows, features, ["detection_auroc", "oracle"], {("w", 7): {"captions": ["c"]}})
    assert {k: len(v["features"]) for k, v in shards.items()} == {"w-0": 100, "w-100": 100, "w-200": 50}
    first, seventh = shards["w-0"]["features"][0], shards["w-0"]["features"][7]
    assert first["prev"] is None and first["next"] == "w/1" and shards["w-200"]["features"][-1]["next"] is None
    assert [e["label"] for e in seventh["explanations"]] == ["steering", "topk"] and seventh["captions"] == ["c"]
    assert seventh["explanations"][0]["scores"] == [0.007, 1.0] and seventh["explanations"][0]["coefficient"] == 8.0
    assert shards["w-100"]["features"][0]["explanations"][0]["explanation"] == "steering says 100"
    json.dumps(shards, allow_nan=False)  # every NaN became None


def test_top_images_masks_and_heat_overlay_on_a_known_pool(tmp_path):
    import datasets
    from PIL import Image

    # 3 images of 4 x 4 px, patches of 2 px (4 per image), 1 active latent per patch out of 3
    images = np.full((3, 4, 4, 3), 200, np.uint8)
    images[1] = 50  # another image, to see that the right ones are read
    dataset = datasets.Dataset.from_dict({"image": [Image.fromarray(im) for im in images]},
                                         features=datasets.Features({"image": datasets.Image()}))
    pool = ImagePool(dataset, "image", np.arange(3), 4, None)
    latents = torch.tensor([[0, 1, 0, 2], [1, 1, 1, 1], [0, 2, 2, 2]])
    values = torch.tensor([[1.0, 2.0, 3.0, 1.0], [1.0, 1.0, 1.0, 1.0], [8.0, 1.0, 1.0, 1.0]])
    codes = Codes(torch.arange(3).repeat_interleave(4), torch.arange(4).repeat(3), latents.flatten(), values.flatten(),
                  3, 4, 3)
    write_store(tmp_path, "topk", [(0, codes)], 3, 4, 3, keep=2, rank="mean")
    top = TopImages(tmp_path)
    got_images, masked_BK, acts_BKP, idx_BK = top_image_arrays(pool, top, [0, 2], 2, patch=2)
    assert idx_BK.tolist() == [[2, 0], [2, 0]] and (got_images == 200).all()
    assert np.array_equal(masked_BK, masked(got_images, torch.from_numpy(acts_BKP), 2))
    assert acts_BKP[0].tolist() == [[8.0, 0.0, 0.0, 0.0], [1.0, 0.0, 3.0, 0.0]]
    heat = heat_overlay(got_images[0], acts_BKP[0], patch=2)
    assert (heat[0, :2, 2:] == round(200 * DIM)).all()  # inactive patch dimmed
    strongest = heat[0, 0, 0]
    assert strongest[0] > strongest[1] and strongest[0] > strongest[2]  # crimson at the feature's maximum
    assert strip(heat).shape == (4, 2 * 4 + 1, 3)


def test_svg_plots_escape_text_and_draw_every_value():
    assert svg.ticks(0.43, 0.81) == [0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    plot = svg.dot_plot(["a<b", "c"], {"small": [(0.5, 0.4, 0.6), None], "large": [(0.7,), (0.2,)]}, "t", "x")
    assert "a&lt;b" in plot and "a<b" not in plot and plot.count("<circle") == 3 + 2  # 3 dots, 2 legend keys
    lines = svg.line_plot(["small", "large"], {"m": [0.5, float("nan")]}, "t", "y")
    assert lines.count("<polyline") == 0 and lines.count("<circle") == 2


def test_scatter_plot_picks_its_x_scale_and_labels_every_point():
    linear = svg.scatter_plot([("a<b", 1.0, 0.5), ("c", 9.0, 0.7)], "t", "seconds", "auroc")
    assert "seconds (linear scale)" in linear and linear.count("<circle") == 2 and "a&lt;b</text>" in linear
    log = svg.scatter_plot([("a", 0.05, 0.5), ("b", 2.0, 0.7), ("c", 30.0, 0.6)], "t", "seconds", "auroc")
    assert "seconds (log scale)" in log and log.count("<circle") == 3
    assert [f">{t}</text>" in log for t in ("0.01", "0.1", "1", "10", "100")] == [True] * 5
    zero = svg.scatter_plot([("free", 0.0, 0.5), ("paid", 30.0, 0.7)], "t", "seconds", "auroc")
    assert "(linear scale)" in zero  # a log axis cannot show 0


def test_quality_against_cost_uses_detection_auroc_else_the_first_metric():
    main = pd.DataFrame([{"source": "w", "lm": "s", "method": m, "n_features": 4, "clip": q / 2, "detection_auroc": q,
                          "cost_seconds_median": c, "cost_images_median": 5.0}
                         for m, q, c in (("b", 0.7, 2.0), ("a", 0.6, 0.5), ("c", math.nan, 1.0), ("d", 0.5, math.nan))])
    assert data.metric_columns(main) == ["clip", "detection_auroc"]
    assert data.cost_columns(main) == ["cost_seconds_median", "cost_images_median"]
    assert data.quality_cost(main, "w", "s") == ("detection_auroc", [("a", 0.5, 0.6), ("b", 2.0, 0.7)])
    assert data.quality_cost(main.drop(columns="detection_auroc"), "w", "s")[0] == "clip"
    assert data.quality_cost(main.drop(columns="cost_seconds_median"), "w", "s") == ("detection_auroc", [])


def _board(t: Path, features: range) -> Path:
    """A leaderboard directory made from one run's scores on source w, a small and a large LM: methods
    cheap, mid and dear, their detection AUROC rising with their cost, oracle the same for all."""
    rows = [{"source": "w", "source_id": SOURCE_ID, "protocol": "featurebench", "lm": lm, "method": m, "feature": f, "explanation": f"{m} {f}",
             "concept": "red", "category": "colour", "level": "low", "aligned": True,
             "detection_auroc": q + f / 100, "oracle": float(f % 2), "cost_seconds": c * (f + 1),
             "cost_prompt_tokens": 1000.0 * c, "cost_answer_tokens": 12.0, "cost_images": 5.0}
            for lm in ("small", "large") for m, q, c in (("cheap", 0.6, 0.01), ("mid", 0.7, 1.0), ("dear", 0.8, 9.0))
            for f in features]
    (t / "run").mkdir()
    pd.DataFrame(rows).to_csv(t / "run" / "scores.csv", index=False)
    regenerate(t / "board", [t / "run"])
    return t / "board"


def test_index_shows_costs_and_quality_against_cost_where_rows_have_costs(tmp_path):
    page = (write_report([], tmp_path / "report", _board(tmp_path, range(3))) / "index.html").read_text()
    plots = [p.split("</svg>")[0] for p in page.split('<svg class="plot scatter"')[1:]]
    assert len(plots) == 2 and all(p.count("<circle") == 3 for p in plots)  # one per LM, one point per method
    assert "w · small: quality vs cost" in plots[0] and "median seconds per feature (log scale)" in plots[0]
    assert all(f">{m}</text>" in p for p in plots for m in ("cheap", "mid", "dear"))
    assert page.count('<div class=beside><table class="board') == 2
    assert page.count('<th class="num cost"') == 2 * len(COST_COLUMNS) and ">prompt tokens</th>" in page
    assert 'data-value="18">18</td>' in page and 'data-value="9000">9,000</td>' in page  # dear: median 9 * 2, 9,000


def test_pairwise_table_marks_significant_cells():
    table = html.pairwise_table("s", ["x", "y"], [[math.nan, 0.01], [0.99, math.nan]])
    assert table.count("✓") == 1 and 'title="x &gt; y: p = 0.01"' in table


def test_runs_of_one_source_name_share_its_sae_and_pools():
    first, other_lm = _run("r1", "s", ("topk",), range(2)), _run("r2", "l", ("topk",), range(2))
    assert list(first_runs([first, other_lm])) == ["w"] and first_runs([first, other_lm])["w"] is first
    resaved = _run("r3", "s", ("topk",), range(2), identity={"sae": "s2", "pools": "p1"})
    with pytest.raises(UsageError, match="runs r1 and r3 were made on different sae under one name 'w'"):
        first_runs([first, resaved])


def test_captions_come_from_a_saved_datasets_caption_column(tmp_path):
    import datasets

    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")})
    captions = ["a red dot", "a blue dot", "a grey dot"]
    rows = {"image": [np.zeros((4, 4, 3), np.uint8)] * 3, "caption": captions}
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "topk"))
    whole = PoolSpec(source=str(tmp_path / "topk"), scoring_source=str(tmp_path / "scoring"))
    assert caption_column(whole) == captions
    assert caption_column(PoolSpec(source=str(tmp_path / "topk"))) is None  # split by the source: another order
    (tmp_path / "folder").mkdir()
    assert caption_column(PoolSpec(source=str(tmp_path / "folder"), scoring_source=str(tmp_path / "folder"))) is None


def _no_run(t):
    return [t / "nope"], t / "out", None


def _run_without_scores(t):
    (t / "run").mkdir()
    return [t / "run"], t / "out", None


def _scored_run(t, meta: str | None):
    (t / "run").mkdir()
    row = {"source": "tiny", "source_id": SOURCE_ID, "protocol": "featurebench", "lm": "small", "method": "m", "feature": 0, "explanation": "red",
           "concept": "red", "category": "colour", "level": "low", "aligned": True}
    pd.DataFrame([row]).to_csv(t / "run" / "scores.csv", index=False)
    if meta is not None:
        (t / "run" / "run.json").write_text(meta)
    return [t / "run"], t / "out", None


def _run_whose_files_are_gone(t):
    """A run.json as the pipeline writes it, whose VLM checkpoint has since been deleted."""
    models = {"vlm": {"family": "llava", "path": str(t / "gone" / "vlm")}, "sae": {"path": str(t / "gone" / "sae")},
              "pool": {"source": str(t / "gone" / "pool")}}
    source = {"name": "tiny", "lm": "small", "source_id": SOURCE_ID, "identity": {}, "models": models,
              "capabilities": ["groundtruth"]}
    return _scored_run(t, json.dumps({"config": {"method": {"top_k": 5}}, "source": source}))


def _out_is_a_file(t):
    (t / "file").write_text("x")
    return [], t / "file", LEADERBOARDS


def _out_is_someone_elses(t):
    (t / "mine").mkdir()
    (t / "mine" / "notes.txt").write_text("x")
    return [], t / "mine", LEADERBOARDS


@pytest.mark.parametrize("make, message", [
    (_no_run, "no such run directory"), (_run_without_scores, "no scores.csv"),
    (lambda t: _scored_run(t, None), "no run.json"), (lambda t: _scored_run(t, "{}"), "not a run record"),
    (_run_whose_files_are_gone, r"gone/vlm is gone since the run; run it again"), (_out_is_a_file, "is a file"),
    (_out_is_someone_elses, "is not an earlier report"), (lambda t: ([], t / "out", t / "none"), "no main.csv"),
    (lambda t: ([], t / "out", None), "nothing to report"),
])
def test_bad_inputs_are_one_line_usage_errors(tmp_path, monkeypatch, make, message):
    monkeypatch.setenv("FEATUREBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UsageError, match=message) as error:
        write_report(*make(tmp_path))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*tmp*"))


def test_leaderboard_only_report_is_whole_and_replaces_an_earlier_one(tmp_path, monkeypatch):
    board = _board(tmp_path, range(12))
    out = write_report([], tmp_path / "report", board)
    assert (out / MARKER).is_file() and (out / "static" / "gallery.js").is_file()
    page = (out / "index.html").read_text()
    main = pd.read_csv(board / "main.csv")
    assert page.count("<table class=\"board") == len(main.groupby(["source", "lm"]))
    assert page.count("<svg") >= 7 and "≈" in page and "✓" in page
    assert page.count('class="plot scatter"') == len(main.groupby(["source", "lm"]))  # quality against cost, per LM
    assert "num cost" in page
    (out / "stale.txt").write_text("from an earlier report")
    monkeypatch.setattr(html, "feature_page", lambda: 1 / 0)  # fails after the index is written
    with pytest.raises(ZeroDivisionError):
        write_report([], out, board)
    assert (out / "stale.txt").exists() and not list(tmp_path.glob(".*"))  # the earlier report is untouched
    monkeypatch.undo()
    write_report([], out, board)
    assert not (out / "stale.txt").exists() and (out / "index.html").is_file()


# Machado, Oliveira & Fernandes (2009) dichromacy simulation matrices at full severity, on linear RGB.
DICHROMACY = {
    "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]],
    "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]],
    "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]],
}


def lightness(srgb_N3: np.ndarray, vision: str | None = None) -> np.ndarray:
    """CIE L* of sRGB colours, as seen with normal vision or simulated dichromacy."""
    c = srgb_N3 / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    if vision:
        linear = np.clip(linear @ np.array(DICHROMACY[vision]).T, 0, 1)
    y = linear @ np.array([0.2126, 0.7152, 0.0722])
    return np.where(y > (6 / 29) ** 3, 116 * np.cbrt(y) - 16, y * (29 / 3) ** 3)


@pytest.mark.parametrize("vision", [None, "protanopia", "deuteranopia", "tritanopia"])
def test_heat_ramp_reads_in_order_for_colour_blind_viewers(vision):
    """The heat ramp stays ordered by lightness alone, so activation strength reads without hue."""
    l_star = lightness(heat_colours(np.linspace(0, 1, 21)), vision)
    assert (np.diff(l_star) < 0).all()
    assert l_star[0] - l_star[-1] > 30
    grey = np.array([[255, 255, 255], [119, 119, 119], [0, 0, 0]], np.float32)  # known L*: 100, 50, 0
    assert lightness(grey, vision) == pytest.approx([100, 50.0, 0], abs=0.1)  # dichromats see greys unchanged


def test_pairwise_table_shows_the_mrd_beside_every_comparison():
    from benchmark.report.data import pairwise_noise

    pairwise = pd.DataFrame([{"source": "s", "lm": "large", "metric": "m", "method_a": a, "method_b": b, "diff": d,
                              "mrd": 0.05} for a, b, d in (("x", "y", 0.1), ("y", "x", -0.1))])
    mrd, diff = pairwise_noise(pairwise, "s", "large", "m", ["x", "y"])
    assert mrd == 0.05 and diff[0][1] == 0.1 and math.isnan(diff[0][0])
    table = html.pairwise_table("large", ["x", "y"], [[math.nan, 0.01], [0.99, math.nan]], mrd, diff)
    assert "MRD 0.05</caption>" in table and "difference +0.1 (beyond the MRD)" in table
    assert "difference -0.1 (within the MRD)" in table
    assert math.isnan(pairwise_noise(pairwise.drop(columns="mrd"), "s", "large", "m", ["x"])[0])
