"""Leaderboard tables from fixed score rows: known values, byte-stable output, safe concurrent writes."""
import gzip
import math
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.registry import UsageError
from benchmark.results.board_rows import COST_COLUMNS
from benchmark.results.leaderboard import markdown, pairwise_table, regenerate
from benchmark.scoring.stats import greater, mean_ci

EXPECTED_MAIN = """source,lm,method,protocol,n_features,detection_auroc,detection_auroc_ci_low,detection_auroc_ci_high,\
oracle,oracle_ci_low,oracle_ci_high
w,small,a,featurebench,4,0.8,0.8,0.8,1,1,1
w,small,b,featurebench,4,0.5,0.5,0.5,0,0,0
"""


EXPECTED_MAIN_WITH_COSTS = EXPECTED_MAIN.replace(
    "oracle_ci_high\n",
    "oracle_ci_high,cost_seconds_median,cost_prompt_tokens_median,cost_answer_tokens_median,cost_images_median\n"
).replace("0.8,1,1,1\n", "0.8,1,1,1,2.5,200,8,5\n").replace("0.5,0,0,0\n", "0.5,0,0,0,,,,\n")
"""Method a's costs per feature: seconds 1, 2, 3, 10 (median 2.5); prompt tokens 100, 200, unknown,
400 (200); answer tokens unknown, inf, 7, 9 (8, the finite ones); images 5 each. Method b's: unknown."""
COSTS_A = {"cost_seconds": [1, 2, 3, 10], "cost_prompt_tokens": [100, 200, math.nan, 400],
           "cost_answer_tokens": [math.nan, math.inf, 7, 9], "cost_images": [5, 5, 5, 5]}


def write_run(dpath: Path, costs: bool = False, source_id: str = "id-w") -> Path:
    rows = []
    for method, detection, oracle in (("a", 0.8, 1.0), ("b", 0.5, 0.0)):
        for f in range(4):
            rows.append({"source": "w", "source_id": source_id, "protocol": "featurebench", "lm": "small", "method": method, "feature": f, "explanation": f"{method} {f}",
                         "concept": "red", "category": "colour", "level": "low", "aligned": f < 2,
                         "detection_auroc": detection, "oracle": oracle})
            if costs:
                rows[-1].update({c: COSTS_A[c][f] if method == "a" else math.nan for c in COST_COLUMNS})
    dpath.mkdir()
    pd.DataFrame(rows).to_csv(dpath / "scores.csv", index=False)
    return dpath


@pytest.fixture
def run_dir(tmp_path):
    return write_run(tmp_path / "run")


@pytest.fixture
def costed_run_dir(tmp_path):
    return write_run(tmp_path / "costed", costs=True)


def test_fixed_rows_give_a_fixed_table(tmp_path, run_dir):
    board = tmp_path / "board"
    tables = regenerate(board, [run_dir])
    assert (board / "main.csv").read_text() == EXPECTED_MAIN
    pair = tables["pairwise"].set_index(["metric", "method_a", "method_b"])
    assert pair.loc[("oracle", "a", "b"), "a_better"] and not pair.loc[("oracle", "b", "a"), "a_better"]
    per = tables["per_category"]
    assert set(per.group) == {"low", "colour"} and (per.n_features == 2).all()
    before = {p.name: p.read_bytes() for p in [*board.glob("*.csv"), *board.glob("rows/*")]}
    regenerate(board)  # from the committed rows alone
    assert before == {p.name: p.read_bytes() for p in [*board.glob("*.csv"), *board.glob("rows/*")]}


def test_cost_medians_follow_the_quality_columns(tmp_path, costed_run_dir):
    board = tmp_path / "board"
    tables = regenerate(board, [costed_run_dir])
    assert (board / "main.csv").read_text() == EXPECTED_MAIN_WITH_COSTS
    assert "cost_seconds" not in tables["per_category"] and "cost_seconds" not in set(tables["pairwise"].metric)
    with gzip.open(board / "rows" / "w-small.csv.gz", "rt") as fh:
        rows = pd.read_csv(fh)
    assert rows[rows.method == "a"].cost_seconds.tolist() == [1, 2, 3, 10]  # the rows keep every feature's cost
    assert rows[rows.method == "a"].cost_answer_tokens.tolist()[1:] == [math.inf, 7, 9]
    assert rows[rows.method == "b"][list(COST_COLUMNS)].isna().all().all()
    assert "| s / feature |" in markdown(tables["main"]) and "| 2.5 |" in markdown(tables["main"])
    before = {p.name: p.read_bytes() for p in [*board.glob("*.csv"), *board.glob("rows/*")]}
    regenerate(board)  # from the rows alone, twice
    regenerate(board)
    assert before == {p.name: p.read_bytes() for p in [*board.glob("*.csv"), *board.glob("rows/*")]}
    regenerate(board, [costed_run_dir])  # adding the run again: the same rows, byte for byte
    assert before == {p.name: p.read_bytes() for p in [*board.glob("*.csv"), *board.glob("rows/*")]}


def test_rows_without_costs_give_no_cost_columns_and_mix_with_rows_that_have_them(tmp_path, run_dir):
    board = tmp_path / "board"
    tables = regenerate(board, [run_dir])
    assert not [c for c in tables["main"].columns if c.startswith("cost_")]
    assert "s / feature" not in markdown(tables["main"])
    other = pd.read_csv(write_run(tmp_path / "costed", costs=True) / "scores.csv")
    other.loc[other.method == "a", "method"] = "c"
    other[other.method == "c"].to_csv(tmp_path / "costed" / "scores.csv", index=False)
    main = regenerate(board, [tmp_path / "costed"])["main"].set_index("method")
    medians = [f"{c}_median" for c in COST_COLUMNS]
    assert list(main.columns[-4:]) == medians and main.loc["c", medians].tolist() == [2.5, 200, 8, 5]
    assert main.loc[["a", "b"], medians].isna().all().all()  # their rows, added before costs, say nothing


def test_non_numeric_costs_are_usage_errors(tmp_path, costed_run_dir):
    scores = pd.read_csv(costed_run_dir / "scores.csv")
    scores["cost_seconds"] = "fast"
    scores.to_csv(costed_run_dir / "scores.csv", index=False)
    with pytest.raises(UsageError, match="cost columns cost_seconds are not numeric"):
        regenerate(tmp_path / "board", [costed_run_dir])


def test_adding_a_run_again_replaces_its_rows(tmp_path, run_dir):
    board = tmp_path / "board"
    regenerate(board, [run_dir])
    regenerate(board, [run_dir])
    assert (board / "main.csv").read_text() == EXPECTED_MAIN


def test_a_run_on_other_models_under_the_same_name_is_refused_until_replaced(tmp_path, run_dir):
    board = tmp_path / "board"
    regenerate(board, [run_dir])
    before = {p.name: p.read_bytes() for p in [*board.glob("*.csv"), *board.glob("rows/*")]}
    other = write_run(tmp_path / "other", source_id="id-other")
    with pytest.raises(UsageError, match="source identity / protocol id-other/featurebench, but .*w-small.csv.gz "
                                         "holds rows of id-w/featurebench"):
        regenerate(board, [other])
    with pytest.raises(UsageError, match="source identity / protocol id-other"):  # a fine run first: nothing written
        regenerate(board, [run_dir, other])
    assert {p.name: p.read_bytes() for p in [*board.glob("*.csv"), *board.glob("rows/*")]} == before
    regenerate(board, [other], replace=True)
    rows = pd.read_csv(board / "rows" / "w-small.csv.gz")
    assert set(rows.source_id) == {"id-other"} and len(rows) == 8


def test_the_command_line_refuses_other_models_in_one_line_and_adds_them_with_replace(tmp_path, run_dir, capsys):
    """The refusal above through `leaderboard --add`: exit 2, one line saying how to replace, nothing
    written; `--replace` then adds the run."""
    from benchmark.cli import main

    board = tmp_path / "board"
    assert main(["leaderboard", "--add", str(run_dir), "--dir", str(board)]) == 0
    before = {p: p.read_bytes() for p in board.rglob("*.csv*")}
    other = write_run(tmp_path / "other", source_id="id-other")
    capsys.readouterr()
    assert main(["leaderboard", "--add", str(other), "--dir", str(board)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(r"holds rows of id-w/featurebench \(other models under the same name, or "
                                         r"another protocol: .*\); to replace them, add it with --replace", err)
    assert {p: p.read_bytes() for p in board.rglob("*.csv*")} == before
    assert main(["leaderboard", "--add", str(other), "--dir", str(board), "--replace"]) == 0
    assert set(pd.read_csv(board / "rows" / "w-small.csv.gz").source_id) == {"id-other"}


def test_rows_of_two_identities_under_one_name_are_never_compared(tmp_path, run_dir):
    board = tmp_path / "board"
    regenerate(board, [run_dir])
    rows = pd.read_csv(board / "rows" / "w-small.csv.gz")
    rows.loc[rows.method == "b", "source_id"] = "id-other"  # merged by hand, around --add
    with gzip.open(board / "rows" / "w-small.csv.gz", "wt") as fh:
        rows.to_csv(fh, index=False)
    with pytest.raises(UsageError, match="rows of w small come from 2 different source identities"):
        regenerate(board)


def test_concurrent_writers_leave_valid_tables(tmp_path, run_dir):
    board = tmp_path / "board"
    regenerate(board, [run_dir])
    errors, seen = [], []

    def write():
        try:
            for _ in range(3):
                regenerate(board, [run_dir])
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    def read():
        for _ in range(200):
            seen.append((board / "main.csv").read_text())

    threads = [threading.Thread(target=write), threading.Thread(target=write), threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and set(seen) == {EXPECTED_MAIN}
    assert (board / "main.csv").read_text() == EXPECTED_MAIN
    assert not list(board.glob(".*.tmp-*"))


def test_missing_inputs_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="no score rows"):
        regenerate(tmp_path / "empty")
    with pytest.raises(UsageError, match="no such run directory"):
        regenerate(tmp_path / "b", [tmp_path / "nope"])


def test_bootstrap_ci_and_mann_whitney_known_answers():
    assert mean_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    mean, low, high = mean_ci(list(range(100)))
    assert mean == 49.5 and 40 < low < 49.5 < high < 59
    assert greater(range(10, 20), range(10))[1] < 0.001 and greater(range(10), range(10, 20))[1] > 0.999


@pytest.mark.parametrize("board", ["", "seeds", "seed-protocol"])
def test_committed_leaderboards_regenerate_byte_for_byte(tmp_path, board):
    """The project's, the two extra worlds' and the seed protocol's leaderboards (the project's reads the
    extra worlds' rows beside it, `seeds/`, for the reseed spread)."""
    committed = Path(__file__).resolve().parents[2] / "leaderboards" / board
    shutil.copytree(committed / "rows", tmp_path / "rows")
    if (committed / "seeds" / "rows").is_dir():
        shutil.copytree(committed / "seeds" / "rows", tmp_path / "seeds" / "rows")
    regenerate(tmp_path)
    for name in ("main.csv", "per_category.csv", "pairwise.csv"):
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), name


def test_pairwise_tests_better_in_each_metrics_direction():
    """An error (lower is better): method a's 0.1s beat b's 0.9s; on a score (higher is better) b's 0.9s
    beat a's 0.1s."""
    rows = pd.DataFrame([{"source": "w", "lm": "small", "method": m, "feature": f, "error": v, "score": v}
                         for m, v in (("a", 0.1), ("b", 0.9)) for f in range(10)])
    rows["error"] += rows.feature * 1e-3  # ties aside
    pair = pairwise_table(rows, ["error", "score"], {"error": False, "score": True}).set_index(
        ["metric", "method_a", "method_b"])
    assert pair.loc[("error", "a", "b"), "a_better"] and not pair.loc[("error", "b", "a"), "a_better"]
    assert pair.loc[("score", "b", "a"), "a_better"] and not pair.loc[("score", "a", "b"), "a_better"]
    assert pair.loc[("error", "a", "b"), "p_value"] < 1e-3


def test_paired_wilcoxon_and_holm_known_answers(tmp_path, run_dir):
    """Method a beats b by 0.3 on each of the 4 features: the exact one-sided signed-rank p is 1/2^4;
    Holm over the family (a > b, b > a) doubles the smaller p."""
    from benchmark.scoring.stats import holm, paired_greater

    assert paired_greater([0.8] * 4, [0.5] * 4) == (10.0, 1 / 16)
    assert np.isnan(paired_greater([1.0, 2.0], [1.0, 2.0])[1])  # no difference: no test
    assert holm([0.01, 0.04, 0.03, np.nan]).round(6).tolist()[:3] == [0.03, 0.06, 0.06]
    pairs = regenerate(tmp_path / "board", [run_dir])["pairwise"].set_index(["metric", "method_a", "method_b"])
    ab, ba = pairs.loc[("detection_auroc", "a", "b")], pairs.loc[("detection_auroc", "b", "a")]
    assert ab.p_paired == 1 / 16 and ba.p_paired == 1.0
    assert ab.p_paired_holm == 2 / 16 and ab.p_holm == min(1.0, 2 * ab.p_value)


def seeded_rows(delta_b: dict[str, float], delta_c: float = 0.3) -> pd.DataFrame:
    """Three reseeds of one world (w@1..w@3), 50 features: b scores a's plus `delta_b[source]` (a little
    jitter per feature), c a's plus `delta_c` on every seed."""
    out = []
    for source, shift in delta_b.items():
        for f in range(50):
            base = 0.5 + 0.01 * np.sin(f)
            for method, value in (("a", base), ("b", base + shift + 0.001 * (f % 5 - 2)), ("c", base + delta_c)):
                out.append({"source": source, "protocol": "featurebench", "lm": "large", "method": method,
                            "feature": f, "score": value})
    return pd.DataFrame(out)


def test_a_difference_inside_the_reseed_spread_is_not_beyond_noise():
    """b - a is +0.02, -0.01, +0.03 on the three seeds: range 0.04 (c - b's too; c - a's is 0), so the
    MRD is the median 0.04. On w@1, b beats a by 0.02 with a tiny paired p, yet within the MRD; c beats
    a by 0.3, beyond it."""
    rows = seeded_rows({"w@1": 0.02, "w@2": -0.01, "w@3": 0.03})
    board, seeds = rows[rows.source == "w@1"], rows[rows.source != "w@1"]
    pair = pairwise_table(board, ["score"], {"score": True}, seed_rows=seeds).set_index(["method_a", "method_b"])
    assert pair.mrd.round(6).unique().tolist() == [0.04] and (pair.n_seeds == 3).all()
    assert abs(pair.loc[("b", "a"), "diff"] - 0.02) < 1e-9 and pair.loc[("b", "a"), "p_paired_holm"] < 1e-6
    assert not pair.loc[("b", "a"), "beyond_noise"] and not pair.loc[("a", "b"), "beyond_noise"]
    assert pair.loc[("c", "a"), "beyond_noise"] and not pair.loc[("a", "c"), "beyond_noise"]
    alone = pairwise_table(board, ["score"], {"score": True}).set_index(["method_a", "method_b"])
    assert (alone.n_seeds == 1).all() and alone.loc[("b", "a"), "beyond_noise"]  # the bootstrap CI alone


def test_the_seed_directory_beside_a_board_is_read_for_the_spread(tmp_path):
    rows = seeded_rows({"w@1": 0.02, "w@2": -0.01, "w@3": 0.03}).rename(columns={"score": "detection_auroc"})
    for source, dpath in (("w@1", tmp_path / "rows"), ("w@2", tmp_path / "seeds" / "rows"),
                          ("w@3", tmp_path / "seeds" / "rows")):
        dpath.mkdir(parents=True, exist_ok=True)
        part = rows[rows.source == source].assign(source_id=f"id-{source}", explanation="x", concept="red",
                                                  category="colour", level="low", aligned=True)
        part.to_csv(dpath / f"{source}-large.csv.gz", index=False)
    pair = regenerate(tmp_path)["pairwise"]
    assert (pair.n_seeds == 3).all() and round(pair.mrd.iloc[0], 6) == 0.04
    assert (regenerate(tmp_path, seeds=[])["pairwise"].n_seeds == 1).all()
