"""Plug-ins as users ship them: `examples/featurebench-example` (one plug-in of every kind, declared
as entry points) and `examples/featurebench-broken` (every entry point the wrong kind of object) are
each built and installed with pip into a target directory, which the command line then has on its path;
each plug-in is used by name through the CLI, and each broken one is one line, exit 2, nothing
written."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
pytestmark = pytest.mark.slow  # every test installs with pip and runs the CLI in a subprocess


def install(package: str, tmp_path_factory) -> Path:
    """The example package built and installed with pip into a directory of its own (with its dist-info)."""
    target, source = tmp_path_factory.mktemp("site"), tmp_path_factory.mktemp("sources") / package
    shutil.copytree(EXAMPLES / package, source)  # pip builds in place: not in the checkout
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)], check=True, capture_output=True)
    assert list(target.glob(f"{package.replace('-', '_')}-*.dist-info"))
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    return install("featurebench-example", tmp_path_factory)


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    return install("featurebench-broken", tmp_path_factory)


def cli(installed: Path, world_cache: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m benchmark ARGS` with an installed package on the path and the tests' tiny world."""
    env = {**os.environ, "FEATUREBENCH_CACHE": str(world_cache),
           "PYTHONPATH": os.pathsep.join([str(installed), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "benchmark", *args], env=env, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent)


def only_run(out: Path) -> Path:
    (run_dir,) = out.iterdir()
    return run_dir


def test_an_installed_method_and_metric_appear_in_a_runs_rows(world, world_cache, installed, tmp_path):
    done = cli(installed, world_cache, "--world", "tiny", "--lm", "small", "--method", "example-first-word,topk",
               "--metrics", "explanation-length,detection", "--features", "0:16", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = only_run(tmp_path / "out")
    rows = [json.loads(line) for line in (run_dir / "explanations.jsonl").read_text().splitlines()]
    said = {(r["method"], r["feature"]): r["explanation"] for r in rows}
    for f in range(16):  # the plug-in's own rule, over the built-in's answers
        assert said["example-first-word", f] == (said["topk", f].split() or ["nothing"])[0]
    scores = pd.read_csv(run_dir / "scores.csv", keep_default_na=False)
    assert (scores.explanation_length == scores.explanation.str.split().str.len()).all()
    assert {"detection_auroc", "source_id"} <= set(scores.columns)
    board = tmp_path / "board"  # a lower-is-better metric: one word beats several in pairwise.csv
    assert cli(installed, world_cache, "leaderboard", "--add", str(run_dir), "--dir", str(board)).returncode == 0
    pairs = pd.read_csv(board / "pairwise.csv").set_index(["metric", "method_a", "method_b"])
    assert pairs.loc[("explanation_length", "example-first-word", "topk"), "a_better"]
    assert not pairs.loc[("explanation_length", "topk", "example-first-word"), "a_better"]


def test_an_installed_adapter_explainer_generator_and_segmenter_feed_a_run(world, world_cache, installed, tmp_path):
    config = world.run_configs()["small"].read_text().replace('family = "llava"', 'family = "example-llava"')
    assert 'family = "example-llava"' in config
    config += ('\n[explainer]\nkind = "example-echo"\nword = "blue"\n'
               '\n[generator]\nkind = "example-solid"\n\n[segmenter]\nkind = "example-everywhere"\n')
    (tmp_path / "run.toml").write_text(config)
    done = cli(installed, world_cache, "--config", str(tmp_path / "run.toml"), "--method", "topk", "--metrics",
               "generation-auroc,localization-iou", "--features", "0:16", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = only_run(tmp_path / "out")
    scores = pd.read_csv(run_dir / "scores.csv")
    assert set(scores.explanation) == {"blue"}  # the explainer answered
    assert scores.generation_auroc.notna().any() and scores.localization_iou.notna().any()
    source = json.loads((run_dir / "run.json").read_text())["source"]
    assert source["models"]["vlm"]["family"] == "example-llava"  # the adapter opened the checkpoint
    assert {"generator", "segmenter"} <= set(source["identity"])


def test_an_installed_world_builds(world, world_cache, installed):
    done = cli(installed, world_cache, "world", "build", "--preset", "example-tiny")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("world example-tiny (built in")


@pytest.mark.parametrize("kind, args", [
    ("method", ["--method", "broken-method"]),
    ("metric", ["--method", "topk", "--metrics", "broken-metric"]),
    ("VLM family", ["--config", "{config}", "--method", "topk"]),
    ("explainer", ["--config", "{config}", "--method", "topk"]),
    ("generator", ["--config", "{config}", "--method", "topk"]),
    ("segmenter", ["--config", "{config}", "--method", "topk"]),
    ("world", ["--world", "broken-world"])])
def test_a_broken_installed_plug_in_is_one_line_exit_2_and_nothing_written(world, world_cache, broken, tmp_path,
                                                                           kind, args):
    config = world.run_configs()["small"].read_text()
    if kind == "VLM family":
        config = config.replace('family = "llava"', 'family = "broken-adapter"')
    elif kind in ("explainer", "generator", "segmenter"):
        config += f'\n[{kind}]\nkind = "broken-{kind}"\n'
    (tmp_path / "run.toml").write_text(config)
    args = [a.replace("{config}", str(tmp_path / "run.toml")) for a in args]
    if kind != "metric":  # `all` would load the broken metric too, which is refused first
        args += ["--metrics", "detection"]
    done = cli(broken, world_cache, *args, "--lm", "small", "--features", "0:4", "--out", str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr[-2000:]
    errors = re.findall(r"error: [^\r\n]*", done.stderr)
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert re.search(rf"{kind} plug-in 'broken-[a-z]+' \(featurebench_broken:NOT_A_PLUGIN\): 3 is not", errors[0])
    assert not (tmp_path / "out").exists()
