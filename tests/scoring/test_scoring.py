"""Scoring on the tiny world: every metric through the run, the score cache, validation, the CLI."""
import json
import re

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.config.resolve import resolve
from benchmark.config.run import RunConfig
from benchmark.config.scoring import ScoringConfig
from benchmark.pipeline import run
from benchmark.registry import UsageError
from benchmark.scoring.context import Metric, ScoringContext, score
from benchmark.scoring.validation import concept_pairs, pairwise_auroc, validate
from metrics import all_metrics


@pytest.fixture(scope="module")
def scored(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    (out / "blank.csv").write_text("feature,explanation\n" + "".join(f"{f},qwerty\n" for f in range(48)))
    return run(RunConfig(methods=("oracle", "random-words"), features="0:48", lm="small", world="tiny",
                         out=str(out), explanations=str(out / "blank.csv")))


def test_a_run_scores_every_explanation_with_every_metric(world, scored):
    table = pd.read_csv(scored / "scores.csv")
    assert len(table) == 3 * 48
    for m in all_metrics():
        assert set(m.columns) <= set(table.columns)
    alive = ScoringContext(world.source("small"), resolve(ScoringConfig(), None)).firing_F
    oracle = table[(table.method == "oracle") & alive[table.feature] & table.concept.notna()]
    assert len(oracle) > 10 and (oracle.oracle == 1).all() and np.allclose(oracle.semantic_similarity, 1, atol=1e-5)
    nothing = table[(table.method == "submission:blank") & alive[table.feature]]  # names nothing renderable
    assert len(nothing) and (nothing.generation_auroc == 0.5).all() and (nothing.localization_iou == 0).all()
    dead = table[~alive[table.feature]]
    assert dead.detection_auroc.isna().all()


def test_scores_are_cached_per_feature_and_explanation(world):
    calls = []

    def count(ctx, features, texts):
        calls.append(list(zip(features, texts)))
        return {"n": np.array([len(t) for t in texts], float)}

    metric = Metric("count-chars", ("n",), True, (), count)
    ctx = ScoringContext(world.source("small"), resolve(ScoringConfig(), None))
    alive = [int(f) for f in np.flatnonzero(ctx.firing_F)[:3]]
    first = score(ctx, metric, alive, ["red", "blue", "red"])
    again = score(ctx, metric, alive + alive[:1], ["red", "blue", "red", "green"])
    assert first.n.tolist() == [3, 4, 3] and again.n.tolist() == [3, 4, 3, 5]
    assert calls == [list(zip(alive, ["red", "blue", "red"])), [(alive[0], "green")]]


def test_pairwise_auroc_known_answer():
    assert pairwise_auroc(np.array([1.0, 2, 3]), np.array([0.0, 2, 4])) == pytest.approx((1 + 0.5 + 0) / 3)


def test_validation_pairs_and_report(world):
    source = world.source("small")
    pairs = concept_pairs(source.capabilities.groundtruth)
    assert len(pairs) and (pairs.right != pairs.wrong).all()
    report = validate(source, all_metrics(), ScoringContext(source, resolve(ScoringConfig(), source.protocol)))
    assert set(report) == {m.name for m in all_metrics()}
    assert report["oracle"] == {"pairwise_auroc": 1.0, "spearman_oracle": 1.0}
    assert report["detection"]["pairwise_auroc"] > 0.7  # the scorer knows the world's words


def test_cli_metrics_validate_and_leaderboard(world, scored, tmp_path, capsys):
    assert main(["metrics"]) == 0 and "detection_auroc" in capsys.readouterr().out
    assert main(["validate-metrics", "--world", "tiny", "--lm", "small", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "simulation" in report and {"pairwise_auroc", "spearman_oracle", "separation", "constant",
                                       "notes"} <= set(report["simulation"])
    assert main(["leaderboard", "--add", str(scored), "--dir", str(tmp_path / "board")]) == 0
    assert "| tiny | small | oracle |" in capsys.readouterr().out
    main_table = pd.read_csv(tmp_path / "board" / "main.csv")
    assert main_table.set_index("method").loc["oracle", "oracle"] == 1.0


def test_tune_picks_the_best_coefficient_on_validation_and_reports_only_the_rest(world, tmp_path):
    run_dir = run(RunConfig(methods=("steering", "random-direction"), features="0:40", lm="small", world="tiny",
                            out=str(tmp_path), metrics="oracle", tune="detection", tune_features="0:12"))
    tuning = json.loads((run_dir / "run.json").read_text())["tuning"]
    sweep = tuning["fields"]["steering_multiplier"]
    assert tuning["validation_features"] == list(range(12)) and sweep["tuned_with"] == "steering"
    assert set(sweep["means"]) == {"1.0", "2.0", "4.0", "8.0"}
    assert sweep["chosen"] == float(max(sweep["means"], key=sweep["means"].get))
    assert "hybrid_multiplier" not in tuning["fields"]  # no requested method reads it
    table = pd.read_csv(run_dir / "scores.csv")
    assert sorted(set(table.feature)) == list(range(12, 40)) and set(table.method) == {"steering", "random-direction"}


def test_what_runs_but_should_worry_is_one_warning_line(world, capsys):
    """A metric NaN for every feature, and a tuning slice on which the tuning metric is undefined."""
    import methods  # noqa: F401  (registers the built-in methods)
    from benchmark.config.method import MethodConfig
    from benchmark.explaining.tuning import tune
    from benchmark.pipeline import score_rows
    from benchmark.registry import METHODS

    undefined = Metric("undefined", ("u",), True, (), lambda ctx, fs, ts: {"u": np.full(len(fs), np.nan)})
    source = world.source("small")
    sctx = ScoringContext(source, resolve(ScoringConfig(), source.protocol))
    rows = pd.DataFrame({"source": "tiny", "source_id": "x", "protocol": "featurebench", "lm": "small", "method": "m", "feature": [0, 1], "explanation": ["a", "b"]})
    capsys.readouterr()
    score_rows(sctx, [undefined], rows)
    warnings = re.findall(r"warning: [^\r\n]*", capsys.readouterr().err)  # progress bars share stderr
    assert warnings == ["warning: u is NaN for every feature (dead features, or too few scoring images to define it)"]
    config, record = tune(source, resolve(MethodConfig(), source.protocol), {"steering": METHODS.get("steering")}, undefined, sctx, [0, 1])
    warnings = re.findall(r"warning: [^\r\n]*", capsys.readouterr().err)
    assert len(warnings) == 1 and warnings[0].startswith("warning: --tune: u is NaN for every validation feature")
    assert config.steering_multiplier == 1.0 == record["fields"]["steering_multiplier"]["chosen"]


def test_tune_sweeps_absolute_coefficients_and_named_settings(world, tmp_path):
    from benchmark.config.method import MethodConfig

    config = RunConfig(methods=("steering", "hybrid"), features="0:24", lm="small", world="tiny", out=str(tmp_path),
                       metrics="detection", tune="detection", tune_features="0:8",
                       sweep=("intervention=add,clamp", "top_images=masked,heatmap"),
                       method=MethodConfig(steering_coeff=100.0, hybrid_coeff=25.0))
    meta = json.loads((run(config) / "run.json").read_text())
    fields = meta["tuning"]["fields"]
    assert list(fields) == ["steering_coeff", "hybrid_coeff", "intervention", "top_images"]
    assert set(fields["steering_coeff"]["means"]) == {"50.0", "100.0", "200.0", "400.0"}
    assert set(fields["intervention"]["means"]) == {"add", "clamp"} and fields["top_images"]["tuned_with"] == "topk"
    for field, sweep in fields.items():
        assert meta["method_config"][field] == sweep["chosen"]
    assert meta["method_config"]["steering_multiplier"] is None and meta["method_config"]["hybrid_multiplier"] is None


@pytest.mark.parametrize("sweep, message", [
    (("colour=red",), "--sweep 'colour=red': expected FIELD=V1,V2 with FIELD one of"),
    (("intervention=add,bend",), "intervention is one of add, replace, clamp"),
    (("steering_coeff=big",), "steering_coeff takes numbers"),
])
def test_bad_sweeps_are_one_line_errors(sweep, message):
    from benchmark.explaining.tuning import parse_sweep
    from benchmark.registry import UsageError

    with pytest.raises(UsageError, match=re.escape(message)):
        parse_sweep(sweep)


def test_a_new_steering_method_declaring_its_coefficient_is_tuned_by_it(world, tmp_path, monkeypatch):
    from benchmark.registry import METHODS

    monkeypatch.setattr(METHODS, "_items", dict(METHODS._items))  # what the plug-in registers stays in this test
    plugin = tmp_path / "my_steer.py"
    plugin.write_text(
        "from benchmark.explaining.context import method\n"
        "@method('my-steer', steers=True, tunes=('steering_multiplier',))\n"
        "def explain(ctx, features):\n"
        "    return ctx.answer(ctx.empty_images(len(features)), ctx.steering_vectors(features))\n"
        "def undeclared(ctx, features):\n"
        "    return ['x'] * len(features)\n")
    run_dir = run(RunConfig(methods=(f"{plugin}:explain",), features="0:16", lm="small", world="tiny",
                            out=str(tmp_path), metrics="detection", tune="detection", tune_features="0:4"))
    tuning = json.loads((run_dir / "run.json").read_text())["tuning"]
    assert list(tuning["fields"]) == ["steering_multiplier"]
    assert tuning["fields"]["steering_multiplier"]["tuned_with"] == "my-steer"
    quiet = run(RunConfig(methods=(f"{plugin}:undeclared",), features="0:16", lm="small", world="tiny",
                          out=str(tmp_path), metrics="detection", tune="detection", tune_features="0:4"))
    assert json.loads((quiet / "run.json").read_text())["tuning"]["fields"] == {}  # reads nothing tunable


@pytest.mark.parametrize("returned, says", [
    ({"other": [1.0, 2.0]}, "it returned ['other']"),
    ([1.0, 2.0], "it returned list"),
    ({"u": [1.0]}, "u has 1"),
    ({"u": ["a", "b"]}, "u is not numbers")])
def test_a_metric_returning_the_wrong_thing_is_one_line_naming_it(world, returned, says):
    wrong = Metric("wrong-shape", ("u",), True, (), lambda ctx, fs, ts: returned)
    with pytest.raises(UsageError, match=rf"metric 'wrong-shape' must return \{{column: 2 numbers\}} for columns u; "
                                         rf"{re.escape(says)}"):
        score(ScoringContext(world.source("small"), resolve(ScoringConfig(), None)), wrong, [0, 1], [f"text {returned}", "b"])
