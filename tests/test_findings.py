"""The robustness table on hand-made rows with known verdicts."""
import numpy as np
import pandas as pd

from benchmark.findings import METRICS, orderings, table

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
                out.append({"lm": lm, "method": method, "feature": f, **{m: mean + 0.001 * f for m in METRICS}})
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
