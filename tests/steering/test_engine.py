"""The split-tower steering engine gives the plain hook + `generate` path's answers, for every family,
in fp32 on tiny random-weight checkpoints, with the dynamic KV cache and with the static one (its
partial batches padded to one shape, compiled once as on CUDA), rows that end leaving the batch
between decoding rounds; its clock splits each batch into tower, prefill and decode."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList, StaticCache

from benchmark.steering.clock import StageClock
from benchmark.steering.engine import SteeringEngine
from benchmark.steering.memory import RESERVE_BYTES, SAFETY, DeviceMemory, row_bytes
from benchmark.steering.hook import steered_generate
from tests.sources.test_adapters import FAMILIES, PROMPT, SIZE, STEERED, planted_image
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


@pytest.mark.parametrize("static_cache", [False, True], ids=["dynamic", "static"])
@pytest.mark.parametrize("family", FAMILIES)
def test_shared_image_engine_equals_the_hook_loop(vlms, family, static_cache):
    vlm = vlms[family]
    engine = SteeringEngine(vlm, STEERED, batch_size=4, static_cache=static_cache, **_no_specials(vlm))
    vectors = _vectors(vlm, 7)  # two batches, the last one partial
    vectors[3] = 0  # an unsteered row in the middle of a batch
    empty = planted_image(255)
    got = engine.answer([empty], PROMPT, vectors, max_new_tokens=NEW_TOKENS)
    expected = _plain(vlm, np.broadcast_to(empty, (7, 1, *empty.shape)), vectors, None)
    assert got == expected
    assert len(set(got)) > 1  # the vectors steer to different answers
    assert got[3] == vlm.generate([[empty]], PROMPT, NEW_TOKENS, **_no_specials(vlm))[0]


@pytest.mark.parametrize("static_cache", [False, True], ids=["dynamic", "static"])
@pytest.mark.parametrize("family", FAMILIES)
def test_per_row_images_with_positions_equal_the_hook_loop(vlms, family, static_cache):
    """Hybrid's case: each row its own images, steered only at chosen tower tokens."""
    vlm = vlms[family]
    engine = SteeringEngine(vlm, STEERED, batch_size=2, static_cache=static_cache, **_no_specials(vlm))
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


class EndAfter(LogitsProcessor):
    """Never ends a row, except at new token `position` + 1 when token `position` is `token`: rows end
    at different steps, decided by their own tokens, so the hook path (one row a `generate`) ends
    them alike. `position` None: never."""

    def __init__(self, prompt_tokens: int, end: int, position: int | None = None, token: int | None = None):
        self.prompt_tokens, self.end, self.position, self.token = prompt_tokens, end, position, token

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores[:, self.end] = -torch.inf
        if self.position is not None and input_ids.shape[1] == self.prompt_tokens + self.position + 1:
            ending = input_ids[:, -1] == self.token
            scores[ending] = torch.where(torch.arange(scores.shape[1]) == self.end, 0.0, -torch.inf)
        return scores


@pytest.mark.parametrize("family", FAMILIES)
def test_rows_that_end_leave_the_batch_and_the_answers_equal_the_hook_loop(vlms, family, monkeypatch):
    """Decoding in rounds (4 new tokens, then 4, 8, ...): rows end where their first differing token
    (found on a run that never ends) is row 0's, the others run to 10; after the round they end in,
    they leave the batch (the next round's `generate` gets fewer rows, and its cache only theirs),
    and every answer, short or long, is the hook path's."""
    vlm = vlms[family]
    empty = planted_image(255)
    encoded = vlm.encode([[empty]], PROMPT)
    prompt_tokens = encoded["input_ids"].shape[1]
    end = vlm.model.generation_config.eos_token_id
    end = end if isinstance(end, int) else end[0]
    suppress = [t for t in _no_specials(vlm)["suppress_tokens"] if t != end]
    vectors = _vectors(vlm, 8, scale=32.0)  # InternVL's tiny stand-in differs only late at 8

    def ending(*where: int) -> dict:
        return {"logits_processor": LogitsProcessorList([EndAfter(prompt_tokens, end, *where)]),
                "suppress_tokens": suppress}

    never = torch.stack(SteeringEngine(vlm, STEERED, 8, **ending()).generate_shared(encoded, vectors, None, 10))
    position = next(p for p in range(9) if len(set(never[:, p].tolist())) > 1)
    where = (position, int(never[0, position]))
    engine = SteeringEngine(vlm, STEERED, batch_size=8, **ending(*where))
    rounds: list[tuple[int, int]] = []  # (rows, cached rows) of each `generate`
    generate = vlm.model.generate

    def counted(**kw):
        cache = kw.get("cache")
        rounds.append((len(kw["input_ids"]), len(kw["input_ids"]) if cache is None else cache.layers[0].keys.shape[0]))
        return generate(**kw)

    monkeypatch.setattr(vlm.model, "generate", counted)
    got = engine.answer([empty], PROMPT, vectors, max_new_tokens=10)
    monkeypatch.setattr(vlm.model, "generate", generate)
    hook = lambda batch: vlm.generate(batch, PROMPT, 10, **ending(*where))  # noqa: E731
    expected = steered_generate(hook, vlm.layer(STEERED), np.broadcast_to(empty, (8, 1, *empty.shape)), vectors, None,
                                batch_size=1)
    assert got == expected
    assert rounds[0][0] == 8 and 0 < rounds[-1][0] < 8  # the rows that ended left the batch
    assert all(rows == cached for rows, cached in rounds)  # and the cache


def test_a_static_cache_pads_the_last_batch_to_the_planned_shape(vlms, monkeypatch):
    """7 features at 4 a batch: both `generate` calls get 4 rows (one shape to compile), 7 answers come
    back, and only real rows are counted as tokens."""
    vlm = vlms["llava"]
    engine = SteeringEngine(vlm, STEERED, batch_size=4, static_cache=True, min_new_tokens=NEW_TOKENS,
                            **_no_specials(vlm))
    seen: list[int] = []
    generate = vlm.model.generate
    monkeypatch.setattr(vlm.model, "generate", lambda **kw: seen.append(len(kw["input_ids"])) or generate(**kw))
    got = engine.answer([planted_image(255)], PROMPT, _vectors(vlm, 7), max_new_tokens=NEW_TOKENS)
    assert seen == [4, 4] and len(got) == 7
    assert engine.counts["answer_tokens"] == 7 * NEW_TOKENS


def test_a_static_cache_holds_its_own_calls_tokens_after_a_longer_call(vlms, monkeypatch):
    """Hybrid's rows (five images) before steering's (one): each static cache has the positions its own
    call needs, prompt plus new tokens, as the memory plan counts them. transformers' own static cache
    would have kept the hybrid's length for the steering call."""
    vlm = vlms["llava"]
    engine = SteeringEngine(vlm, STEERED, batch_size=2, static_cache=True, min_new_tokens=NEW_TOKENS,
                            **_no_specials(vlm))
    prompts: list[int] = []
    caches: list[int] = []  # positions of each static cache made, by whoever makes it
    generate, make = vlm.model.generate, StaticCache.__init__
    monkeypatch.setattr(vlm.model, "generate", lambda **kw: prompts.append(kw["input_ids"].shape[1]) or generate(**kw))
    monkeypatch.setattr(StaticCache, "__init__", lambda cache, config, max_cache_len, **kw:
                        caches.append(max_cache_len) or make(cache, config, max_cache_len, **kw))
    rows = np.stack([np.stack([planted_image(255)] * 5)] * 2)
    engine.answer_rows(rows, PROMPT, _vectors(vlm, 2), max_new_tokens=NEW_TOKENS)
    engine.answer([planted_image(255)], PROMPT, _vectors(vlm, 2), max_new_tokens=NEW_TOKENS)
    hybrid_prompt, steering_prompt = prompts
    assert hybrid_prompt > steering_prompt
    assert caches == [hybrid_prompt + NEW_TOKENS, steering_prompt + NEW_TOKENS]


@pytest.mark.parametrize("static_cache", [False, True], ids=["dynamic", "static"])
def test_gemma3_builds_its_image_block_masks_for_the_prefills_only(vlms, monkeypatch, static_cache):
    """With a static cache transformers builds every decoding step's masks before the forward; the
    bidirectional image-block ones are for the prefill (a decoding step's one new token is text), so
    two `generate` calls build them twice, whatever the number of new tokens (`Gemma3Adapter.decoding`);
    the answers are the hook's (the equality tests above). The model is left as it was."""
    import transformers.models.gemma3.modeling_gemma3 as modeling_gemma3

    vlm = vlms["gemma3"]
    built: list[int] = []
    create = modeling_gemma3.create_masks_for_vision_model
    monkeypatch.setattr(modeling_gemma3, "create_masks_for_vision_model",
                        lambda **kwargs: built.append(kwargs["inputs_embeds"].shape[1]) or create(**kwargs))
    engine = SteeringEngine(vlm, STEERED, batch_size=4, static_cache=static_cache, min_new_tokens=NEW_TOKENS,
                            **_no_specials(vlm))
    engine.answer([planted_image(255)], PROMPT, _vectors(vlm, 7), max_new_tokens=NEW_TOKENS)
    assert len(built) == 2 and min(built) > 1  # one per prefill, never a one-token step
    assert "prepare_inputs_for_generation" not in vars(vlm.model)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_a_compiled_static_cache_compiles_once_and_answers_as_the_hook_loop(vlms, family, monkeypatch):
    """What a CUDA device runs: transformers compiles a static cache's decoding step there, and only
    there, so it is forced here on the CPU (`_compile_all_devices`). 7 features at 4 a batch: the
    padded last batch reuses the first batch's graphs (none is added), and the answers are the hook's."""
    from torch._dynamo.utils import counters
    from transformers import CompileConfig

    vlm = vlms[family]
    compile_config = CompileConfig(mode="default")
    compile_config._compile_all_devices = True
    monkeypatch.setattr(vlm.model.generation_config, "compile_config", compile_config)
    torch._dynamo.reset()
    engine = SteeringEngine(vlm, STEERED, batch_size=4, static_cache=True, **_no_specials(vlm))
    empty = planted_image(255)
    vectors = _vectors(vlm, 7)
    graphs: list[int] = []
    generate = engine._generate

    def counted(*args):
        out = generate(*args)
        graphs.append(counters["stats"]["unique_graphs"])
        return out

    monkeypatch.setattr(engine, "_generate", counted)
    got = engine.answer([empty], PROMPT, vectors, max_new_tokens=NEW_TOKENS)
    assert graphs[0] > 0 and graphs == [graphs[0]] * 2  # compiled in the first batch, reused in the second
    assert got == _plain(vlm, np.broadcast_to(empty, (7, 1, *empty.shape)), vectors, None)


@pytest.mark.parametrize("per_row_images", [False, True], ids=["shared", "per-row"])
def test_rows_per_generate_follow_the_device_memory_plan(vlms, monkeypatch, per_row_images):
    """Given a device with free memory for exactly 3 rows (a CUDA device's figures, stood in on the
    CPU), an engine asked for 8 a batch sends 3 at a time, records its plan, and answers as before."""
    vlm = vlms["llava"]
    engine = SteeringEngine(vlm, STEERED, batch_size=8, **_no_specials(vlm))
    images_BNHWC = np.stack([[planted_image(v)] for v in (0, 60, 120, 180, 240)]) if per_row_images else \
        np.broadcast_to(planted_image(255), (5, 1, SIZE, SIZE, 3))
    vectors = _vectors(vlm, 5)
    expected = _plain(vlm, images_BNHWC, vectors, None)
    prompt_tokens = vlm.encode([images_BNHWC[0]], PROMPT)["input_ids"].shape[1]
    per_row = row_bytes(vlm.model.config, prompt_tokens, NEW_TOKENS, 1, len(vlm.token_patches()), 4)
    free = int((3 * per_row.total + RESERVE_BYTES) / SAFETY) + 1
    monkeypatch.setattr("benchmark.steering.engine.device_memory", lambda device: DeviceMemory(free, 10))
    seen: list[int] = []  # rows of each batch's first round (the one given image features)
    generate = vlm.model.generate
    monkeypatch.setattr(vlm.model, "generate", lambda **kw: ("mm_encoder_outputs" in kw and seen.append(
        len(kw["input_ids"]))) or generate(**kw))
    if per_row_images:
        got = engine.answer_rows(images_BNHWC, PROMPT, vectors, max_new_tokens=NEW_TOKENS)
    else:
        got = engine.answer([images_BNHWC[0, 0]], PROMPT, vectors, max_new_tokens=NEW_TOKENS)
    assert got == expected and seen == [3, 2]
    (plan,) = engine.plans.values()
    assert plan["rows"] == 3 and plan["batch_size"] == 8 and plan["free_bytes"] == free
    assert plan["row_bytes"] == per_row.as_dict() and plan["allocated_bytes"] == 10


def test_the_clock_splits_each_batch_into_tower_prefill_and_decode(vlms, monkeypatch):
    """On a clock where each reading is `STEP` after the last: per batch the tower took one step
    (call start or last batch's end -> features ready), the prefill one (-> first token), and the
    decode one a further token; 5 features at 2 a batch are three batches of 2, 2 and 1 rows."""
    monkeypatch.setattr("benchmark.steering.clock.time", TickingClock(STEP))
    vlm = vlms["gemma3"]
    clock = StageClock(vlm.device)
    engine = SteeringEngine(vlm, STEERED, batch_size=2, clock=clock, min_new_tokens=NEW_TOKENS, **_no_specials(vlm))
    engine.answer([planted_image(255)], PROMPT, _vectors(vlm, 5), max_new_tokens=NEW_TOKENS)
    batches = clock.batches()
    assert [b["rows"] for b in batches] == [2, 2, 1]
    for b in batches:
        assert (b["tower_s"], b["prefill_s"]) == (STEP, STEP)
        assert b["decode_steps"] == NEW_TOKENS - 1 and b["decode_s"] == (NEW_TOKENS - 1) * STEP
    clock.reset()
    assert clock.batches() == []
