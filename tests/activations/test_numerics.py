"""The numeric contract (`benchmark.numerics`): near-ties counted where a discrete choice rests on a
margin another machine's rounding may flip, draws that one flipped label cannot redraw, and a run
that records what it measured in."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.config.run import RunConfig
from benchmark.models.sae import SAE
from benchmark.numerics import near_tie_tolerance
from benchmark.pipeline import run
from metrics.detection import detection
from metrics.functional import auroc, keyed_choice


def identity_sae(architecture: str, k: int | None = None, threshold: float = 0.0) -> SAE:
    """An SAE whose pre-activations are its input (4 latents on 4 dimensions), in float64."""
    sae = SAE(4, 4, k=k, architecture=architecture).double().requires_grad_(False)
    sae.W_enc.copy_(torch.eye(4))
    if architecture == "jumprelu":
        sae.threshold.fill_(threshold)
    return sae


def test_a_topk_near_tie_counts_both_latents_and_a_clear_margin_none():
    sae = identity_sae("topk", k=2)
    pre_NF = torch.tensor([[3.0, 2.0, 2.0 + 1e-12, 0.0],  # 2nd and 3rd within 1e-12: latents 1 and 2
                           [3.0, 2.0, 1.0, 0.0],  # a clear margin: nothing
                           [1e-12, -5.0, -6.0, -7.0],  # a kept one at 0 (ReLU's edge): latent 0; -5 vs -6 fires neither
                           [-1.0, -1.0, -1.0, -1.0]], dtype=torch.float64)  # an exact tie where none fires
    assert sae.near_ties(pre_NF, near_tie_tolerance(torch.float64)).tolist() == [1, 1, 1, 0]
    assert sae.near_ties(pre_NF[1:2], 0.6).tolist() == [0, 1, 1, 0]  # a coarser dtype's tolerance sees 2 vs 1


@pytest.mark.parametrize("architecture, threshold, expected", [("relu", 0.0, [1, 0, 0, 1]),
                                                               ("jumprelu", 0.5, [0, 1, 0, 0])])
def test_a_pre_activation_at_its_threshold_is_a_near_tie(architecture, threshold, expected):
    sae = identity_sae(architecture, threshold=threshold)
    pre_NF = torch.tensor([[1e-12, 0.5 + 1e-12, -1.0, -1e-13]], dtype=torch.float64)
    assert sae.near_ties(pre_NF, 1e-9).tolist() == expected


def test_keyed_choice_is_the_lowest_keys_and_one_leaving_image_moves_only_the_cut():
    pool = np.arange(1000)
    chosen = keyed_choice(pool, 100, seed=7)
    assert len(set(chosen.tolist())) == 100 and np.array_equal(keyed_choice(pool, 100, seed=7), chosen)
    assert not np.array_equal(np.sort(keyed_choice(pool, 100, seed=8)), np.sort(chosen))
    without = keyed_choice(np.delete(pool, chosen[0]), 100, seed=7)  # the first-drawn image leaves the pool
    assert len(set(chosen.tolist()) ^ set(without.tolist())) == 2  # it, and the one that takes its place


def test_one_flipped_label_moves_the_detection_auroc_by_at_most_the_pairs_it_touches():
    rng = np.random.default_rng(0)
    active_N = rng.random(4000) < 0.3
    similarity_N = rng.normal(size=4000) + 0.8 * active_N
    seed = 11
    before = detection(similarity_N, active_N, 20, seed)[0]
    negatives = keyed_choice(np.flatnonzero(~active_N), active_N.sum(), seed)
    flipped = active_N.copy()
    flipped[negatives[0]] = True  # a drawn negative now fires (a TopK near-tie on another CPU)
    after = detection(similarity_N, flipped, 20, seed)[0]
    old = {"pos": set(np.flatnonzero(active_N)), "neg": set(negatives.tolist())}
    new = {"pos": set(np.flatnonzero(flipped)),
           "neg": set(keyed_choice(np.flatnonzero(~flipped), flipped.sum(), seed).tolist())}
    moved = {side: old[side] ^ new[side] for side in old}
    assert len(moved["pos"]) == 1 and len(moved["neg"]) == 3  # it left the negatives; two joined them

    def touched_share(sets: dict) -> float:
        """Share of a sample's positive-negative pairs that involve a moved image."""
        p, n = len(sets["pos"]), len(sets["neg"])
        pairs = len(moved["pos"] & sets["pos"]) * n + len(moved["neg"] & sets["neg"]) * p
        return pairs / (p * n)

    # Each AUROC is the common pairs' AUROC moved by at most its share of touched pairs.
    assert abs(after - before) <= touched_share(old) + touched_share(new)
    assert abs(after - before) < 3e-3
    # The known answer on the common pairs: both AUROCs agree with it to those shares.
    common_pos, common_neg = sorted(old["pos"] & new["pos"]), sorted(old["neg"] & new["neg"])
    common = auroc(similarity_N[common_pos + common_neg], np.r_[np.ones(len(common_pos)), np.zeros(len(common_neg))])
    assert abs(before - common) <= touched_share(old) and abs(after - common) <= touched_share(new)


def test_a_run_records_its_numeric_contract_and_each_rows_near_ties(world, tmp_path):
    run_dir = run(RunConfig(methods=("random-words",), features="0:16", lm="small", world="tiny",
                            metrics="detection", out=str(tmp_path)))
    numerics = json.loads((run_dir / "run.json").read_text())["source"]["numerics"]
    assert numerics == {"measure_dtype": "float64", "answer_dtype": "float32", "statistics_dtype": "float64",
                        "near_tie_relative": 1e-9, "answer_near_tie_relative": 1e-5}
    rows = pd.read_csv(run_dir / "scores.csv")
    source = world.source("small")
    assert rows.near_ties_scoring.tolist() == source.activations("scoring").near_ties_F[:16].tolist()
    assert (rows.near_ties_topk >= source.activations("topk").near_ties_F[:16]).all()
