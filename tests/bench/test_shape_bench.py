"""`bench --shape` on the CPU-sized shapes: every rival runs on the same vectors, rates and ratios
come out of a clock with known steps, the engine's answers are compared with the plain path's, and
the command prints each finished part as a JSON line as it goes."""
from __future__ import annotations

import json

import pytest
import torch

from benchmark.bench.shape_bench import SEED_ROWS, run_shape_bench
from benchmark.bench.shapes import SHAPES
from tests.timing import TickingClock

STEP = 0.25
"""Seconds per reading of the bench's ticking clock (`tests.timing.TickingClock`)."""


@pytest.mark.parametrize("shape", ["tiny", "tiny-gemma3"])
def test_rivals_rates_and_ratios_on_a_known_clock(shape, monkeypatch):
    """Each timed run takes `STEP`: a rival's rate is its features over STEP, the engine's ratios are
    feature counts' ratios. 3 engine batches of the shape's 4 rows (12 features), the seed's one call
    of 8, plain's one batch of 4: engine / seed = 1.5, engine / plain = 3."""
    monkeypatch.setattr("benchmark.bench.shape_bench.time", TickingClock(STEP))
    parts = []
    report = run_shape_bench(shape, "cpu", new_tokens=3, seed_calls=1, engine_batches=3, topk_images=8,
                             jpeg_images=6, static_cache=True, varied_lengths=True,
                             on_part=lambda name, part: parts.append(name))
    rows = SHAPES[shape].max_rows
    assert report["dtype"] == "float32" and report["new_tokens"] == 3 and report["device"] == "cpu"
    for name in ("steering", "hybrid"):
        s = report[name]
        assert s["rows"] == rows and s["plan"] == {"rows": rows, "batch_size": rows}  # no plan off CUDA
        assert (s["seed"]["n"], s["plain"]["n"], s["engine"]["n"], s["engine_static"]["n"]) == (SEED_ROWS, rows, 12, 12)
        for rival in ("seed", "plain", "engine", "engine_static"):
            assert s[rival]["features_per_s"] == s[rival]["n"] / STEP and s[rival]["seconds"] == STEP
        assert (s["engine_over_seed"], s["engine_over_plain"]) == (1.5, 3.0)
        assert s["engine"]["tokens_equal"] == s["engine_static"]["tokens_equal"] == 1.0  # fp32: the same answers
        assert s["engine"]["breakdown"]["rows"] == [rows] * 3  # the warm-up's batch is not counted
        assert s["plain"]["breakdown"]["rows"] == [rows] and s["plain"]["breakdown"]["decode_s"] > 0
        assert report["ratios"][name] == {k: s[k] for k in ("engine_over_seed", "engine_over_plain",
                                                          "engine_static_over_seed", "engine_static_over_plain")}
    assert report["hybrid"]["prompt_tokens"] > report["steering"]["prompt_tokens"]  # five images a row
    assert report["topk"]["images_per_s"] == 8 / STEP
    assert report["topk_jpeg"]["images"] == 6 and report["topk_jpeg"]["images_per_s"] == 6 / STEP
    assert report["topk_jpeg"]["workers"] == 0  # decoding in the process beside a CPU model
    varied = report["steering_lengths"]  # answers of 1 to 3 tokens, the same for both caches
    assert varied["lengths"] == "uniform 1..3" and varied["static_over_dynamic"] == 1.0
    for cache in ("engine", "engine_static"):
        assert varied[cache]["features_per_s"] == 12 / STEP and varied[cache]["as_drawn"] == 1.0
    assert varied["engine"]["answer_tokens"] == varied["engine_static"]["answer_tokens"] < 3 * 12
    assert parts == ["model", "steering", "hybrid", "topk", "topk_jpeg", "steering_static", "steering_lengths",
                     "hybrid_static"]


def test_a_rival_out_of_device_memory_is_reported_and_the_others_still_run(monkeypatch):
    """Plain `generate` at the engine's batch runs out of memory (as it may on an 80 GB card): its
    entry says so, the engine is still timed, the ratios to it and the token agreement are left out
    (nothing to compare with), the seed's stay, and the lines for people say what happened."""
    from benchmark.bench import shape_bench
    from benchmark.commands.bench import shape_lines

    hooked = shape_bench._hooked

    def out_of_memory_at_the_engine_batch(*args, **kwargs):
        if args[5] != SEED_ROWS:  # `batch`: the plain rival's
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return hooked(*args, **kwargs)

    monkeypatch.setattr(shape_bench, "_hooked", out_of_memory_at_the_engine_batch)
    monkeypatch.setattr(shape_bench, "time", TickingClock(STEP))
    report = run_shape_bench("tiny", "cpu", new_tokens=2, seed_calls=1, engine_batches=3, topk_images=4, jpeg_images=2)
    rows = SHAPES["tiny"].max_rows
    for name in ("steering", "hybrid"):
        s = report[name]
        assert s["plain"] == {"error": "out of memory", "rows": rows}
        assert s["engine"]["features_per_s"] == 3 * rows / STEP and "tokens_equal" not in s["engine"]
        assert report["ratios"][name] == {"engine_over_seed": s["engine_over_seed"]}
    assert shape_lines(report)[0] == (f"steering  seed {SEED_ROWS / STEP:.2f}   plain out-of-memory   engine "
                                      f"{3 * rows / STEP:.2f} feat/s   engine x1.50 seed   ({rows} rows)")


def test_a_failing_part_is_reported_the_others_run_and_the_command_exits_1(capsys, monkeypatch):
    """On a lent machine's one run, the JPEG pass fails (as it would without `datasets` there): its
    part carries the error, the static-cache parts after it still run, and the command exits 1."""
    from benchmark.cli import main

    def no_datasets(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'datasets'")

    monkeypatch.setattr("benchmark.bench.shape_bench._jpeg_pass", no_datasets)
    assert main(["bench", "--shape", "tiny", "--random-weights", "--device", "cpu", "--new-tokens", "2",
                 "--static-cache", "--json"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    parts = {p.pop("part"): p for p in (json.loads(line) for line in lines if line.startswith('{"shape":"tiny","part"'))}
    assert list(parts) == ["model", "steering", "hybrid", "topk", "topk_jpeg", "steering_static", "hybrid_static"]
    assert parts["topk_jpeg"] == {"shape": "tiny", "error": "ModuleNotFoundError: No module named 'datasets'"}
    assert parts["hybrid_static"]["engine_static"]["tokens_equal"] == 1.0
    assert json.loads(lines[-1])["failed_parts"] == ["topk_jpeg"]
    assert "topk_jpeg failed: ModuleNotFoundError: No module named 'datasets'" in lines
    assert any(line.endswith("images/s from tensors, failed from JPEGs") for line in lines)


def test_cli_prints_parts_as_they_finish_then_the_report(capsys, monkeypatch):
    from benchmark.cli import main

    monkeypatch.setattr("benchmark.bench.shape_bench.time", TickingClock(STEP))
    assert main(["bench", "--shape", "tiny", "--random-weights", "--device", "cpu", "--new-tokens", "2", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    parts = [json.loads(line) for line in lines if line.startswith('{"shape":"tiny","part"')]
    assert [p["part"] for p in parts] == ["model", "steering", "hybrid", "topk", "topk_jpeg"]
    report = json.loads(lines[-1])
    assert report["new_tokens"] == 2 and report["steering"] == {k: v for k, v in parts[1].items()
                                                                if k not in ("shape", "part")}
    assert any(line.startswith("steering  seed") for line in lines)
    assert main(["bench", "--shape", "llava-1.5-7b", "--device", "cpu"]) == 2  # no weights named: a usage error
    assert main(["bench", "--shape", "no-such", "--random-weights", "--device", "cpu"]) == 2
