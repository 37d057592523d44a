"""Known answers for the steering settings: `replace` and `clamp` give the state their formulas
name, an absolute coefficient adds a vector of that norm, and the engine (shared prefix, per-row
images) gives the hook loop's answers under every intervention."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.models.sae import SAE
from benchmark.steering.engine import SteeringEngine
from benchmark.steering.hook import steered_generate
from benchmark.steering.interventions import Intervention, intervene
from tests.sources.test_adapters import PROMPT, STEERED, planted_image
from tests.steering.test_engine import NEW_TOKENS, _no_specials


def identity_relu_sae(d: int) -> SAE:
    """W_enc = W_dec = I, zero biases: latent f's code at a token is ReLU(h_f)."""
    sae = SAE(d, d, architecture="relu")
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(d)), sae.W_dec.copy_(torch.eye(d))
    return sae


def test_replace_writes_the_vector_at_the_positions_and_nothing_elsewhere():
    g = torch.Generator().manual_seed(0)
    hidden, vectors = torch.randn(2, 5, 4, generator=g), torch.randn(2, 4, generator=g)
    positions = torch.tensor([[1, 0, 0, 1, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    out = intervene(hidden, vectors, positions, "replace")
    torch.testing.assert_close(out[0, [0, 3]], vectors[0].expand(2, -1))
    torch.testing.assert_close(out[0, [1, 2, 4]], hidden[0, [1, 2, 4]])
    torch.testing.assert_close(out[1], hidden[1])
    torch.testing.assert_close(intervene(hidden, vectors, None, "replace"), vectors[:, None].expand(-1, 5, -1))


def test_clamp_sets_the_latents_code_to_the_value():
    """With the identity SAE, h + (a - ReLU(h_f)) e_f moves coordinate f alone, to a + min(h_f, 0):
    where the latent was on (h_f >= 0) its code becomes exactly a."""
    d, a = 6, 3.5
    sae, g = identity_relu_sae(d), torch.Generator().manual_seed(1)
    hidden = torch.randn(3, 4, d, generator=g)
    features = torch.tensor([0, 2, 5])
    clamp = Intervention("clamp", sae)
    codes = sae.encode(clamp(hidden.abs(), a * sae.W_dec[features], None, features))
    torch.testing.assert_close(codes[torch.arange(3), :, features], torch.full((3, 4), a))
    out = clamp(hidden, a * sae.W_dec[features], None, features)
    expected = hidden.clone()
    for i, f in enumerate(features.tolist()):
        expected[i, :, f] = a + hidden[i, :, f].clamp(max=0)
    torch.testing.assert_close(out, expected)


def test_clamp_on_a_topk_sae_subtracts_the_topk_code():
    g = torch.Generator().manual_seed(2)
    sae = SAE(8, 12, k=3)
    with torch.no_grad():
        sae.W_enc.normal_(generator=g), sae.W_dec.normal_(generator=g), sae.b_dec.normal_(generator=g)
    hidden, features, value = torch.randn(2, 5, 8, generator=g), torch.tensor([4, 7]), 2.0
    out = Intervention("clamp", sae)(hidden, value * sae.W_dec[features], None, features)
    code_25 = torch.stack([sae.encode(hidden[i])[:, f] for i, f in enumerate(features.tolist())])
    torch.testing.assert_close(out, hidden + (value - code_25)[..., None] * sae.W_dec[features][:, None])


def test_a_row_that_clamps_no_latent_is_added():
    hidden, vectors = torch.zeros(1, 3, 4), torch.ones(1, 4)
    torch.testing.assert_close(Intervention("clamp", identity_relu_sae(4))(hidden, vectors, None), hidden + 1)


def test_absolute_coefficient_adds_a_vector_of_that_norm(tmp_path):
    """Context.steering_vectors with an absolute coefficient: |v| = coeff whatever the decoder row's norm."""
    from benchmark.config.method import MethodConfig
    from benchmark.explaining.context import Context

    class Rows:  # the two things steering_vectors reads, on an SAE with rows of norm 1, 2 and 5
        sae = SAE(3, 3, architecture="relu")

    with torch.no_grad():
        Rows.sae.W_dec.copy_(torch.diag(torch.tensor([1.0, 2.0, 5.0])))
    ctx = Context.__new__(Context)
    ctx.sae = Rows.sae
    ctx.config = MethodConfig(steering_coeff=200.0, hybrid_coeff=50.0)
    torch.testing.assert_close(ctx.steering_vectors([0, 1, 2]).norm(dim=1), torch.full((3,), 200.0))
    torch.testing.assert_close(ctx.steering_vectors([2], "hybrid"), torch.tensor([[0.0, 0.0, 50.0]]))
    hidden = torch.randn(3, 7, 3)
    added = intervene(hidden, ctx.steering_vectors([0, 1, 2]), None) - hidden
    torch.testing.assert_close(added.norm(dim=-1), torch.full((3, 7), 200.0))
    ctx.config = MethodConfig(steering_coeff=100.0, intervention="clamp")  # a code: the row as it is
    torch.testing.assert_close(ctx.steering_vectors([2]), torch.tensor([[0.0, 0.0, 500.0]]))


@pytest.mark.parametrize("kind", ["replace", "clamp"])
def test_engine_equals_the_hook_loop_under_each_intervention(vlms, kind):
    vlm = vlms["llava"]
    d = vlm.model.config.vision_config.hidden_size
    g = torch.Generator().manual_seed(5)
    sae = SAE(d, 8, architecture="relu")
    with torch.no_grad():  # codes of about 20 at every token: clamping them to 6 is far from adding 6 rows
        sae.W_enc.normal_(generator=g), sae.W_dec.normal_(generator=g), sae.b_enc.fill_(20.0)
    intervention = Intervention(kind, sae)
    features = torch.tensor([0, 3, 5, 7, 1])
    vectors = 6.0 * sae.W_dec[features]
    engine = SteeringEngine(vlm, STEERED, batch_size=2, intervention=intervention, **_no_specials(vlm))
    images = [planted_image(255), planted_image(0, (1, 1))]
    positions = torch.zeros(2, len(vlm.token_patches()), dtype=torch.bool)
    positions[0, -6:] = positions[1, :5] = True
    got = engine.answer(images, PROMPT, vectors, positions, NEW_TOKENS, features_B=features)
    rows = engine.answer_rows(np.broadcast_to(np.stack(images), (5, 2, *images[0].shape)), PROMPT, vectors,
                              positions.expand(5, -1, -1), NEW_TOKENS, features_B=features)
    generate = lambda batch: vlm.generate(batch, PROMPT, NEW_TOKENS, **_no_specials(vlm))  # noqa: E731
    expected = steered_generate(generate, vlm.layer(STEERED), np.broadcast_to(np.stack(images), (5, 2, *images[0].shape)),
                                vectors, positions.expand(5, -1, -1), 1, intervention, features)
    assert got == rows == expected
    added = SteeringEngine(vlm, STEERED, batch_size=2, **_no_specials(vlm))
    assert got != added.answer(images, PROMPT, vectors, positions, NEW_TOKENS)  # the intervention matters
