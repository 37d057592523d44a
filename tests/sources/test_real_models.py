"""Real models end to end on tiny random-weight checkpoints: a LLaVA (and a Gemma 3) saved with
`save_pretrained`, an SAE file on its tower, a folder of images and an open_clip scorer known by
name with a checkpoint file, all named by a run config's tables; a second run is served from the
caches, and what needs ground truth is refused."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from benchmark.cli import main
from benchmark.config.method import MethodConfig
from benchmark.config.models import models_config
from benchmark.config.resolve import resolve
from benchmark.explaining.context import Context
from benchmark.models.sae import SAE
from benchmark.models.sae_formats import save_sae
from benchmark.models.scorer import Scorer
from benchmark.sources.source import Source
from benchmark.testing import IMAGES, PATCH, SIZE, STEERED, save_tiny_checkpoint, tables, write_toml
from tests.timing import untimed

METRIC_COLUMNS = ("detection_auroc", "detection_balanced_accuracy", "detection_precision_at_k", "simulation_r",
                  "simulation_spearman", "simulation_patch_r")


def test_run_on_real_models_then_again_from_the_caches(files, tmp_path, monkeypatch, capsys):
    # A cache of its own: the first run computes everything (the modules sharing `files` may have filled
    # theirs), so the second, served from the caches, is compared with a computed one.
    monkeypatch.setenv("FEATUREBENCH_CACHE", str(tmp_path / "cache"))
    toml = write_toml(tmp_path / "run.toml", {"features": "0:6", "batch-size": 4}, tables(files))
    args = ["--config", toml, "--method", "steering,topk,hybrid", "--metrics", "detection,simulation",
            "--out", str(tmp_path / "out")]
    assert main(args) == 0
    warnings = re.findall(r"warning: [^\r\n]*", capsys.readouterr().err)  # progress bars share stderr
    assert warnings == ["warning: the scoring pool has 60 images; simulation samples 100 per feature, so its scores "
                        "rest on fewer"]
    (run_dir,) = (tmp_path / "out").iterdir()
    rows = [json.loads(line) for line in (run_dir / "explanations.jsonl").read_text().splitlines()]
    assert sorted((r["method"], r["feature"]) for r in rows) == sorted(
        (m, f) for m in ("steering", "topk", "hybrid") for f in range(6))
    assert {(r["source"], r["lm"]) for r in rows} == {("sae", "llava")}  # the SAE file's and the checkpoint's names
    scores = pd.read_csv(run_dir / "scores.csv")
    for column in METRIC_COLUMNS:
        assert np.isfinite(scores[column]).any(), column
    assert scores.concept.isna().all() and scores.aligned.isna().all()  # no ground truth
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["config"]["models"]["vlm"]["family"] == "llava" and meta["config"]["models"]["sae"]["layer"] is None
    assert set(meta["source"]["identity"]) == {"vlm", "sae", "pools", "scorer", "prompts"}
    assert meta["source"]["layer"] == STEERED and meta["source"]["capabilities"] == []
    assert meta["steering_multiplier"] == 8.0
    first = {name: (run_dir / name).read_text() for name in ("explanations.jsonl", "scores.csv")}

    def recompute(*args, **kwargs):
        raise AssertionError("a cached run loaded a model")

    monkeypatch.setattr("benchmark.sources.source.load_vlm", recompute)
    monkeypatch.setattr(Scorer, "open", recompute)
    capsys.readouterr()
    assert main(args) == 0
    assert {name: (run_dir / name).read_text() for name in first} == first


def test_hybrid_positions_are_the_tokens_of_active_patches(files):
    for family, cls_tokens in (("llava", 1), ("gemma3", 0)):
        ctx = Context(Source(models_config(tables(files, family), "test"), family), resolve(MethodConfig(batch_size=4), None))
        masked, positions_BKT = ctx.shown_top_images([0, 1, 2])
        active_BKP = ctx.top.acts_BKP([0, 1, 2], 5) > 0
        assert positions_BKT.shape == (3, 5, cls_tokens + (SIZE // PATCH) ** 2)
        assert not positions_BKT[..., :cls_tokens].any() and torch.equal(positions_BKT[..., cls_tokens:], active_BKP)
        assert len(ctx.answer(masked, ctx.sae.W_dec[:3], positions_BKT)) == 3


def test_pool_splits_partition_the_pool_and_are_read_from_its_files(files):
    models = Source(models_config(tables(files), "test"), "llava")
    topk, scoring = (models.pool(split).images(range(IMAGES // 2)) for split in ("topk", "scoring"))
    assert len(models.pool("topk")) == len(models.pool("scoring")) == IMAGES // 2
    whole = np.stack([np.asarray(Image.open(files / "images" / f"{i:03}.png")) for i in range(IMAGES)])
    as_rows = lambda a: {row.tobytes() for row in a}  # noqa: E731  (images are distinct: random colours)
    assert as_rows(topk) | as_rows(scoring) == as_rows(whole) and not as_rows(topk) & as_rows(scoring)
    again = Source(models_config(tables(files), "test"), "llava")
    assert np.array_equal(again.pool("topk").images(range(IMAGES // 2)), topk)  # the same split, every time
    assert not list((files / "cache").glob("pools*")) and not list((files / "cache" / "sources").glob("splits*"))


@pytest.mark.parametrize("argv, message", [
    (["--method", "oracle"], "oracle: needs groundtruth, which source sae does not have"),
    (["--method", "random-words"], "random-words: needs vocabulary"),
    (["--method", "steering", "--metrics", "detection,semantic-similarity"], "semantic-similarity: needs groundtruth"),
    (["--method", "steering", "--metrics", "localization-iou,generation-auroc"],
     "localization-iou, generation-auroc: need generator and segmenter"),
])
def test_what_the_source_lacks_is_refused_before_anything_runs(files, tmp_path, capsys, argv, message):
    toml = write_toml(tmp_path / "run.toml", {"features": "0:2"}, tables(files))
    assert main(["--config", toml, *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, message", [
    (lambda t: t["vlm"].update(famly="llava"), "[vlm]: unknown key 'famly'"),
    (lambda t: t.pop("pool"), "missing [pool]"),
    (lambda t: t["pool"].update(limit="ten"), "[pool]: limit = 'ten'"),
    (lambda t: t["pool"].update(scoring_fraction=1.5), "scoring_fraction must lie"),
    (lambda t: t["sae"].pop("path"), "[sae]: missing key 'path'"),
    (lambda t: t["vlm"].update(family="gemma3"), "family 'gemma3' reads gemma3 checkpoints, but"),
    (lambda t: t["sae"].update(layer=9), "[sae] layer 9: the"),  # checked from the config, before any load
    (lambda t: t["scorer"].update(model="ViT-L-15"), "unknown open_clip model 'ViT-L-15'"),
    (lambda t: t["scorer"].update(model=t["sae"]["path"].replace("sae.safetensors", "scorer-pt")),
     "holds one open_clip config (*.json with embed_dim) and open_clip_model.safetensors; found "
     "featurebench-test-scorer.json, open_clip_model.pt"),
])
def test_bad_model_tables_are_one_line_exit_2_and_write_nothing(files, tmp_path, capsys, change, message):
    models = tables(files)
    change(models)
    toml = write_toml(tmp_path / "run.toml", {"method": "steering"}, models)
    before = sorted((files / "cache").rglob("*"))
    assert main(["--config", toml, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists() and sorted((files / "cache").rglob("*")) == before


@pytest.mark.slow
def test_ray_backend_on_real_models_gives_the_local_explanations(files, tmp_path, monkeypatch):
    """Workers open the same checkpoints from the run's spec; the activation pass shards over images."""
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'featurebench[ray]')")
    from dataclasses import replace

    from benchmark.config.run import RunConfig
    from benchmark.explaining.backends import RayBackend
    from benchmark.pipeline import run

    monkeypatch.chdir(files)  # paths relative to the driver's directory, which need not be a worker's
    relative = {name: {k: (str(Path(v).relative_to(files)) if isinstance(v, str) and v.startswith(str(files)) else v)
                       for k, v in table.items()} for name, table in tables(files).items()}
    config = RunConfig(methods=("steering", "hybrid"), features="0:8", metrics="none",
                       models=models_config(relative, "test"), method=MethodConfig(batch_size=2),
                       out=str(tmp_path / "local"))
    local = run(config)
    monkeypatch.setenv("FEATUREBENCH_CACHE", str(tmp_path / "fresh"))  # nothing cached: the workers compute it all
    backend = RayBackend(workers=2, shard_batches=1, image_shard=32)
    try:
        remote = run(replace(config, out=str(tmp_path / "ray")), backend)
    finally:
        backend.close()
    assert untimed(remote) == untimed(local)
    plan = json.loads((remote / "run.json").read_text())["backend"]["plan"]
    assert [len(p["shards"]) for p in plan] == [2, 2, 4, 4]  # 60 top-k and 60 scoring images; 8 features by 2


def test_resolved_spec_makes_local_paths_absolute_and_leaves_names(files, monkeypatch):
    """What a Ray worker on another node gets: no path that depends on the driver's directory."""
    monkeypatch.chdir(files)
    spec = models_config({"vlm": {"family": "llava", "path": "llava"}, "sae": {"path": "sae.safetensors"},
                          "pool": {"source": "images"}, "scorer": {"model": "ViT-L-14", "pretrained": "openai"}},
                         "test").resolved()
    assert (spec.vlm.path, spec.sae.path, spec.pool.source) == (
        str(files / "llava"), str(files / "sae.safetensors"), str(files / "images"))
    assert (spec.scorer.model, spec.scorer.pretrained) == ("ViT-L-14", "openai")  # open_clip names stay names


def test_checkpoint_and_sae_rewritten_in_place_are_recomputed(files, tmp_path, monkeypatch):
    """Caches key files by content: new weights at the same paths are noticed, not served stale."""
    import shutil

    monkeypatch.setenv("FEATUREBENCH_CACHE", str(tmp_path / "cache"))  # copies of the files are the same content
    own = tables(files)
    shutil.copytree(files / "llava", tmp_path / "llava")
    shutil.copy(files / "sae.safetensors", tmp_path / "sae.safetensors")
    own["vlm"]["path"], own["sae"]["path"] = str(tmp_path / "llava"), str(tmp_path / "sae.safetensors")
    toml = write_toml(tmp_path / "run.toml", {"features": "0:4", "batch-size": 4, "metrics": "detection"}, own)
    loads = []
    real_load = __import__("benchmark.sources.source", fromlist=["load_vlm"]).load_vlm
    monkeypatch.setattr("benchmark.sources.source.load_vlm", lambda *a, **k: loads.append(a[1]) or real_load(*a, **k))

    def explain(out: str) -> tuple[dict, dict]:
        assert main(["--config", toml, "--method", "steering", "--out", str(tmp_path / out)]) == 0
        (run_dir,) = (tmp_path / out).iterdir()
        rows = [json.loads(line) for line in (run_dir / "explanations.jsonl").read_text().splitlines()]
        return json.loads((run_dir / "run.json").read_text())["source"]["identity"], {r["feature"]: r for r in rows}

    first, _ = explain("first")
    assert len(loads) == 2  # the checkpoint in its dtype to answer, and in float64 to measure (`benchmark.numerics`)
    explain("again")
    assert len(loads) == 2  # unchanged files: everything from the caches, no model loaded
    save_tiny_checkpoint("llava", tmp_path / "llava", seed=4)  # other weights, same path, same file names
    second, _ = explain("vlm")
    assert len(loads) == 4 and second["vlm"] != first["vlm"] and second["sae"] == first["sae"]
    torch.manual_seed(5)
    sae = SAE(32, 16, k=4)
    with torch.no_grad():
        sae.W_enc.normal_()
        sae.W_dec.copy_(sae.W_enc.T)
        sae.normalize_decoder()
    save_sae(sae, tmp_path / "sae.safetensors", hidden_state=STEERED)
    third, _ = explain("sae")
    assert len(loads) == 6 and third["sae"] != second["sae"]


def test_config_paths_are_read_from_the_config_folder_and_keyed_by_content(files, tmp_path, monkeypatch, capsys):
    """A config names its files relative to itself; run from elsewhere it finds them, and the same
    files named by absolute paths are served from the caches (identity is content, not spelling)."""
    import os

    monkeypatch.setenv("FEATUREBENCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "configs").mkdir()
    relative = {name: {k: (os.path.relpath(v, tmp_path / "configs") if isinstance(v, str) and v.startswith(str(files))
                           else v) for k, v in table.items()} for name, table in tables(files).items()}
    assert relative["vlm"]["path"].startswith("..")
    flat = {"features": "0:3", "batch-size": 4, "metrics": "detection", "method": "steering"}
    monkeypatch.chdir(tmp_path)  # not the config's folder
    assert main(["--config", write_toml(tmp_path / "configs" / "run.toml", flat, relative), "--out", "rel"]) == 0
    loads = []
    monkeypatch.setattr("benchmark.sources.source.load_vlm", lambda *a, **k: loads.append(a) or 1 / 0)
    assert main(["--config", write_toml(tmp_path / "abs.toml", flat, tables(files)), "--out", "abs"]) == 0
    assert loads == []  # nothing recomputed
    (rel,), (abs_,) = (tmp_path / "rel").iterdir(), (tmp_path / "abs").iterdir()
    assert (rel / "explanations.jsonl").read_text() == (abs_ / "explanations.jsonl").read_text()


@pytest.mark.parametrize("path, name", [
    ("saes/layer16/trainer_0", "layer16-trainer_0"),
    ("saes/layer16/trainer_2/ae.pt", "layer16-trainer_2"),
    ("saes/clip-l14.safetensors", "clip-l14"),
    ("saes/llava-layer22", "llava-layer22"),
])
def test_sae_names_in_rows_are_not_all_trainer_0(path, name):
    spec = models_config({"vlm": {"family": "llava", "path": "v"}, "sae": {"path": path}, "pool": {"source": "p"}}, "t")
    assert spec.sae_name == name
    named = models_config({"vlm": {"family": "llava", "path": "v"}, "sae": {"path": path, "name": "mine"},
                           "pool": {"source": "p"}}, "t")
    assert named.sae_name == "mine"


@pytest.mark.parametrize("limit, message", [
    (3, "the top-k pool has 1 images, fewer than --top-k 5; use a larger pool"),
    (10, "the scoring pool has 5 images; simulation needs 8: use a larger pool or --metrics without them"),
])
def test_pools_too_small_are_refused_before_anything_is_computed(files, tmp_path, capsys, limit, message):
    models = tables(files)
    models["pool"]["limit"] = limit
    toml = write_toml(tmp_path / "run.toml", {"method": "topk", "metrics": "detection,simulation"}, models)
    before = sorted((files / "cache").rglob("*"))
    assert main(["--config", toml, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {message}"
    assert not (tmp_path / "out").exists() and sorted((files / "cache").rglob("*")) == before
