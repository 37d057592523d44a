"""Leaderboard tables from fixed score rows: known values, byte-stable output, safe concurrent writes."""
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest

from benchmark.leaderboard import regenerate
from benchmark.registry import UsageError
from benchmark.stats import greater, mean_ci

EXPECTED_MAIN = """world,lm,method,n_features,detection_auroc,detection_auroc_ci_low,detection_auroc_ci_high,oracle,oracle_ci_low,oracle_ci_high
w,small,a,4,0.8,0.8,0.8,1,1,1
w,small,b,4,0.5,0.5,0.5,0,0,0
"""


@pytest.fixture
def run_dir(tmp_path):
    rows = []
    for method, detection, oracle in (("a", 0.8, 1.0), ("b", 0.5, 0.0)):
        for f in range(4):
            rows.append({"world": "w", "lm": "small", "method": method, "feature": f, "explanation": f"{method} {f}",
                         "concept": "red", "category": "colour", "level": "low", "aligned": f < 2,
                         "detection_auroc": detection, "oracle": oracle})
    dpath = tmp_path / "run"
    dpath.mkdir()
    pd.DataFrame(rows).to_csv(dpath / "scores.csv", index=False)
    return dpath


def test_fixed_rows_give_a_fixed_table(tmp_path, run_dir):
    board = tmp_path / "board"
    tables = regenerate(board, [run_dir])
    assert (board / "main.csv").read_text() == EXPECTED_MAIN
    pair = tables["pairwise"].set_index(["metric", "method_a", "method_b"])
    assert pair.loc[("oracle", "a", "b"), "a_greater"] and not pair.loc[("oracle", "b", "a"), "a_greater"]
    per = tables["per_category"]
    assert set(per.group) == {"low", "colour"} and (per.n_features == 2).all()
    before = {p.name: p.read_bytes() for p in [*board.glob("*.csv"), *board.glob("rows/*")]}
    regenerate(board)  # from the committed rows alone
    assert before == {p.name: p.read_bytes() for p in [*board.glob("*.csv"), *board.glob("rows/*")]}


def test_adding_a_run_again_replaces_its_rows(tmp_path, run_dir):
    board = tmp_path / "board"
    regenerate(board, [run_dir])
    regenerate(board, [run_dir])
    assert (board / "main.csv").read_text() == EXPECTED_MAIN


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


def test_committed_leaderboards_regenerate_byte_for_byte(tmp_path):
    committed = Path(__file__).resolve().parent.parent / "leaderboards"
    shutil.copytree(committed / "rows", tmp_path / "rows")
    regenerate(tmp_path)
    for name in ("main.csv", "per_category.csv", "pairwise.csv"):
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), name
