"""`bench --shape`: the steering engine against its rivals on a real model's shape, in one run, on
one model, every rival forced to the same number of new tokens (the seed's 100 by default), so a
ratio compares equal work.

Rivals, for steering (the white image, a vector at every tower token) and hybrid (5 images a row,
vectors at 20% of their tower tokens):
- `seed`: the seed paper's setting: the steering hook around the model's own `generate`, 8
  features a call (`src/get_steering_explanations.py` of HPAI-BSC/vision-interp);
- `plain`: the same hook + `generate` at the engine's batch (the full tower for every row), its
  prefill and decode timed as the engine's are, so the two compare stage by stage;
- `engine`: `benchmark.steering.engine.SteeringEngine` at its planned batch (free device memory,
  `benchmark.steering.memory`), its stages timed per batch (`benchmark.steering.clock`) and set
  against the card's peaks (`benchmark.bench.roofline`);
- `engine_static` (`static_cache=True`): the engine with transformers' static KV cache, which it
  compiles on CUDA; timed after everything else (parts `steering_static`, `hybrid_static`), since
  compiling takes minutes and a time-out should cost only these parts.
`tokens_equal`: the share of rows whose new tokens the engine and `plain` give alike (the same
features; bf16 on a GPU, where kernels differ with the batch shape).

With `varied_lengths` (part `steering_lengths`, after `steering_static`), steering's answers end at lengths drawn
uniformly from 1 to the new tokens (`benchmark.bench.answer_lengths`), the same for each cache: the
engine's dynamic cache, which drops the rows that ended between its rounds, against the static one
(with `static_cache`), which decodes its fixed batch to the longest answer. Forced-length answers
cannot show that difference; real answers end where they end.

The top-k pass is timed from pixel tensors on the device (`topk`) and from JPEG files on disk
(`topk_jpeg`: decoded by DataLoader workers, resized by the pool, processed on the device).
With `on_part`, each finished section is handed over as it ends, so a time-out keeps what finished.
A rival that runs out of device memory is reported as such (`error`), and the others still run; a
part that fails otherwise is reported with its error, named in `failed_parts`, and the others run.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import BaseImageProcessor, LogitsProcessorList, StoppingCriteriaList

from benchmark.bench.answer_lengths import EndAtDrawnLengths, answer_lengths
from benchmark.bench.roofline import LMCosts, Peaks, breakdown, card_peaks
from benchmark.bench.shapes import SHAPES, Shape, build_random_vlm, image_processor, synthetic_inputs, white_pixels
from benchmark.models.adapters import load_vlm
from benchmark.models.adapters.base import VLMAdapter, default_dtype
from benchmark.registry import UsageError
from benchmark.sources.image_pools import ImagePool, loader_workers, open_dataset
from benchmark.steering.clock import StageClock
from benchmark.steering.engine import SteeringEngine
from benchmark.steering.hook import steer

SEED_NEW_TOKENS = 100
"""New tokens per answer in the seed's steering script, and in this comparison."""
SEED_ROWS = 8
"""Features per `generate` in the seed's steering script."""
HYBRID_IMAGES = 5
HYBRID_ACTIVE = 0.2
"""Share of tower tokens where a hybrid row is steered (where the feature fires in its top images)."""
GIB = 2 ** 30


def run_shape_bench(shape: str, device: str = "cuda", random_weights: bool = True, path: str | None = None,
                    new_tokens: int = SEED_NEW_TOKENS, seed_calls: int = 2, engine_batches: int = 2,
                    static_cache: bool = False, varied_lengths: bool = False, topk_images: int | None = None,
                    jpeg_images: int | None = None, on_part: Callable[[str, dict], None] = lambda name, part: None) -> dict:
    """One JSON-able report: per method each rival's features/s, the engine's ratios to them, its
    stage breakdown and token agreement; top-k pass images/s from tensors and from JPEGs; peak
    accelerator memory (GiB). `path`: a real checkpoint of the shape's family instead of random weights."""
    if shape not in SHAPES:
        raise UsageError(f"unknown shape {shape!r}; available: {', '.join(SHAPES)}")
    if not random_weights and path is None:
        raise UsageError("without --random-weights the bench needs a checkpoint path")
    spec = SHAPES[shape]
    dtype = default_dtype(device)
    start = time.perf_counter()
    vlm = build_random_vlm(spec, device, dtype) if random_weights else load_vlm(spec.family, path, device, dtype)
    card, peaks = card_peaks(vlm.device)
    report = {"shape": shape, "family": spec.family, "device": card, "dtype": str(dtype).removeprefix("torch."),
              "random_weights": random_weights, "sae_layer": spec.sae_layer, "new_tokens": new_tokens,
              "image_tokens": vlm.tokens_per_image, "tower_tokens": len(vlm.token_patches()),
              "build_s": round(time.perf_counter() - start, 2),
              "weights_gib": round(sum(p.numel() * p.element_size() for p in vlm.model.parameters()) / GIB, 2)}
    if peaks is not None:
        report["peaks"] = {"tflop_per_s": peaks.flop_per_s / 1e12, "gb_per_s": peaks.bytes_per_s / 1e9}
    on_part("model", report)
    clock = StageClock(vlm.device)
    fixed = {"min_new_tokens": new_tokens}
    engine = SteeringEngine(vlm, spec.sae_layer, spec.max_rows, clock=clock, **fixed)
    costs = LMCosts.of(vlm)
    report["failed_parts"] = []

    def part(name: str, build: Callable[[], dict]) -> dict:
        """A part's report, or the error that stopped it: on a lent machine's one run, a part that
        fails (a package missing there, a kernel the card lacks) must not cost the others."""
        try:
            value = build()
        except Exception as error:  # reported in the part and in `failed_parts`; the command exits 1
            value = {"error": f"{type(error).__name__}: {error}"}
            report["failed_parts"].append(name)
        on_part(name, value)
        return value

    workloads, plain_tokens = {}, {}
    for name, n_images in (("steering", 1), ("hybrid", HYBRID_IMAGES)):
        def method() -> dict:
            work = _workload(vlm, spec, n_images, engine, new_tokens, engine_batches)
            section, tokens = _rivals(vlm, spec, work, clock, costs, peaks, new_tokens, seed_calls)
            section.update(_engine_entry("engine", engine, section, work, tokens, clock, costs, peaks, spec,
                                         new_tokens))
            workloads[name], plain_tokens[name] = work, tokens
            return section

        report[name] = part(name, method)
    images = topk_images or 4 * spec.topk_batch
    pixels = white_pixels(vlm, images)
    topk = lambda k: [None for _ in engine.tower_states(pixels[:k], spec.topk_batch)]  # noqa: E731
    report["topk"] = part("topk", lambda: {"images": images, "batch_size": spec.topk_batch, **_unless_out_of_memory(
        lambda: _timed("images", topk, images, spec.topk_batch, vlm.device), spec.topk_batch, vlm.device)})
    processor = vlm.processor.image_processor if vlm.processor is not None else image_processor(spec)
    report["topk_jpeg"] = part("topk_jpeg", lambda: _jpeg_pass(engine, processor, spec, jpeg_images or images))
    # Last, since a static cache compiles per batch shape (minutes): a time-out costs only these parts.
    # Varied lengths come before hybrid's static cache: they reuse steering's compiled shape.
    static = SteeringEngine(vlm, spec.sae_layer, spec.max_rows, static_cache=True, **fixed) if static_cache else None
    if static is not None:
        static.plans = engine.plans  # the same rows, whatever is free by then
    for name, work in workloads.items():
        if static_cache:
            added = part(f"{name}_static", lambda: _engine_entry("engine_static", static, report[name], work,
                                                                  plain_tokens[name], clock, costs, peaks, spec,
                                                                  new_tokens))
            report[name].update({"engine_static": added} if "error" in added else added)
        if varied_lengths and name == "steering":
            report["steering_lengths"] = part("steering_lengths", lambda: _varied_lengths(
                vlm, spec, work, engine.plans, new_tokens, static_cache))
    report["ratios"] = {name: {k: report[name][k] for k in report[name] if k.startswith("engine") and "_over_" in k}
                        for name in ("steering", "hybrid")}
    return report


@dataclass(frozen=True)
class _Workload:
    """What every rival of one method answers: `rows` per engine `generate` (its plan), `n` features
    with their vectors (n, D) and, for hybrid, steered positions (n, images, tower tokens)."""

    n_images: int
    one_row: dict[str, torch.Tensor]
    prompt_tokens: int
    rows: int
    n: int
    vectors_BD: torch.Tensor
    positions_BNT: torch.Tensor | None
    plan: dict


def _workload(vlm: VLMAdapter, spec: Shape, n_images: int, engine: SteeringEngine, new_tokens: int,
              engine_batches: int) -> _Workload:
    one_row = synthetic_inputs(vlm, n_images, spec.prompt_tokens, 1)
    prompt = one_row["input_ids"].shape[1]
    rows = engine.rows_per_generate(n_images, prompt, new_tokens)
    n = rows * engine_batches
    g = torch.Generator().manual_seed(1)
    vectors_BD = torch.randn(n, vlm.model.config.vision_config.hidden_size, generator=g).to(vlm.device)
    tokens_T = len(vlm.token_patches())
    positions_BNT = None if n_images == 1 else \
        (torch.rand(n, n_images, tokens_T, generator=g) < HYBRID_ACTIVE).to(vlm.device)
    return _Workload(n_images, one_row, prompt, rows, n, vectors_BD, positions_BNT,
                     engine.plans[(n_images, prompt, new_tokens)])


def _rivals(vlm: VLMAdapter, spec: Shape, work: _Workload, clock: StageClock, costs: LMCosts, peaks: Peaks | None,
            new_tokens: int, seed_calls: int) -> tuple[dict, list[torch.Tensor] | None]:
    """The hook + `generate` rivals: the seed's 8 a call, and plain at the engine's rows (with its
    breakdown); the section so far and plain's tokens (None when it ran out of memory)."""
    section: dict = {"prompt_tokens": work.prompt_tokens, "rows": work.rows, "engine_features": work.n,
                     "plan": work.plan}

    def hooked(batch: int, hook_clock: StageClock | None = None) -> Callable[[int], list[torch.Tensor]]:
        return lambda k: _hooked(vlm, spec.sae_layer, work.one_row, work.vectors_BD[:k],
                                 _first(work.positions_BNT, k), batch, new_tokens, hook_clock)

    seed_features = min(work.n, SEED_ROWS * seed_calls)
    section["seed"] = _unless_out_of_memory(
        lambda: _timed("features", hooked(SEED_ROWS), seed_features, min(SEED_ROWS, seed_features), vlm.device),
        SEED_ROWS, vlm.device)
    plain_clock = StageClock(vlm.device)

    def plain() -> dict:
        timing = _timed("features", hooked(work.rows, plain_clock), work.rows, work.rows, vlm.device, keep=True,
                        before=plain_clock.reset)
        return {**timing, "breakdown": breakdown(plain_clock.batches(), costs, work.prompt_tokens, peaks)}

    section["plain"] = _unless_out_of_memory(plain, work.rows, vlm.device)
    return section, section["plain"].pop("outputs", None)


def _engine_entry(key: str, engine: SteeringEngine, section: dict, work: _Workload,
                  plain_tokens: list[torch.Tensor] | None, clock: StageClock, costs: LMCosts, peaks: Peaks | None,
                  spec: Shape, new_tokens: int) -> dict:
    """`key`: the engine's timing on the workload (its breakdown when it runs on `clock`, its tokens'
    agreement with plain's, the plan's peak), and its ratios to the rivals in `section`."""
    timed_by_clock = engine.clock is clock

    def timed() -> dict:
        run = _engine_run(engine, spec, work.n_images, work.vectors_BD, work.positions_BNT, work.rows, new_tokens)
        timing = _timed("features", run, work.n, work.rows, engine.vlm.device, keep=True,
                        before=clock.reset if timed_by_clock else None)
        if timed_by_clock:
            timing["breakdown"] = breakdown(clock.batches(), costs, work.prompt_tokens, peaks)
        return timing

    timing = _unless_out_of_memory(timed, work.rows, engine.vlm.device)
    outputs = timing.pop("outputs", None)
    if outputs is not None and plain_tokens is not None:
        timing["tokens_equal"] = _share_equal(outputs[:work.rows], plain_tokens)
    plan = work.plan
    if "row_bytes" in plan:
        timing["planned_peak_gib"] = round((plan["allocated_bytes"] + work.rows * plan["row_bytes"]["total"]) / GIB, 2)
    entry = {key: timing}
    for rival in ("seed", "plain"):
        if "features_per_s" in timing and "features_per_s" in section[rival]:
            entry[f"{key}_over_{rival}"] = round(timing["features_per_s"] / section[rival]["features_per_s"], 2)
    return entry


def _varied_lengths(vlm: VLMAdapter, spec: Shape, work: _Workload, plans: dict, new_tokens: int,
                    static_cache: bool) -> dict:
    """Steering's workload with each batch's row i ending after the same drawn length on every
    cache (`EndAtDrawnLengths`): features/s of the dynamic cache (decoding in rounds) and, with
    `static_cache`, of the static one; `as_drawn`: the share of rows that ended where drawn."""
    config = vlm.model.generation_config
    eos = config.eos_token_id
    end_tokens = [t for t in ([eos] if isinstance(eos, int) else eos or []) + [config.pad_token_id] if t is not None]
    if not end_tokens:
        raise ValueError("the model's generation config names no end-of-sequence token")
    section: dict = {"lengths": f"uniform 1..{new_tokens}", "rows": work.rows}
    for key, static in (("engine", False), ("engine_static", True))[:1 + static_cache]:
        ender = EndAtDrawnLengths.uniform(work.prompt_tokens, new_tokens, work.rows, end_tokens)
        engine = SteeringEngine(vlm, spec.sae_layer, spec.max_rows, static_cache=static,
                                logits_processor=LogitsProcessorList([ender]))
        engine.plans = plans  # the rows the other parts ran
        run = _engine_run(engine, spec, 1, work.vectors_BD, None, work.rows, new_tokens)
        timing = _unless_out_of_memory(lambda: _timed("features", run, work.n, work.rows, vlm.device, keep=True),
                                       work.rows, vlm.device)
        if "outputs" in timing:
            got = answer_lengths(timing.pop("outputs"), set(end_tokens))
            drawn = ender.lengths_B.tolist() * (work.n // work.rows)
            timing["answer_tokens"] = sum(got)
            timing["as_drawn"] = round(sum(g == d for g, d in zip(got, drawn)) / len(got), 4)
        section[key] = timing
    if "features_per_s" in section["engine"] and "features_per_s" in section.get("engine_static", {}):
        section["static_over_dynamic"] = round(section["engine_static"]["features_per_s"]
                                               / section["engine"]["features_per_s"], 2)
    return section


def _unless_out_of_memory(measure: Callable[[], dict], rows: int, device: torch.device) -> dict:
    """A rival's timing, or `{"error": "out of memory", "rows": rows}` when the device ran out: a
    finding for the report (a plan that asked too much, or plain `generate`'s limit at the engine's
    batch), not the end of the run; what the rival held is released for the next one."""
    try:
        return measure()
    except torch.OutOfMemoryError:
        pass
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"error": "out of memory", "rows": rows}


def _first(positions_BNT: torch.Tensor | None, k: int) -> torch.Tensor | None:
    return None if positions_BNT is None else positions_BNT[:k]


def _hooked(vlm: VLMAdapter, layer: int, one_row: dict, vectors_BD: torch.Tensor, positions_BNT: torch.Tensor | None,
            batch: int, new_tokens: int, clock: StageClock | None = None) -> list[torch.Tensor]:
    """The hook + `generate` path, `batch` features a call: every row runs the whole tower on its images.
    `clock`: its stages, the tower inside `generate` counted with the prefill (its tower_s is ~0)."""
    timed = {} if clock is None else {"stopping_criteria": StoppingCriteriaList([clock])}
    n_images = len(one_row["pixel_values"])
    out: list[torch.Tensor] = []
    for start in range(0, len(vectors_BD), batch):
        vectors_bD = vectors_BD[start:start + batch]
        b = len(vectors_bD)
        inputs = {k: (v.repeat(b, 1, 1, 1) if k == "pixel_values" else v.expand(b, -1)) for k, v in one_row.items()}
        positions_nT = None if positions_BNT is None else positions_BNT[start:start + batch].flatten(0, 1)
        if clock is not None:
            clock.begin()
            clock.tower_done(b)
        with steer(vlm.layer(layer), vectors_bD.repeat_interleave(n_images, dim=0), positions_nT), torch.no_grad():
            ids = vlm.model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                     **timed)
        out += list(ids[:, inputs["input_ids"].shape[1]:])
    return out


def _engine_run(engine: SteeringEngine, spec: Shape, n_images: int, vectors_BD: torch.Tensor,
                positions_BNT: torch.Tensor | None, rows: int, new_tokens: int) -> Callable[[int], list[torch.Tensor]]:
    """Steering: all rows share the white image. Hybrid: each batch is encoded rows of their own images."""
    if positions_BNT is None:
        one_row = synthetic_inputs(engine.vlm, 1, spec.prompt_tokens, 1)
        return lambda k: engine.generate_shared(one_row, vectors_BD[:k], None, new_tokens)
    batch = synthetic_inputs(engine.vlm, n_images, spec.prompt_tokens, rows)

    def run(k: int) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for start in range(0, k, rows):
            stop = min(k, start + rows)
            part = {key: value[:(stop - start) * (n_images if key == "pixel_values" else 1)]
                    for key, value in batch.items()}
            out += engine.generate_rows(part, vectors_BD[start:stop], positions_BNT[start:stop], new_tokens, rows=rows)
        return out
    return run


def _share_equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """Share of rows whose token ids are all equal."""
    return round(sum(bool(torch.equal(x.cpu(), y.cpu())) for x, y in zip(a, b)) / max(1, min(len(a), len(b))), 4)


def _jpeg_pass(engine: SteeringEngine, processor: BaseImageProcessor, spec: Shape, n_images: int) -> dict:
    """The top-k pass as a run reads a pool: JPEG files (ImageNet-sized, 500 x 375) decoded and
    cropped to the tower's side by DataLoader workers, made pixel values by the family's image
    processor on the device (as `VLMAdapter.pixel_values` does), the tower to the SAE layer."""
    vision = engine.vlm.model.config.vision_config
    side = vision.image_size if isinstance(vision.image_size, int) else vision.image_size[0]
    workers = loader_workers(engine.vlm.device)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for i in range(n_images):
            _photo_like(i).save(folder / f"{i:05d}.jpg", quality=90)
        pool = ImagePool(open_dataset(str(folder), quiet=True), "image", np.arange(n_images), side, None)

        def run(k: int) -> None:
            on_device = {} if engine.vlm.device.type == "cpu" else {"device": engine.vlm.device}
            for _, images in pool.batches(spec.topk_batch, 0, k, workers):
                pixels = processor(list(images), return_tensors="pt", **on_device)["pixel_values"]
                for _ in engine.tower_states(pixels.to(engine.vlm.device, engine.vlm.dtype), spec.topk_batch):
                    pass
        timing = _unless_out_of_memory(lambda: _timed("images", run, n_images, min(n_images, spec.topk_batch),
                                                      engine.vlm.device), spec.topk_batch, engine.vlm.device)
    return {"images": n_images, "batch_size": spec.topk_batch, "workers": workers, "side": side, **timing}


def _photo_like(seed: int) -> Image.Image:
    """A 500 x 375 image with smooth gradients and edges: decodes like a photo (noise would not compress)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:375, 0:500] / 500.0
    channels = [np.sin(x * rng.uniform(2, 9) + rng.uniform(0, 6)) * np.cos(y * rng.uniform(2, 9)) for _ in range(3)]
    pixels = (np.stack(channels, -1) * 110 + 128).clip(0, 255).astype(np.uint8)
    r, c = rng.integers(40, 300, 2)
    pixels[r:r + 60, c:c + 90] = rng.integers(0, 255, 3, dtype=np.uint8)
    return Image.fromarray(pixels)


def _timed(key: str, run: Callable[[int], object], n: int, warmup: int, device: torch.device, keep: bool = False,
           before: Callable[[], object] | None = None) -> dict:
    """`key`_per_s: items per second of run(n) after a warm-up run(warmup); seconds; peak GiB
    (accelerators); `outputs` (what run(n) returned) when `keep`. `before`: called after the warm-up
    (e.g. to drop the clock's warm-up batches). Every rival warms up on one full batch of its own:
    the first run at a batch size pays for memory the allocator has not mapped yet (on a CPU a
    32-row plain `generate` took 7.5 s cold and 4.0 s warm), and a static cache compiles per shape;
    a one-row warm-up would charge that to whichever rival ran first. `warmup_s`: what the warm-up
    took (a static cache's compilation shows there)."""
    start = time.perf_counter()
    run(warmup)
    warmup_s = time.perf_counter() - start
    if before is not None:
        before()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    outputs = run(n)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out = {"n": n, f"{key}_per_s": round(n / seconds, 3), "seconds": round(seconds, 3), "warmup_s": round(warmup_s, 3)}
    if device.type == "cuda":
        out["peak_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
    if keep:
        out["outputs"] = outputs
    return out
