"""The README's "Submit a method", followed as a newcomer would: write a method in a file, run it
on the default world, check the run, add it to (a copy of) the committed leaderboards, and see it in
the regenerated tables."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # every test runs the CLI in a subprocess
METHOD = '''from benchmark.explaining.context import method


@method("first-word")
def explain(ctx, features):
    """Top-k's answer, its first word only."""
    from methods.topk import topk

    return [(text.split() or ["nothing"])[0] for text in topk(ctx, features)]
'''


def cli(cwd: Path, cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FEATUREBENCH_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_the_submission_guide_ends_in_a_leaderboard_with_the_new_method(world_cache, tmp_path):
    (tmp_path / "mine.py").write_text(METHOD)
    shutil.copytree(ROOT / "leaderboards", tmp_path / "leaderboards")  # what a pull request would change
    metrics = "detection,simulation,oracle"
    done = cli(tmp_path, world_cache, "--method", "mine.py:explain", "--lm", "large", "--metrics", metrics,
               "--out", "results")
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (tmp_path / "results").iterdir()
    assert run_dir.name.startswith("default@1-large-")
    checked = cli(tmp_path, world_cache, "check-submission", str(run_dir))
    assert checked.returncode == 0, checked.stdout
    assert "ok    same source: default@1 large: identity" in checked.stdout
    assert "ok    rows complete: default@1 large first-word: 1024 of 1024 features" in checked.stdout
    added = cli(tmp_path, world_cache, "leaderboard", "--add", str(run_dir))
    assert added.returncode == 0, added.stderr[-2000:]
    main = pd.read_csv(tmp_path / "leaderboards" / "main.csv").set_index(["source", "lm", "method"])
    assert main.loc[("default@1", "large", "first-word"), "n_features"] == 881
    pairs = pd.read_csv(tmp_path / "leaderboards" / "pairwise.csv")
    assert {"first-word"} <= set(pairs.method_a) and len(pairs[pairs.method_a == "first-word"]) > 0


def test_a_partial_run_fails_its_check(world_cache, tmp_path):
    (tmp_path / "mine.py").write_text(METHOD)
    done = cli(tmp_path, world_cache, "--method", "mine.py:explain", "--lm", "large", "--features", "0:8", "--metrics",
               "detection", "--out", "results")
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (tmp_path / "results").iterdir()
    checked = cli(tmp_path, world_cache, "check-submission", str(run_dir), "--leaderboards", str(ROOT / "leaderboards"))
    assert checked.returncode == 2
    assert "FAIL  rows complete: default@1 large first-word: 8 of 1024 features; missing [8, 9, 10, 11, 12]..." in \
        checked.stdout
