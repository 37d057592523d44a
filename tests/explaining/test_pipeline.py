"""The harness end to end on the tiny world: every method, plug-ins, resume, submissions, errors."""
import importlib.metadata
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.config.run import RunConfig
from benchmark.pipeline import parse_features, read_submission, run
from benchmark.registry import METHODS, UsageError
from tests.slow_plugin import logged, write_slow_plugin
from tests.timing import TickingClock

ALL = ("steering", "topk", "hybrid", "random-direction", "permuted", "no-steer", "caption-top1", "random-words", "oracle")


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "explanations.jsonl").read_text().splitlines()]


def test_every_method_explains_every_feature_once(world, tmp_path):
    half = world.config.sae.d_sae // 2
    features = list(range(20)) + list(range(half, half + 20))
    run_dir = run(RunConfig(methods=ALL, features=",".join(map(str, features)), lm="small", world="tiny",
                            out=str(tmp_path)))
    got = rows(run_dir)
    assert sorted((r["method"], r["feature"]) for r in got) == sorted((m, f) for m in ALL for f in features)
    by = {(r["method"], r["feature"]): r["explanation"] for r in got}
    assert len({by["no-steer", f] for f in features}) == 1  # unsteered empty image: one answer
    assert len({by["steering", f] for f in features}) > 1
    assert all(by["permuted", f] == by["hybrid", f + half] for f in range(20))
    table = world.groundtruth().set_index("feature")
    assert all(table.loc[f, "concept"] in by["oracle", f] for f in features if isinstance(table.loc[f, "concept"], str))
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["config"]["methods"] == list(ALL) and meta["versions"]["torch"] and len(meta["config_hash"]) == 12


def test_plugin_file_and_entry_point_methods_run(world, tmp_path, monkeypatch):
    plugin = tmp_path / "mine.py"
    plugin.write_text("def explain(ctx, features):\n    return [f'feature {f}' for f in features]\n")
    point = importlib.metadata.EntryPoint(name="shout", value="tests.plugin_method:shout", group="featurebench.methods")
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [point] if kw.get("group") == "featurebench.methods" else real(**kw))
    run_dir = run(RunConfig(methods=(f"{plugin}:explain", "shout"), features="3,5", lm="small", world="tiny",
                            out=str(tmp_path / "out")))
    got = {(r["method"], r["feature"]): r["explanation"] for r in rows(run_dir)}
    assert got["explain", 5] == "feature 5" and got["shout", 3] == "FEATURE 3"  # a file plug-in: its function's name


def test_a_file_plug_in_is_one_method_however_its_path_is_spelt(world, world_cache, tmp_path, monkeypatch):
    (tmp_path / "mine.py").write_text(
        "from benchmark.explaining.context import method\n"
        "@method('mine-by-decorator')\n"
        "def explain(ctx, features):\n"
        "    open('calls.txt', 'a').write(f'{len(features)}\\n')\n"
        "    return [f'feature {f}' for f in features]\n"
        "def topk(ctx, features):\n"
        "    return ['x'] * len(features)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(METHODS, "_items", dict(METHODS._items))  # what the plug-in registers stays in this test
    for spelling in ("./mine.py:explain", "mine.py:explain", f"{tmp_path}/mine.py:explain"):
        run_dir = run(RunConfig(methods=(spelling,), features="0:4", lm="small", world="tiny", metrics="none",
                                out=str(tmp_path / "out")))
        assert {r["method"] for r in rows(run_dir)} == {"mine-by-decorator"}  # the name it declared
    assert (tmp_path / "calls.txt").read_text() == "4\n"  # explained once: one method, one cache
    assert len(list((world_cache / "explanations").glob("mine-by-decorator-*.jsonl"))) == 1
    with pytest.raises(UsageError, match=r"mine.py:topk: its function is named 'topk', as a registered method is"):
        run(RunConfig(methods=("mine.py:topk",), features="0:4", lm="small", world="tiny", out=str(tmp_path / "x")))


def test_unknown_method_is_one_line_exit_2_and_writes_nothing(world, tmp_path, capsys):
    assert main(["--method", "hybird", "--world", "tiny", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean hybrid" in err
    assert not (tmp_path / "out").exists()


def test_broken_plugin_is_one_line_exit_2(world, tmp_path, capsys):
    (tmp_path / "bad.py").write_text("def explain(ctx, features):\n    return [\n")
    assert main(["--method", f"{tmp_path / 'bad.py'}:explain", "--world", "tiny", "--out", str(tmp_path / "o")]) == 2
    assert "failed to import: SyntaxError" in capsys.readouterr().err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("spec, message", [
    ("0:500", "the SAE has 128 features (0..127); 499 is past its end; use 0:128"),
    ("120:999", "998 is past its end; use 120:128"),
    ("-4:", "numbered from 0; negative numbers are not counted from the end"),
    ("5:2", "the range is empty (start must be below stop)"),
    ("3,200", "200 is past its end"),
    ("1,1", "a feature is listed twice"),
    ("a:b", "expected start:stop or a comma list"),
])
def test_feature_ranges_are_refused_never_clipped(spec, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        parse_features(spec, 128)
    assert parse_features(":", 4) == [0, 1, 2, 3] and parse_features("2:", 4) == [2, 3]


@pytest.mark.parametrize("argv, message", [
    (["--features", "0:500"], "the SAE has 256 features (0..255); 499 is past its end; use 0:256"),
    (["--features", "120:999"], "998 is past its end; use 120:256"),
    (["--features=-4:"], "numbered from 0"),  # argparse reads a separate "-4:" as a flag
    (["--features", "5:2"], "the range is empty"),
    (["--features", "0:8", "--explanations", "unclosed.csv"], ":3: malformed CSV"),
    (["--features", "0:8", "--explanations", "empty.csv"], ":2: feature 1 has an empty explanation"),
    (["--features", "0:8", "--explanations", "header.csv"], "a header and no explanations"),
])
def test_bad_features_and_submissions_are_one_line_exit_2_and_write_nothing(world, world_cache, tmp_path, capsys,
                                                                            argv, message):
    (tmp_path / "unclosed.csv").write_text('feature,explanation\n1,"red circle\n2,blue\n')
    (tmp_path / "empty.csv").write_text("feature,explanation\n1,\n")
    (tmp_path / "header.csv").write_text("feature,explanation\n")
    argv = [str(tmp_path / a) if a.endswith(".csv") else a for a in argv]
    before = sorted(world_cache.rglob("*"))
    assert main(["--method", "steering", "--world", "tiny", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "o").exists() and sorted(world_cache.rglob("*")) == before


@pytest.mark.parametrize("text, message", [
    ("feat,explanation\n1,red\n", ":1: expected the header"),
    ("feature,explanation\n1,red\nx,blue\n", ":3: feature 'x' is not an integer"),
    ("feature,explanation\n1,red\n1,blue\n", ":3: feature 1 appears twice"),
    ("feature,explanation\n1,red,extra\n", ":2: expected 2 columns"),
    ("feature,explanation\n9999,red\n", ":2: feature 9999 is outside"),
    ("feature,explanation\n1,\"red circle\n2,blue\n", ":3: malformed CSV .*unclosed quote"),
    ("feature,explanation\n1,red\n2, \n", ":3: feature 2 has an empty explanation"),
    ("feature,explanation\n", "a header and no explanations"),
])
def test_malformed_submission_names_the_line(tmp_path, text, message):
    (tmp_path / "sub.csv").write_text(text)
    with pytest.raises(UsageError, match=message):
        read_submission(tmp_path / "sub.csv", 256)


def test_submission_is_recorded_as_a_method(world, tmp_path):
    (tmp_path / "sub.csv").write_text('feature,explanation\n2,"red, at top left"\n7,blue\n')
    run_dir = run(RunConfig(methods=("oracle",), features="0:10", lm="small", world="tiny", out=str(tmp_path / "o"),
                            explanations=str(tmp_path / "sub.csv")))
    got = {(r["method"], r["feature"]): r["explanation"] for r in rows(run_dir)}
    assert got["submission:sub", 2] == "red, at top left" and got["submission:sub", 7] == "blue"


@pytest.mark.slow
def test_killed_run_resumes_with_every_feature_once_and_nothing_recomputed(world, world_cache, tmp_path):
    """A plug-in method that logs each feature it explains, slowly, killed with SIGKILL mid-run."""
    plugin, log = write_slow_plugin(tmp_path, 0.5)
    args = [sys.executable, "-m", "benchmark", "--method", f"{plugin}:explain", "--features", "0:60", "--world", "tiny",
            "--lm", "small", "--batch-size", "4", "--out", str(tmp_path / "out")]
    env = {**os.environ, "FEATUREBENCH_CACHE": str(world_cache)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(logged(log)) < 12):
        time.sleep(0.05)
    # A batch is logged just before the harness stores it: kill half-way through the next batch's
    # sleep, when every logged batch is stored, so "computed exactly once" is a fair demand.
    time.sleep(0.25)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = logged(log)
    assert 12 <= len(before) < 60
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert sorted(f for _, f in logged(log)) == list(range(60))  # each feature computed exactly once overall
    (run_dir,) = (tmp_path / "out").iterdir()
    assert sorted(r["feature"] for r in rows(run_dir)) == list(range(60))


def test_bench_reports_engine_and_loop_for_both_methods(world, monkeypatch):
    """On a clock where each timed pass takes 0.25 s, the rates are the features it explained over
    0.25 s: known answers, where real timings have none (the passes themselves run in full)."""
    from benchmark.bench.engine import bench

    monkeypatch.setattr("benchmark.bench.engine.time", TickingClock(0.25))
    report = bench(("world", "tiny", "small"), engine_features=24, loop_features=3, batch_size=24)
    assert set(report) == {"source", "lm", "batch_size", "steering", "hybrid"}
    for r in (report["steering"], report["hybrid"]):
        assert (r["engine_features_per_s"], r["loop_features_per_s"]) == (24 / 0.25, 3 / 0.25)
        assert r["ratio"] == pytest.approx(r["engine_features_per_s"] / r["loop_features_per_s"], rel=0.01)
