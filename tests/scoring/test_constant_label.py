"""The best-constant-label control on hand-made score tables: the search picks the known best label per
metric, in each metric's direction, and the leaderboard flags a method that does not beat it."""
from types import SimpleNamespace

import numpy as np
import pandas as pd

from benchmark.results.leaderboard import constant_flags, constant_name, main_table, pairwise_table
from methods.baselines import GENERIC_LABELS, best_label, candidate_labels

POOL = {  # label -> its score on validation features 0..3 (one metric's headline; NaN: a dead feature)
    "an image": [0.50, 0.52, 0.48, np.nan],
    "red": [0.70, 0.40, 0.65, np.nan],  # mean 0.583: the best
    "striped": [0.55, 0.60, 0.58, np.nan],  # mean 0.577
    "top left": [0.30, 0.20, 0.25, np.nan],  # the lowest: the best where lower is better
}


def test_candidates_are_the_generic_labels_then_the_vocabulary_once_each():
    labels = candidate_labels(["red", "top left", "nothing", " ", "red"])
    assert labels == [*GENERIC_LABELS, "red", "top left"]  # "nothing" is generic already; blanks dropped


def test_best_label_is_the_best_mean_in_the_metrics_direction():
    table = pd.DataFrame(POOL, index=range(4)).T
    label, means = best_label(table, higher_is_better=True)
    assert label == "red" and means["red"] == np.mean([0.70, 0.40, 0.65])
    assert best_label(table, higher_is_better=False)[0] == "top left"
    tied = pd.DataFrame({"a photo": [0.5, 0.5], "objects": [0.4, 0.6]}).T
    assert best_label(tied)[0] == "a photo"  # a tie goes to the first (more generic) candidate
    dead = pd.DataFrame({"x": [np.nan], "y": [np.nan]}).T
    assert best_label(dead)[0] == "x"


def test_constant_labels_are_chosen_per_metric_on_the_validation_features(monkeypatch):
    """The run's search scores every candidate on the validation features with each metric."""
    from benchmark.explaining import tuning

    second = {label: [1 - v for v in values] for label, values in POOL.items()}  # the order reversed
    tables = {"detection": POOL, "simulation": second}

    def fake_score(sctx, metric, features, texts):
        return pd.DataFrame({metric.headline: [tables[metric.name][t][f] for f, t in zip(features, texts)]})

    monkeypatch.setattr(tuning, "score", fake_score)
    metrics = [SimpleNamespace(name="detection", headline="detection_auroc", higher_is_better=True),
               SimpleNamespace(name="simulation", headline="simulation_r", higher_is_better=True)]
    chosen = tuning.constant_labels(None, metrics, [0, 1, 2, 3], list(POOL))
    assert chosen["detection"]["label"] == "red" and chosen["simulation"]["label"] == "top left"
    assert chosen["detection"]["validation_features"] == [0, 1, 2, 3]
    assert chosen["detection"]["means"]["an image"] == 0.5


def test_constant_rows_give_the_chosen_label_to_every_feature():
    from benchmark.pipeline import constant_rows

    rows = constant_rows({"source": "w", "lm": "large"}, {"detection": {"label": "red"}}, [4, 5])
    assert [(r["method"], r["feature"], r["explanation"]) for r in rows] == [
        ("constant-label[detection]", 4, "red"), ("constant-label[detection]", 5, "red")]
    assert rows[0]["cost_prompt_tokens"] == 0.0


def test_a_method_that_does_not_beat_the_constant_label_is_flagged():
    """On detection, `good` beats the constant label by 0.3 on every feature; `bad` scores 0.01 below it."""
    control = constant_name("detection")
    means = {"good": 0.8, "bad": 0.49, control: 0.5}
    rows = pd.DataFrame([{"source": "w", "lm": "large", "method": m, "protocol": "featurebench", "feature": f,
                          "detection_auroc": v + 0.001 * (f % 7)} for m, v in means.items() for f in range(40)])
    pairs = pairwise_table(rows, ["detection_auroc"], {"detection_auroc": True})
    main = constant_flags(main_table(rows, ["detection_auroc"]), pairs).set_index("method")
    assert main.loc["good", "detection_auroc_beats_constant"] is True
    assert main.loc["bad", "detection_auroc_beats_constant"] is False
    assert main.loc[control, "detection_auroc_beats_constant"] is None
    plain = rows[rows.method != control]  # no control in the rows: no flag column
    assert "detection_auroc_beats_constant" not in constant_flags(main_table(plain, ["detection_auroc"]),
                                                                  pairwise_table(plain, ["detection_auroc"]))
