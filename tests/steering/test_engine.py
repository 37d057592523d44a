"""The split-tower steering engine gives the plain hook + `generate` path's answers, for every family,
in fp32 on tiny random-weight checkpoints; the random-weight benchmark runs its tiny shapes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.bench.shapes import run_shape_bench
from benchmark.steering.engine import SteeringEngine
from benchmark.steering.hook import steered_generate
from tests.sources.test_adapters import FAMILIES, PROMPT, STEERED, planted_image
from tests.timing import TickingClock

NEW_TOKENS = 5
STEP = 0.25
"""Seconds per reading of the benches' ticking clock (`tests.timing.TickingClock`)."""


def _no_specials(vlm) -> dict:
    """Random weights like to emit special tokens, which decode to ''; keep the answers readable."""
    return {"suppress_tokens": vlm.processor.tokenizer.all_special_ids}


def _plain(vlm, images_BNHWC: np.ndarray, vectors_BD: torch.Tensor,
           positions_BNT: torch.Tensor | None) -> list[str]:
    """The reference: the steering hook around the checkpoint's own `generate`, one feature at a time."""
    generate = lambda batch: vlm.generate(batch, PROMPT, NEW_TOKENS, **_no_specials(vlm))  # noqa: E731
    return steered_generate(generate, vlm.layer(STEERED), images_BNHWC, vectors_BD, positions_BNT, batch_size=1)


def _vectors(vlm, n: int, scale: float = 8.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(n)
    return scale * torch.randn(n, vlm.model.config.vision_config.hidden_size, generator=g)


@pytest.mark.parametrize("family", FAMILIES)
def test_shared_image_engine_equals_the_hook_loop(vlms, family):
    vlm = vlms[family]
    engine = SteeringEngine(vlm, STEERED, batch_size=4, **_no_specials(vlm))
    vectors = _vectors(vlm, 7)  # two batches, the last one partial
    vectors[3] = 0  # an unsteered row in the middle of a batch
    empty = planted_image(255)
    got = engine.answer([empty], PROMPT, vectors, max_new_tokens=NEW_TOKENS)
    expected = _plain(vlm, np.broadcast_to(empty, (7, 1, *empty.shape)), vectors, None)
    assert got == expected
    assert len(set(got)) > 1  # the vectors steer to different answers
    assert got[3] == vlm.generate([[empty]], PROMPT, NEW_TOKENS, **_no_specials(vlm))[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_per_row_images_with_positions_equal_the_hook_loop(vlms, family):
    """Hybrid's case: each row its own images, steered only at chosen tower tokens."""
    vlm = vlms[family]
    engine = SteeringEngine(vlm, STEERED, batch_size=2, **_no_specials(vlm))
    rng = np.random.default_rng(0)
    images = np.stack([[planted_image(int(v), (int(r), int(c))) for v, r, c in rng.integers(0, 4, (2, 3)) * (60, 1, 1)]
                       for _ in range(5)])  # (5 rows, 2 images, H, W, C)
    tokens = len(vlm.token_patches())
    positions = torch.from_numpy(rng.random((5, 2, tokens)) < 0.4)
    vectors = _vectors(vlm, 5)
    got = engine.answer_rows(images, PROMPT, vectors, positions, max_new_tokens=NEW_TOKENS)
    assert got == _plain(vlm, images, vectors, positions)


@pytest.mark.parametrize("family", FAMILIES)
def test_shared_engine_with_positions_equals_the_hook_loop(vlms, family):
    vlm = vlms[family]
    engine = SteeringEngine(vlm, STEERED, batch_size=3, **_no_specials(vlm))
    images = [planted_image(255), planted_image(0, (1, 1))]
    positions = torch.zeros(2, len(vlm.token_patches()), dtype=torch.bool)
    positions[0, -6:] = positions[1, :5] = True
    vectors = _vectors(vlm, 4)
    got = engine.answer(images, PROMPT, vectors, positions, max_new_tokens=NEW_TOKENS)
    stacked = np.broadcast_to(np.stack(images), (4, 2, *images[0].shape))
    assert got == _plain(vlm, stacked, vectors, positions.expand(4, -1, -1))


@pytest.mark.parametrize("family", FAMILIES)
def test_tower_states_are_the_models_hidden_states(vlms, family):
    vlm = vlms[family]
    images = [planted_image(v, (v % 4, 3 - v % 4)) for v in range(0, 250, 50)]
    got = torch.cat(list(SteeringEngine(vlm, STEERED).tower_states(images, batch_size=2)))
    expected = vlm.tower(pixel_values=vlm.pixel_values(images), output_hidden_states=True).hidden_states[STEERED]
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("shape", ["tiny", "tiny-gemma3"])
def test_random_weight_bench_runs_its_tiny_shapes_on_cpu(shape, monkeypatch):
    """On a clock where every timed run takes `STEP` seconds, each rate is the items it ran over STEP
    and the engine's ratio is its features over the loop's: known answers, where real timings have none."""
    monkeypatch.setattr("benchmark.bench.shapes.time", TickingClock(STEP))
    report = run_shape_bench(shape, "cpu", loop_features=2, engine_batches=1, topk_images=8)
    assert report["shape"] == shape and report["dtype"] == "float32"
    for section in ("steering", "hybrid"):
        s = report[section]
        assert {"loop_per_s", "engine_per_s", "engine_ratio"} <= s.keys()
        assert (s["loop_features"], s["engine_features"]) == (2, s["batch_size"])  # one engine batch
        assert (s["loop_per_s"], s["engine_per_s"]) == (2 / STEP, s["batch_size"] / STEP)
        assert s["loop_s"] == s["engine_s"] == STEP and s["engine_ratio"] == round(s["batch_size"] / 2, 2)
    assert report["topk"]["images"] == 8 and report["topk"]["images_per_s"] == 8 / STEP
    assert report["ratios"] == {name: report[name]["engine_ratio"] for name in ("steering", "hybrid")}


def test_cli_shape_bench_prints_its_report_as_the_last_json_line(capsys, monkeypatch):
    import json

    from benchmark.cli import main

    monkeypatch.setattr("benchmark.bench.shapes.time", TickingClock(STEP))  # as above: known rates
    assert main(["bench", "--shape", "tiny", "--random-weights", "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    steering = report["steering"]
    assert report["shape"] == "tiny" and report["random_weights"] is True
    assert steering["engine_features"] == 2 * steering["batch_size"]  # the default: two engine batches
    assert steering["engine_per_s"] == steering["engine_features"] / STEP
    assert main(["bench", "--shape", "llava-1.5-7b", "--device", "cpu"]) == 2  # no weights named: a usage error
