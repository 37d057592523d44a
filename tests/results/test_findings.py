"""The robustness table on hand-made rows with known verdicts."""
import numpy as np
import pandas as pd

from benchmark.results.findings import FINDING_METRICS, orderings, table

MEANS = {"caption-top1": 0.9, "steering": 0.7, "hybrid": 0.5, "topk": 0.3,
         "random-direction": 0.1, "permuted": 0.1, "no-steer": 0.1, "random-words": 0.1}


def rows(swap: bool = False) -> pd.DataFrame:
    """40 features per (method, LM): each method's scores its mean plus a small spread, on every
    metric; `swap` exchanges steering and top-k on the large LM."""
    out = []
    for lm in ("small", "large"):
        for method, mean in MEANS.items():
            if swap and lm == "large" and method in ("steering", "topk"):
                mean = MEANS["topk" if method == "steering" else "steering"]
            for f in range(40):
                out.append({"lm": lm, "method": method, "feature": f, **{m: mean + 0.001 * f for m in FINDING_METRICS}})
    return pd.DataFrame(out)


def test_a_verdict_is_tested_in_the_first_sources_direction_on_every_source():
    found = table({"a": rows(), "b": rows(), "c": rows(swap=True)}).set_index(["finding", "metric"])
    steering = found.loc[("steering vs top-k", "detection_auroc")]
    assert steering.verdict == "steering (large) > topk (large)"
    assert steering.a < 1e-10 and steering.b < 1e-10 and steering.c > 0.999  # c reverses it
    assert steering["significant on"] == 2
    # paired: 40 features, every difference +0.4 (a, b) or -0.4 (c); tied ranks: scipy's normal approximation
    assert steering["a paired"] == steering["b paired"] < 1e-8 and steering["c paired"] > 0.999
    assert steering["significant on, paired"] == 2
    same = found.loc[("hybrid: large LM vs small LM", "oracle")]  # equal scores: no verdict anywhere
    assert same.a == same.b == same.c and same.a > 0.4 and same["significant on"] == 0
    controls = found.loc[("methods vs controls", "fidelity (4)")]
    assert max(controls.a, controls.b) < 1e-10 and controls["significant on"] == 3  # top-k 0.3 > controls 0.1


def test_orderings_compare_the_whole_order():
    order = orderings({"a": rows(), "c": rows(swap=True)}).set_index("metric")
    assert order.loc["simulation_r", "a"] == "caption-top1 > steering > hybrid > topk"
    assert order.loc["simulation_r", "c"] == "caption-top1 > topk > hybrid > steering"
    assert not order["same on all"].any()
    assert np.all(orderings({"a": rows(), "b": rows()})["same on all"])


def test_separation_auroc_known_answers():
    from benchmark.results.findings import auroc, separation

    perfect = separation(np.arange(20.0) + 100, np.arange(20.0))
    assert perfect["auroc"] == perfect["low"] == perfect["high"] == 1.0 and perfect["difference"] == 100.0
    assert separation(np.arange(20.0), np.arange(20.0) + 100)["auroc"] == 0.0  # the random SAE scores higher
    same = separation(np.full(30, 0.4), np.full(30, 0.4))
    assert same["auroc"] == same["low"] == same["high"] == 0.5 and same["difference"] == 0.0
    rng = np.random.default_rng(0)
    scores = rng.normal(size=500)
    alike = separation(scores, rng.permutation(scores))  # the same scores on both sides, in another order
    assert alike["auroc"] == 0.5 and alike["low"] < 0.5 < alike["high"] and alike["high"] - alike["low"] < 0.2
    assert auroc(np.array([1.0, 2.0]), np.array([1.0, 0.0])) == 0.875  # one tie of four pairs counts half
    assert separation(np.array([1.0, np.nan, 2.0]), np.array([0.0, 0.5]))["n_trained"] == 2
    assert np.isnan(separation(np.array([1.0]), np.array([0.0, 0.5]))["auroc"])
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert separation(a, b) == separation(a.copy(), b.copy())  # seeded: the same scores give the same interval


def test_random_sae_rows_are_a_control_paired_with_their_trained_source():
    from benchmark.results.findings import separation_table, without_random_saes

    trained, random = rows(), rows()
    random["detection_auroc"] = random.detection_auroc - 1.0  # every trained feature above every random one
    by_source = {"w@1": trained, "w@1+random-sae-0": random, "w@2": rows()}
    assert list(without_random_saes(by_source)) == ["w@1", "w@2"]
    sep = separation_table(by_source, ["detection_auroc", "simulation_r"]).set_index(["lm", "metric", "method"])
    assert set(sep.index.get_level_values("method")) == {"topk", "steering", "hybrid"}
    assert set(sep.source) == {"w@1"} and set(sep.random_sae) == {"w@1+random-sae-0"}
    assert sep.loc[("large", "detection_auroc", "topk"), "auroc"] == 1.0
    assert np.isclose(sep.loc[("large", "detection_auroc", "topk"), "difference"], 1.0)
    assert sep.loc[("small", "simulation_r", "steering"), "auroc"] == 0.5  # the same scores
    assert separation_table({"w@2+random-sae-0": random, "w@1": trained}).empty  # no trained source to pair with


def reseeded(steering_shift: float, hybrid_shift: float = 0.3) -> pd.DataFrame:
    """One world seed's large-LM rows: steering scores top-k's plus `steering_shift`, hybrid top-k's plus
    `hybrid_shift`, each with a little jitter per feature (so the paired tests are decisive)."""
    out = []
    for f in range(60):
        base = 0.4 + 0.01 * np.cos(f)
        for method, shift in (("topk", 0.0), ("steering", steering_shift), ("hybrid", hybrid_shift)):
            out.append({"lm": "large", "method": method, "feature": f, "protocol": "featurebench",
                        **{m: base + shift + 0.001 * (f % 3 - 1) * (method != "topk") for m in FINDING_METRICS}})
    return pd.DataFrame(out)


def test_a_verdict_is_stated_only_beyond_the_minimum_reliable_difference():
    """Steering leads top-k by 0.02 on the first seed, with a paired p far below 0.05 after Holm, but the
    lead swings from -0.02 to +0.03 across the three seeds: inside the noise, no verdict. Hybrid leads by
    0.3 on every seed: a verdict."""
    found = table({"w@1": reseeded(0.02), "w@2": reseeded(-0.02), "w@3": reseeded(0.03)}).set_index(
        ["finding", "metric"])
    steering = found.loc[("steering vs top-k", "detection_auroc")]
    assert steering["p paired holm"] < 1e-6 and abs(steering.difference - 0.02) < 1e-9
    assert steering.mrd > 0.02 and not steering["beyond noise"]
    assert steering.verdict == "no verdict (leans steering (large) > topk (large))"
    hybrid = found.loc[("hybrid vs top-k", "detection_auroc")]
    assert hybrid["beyond noise"] and hybrid.verdict == "hybrid (large) > topk (large)"
    assert abs(hybrid.difference - 0.3) < 1e-9 and hybrid.mrd < 0.3
