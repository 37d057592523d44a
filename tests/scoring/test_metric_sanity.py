"""Each metric says what it can tell apart: the separation and constant-label numbers on hand-made rows,
the README's verdicts by its fixed rules, and validate-metrics' report with a board's numbers."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.results.board_readme import (
    BEATEN,
    DOES_NOT_RANK,
    SEPARATION_FLOOR,
    constant_margin,
    readme,
    sanity,
    verdict,
    write_readme,
)
from benchmark.results.board_rows import load_rows
from benchmark.scoring.validation import with_board_checks
from metrics import all_metrics

SOURCE, RANDOM = "w@1", "w@1+random-sae-0"
N = 60


def rows_of(source: str, method: str, detection: np.ndarray, clip: np.ndarray, lm: str = "large",
            explanation: str = "x") -> pd.DataFrame:
    return pd.DataFrame({"source": source, "lm": lm, "method": method, "source_id": f"id-{source}",
                         "protocol": "featurebench", "feature": np.arange(len(detection)), "explanation": explanation,
                         "concept": "", "category": "", "level": "", "aligned": False,
                         "detection_auroc": detection, "clip_score": clip})


def board() -> pd.DataFrame:
    """A trained SAE whose detection scores its random SAE's equal, feature for feature (detection cannot
    tell them apart), and whose clip scores are all above the random SAE's (clip can); the constant label
    chosen by clip-score scores above every method on clip, the one chosen by detection below them."""
    rng = np.random.default_rng(0)
    detection = {m: rng.uniform(0.5, 0.8, N) for m in ("topk", "steering", "hybrid")}
    parts = []
    for m, d in detection.items():
        parts.append(rows_of(SOURCE, m, d, 0.6 + 0.1 * rng.uniform(size=N)))
        parts.append(rows_of(RANDOM, m, d, 0.2 + 0.1 * rng.uniform(size=N)))
    parts.append(rows_of(SOURCE, "random-words", np.full(N, 0.99), np.full(N, 0.99)))  # a control: never "best"
    parts.append(rows_of(SOURCE, "constant-label[detection]", np.full(N, 0.5), np.full(N, 0.5), explanation="objects"))
    parts.append(rows_of(SOURCE, "constant-label[clip-score]", np.full(N, 0.6), np.full(N, 0.9),
                         explanation="a photo"))
    return pd.concat(parts, ignore_index=True)


def metrics():
    return [m for m in all_metrics() if m.name in ("detection", "clip-score")]


def test_random_rows_equal_to_the_trained_ones_do_not_rank_saes():
    report = sanity(board(), SOURCE, "large", metrics())
    detection = report["detection"]
    assert detection["random_sae"] == RANDOM
    for method in ("topk", "steering", "hybrid"):
        s = detection["separation"][method]
        assert s["auroc"] == 0.5 and s["difference"] == 0.0 and s["ci_low"] <= 0.5 <= s["ci_high"]
    assert DOES_NOT_RANK in verdict(detection) and BEATEN not in verdict(detection)
    clip = report["clip-score"]["separation"]["topk"]
    assert clip["auroc"] == 1.0 and clip["ci_low"] >= SEPARATION_FLOOR  # every trained feature above every random one


def test_a_constant_label_above_every_method_beats_the_metric():
    rows = board()
    clip = constant_margin(rows[rows.source == SOURCE], "clip-score", "clip_score")
    methods = rows[(rows.source == SOURCE) & rows.method.isin(["topk", "steering", "hybrid"])]
    best = methods.groupby("method").clip_score.mean()
    assert clip["method"] == best.idxmax() and clip["label"] == "a photo"  # random-words (0.99) is a control
    assert clip["margin"] == pytest.approx(round(best.max() - 0.9, 4)) and clip["margin"] < 0
    entry = sanity(rows, SOURCE, "large", metrics())["clip-score"]
    assert verdict(entry).startswith(f"{BEATEN} ('a photo')")
    assert "tells trained features from random ones (AUROC 1.00)" in verdict(entry)
    detection = sanity(rows, SOURCE, "large", metrics())["detection"]["constant"]
    best = methods.groupby("method").detection_auroc.mean()
    assert detection["label"] == "objects" and detection["method"] == best.idxmax()
    assert detection["margin"] == pytest.approx(round(best.max() - 0.5, 4))  # its constant label scores 0.5


def test_missing_controls_give_none_and_say_so():
    rows = board()
    rows = rows[(rows.source == SOURCE) & ~rows.method.str.startswith("constant-label")]
    entry = sanity(rows, SOURCE, "large", metrics())["detection"]
    assert entry["separation"] is None and entry["constant"] is None and entry["random_sae"] is None
    assert any("no random-SAE rows" in n for n in entry["notes"])
    assert any("constant-label[detection]" in n for n in entry["notes"])
    assert verdict(entry) == "margin over a constant label not measured; trained vs random SAE not measured"
    on_other_lm = sanity(board(), SOURCE, "small", metrics())["detection"]
    assert on_other_lm["separation"] is None and on_other_lm["constant"] is None


def test_readme_states_each_columns_verdict_with_its_numbers_and_is_deterministic(tmp_path):
    rows = board()
    text = readme(rows, {"detection": {"pairwise_auroc": 0.9, "spearman_oracle": 0.5}})
    assert text == readme(rows.sample(frac=1.0, random_state=1), {"detection": {"pairwise_auroc": 0.9,
                                                                              "spearman_oracle": 0.5}})
    lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| `")}
    assert DOES_NOT_RANK in lines["| `detection_auroc`"] and "0.50 [" in lines["| `detection_auroc`"]
    assert "0.900 / 0.500" in lines["| `detection_auroc`"] and "– / –" in lines["| `clip_score`"]
    assert BEATEN in lines["| `clip_score`"] and "1.00 [1.00, 1.00]" in lines["| `clip_score`"]
    assert "## w@1, large LM" in text and "w@1+random-sae-0, large" not in text  # a random SAE: no section
    (tmp_path / "rows").mkdir()
    for (source, lm), part in rows.groupby(["source", "lm"]):
        part.to_csv(tmp_path / "rows" / f"{source}-{lm}.csv.gz", index=False)
    fpath = write_readme(tmp_path)
    assert fpath.read_bytes() == readme(load_rows(tmp_path), board=tmp_path.as_posix()).encode()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["README.md", "rows"]


def test_committed_readme_regenerates_byte_for_byte():
    committed = Path(__file__).resolve().parents[2] / "leaderboards"
    assert (committed / "README.md").read_bytes() == readme(load_rows(committed), board="leaderboards").encode(), (
        "regenerate: python -m benchmark leaderboard --dir leaderboards --readme")


def test_validation_report_carries_the_boards_numbers(tmp_path):
    (tmp_path / "rows").mkdir()
    rows = board()
    for (source, lm), part in rows.groupby(["source", "lm"]):
        part.to_csv(tmp_path / "rows" / f"{source}-{lm}.csv.gz", index=False)
    agreement = {"detection": {"pairwise_auroc": 0.9, "spearman_oracle": 0.5},
                 "clip-score": {"pairwise_auroc": 0.8, "spearman_oracle": 0.4}}
    report = with_board_checks(agreement, tmp_path, SOURCE, "large", metrics(), "featurebench")
    assert report["detection"]["pairwise_auroc"] == 0.9 and report["detection"]["separation"]["topk"]["auroc"] == 0.5
    assert report["clip-score"]["constant"]["margin"] < 0 and report["clip-score"]["random_sae"] == RANDOM
    json.dumps(report, allow_nan=False)  # None, never NaN, where a number is missing
    none = with_board_checks(agreement, tmp_path / "missing", SOURCE, "large", metrics())
    assert none["detection"]["separation"] is None and none["detection"]["constant"] is None
    assert "no score rows" in none["detection"]["notes"][0]
    other = with_board_checks(agreement, tmp_path, SOURCE, "large", metrics(), "seed")
    assert any("protocol featurebench, not seed" in n for n in other["detection"]["notes"])


def test_cli_readme_writes_only_the_readme(tmp_path, capsys):
    from benchmark.cli import main

    shutil.copytree(Path(__file__).resolve().parents[2] / "leaderboards" / "rows", tmp_path / "rows")
    validation = tmp_path / "validation.json"
    validation.write_text("detection   ...\n" + json.dumps({"detection": {"pairwise_auroc": 0.9,
                                                                         "spearman_oracle": 0.5}}) + "\n")
    assert main(["leaderboard", "--dir", str(tmp_path), "--readme", "--validation", str(validation)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'README.md'}"
    text = (tmp_path / "README.md").read_text()
    assert "0.900 / 0.500" in text and not (tmp_path / "main.csv").exists()
    assert main(["leaderboard", "--dir", str(tmp_path), "--readme", "--add", str(tmp_path)]) == 2


def test_cli_validate_metrics_json_carries_the_boards_numbers(tmp_path, monkeypatch, capsys):
    """The command's wiring, with the world's ground-truth agreement stubbed (`validate` itself is tested on
    the world in test_scoring.py): the board's separation and constant-label margin join each metric."""
    from types import SimpleNamespace

    import benchmark.scoring.context
    import benchmark.scoring.validation
    import benchmark.sources
    from benchmark.cli import main

    (tmp_path / "rows").mkdir()
    for (source, lm), part in board().groupby(["source", "lm"]):
        part.to_csv(tmp_path / "rows" / f"{source}-{lm}.csv.gz", index=False)
    stub = SimpleNamespace(name=SOURCE, lm="large", protocol="featurebench")
    monkeypatch.setattr(benchmark.sources, "open_source", lambda recipe: stub)
    monkeypatch.setattr(benchmark.scoring.context, "ScoringContext", lambda source, config: None)
    monkeypatch.setattr(benchmark.scoring.validation, "validate", lambda source, metrics, sctx: {
        m.name: {"pairwise_auroc": 0.9, "spearman_oracle": 0.5} for m in metrics})
    assert main(["validate-metrics", "--metrics", "detection,clip-score", "--board", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    report = json.loads(out[-1])
    assert set(report) == {"detection", "clip-score"}
    assert {"pairwise_auroc", "spearman_oracle", "separation", "constant", "random_sae",
            "notes"} <= set(report["detection"])
    assert set(report["detection"]["separation"]) == {"topk", "steering", "hybrid"}
    assert report["detection"]["separation"]["topk"]["auroc"] == 0.5 and report["detection"]["random_sae"] == RANDOM
    assert report["clip-score"]["constant"]["margin"] < 0 and report["clip-score"]["constant"]["label"] == "a photo"
    assert any("vs random SAE, AUROC topk 0.500" in line for line in out)
    assert main(["validate-metrics", "--metrics", "detection", "--board", "none", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["detection"]["separation"] is None and report["detection"]["constant"] is None
    assert "--board DIR" in report["detection"]["notes"][0]
