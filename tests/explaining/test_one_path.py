"""One path: the world's files, named by the run config its build wrote, run as real models give the
explanations and scores the world gives, computed again from an empty cache."""
from __future__ import annotations

import json

import pandas as pd

from benchmark.cli import main
from benchmark.config.run import RunConfig
from benchmark.pipeline import run
from tests.timing import untimed

METHODS = ("steering", "topk", "hybrid")
METRICS = "detection,simulation,clip-score"


def test_the_worlds_run_config_gives_the_worlds_explanations_and_scores(world, tmp_path, monkeypatch, capsys):
    as_world = run(RunConfig(methods=METHODS, features="0:64", lm="large", world="tiny", metrics=METRICS,
                             out=str(tmp_path / "world")))
    config = world.run_configs()["large"]
    monkeypatch.setenv("FEATUREBENCH_CACHE", str(tmp_path / "empty"))  # pools, activations, scales, all anew
    assert main(["--config", str(config), "--method", ",".join(METHODS), "--features", "0:64", "--metrics", METRICS,
                 "--out", str(tmp_path / "files")]) == 0
    (as_files,) = (tmp_path / "files").iterdir()
    assert untimed(as_files) == untimed(as_world)
    columns = ["source", "source_id", "protocol", "lm", "method", "feature", "explanation", "detection_auroc",
               "detection_balanced_accuracy",
               "detection_precision_at_k", "simulation_r", "simulation_spearman", "simulation_patch_r", "clip_score"]
    got, expected = pd.read_csv(as_files / "scores.csv"), pd.read_csv(as_world / "scores.csv")
    pd.testing.assert_frame_equal(got[columns], expected[columns])
    assert expected.concept.notna().any() and got.concept.isna().all()  # the config names no ground truth
    world_meta, files_meta = (json.loads((d / "run.json").read_text())["source"] for d in (as_world, as_files))
    assert files_meta["identity"] == world_meta["identity"] and files_meta["layer"] == world_meta["layer"]
    assert "groundtruth" in world_meta["capabilities"] and files_meta["capabilities"] == []

    capsys.readouterr()
    assert main(["--config", str(config), "--method", "oracle", "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: oracle: needs groundtruth, which source tiny does not have"
    assert not (tmp_path / "refused").exists()
