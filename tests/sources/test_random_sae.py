"""The random-SAE control: a random SAE of the trained one's kind, shape and sparsity, chosen with
`--sae random:<seed>` (or `[sae] random`), named as such in rows, `source_id` and run.json, on real
models (tiny checkpoints) and on the tiny world."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.cli import main
from benchmark.commands.run import run_options
from benchmark.config.models import models_config, parse_random_sae, random_sae_name, trained_source_of
from benchmark.config.read import read_run_file
from benchmark.models.sae import SAE, random_like
from benchmark.registry import UsageError
from benchmark.sources import open_source
from benchmark.sources.source import Source
from benchmark.testing import tables, write_toml


def trained(architecture: str = "topk") -> SAE:
    """A stand-in trained SAE: random weights, a non-zero b_enc, b_dec and threshold to tell apart."""
    torch.manual_seed(0)
    sae = SAE(12, 40, k=5 if architecture == "topk" else None, architecture=architecture,
              apply_b_dec_to_input=architecture != "jumprelu")
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_()
    return sae


@pytest.mark.parametrize("architecture", ["topk", "batchtopk", "relu", "jumprelu"])
def test_a_random_sae_has_the_trained_ones_kind_shape_sparsity_and_unit_decoder_rows(architecture):
    sae = trained(architecture)
    random = random_like(sae, 0)
    assert (random.d_in, random.d_sae, random.k, random.architecture, random.apply_b_dec_to_input) == \
        (sae.d_in, sae.d_sae, sae.k, sae.architecture, sae.apply_b_dec_to_input)
    assert random.W_dec.shape == sae.W_dec.shape and random.W_enc.shape == sae.W_enc.shape
    assert torch.allclose(random.W_dec.norm(dim=-1), torch.ones(sae.d_sae), atol=1e-6)
    assert torch.equal(random.W_enc, random.W_dec.T) and not random.b_enc.any()  # tied, zero encoder bias
    assert torch.equal(random.b_dec, sae.b_dec)
    if architecture in ("batchtopk", "jumprelu"):
        assert torch.equal(random.threshold, sae.threshold)
    assert not torch.allclose(random.W_dec, sae.W_dec / sae.W_dec.norm(dim=-1, keepdim=True))
    codes_NF = random.encode(torch.randn(64, sae.d_in))
    if architecture == "topk":
        assert ((codes_NF > 0).sum(-1) <= sae.k).all()


def test_the_same_seed_gives_the_same_sae_and_another_seed_another():
    sae = trained()
    assert all(torch.equal(a, b) for a, b in zip(random_like(sae, 3).state_dict().values(),
                                                  random_like(sae, 3).state_dict().values()))
    assert not torch.equal(random_like(sae, 3).W_dec, random_like(sae, 4).W_dec)


def test_names_and_flag_values():
    assert random_sae_name("default@1", 0) == "default@1+random-sae-0"
    assert trained_source_of("default@1+random-sae-0") == "default@1"
    assert trained_source_of("default@1+random-sae-12 [seed]") == "default@1 [seed]"
    assert trained_source_of("default@1") is None
    assert parse_random_sae("random:7") == 7
    for bad in ("random", "random:", "random:-1", "random:x", "saes/clip", "Random:0"):
        with pytest.raises(UsageError, match="expected random:<seed>"):
            parse_random_sae(bad)


def test_a_malformed_sae_flag_is_one_line_exit_2(tmp_path, capsys):
    assert main(["--sae", "random:zero", "--world", "tiny", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --sae 'random:zero': expected random:<seed>") and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_the_config_key_is_the_flag_or_the_sae_tables_random(tmp_path):
    toml = write_toml(tmp_path / "world.toml", {"sae": "random:2", "world": "tiny"}, {})
    assert read_run_file(toml).arguments(run_options()[1]) == ["--sae", "random:2", "--world", "tiny"]
    spec = models_config({"vlm": {"family": "llava", "path": "x"}, "sae": {"path": "y", "random": 2},
                          "pool": {"source": "z"}}, "t")
    assert spec.sae.random == 2
    with pytest.raises(UsageError, match=r"\[sae\] random must be a seed"):
        models_config({"vlm": {"family": "llava", "path": "x"}, "sae": {"path": "y", "random": -1},
                       "pool": {"source": "z"}}, "t")


def test_real_models_random_sae_is_its_own_source_with_its_own_identity(files, tmp_path):
    spec = models_config(tables(files), "test")
    base = Source(spec, "llava")
    random = open_source(("models", models_config({**tables(files), "sae": {**tables(files)["sae"], "random": 0}},
                                                  "test"), "llava", None))
    assert random.name == "sae+random-sae-0" and base.name == "sae"
    assert random.source_id != base.source_id and random.identity["sae"] != base.identity["sae"]
    assert {k: v for k, v in random.identity.items() if k != "sae"} == \
        {k: v for k, v in base.identity.items() if k != "sae"}  # only the SAE changed
    other = Source(models_config({**tables(files), "sae": {**tables(files)["sae"], "random": 1}}, "test"), "llava")
    assert other.source_id not in (random.source_id, base.source_id)
    sae, rsae = base.sae(), random.sae()
    assert (rsae.d_in, rsae.d_sae, rsae.k, rsae.architecture) == (sae.d_in, sae.d_sae, sae.k, sae.architecture)
    assert torch.allclose(rsae.W_dec.norm(dim=-1), torch.ones(sae.d_sae), atol=1e-6)
    assert torch.equal(rsae.W_dec, Source(random.spec, "llava").sae().W_dec)  # same seed, same SAE
    # the flag on a run config naming real models, through the whole run
    toml = write_toml(tmp_path / "run.toml", {"features": "0:4", "batch-size": 4}, tables(files))
    assert main(["--config", toml, "--sae", "random:0", "--method", "topk,steering", "--metrics", "detection",
                 "--out", str(tmp_path / "out")]) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    assert run_dir.name.startswith("sae+random-sae-0-llava-")
    rows = [json.loads(line) for line in (run_dir / "explanations.jsonl").read_text().splitlines()]
    assert {(r["source"], r["source_id"]) for r in rows} == {("sae+random-sae-0", random.source_id)}
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["config"]["random_sae"] == 0 and meta["source"]["name"] == "sae+random-sae-0"
    assert meta["source"]["random_sae"]["seed"] == 0 and meta["source"]["random_sae"]["replaces"] == "sae"
    assert meta["source"]["models"]["sae"]["random"] == 0


def test_world_run_with_a_random_sae_writes_its_own_source(world, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--world", "tiny", "--lm", "small", "--method", "topk,steering,hybrid", "--features", "0:6",
            "--metrics", "detection,oracle", "--out", str(out)]
    assert main([*args, "--sae", "random:0"]) == 0
    (run_dir,) = out.iterdir()
    name = random_sae_name(world.name, 0)
    trained_source = world.source("small")
    random_source = open_source(("world", "tiny", "small", None, 0))
    assert random_source.name == name and random_source.source_id != trained_source.source_id
    rows = [json.loads(line) for line in (run_dir / "explanations.jsonl").read_text().splitlines()]
    assert {r["source"] for r in rows} == {name} and {r["source_id"] for r in rows} == {random_source.source_id}
    assert sorted({r["method"] for r in rows}) == ["hybrid", "steering", "topk"]
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["config"]["random_sae"] == 0 and meta["source"]["name"] == name
    assert meta["source"]["random_sae"]["replaces"] == world.name and meta["source"]["random_sae"]["k"] == world.config.sae.k
    sae, rsae = trained_source.sae(), random_source.sae()
    assert rsae.W_dec.shape == sae.W_dec.shape and rsae.k == sae.k
    assert torch.allclose(rsae.W_dec.norm(dim=-1), torch.ones(sae.d_sae), atol=1e-6)
    # its ground truth is its own latents' (dissected from its activations), not the trained SAE's
    scores = pd.read_csv(run_dir / "scores.csv")
    assert np.isfinite(scores.detection_auroc).any() and np.isfinite(scores.oracle).any()
    own, theirs = random_source.groundtruth(), world.groundtruth()
    assert len(own) == len(theirs) and not np.allclose(own.iou.to_numpy(), theirs.iou.to_numpy())
    # the trained SAE's run is a different source, and a second random run is served from the caches
    assert main(args) == 0
    trained_dir = next(d for d in out.iterdir() if d != run_dir)
    assert {json.loads(line)["source"] for line in (trained_dir / "explanations.jsonl").read_text().splitlines()} \
        == {world.name}
    assert "random_sae" not in json.loads((trained_dir / "run.json").read_text())["config"]
