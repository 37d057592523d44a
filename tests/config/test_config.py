"""`--config run.toml|run.yaml`: a file of run options, checked like flags, which flags override."""
from __future__ import annotations

import json

import pytest

from benchmark.cli import main


def run_json(out) -> dict:
    (run_dir,) = out.iterdir()
    return json.loads((run_dir / "run.json").read_text())["config"]


@pytest.mark.parametrize("name, text", [
    ("run.toml", 'method = ["oracle", "random-words"]\nfeatures = "0:6"\nworld = "tiny"\nlm = "small"\n'
                 'metrics = "none"\nbatch-size = 3\nhybrid_multiplier = 0.5\n'),
    ("run.yaml", "method: [oracle, random-words]\nfeatures: '0:6'\nworld: tiny\nlm: small\nmetrics: none\n"
                 "batch-size: 3\nhybrid_multiplier: 0.5\n"),
])
def test_config_file_sets_options_and_flags_override_it(world, tmp_path, name, text):
    (tmp_path / name).write_text(text)
    assert main(["--config", str(tmp_path / name), "--features", "0:4", "--out", str(tmp_path / "out")]) == 0
    config = run_json(tmp_path / "out")
    assert config["methods"] == ["oracle", "random-words"] and config["features"] == "0:4"  # the flag won
    assert config["method"]["batch_size"] == 3 and config["method"]["hybrid_multiplier"] == 0.5


@pytest.mark.parametrize("name, text, message", [
    ("run.toml", "metod = 'hybrid'\n", "unknown option 'metod'"),
    ("run.toml", "method = \n", "--config"),
    ("run.yaml", "method: [a\n", "--config"),
    ("run.yaml", "- hybrid\n", "expected a table"),
    ("run.json", "{}", "expected a .toml, .yaml or .yml"),
    ("missing.toml", None, "no such file"),
])
def test_bad_config_is_one_line_exit_2(tmp_path, capsys, name, text, message):
    if text is not None:
        (tmp_path / name).write_text(text)
    assert main(["--config", str(tmp_path / name), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_config_values_get_the_flags_checks(tmp_path):
    (tmp_path / "run.toml").write_text('empty = "grey"\n')
    with pytest.raises(SystemExit) as e:  # argparse's own error for an invalid choice
        main(["--config", str(tmp_path / "run.toml")])
    assert e.value.code == 2


@pytest.mark.slow
@pytest.mark.parametrize("text, message", [
    ("methdo = 'hybrid'\n", "unknown option 'methdo'; did you mean 'method'?"),
    ("method = 'hybird'\n", "unknown method 'hybird'; did you mean hybrid?"),
    ("method = 'topk'\nmetrics = 'detecton'\n", "unknown metric 'detecton'; did you mean detection?"),
    ("method = 'topk'\ntune = 'simulaton'\n", "unknown metric 'simulaton'; did you mean simulation?"),
    ("[vlm]\nfamly = 'llava'\npath = 'v'\n[sae]\npath = 's'\n[pool]\nsource = 'p'\n", "[vlm]: unknown key 'famly'"),
])
def test_config_typos_are_reported_before_any_model_library_is_imported(tmp_path, text, message):
    """In a fresh interpreter: the one line, exit 2, nothing written, and torch never imported (what
    makes a typo cost a second, not the ten it takes to import torch and transformers)."""
    import subprocess
    import sys

    (tmp_path / "run.toml").write_text(text)
    probe = ("import sys; from benchmark.cli import main; code = main(['--config', sys.argv[1], '--out', sys.argv[2]]);"
             " print(code, 'torch' in sys.modules, 'transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "run.toml"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False", "False"], done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_steering_settings_and_a_list_of_sweeps_read_from_a_config(tmp_path):
    from benchmark.commands.run import run_options
    from benchmark.config.read import read_run_file

    (tmp_path / "run.toml").write_text('intervention = "clamp"\nsteering-coeff = 100.0\ntop-images = "heatmap"\n'
                                       'sweep = ["intervention=add,clamp", "top_images=masked,heatmap"]\n')
    run, flags = run_options()
    args = run.parse_args(read_run_file(tmp_path / "run.toml").arguments(flags))
    assert (args.intervention, args.steering_coeff, args.top_images) == ("clamp", 100.0, "heatmap")
    assert args.sweep == ["intervention=add,clamp", "top_images=masked,heatmap"]


def test_the_metrics_settings_come_from_the_scoring_table_and_the_methods_flags(world, tmp_path, capsys):
    def run_json(toml: str, *flags: str) -> dict:
        (tmp_path / "run.toml").write_text(toml)
        out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
        assert main(["--config", str(tmp_path / "run.toml"), "--out", str(out), *flags]) == 0
        (run_dir,) = out.iterdir()
        return json.loads((run_dir / "run.json").read_text())["config"]["scoring"]

    base = 'world = "tiny"\nlm = "small"\nmethod = "topk"\nfeatures = "0:4"\nmetrics = "clip-score,detection"\n'
    scoring = run_json(base + "[scoring]\ndetection_k = 7\nlocalization_images = 3\n", "--top-k", "3",
                       "--top-images", "heatmap")
    assert (scoring["detection_k"], scoring["localization_images"]) == (7, 3)
    assert (scoring["top_k"], scoring["top_images"]) == (3, "heatmap")  # clip-score scores what the methods show
    assert run_json(base + "[scoring]\ntop_k = 2\n", "--top-k", "3")["top_k"] == 2  # the table wins
    for table, message in (("detection_k = 0", "[scoring] detection_k = 0: each must be at least 1"),
                           ("top_images = 'blurred'", "[scoring] top_images 'blurred': one of masked, heatmap"),
                           ("detection = 3", "[scoring]: unknown key 'detection'")):
        (tmp_path / "bad.toml").write_text(base + f"[scoring]\n{table}\n")
        capsys.readouterr()
        assert main(["--config", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err and not (tmp_path / "bad").exists()
