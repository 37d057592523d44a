"""One world on every machine: the default world is read from its shipped files (checked against
their manifest), its pools regenerate bit-identically, it reproduces the committed leaderboard rows,
and a retrained world says how it differs from a shipped one. (Rows of other models under the same
name are refused by the leaderboard: tests/results/test_leaderboard.py.)"""
import gzip
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from benchmark.config.run import RunConfig
from benchmark.pipeline import run
from benchmark.registry import UsageError
from benchmark.world import shipped
from benchmark.world.build import build_world
from benchmark.world.presets import WORLDS

LEADERBOARDS = Path(__file__).resolve().parents[2] / "leaderboards"


@pytest.fixture(scope="module")
def default_world(world_cache):
    """The default world, read as a run reads it (other tests may have read it first in this cache)."""
    return build_world("default")


def test_world_choices_name_what_they_read():
    assert (shipped.choose("default").version, shipped.choose("default").name) == (1, "default@1")
    assert (shipped.choose("default@1").version, shipped.choose("default@train").version) == (1, None)
    assert shipped.choose("default@train").name == "default"
    seeded = shipped.choose("default@seed3")
    assert (seeded.config.seed, seeded.version, seeded.name) == (3, None, "default@seed3")
    assert (shipped.choose("tiny").version, shipped.choose("tiny").name) == (None, "tiny")  # tests train it
    with pytest.raises(UsageError, match=r"shipped: default@1"):
        shipped.choose("default@7")


def test_the_default_world_is_read_from_its_shipped_files_and_its_pools_render_identically(default_world):
    manifest = shipped.verified(shipped.shipped_dir("default", 1))
    assert default_world.name == "default@1"
    for stage in manifest["stages"]:
        assert default_world.dirs[stage] == shipped.shipped_dir("default", 1) / stage
    shipped_stages = shipped.shipped_dir("default", 1)
    built_here = sorted(stage for stage, d in default_world.dirs.items() if shipped_stages not in d.parents)
    assert built_here == ["configs", "pools"]  # nothing trained: every other stage is the shipped files
    assert default_world.metas["pools"]["content"] == manifest["pools"]["content"]  # rendered here just now
    assert default_world.metas["pools"]["config"]["seed"] == 0 and len(default_world.pool("scoring")) == 5000


def test_an_altered_shipped_file_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "default@1"
    shutil.copytree(shipped.shipped_dir("default", 1), copy)
    weights = copy / "sae" / "sae_weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(shipped, "SHIPPED", tmp_path)
    with pytest.raises(UsageError, match=r"sae_weights.safetensors: missing or not the file default@1's manifest "
                                         r"lists; restore it"):
        shipped.verified(copy)


METRICS = ("detection_auroc", "simulation_r", "simulation_patch_r", "clip_score", "localization_iou")
RUN = ["--world", "default", "--lm", "large", "--method", "hybrid", "--features", "0:48",
       "--metrics", "detection,simulation,clip-score,localization-iou"]


def assert_reproduces(ours: pd.DataFrame, board: Path) -> None:
    """What the numeric contract (`benchmark.numerics`) guarantees on any CPU: every explanation and
    source identity equal to the committed rows', every score within 1e-6 on each feature whose
    row counts no near-tie (those may flip a discrete choice: the row says so), the means within 1e-4."""
    with gzip.open(board / "rows" / "default@1-large.csv.gz") as fh:
        committed = pd.read_csv(fh)
    ours = ours.set_index("feature")
    committed = committed[committed.method == "hybrid"].set_index("feature").loc[ours.index]
    assert (ours.explanation == committed.explanation).all()
    assert set(ours.source_id) == set(committed.source_id) and len(set(ours.source_id)) == 1
    steady = (ours.near_ties_topk == 0) & (ours.near_ties_scoring == 0)
    assert steady.sum() >= 40
    for column in METRICS:
        assert ((ours[column] - committed[column]).abs().fillna(0)[steady] <= 1e-6).all(), column
        assert abs(ours[column].mean() - committed[column].mean()) <= 1e-4, column
        assert ours[column].notna().sum() > 30


@pytest.mark.parametrize("protocol, board", [(None, LEADERBOARDS), ("seed", LEADERBOARDS / "seed-protocol")])
def test_the_shipped_world_reproduces_the_committed_leaderboard_rows(default_world, tmp_path, protocol, board):
    """Under both protocols; the seed protocol's clip-score reads its seed-42 draw, its localization
    LangSAM's rule on those images."""
    run_dir = run(RunConfig(methods=("hybrid",), features="0:48", lm="large", world="default", protocol=protocol,
                            metrics="detection,simulation,clip-score,localization-iou", out=str(tmp_path)))
    assert_reproduces(pd.read_csv(run_dir / "scores.csv"), board)


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["MKL_CBWR=COMPATIBLE", "ATEN_CPU_CAPABILITY=default", "DNNL_MAX_CPU_ISA=AVX2"])
def test_the_shipped_world_reproduces_the_committed_rows_on_other_kernels(tmp_path, setting):
    """Another CPU, emulated: each setting makes this machine's BLAS, ATen or oneDNN kernels round
    differently (changing float32 bits measurably), in a fresh process with an empty cache."""
    name, value = setting.split("=")
    env = {**os.environ, name: value, "FEATUREBENCH_CACHE": str(tmp_path / "cache")}
    subprocess.run([sys.executable, "-m", "benchmark", *RUN, "--out", str(tmp_path / "out")], env=env, check=True,
                   capture_output=True)
    (run_dir,) = (tmp_path / "out").iterdir()
    assert_reproduces(pd.read_csv(run_dir / "scores.csv"), LEADERBOARDS)


def test_a_shipped_world_reads_as_the_trained_one_and_a_retrain_says_how_it_differs(world, tmp_path, monkeypatch):
    from benchmark.world.build import trained_stages

    monkeypatch.setattr(shipped, "SHIPPED", tmp_path)
    stages = trained_stages(world.config)
    shipped.write(world.dirs, {"config": world.metas["pools"]["config"], "content": world.pool_content()}, stages,
                  tmp_path / "tiny@1")
    read = build_world("tiny")  # now the latest shipped version
    assert (read.name, read.dirs["sae"]) == ("tiny@1", tmp_path / "tiny@1" / "sae")
    assert read.source("small").source_id == world.source("small").source_id  # the same files, by content
    assert shipped.differences(world.dirs, tmp_path / "tiny@1") == [f"{s}: identical to tiny@1" for s in stages]
    tiny = WORLDS.get("tiny")
    other = build_world(replace(tiny, sae=replace(tiny.sae, steps=250)))  # trained here, another SAE
    lines = dict(line.split(": ", 1) for line in shipped.differences(other.dirs, tmp_path / "tiny@1"))
    assert lines["tower"] == lines["vlm-large"] == "identical to tiny@1"
    assert re.fullmatch(r"sae_weights.safetensors differ from tiny@1; largest weight difference [\d.e+-]+", lines["sae"])
    with pytest.raises(UsageError, match="exists; a shipped version is never rewritten"):
        shipped.write(world.dirs, {}, stages, tmp_path / "tiny@1")
