"""The world's VLM: `LlavaForConditionalGeneration` around the frozen tower, one per LM size.

It serves the paper's two prompts. `describe` (the steering prompt): one image, answered with a
caption. `shared` (the top-k prompt): several masked images, answered with what all of them share,
or 'nothing' when none shows an object. The answer prefix 'answer :' ends every prompt and is never
decoded. `CHAT_TEMPLATE`, saved with the processor, lays a user turn out as training did, so the
checkpoint answers through the adapters and the steering engine like any LLaVA.
Training runs on tower features computed once (the tower is frozen), through the model's own
projector and language model; `vlm_logits` is checked against the model's full forward in tests.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import (
    CLIPVisionModel,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    PreTrainedTokenizerFast,
)

from benchmark.world.concepts import CATEGORIES, ObjectSpec, caption, fragment
from benchmark.world.pools import Pool, object_patch_masks
from benchmark.world.training import adamw_with_schedule, batches, pixel_values

DESCRIBE = "describe what you see ."
SHARED = "name the one element shared by all images ."
ANSWER_PREFIX = "answer :"
CHAT_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{% for item in message['content'] %}"
                 "{% if item['type'] == 'image' %} <image>{% else %} {{ item['text'] }}{% endif %}"
                 "{% endfor %}{% endfor %}")
"""One user turn as `<bos> <image> ... <image> prompt`; the adapter appends ' answer :'."""
MAX_NEW_TOKENS = {"describe": 24, "shared": 12}
"""Answer lengths per prompt: the longest caption is 18 words, a shared answer 7."""
MAX_IMAGES = 5
READ_LAYER = -1  # the VLM reads the tower's last hidden state (its `vision_feature_layer`)
TRAINING_DATA_VERSION = 3  # part of the VLM stages' cache key; 3: fields, partial and background-only top-k views


@dataclass(frozen=True)
class LMConfig:
    hidden: int
    """Width of the Llama language model."""
    layers: int
    """Number of Llama layers."""
    steps: int
    """Training steps (describe and shared batches together)."""
    batch: int = 64
    lr: float = 2e-3


def prompt(tokenizer: PreTrainedTokenizerFast, n_images: int, patches: int) -> str:
    """The prompt text for `n_images` images, image tokens already expanded to `patches` each."""
    images = " ".join([tokenizer.image_token] * (n_images * patches))
    return f"{tokenizer.bos_token} {images} {DESCRIBE if n_images == 1 else SHARED} {ANSWER_PREFIX}"


def build_vlm(tower: CLIPVisionModel, tokenizer: PreTrainedTokenizerFast, cfg: LMConfig, seed: int) -> LlavaForConditionalGeneration:
    torch.manual_seed(seed)
    patches = (tower.config.image_size // tower.config.patch_size) ** 2
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=cfg.hidden, intermediate_size=int(2.75 * cfg.hidden),
                       num_hidden_layers=cfg.layers, num_attention_heads=max(1, cfg.hidden // 32),
                       num_key_value_heads=max(1, cfg.hidden // 32), max_position_embeddings=256,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
    config = LlavaConfig(vision_config=tower.config, text_config=text, image_token_id=tokenizer.image_token_id,
                         vision_feature_layer=READ_LAYER, vision_feature_select_strategy="default",
                         image_seq_length=patches, projector_hidden_act="gelu")
    vlm = LlavaForConditionalGeneration(config)
    vlm.model.vision_tower.load_state_dict(tower.state_dict())
    vlm.model.vision_tower.requires_grad_(False)
    return vlm


@torch.no_grad()
def tower_states(tower: CLIPVisionModel, images_NHWC: np.ndarray, layer: int, batch: int = 512) -> torch.Tensor:
    """(N, P, D): the tower's hidden state `layer` at the patch tokens (CLS dropped). With
    layer = READ_LAYER this is exactly what the VLM's projector reads."""
    out = [tower(pixel_values(images_NHWC[i:i + batch]), output_hidden_states=True).hidden_states[layer][:, 1:]
           for i in range(0, len(images_NHWC), batch)]
    return torch.cat(out)


def vlm_logits(vlm: LlavaForConditionalGeneration, input_ids_BT: torch.Tensor, features_IPD: torch.Tensor,
               attention_mask_BT: torch.Tensor | None = None) -> torch.Tensor:
    """The model's forward from precomputed tower features: the projector's output replaces the
    image tokens in order, exactly as LlavaModel does with pixel values."""
    embeds = vlm.get_input_embeddings()(input_ids_BT)
    image = vlm.model.multi_modal_projector(features_IPD).reshape(-1, embeds.shape[-1])
    mask = (input_ids_BT == vlm.config.image_token_id).unsqueeze(-1)
    embeds = embeds.masked_scatter(mask, image.to(embeds.dtype))
    return vlm(inputs_embeds=embeds, attention_mask=attention_mask_BT).logits


def shared_answer(objects: list[ObjectSpec]) -> str:
    """What every object shares, in caption word order: e.g. 'large red', 'striped', 'at top left'."""
    return fragment({c: getattr(objects[0], c) for c in CATEGORIES
                     if all(getattr(o, c) == getattr(objects[0], c) for o in objects)})


def mask_to_patches(images_NHWC: np.ndarray, keep_NP: np.ndarray, patch: int) -> np.ndarray:
    """Black out every patch not kept: how the top-k method shows an image to the VLM."""
    n, h, w, _ = images_NHWC.shape
    keep = keep_NP.reshape(n, h // patch, 1, w // patch, 1).repeat(patch, 2).repeat(patch, 4).reshape(n, h, w, 1)
    return np.where(keep, images_NHWC, 0).astype(np.uint8)


def thinned(mask_VP: np.ndarray, rng: np.random.Generator, keep: float = 0.5) -> np.ndarray:
    """Each patch of each mask kept with probability `keep`, and at least one where there was one."""
    kept = mask_VP & (rng.random(mask_VP.shape) < keep)
    rows = np.flatnonzero(mask_VP.any(1))
    kept[rows, [rng.choice(np.flatnonzero(mask_VP[r])) for r in rows]] = True
    return kept


def view_masks(objects_VP: np.ndarray, scene_VP: np.ndarray, rng: np.random.Generator,
               stray: float = 0.1) -> dict[str, np.ndarray]:
    """(V, P) bool masks of each object's view, in two kinds like the masks top-k shows. `whole`: the
    object's patches. `partial`: some of them plus a few stray background patches (an SAE feature
    fires on part of an object, now and then beside it). `scene_VP`: patches showing any object of
    the view's image."""
    return {"whole": objects_VP,
            "partial": thinned(objects_VP, rng) | (~scene_VP & (rng.random(objects_VP.shape) < stray))}


class TrainingExamples:
    """Both prompts' training examples over a pool. The frozen tower's features of every image, of
    every object's masked views (`view_masks`) and of background-only views are computed once here
    and shared by all LM sizes. Background fields are views too: a colour feature's top images are
    often fields. A background-only view is what top-k shows of a feature that fires on the
    background of images containing its concept; the pixels show no object, so any image's serves."""

    def __init__(self, tower: CLIPVisionModel, tokenizer: PreTrainedTokenizerFast, pool: Pool, seed: int = 0,
                 background_views: int = 8192):
        self.tok, self.pool = tokenizer, pool
        self.patch = tower.config.patch_size
        self.patches = (tower.config.image_size // self.patch) ** 2
        self.image_features = tower_states(tower, pool.images_NHWC, READ_LAYER)
        self.views = [(i, k) for i, objs in enumerate(pool.objects) for k in range(len(objs))]
        index = np.array(self.views)
        rng = np.random.default_rng(seed)
        shows_NKP = object_patch_masks(pool.segmentation_NHW, self.patch)
        scene_NP = shows_NKP.any(1)
        masks = view_masks(shows_NKP[index[:, 0], index[:, 1]], scene_NP[index[:, 0]], rng)
        images = pool.images_NHWC[index[:, 0]]
        self.view_features = {kind: tower_states(tower, mask_to_patches(images, keep_VP, self.patch), READ_LAYER)
                              for kind, keep_VP in masks.items()}
        candidates = np.flatnonzero(~scene_NP.all(1))  # not a field: some patch shows no object
        with_background = rng.choice(candidates, min(background_views, len(candidates)), replace=False)
        self.background_features = tower_states(tower, mask_to_patches(
            pool.images_NHWC[with_background], thinned(~scene_NP[with_background], rng), self.patch), READ_LAYER)
        self.by_concept: dict[str, list[int]] = {}
        for v, (i, k) in enumerate(self.views):
            for name in pool.objects[i][k].concepts().values():
                self.by_concept.setdefault(name, []).append(v)
        self.concepts = sorted(self.by_concept)

    def _encode(self, prompts: list[str], answers: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """input ids, attention mask, and labels (-100 except on answer tokens and the final eos)."""
        seqs, labels = [], []
        for p, a in zip(prompts, answers):
            p_ids = self.tok(p, add_special_tokens=False).input_ids
            a_ids = self.tok(f"{a} {self.tok.eos_token}", add_special_tokens=False).input_ids
            seqs.append(p_ids + a_ids)
            labels.append([-100] * len(p_ids) + a_ids)
        length = max(map(len, seqs))
        pad = self.tok.pad_token_id
        ids = torch.tensor([s + [pad] * (length - len(s)) for s in seqs])
        lab = torch.tensor([l + [-100] * (length - len(l)) for l in labels])
        return ids, (ids != pad).long(), lab

    def describe(self, idx: np.ndarray):
        p = prompt(self.tok, 1, self.patches)
        ids, attn, lab = self._encode([p] * len(idx), [self.pool.captions[i] for i in idx])
        return ids, attn, lab, self.image_features[idx]

    def shared(self, batch: int, rng: np.random.Generator, partial: float = 0.4, empty: float = 0.15,
               all_empty: float = 0.1):
        """A batch of top-k prompts: 3 to MAX_IMAGES views sharing a random concept. A view is whole,
        partial (probability `partial`) or background only (`empty`); a row is all background with
        probability `all_empty`. The answer names everything the visible objects share, or 'nothing'."""
        n_images = int(rng.integers(3, MAX_IMAGES + 1))
        p = prompt(self.tok, n_images, self.patches)
        answers, features, backgrounds = [], [], self.background_features
        for _ in range(batch):
            having = self.by_concept[self.concepts[rng.integers(len(self.concepts))]]
            chosen = [having[j] for j in rng.choice(len(having), n_images, replace=False)]
            kinds = rng.choice(["whole", "partial", "empty"], n_images, p=[1 - partial - empty, partial, empty])
            if rng.random() < all_empty:
                kinds[:] = "empty"
            elif (kinds == "empty").all():
                kinds[rng.integers(n_images)] = "whole"
            features += [backgrounds[rng.integers(len(backgrounds))] if kind == "empty" else self.view_features[kind][v]
                         for kind, v in zip(kinds, chosen)]
            visible = [self.pool.objects[i][k] for kind, (i, k) in zip(kinds, (self.views[v] for v in chosen))
                       if kind != "empty"]
            answers.append(shared_answer(visible) if visible else caption(()))
        ids, attn, lab = self._encode([p] * batch, answers)
        return ids, attn, lab, torch.stack(features)


def train_vlm(vlm: LlavaForConditionalGeneration, data: TrainingExamples, cfg: LMConfig, seed: int, name: str,
              shared_every: int = 3) -> tuple[LlavaForConditionalGeneration, float]:
    """Trains projector + LM on both prompts (every `shared_every`-th step a top-k batch); returns
    the model in eval mode and the final smoothed loss."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    params = [p for p in vlm.parameters() if p.requires_grad]
    opt, sched = adamw_with_schedule(params, cfg.lr, cfg.steps)
    vlm.train()
    smoothed = None
    for step, idx in enumerate(tqdm(batches(len(data.pool), cfg.batch, cfg.steps, rng), total=cfg.steps, desc=f"vlm {name}")):
        ids, attn, lab, feats = data.shared(cfg.batch, rng) if step % shared_every == shared_every - 1 else data.describe(idx)
        logits = vlm_logits(vlm, ids, feats, attn)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), lab[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step(), sched.step(), opt.zero_grad()
        smoothed = loss.item() if smoothed is None else 0.95 * smoothed + 0.05 * loss.item()
    return vlm.eval(), smoothed
