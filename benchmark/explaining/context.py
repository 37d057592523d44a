"""What every explanation method may use, built once per run over its source: the SAE, the top-k
pool and its cached activations, each feature's scale, the source's capabilities, and `answer`,
the VLM asked through the one steering engine (`benchmark.steering.engine`), world or real.

A method is `explain(ctx: Context, features: list[int]) -> list[str]`, batched over features so the
engine can put many features in one `generate`. It is registered with `@method(name, needs=...)`,
naming the source capabilities it reads (`benchmark.sources.capabilities.NEEDS`); a run on a source
without them is refused before anything is computed.

Shape letters: the key in `benchmark`'s package docstring.
"""
from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import fields, replace
from functools import cached_property

import numpy as np
import torch

from benchmark.activations.stores import TOP_KEPT, TopImages
from benchmark.activations.top_images import shown_top_images
from benchmark.config.method import MethodConfig
from benchmark.config.protocol import clean_answer
from benchmark.config.resolve import require_resolved
from benchmark.explainers import Explainer, open_explainer
from benchmark.registry import METHODS, UsageError
from benchmark.sources.image_pools import ImagePool
from benchmark.sources.source import Source
from benchmark.steering.engine import SteeringEngine
from benchmark.steering.inputs import empty_image
from benchmark.steering.interventions import Intervention

MethodFn = Callable[["Context", list[int]], list[str]]


def method(name: str, needs: tuple[str, ...] = (), steers: bool = False, reads: tuple[str, ...] = (),
           tunes: tuple[str, ...] = ()) -> Callable[[MethodFn], MethodFn]:
    """Registers an explanation method; `needs`: the source capabilities it reads; `steers`: whether
    it steers the subject VLM's tower (then no other explainer can answer for it); `reads`: the
    `MethodConfig` settings it reads that `--tune` may sweep; `tunes`: those of them its own score
    picks (the others it reads at the value picked for the method that tunes them, as a control
    runs at the setting of the method it controls for)."""
    unknown = sorted((set(reads) | set(tunes)) - {f.name for f in fields(MethodConfig)})
    if unknown:
        raise ValueError(f"method {name!r} declares settings {unknown}, which MethodConfig does not have")

    def register(fn: MethodFn) -> MethodFn:
        fn.needs, fn.steers = tuple(needs), steers
        fn.reads, fn.tunes = tuple(dict.fromkeys((*reads, *tunes))), tuple(tunes)
        return METHODS.register(name, module=fn.__module__)(fn)

    return register


def method_needs(fn: MethodFn) -> tuple[str, ...]:
    """What a method declared it needs (a plug-in registered without `@method` needs nothing)."""
    return tuple(getattr(fn, "needs", ()))


def method_reads(fn: MethodFn) -> tuple[str, ...]:
    """The settings a method declared it reads (`tunes` included)."""
    return tuple(getattr(fn, "reads", ()))


def method_tunes(fn: MethodFn) -> tuple[str, ...]:
    """The settings a method declared its own score picks under `--tune`."""
    return tuple(getattr(fn, "tunes", ()))


def method_steers(fn: MethodFn) -> bool:
    """Whether a method declared it steers (a plug-in registered without `@method` does not)."""
    return bool(getattr(fn, "steers", False))


COSTS = ("seconds", "prompt_tokens", "answer_tokens", "images")
"""What `Context.usage` counts, and each explanation row records as `cost`."""


class Explanation(str):
    """An explanation that keeps the answer it was cleaned from (`raw`), so a run's rows hold both."""

    raw: str

    def __new__(cls, explanation: str, raw: str) -> Explanation:
        out = super().__new__(cls, explanation)
        out.raw = raw
        return out

    def __reduce__(self):  # pickled whole to and from Ray workers
        return Explanation, (str(self), self.raw)


class Context:
    def __init__(self, source: Source, config: MethodConfig):
        require_resolved(config)
        if config.steering_coeff is not None or config.hybrid_coeff is not None:  # an absolute one wins: no unused
            config = replace(config, **{f"{m}_multiplier": None for m in ("steering", "hybrid")  # multiplier in keys
                                        if getattr(config, f"{m}_coeff") is not None})
        if config.steering_multiplier is None and config.steering_coeff is None:
            config = replace(config, steering_multiplier=source.default_multiplier)
        self.source, self.lm, self.config = source, source.lm, config
        self.sae = source.sae()
        self.patch = source.patch
        self.explainer: Explainer | None = None if config.explainer is None else \
            open_explainer(config.explainer, source.root / "endpoint-answers")
        self.usage: Counter[str] = Counter()
        """What answering has cost so far: `seconds` inside `answer` (model loading excluded),
        `prompt_tokens`, `answer_tokens` and `images` shown."""

    @cached_property
    def topk_pool(self) -> ImagePool:
        return self.source.pool("topk")

    @cached_property
    def top(self) -> TopImages:
        """Each latent's best top-k pool images by the pool's ranking statistic, from the streamed pass."""
        return self.source.activations("topk", keep=max(TOP_KEPT, self.config.top_k))

    def top_ids(self, features: list[int]) -> torch.Tensor:
        """(B, K) each feature's top-k pool images, best first."""
        return self.top.ids(features, self.config.top_k)

    def steering_vectors(self, features: list[int], which: str = "steering") -> torch.Tensor:
        """(B, D) what `which` (steering or hybrid) writes for each feature: its absolute coefficient
        times the unit decoder direction (times the decoder row as stored for clamp, whose coefficient
        is a code, and under `direction = "row"`), else its multiplier times the feature's scale times the decoder row;
        in float32 or the model's dtype (`vector_dtype`)."""
        coeff, rows_BD = getattr(self.config, f"{which}_coeff"), self.sae.W_dec[features]
        if self.config.vector_dtype == "model":
            rows_BD = rows_BD.to(self.source.dtype)
        if coeff is None:
            factor_B = getattr(self.config, f"{which}_multiplier") * self.scales(features)
            return factor_B.to(rows_BD.dtype)[:, None] * rows_BD
        if self.config.intervention == "clamp" or self.config.direction == "row":
            return coeff * rows_BD
        return coeff * rows_BD / rows_BD.norm(dim=1, keepdim=True).clamp(min=1e-12)

    @cached_property
    def _scales_F(self) -> torch.Tensor:
        return torch.tensor(self.source.scales(), dtype=torch.float32)

    def scales(self, features: list[int]) -> torch.Tensor:
        """Each feature's mean top activation: the unit of steering coefficients."""
        return self._scales_F[features]

    def empty_images(self, n: int) -> np.ndarray:
        """(n, 1, H, W, C): the empty image for every row, one array (rows share memory)."""
        size = self.source.image_size
        return np.broadcast_to(empty_image(size, self.config.empty, self.config.seed), (n, 1, size, size, 3))

    @cached_property
    def engine(self) -> SteeringEngine:
        vlm, kind = self.source.vlm, self.config.intervention
        sae = copy.deepcopy(self.sae).to(vlm.device) if kind == "clamp" else None  # codes read where states are
        return SteeringEngine(vlm, self.source.layer, self.config.batch_size, Intervention(kind, sae))

    def answer(self, images_BNHWC: np.ndarray, vectors_BD: torch.Tensor | None = None,
               positions_BNT: torch.Tensor | None = None, features: list[int] | None = None,
               shared: bool | None = None) -> list[Explanation]:
        """The VLM's answers, cleaned as the prompts say (`benchmark.config.protocol.clean_answer`; each
        keeps its raw answer), row b showing its N images (`shared`: ask the shared prompt, as for
        top images; None: when N > 1, else the describe prompt), steered by vectors_BD[b] at the
        tower tokens where positions_BNT[b] is true (every token when None) by the config's
        intervention; `features`: the latent row b steers (what clamp sets; without them a row is
        added). Rows that all show the same images share the tower prefix. Unsteered rows are added
        zero, whatever the intervention."""
        prompts = self.source.spec.prompts
        return [Explanation(clean_answer(raw, prompts.remove, prompts.capitalize), raw) for raw in
                self._raw_answers(images_BNHWC, vectors_BD, positions_BNT, features,
                                  images_BNHWC.shape[1] > 1 if shared is None else shared)]

    def _raw_answers(self, images_BNHWC: np.ndarray, vectors_BD: torch.Tensor | None,
                     positions_BNT: torch.Tensor | None, features: list[int] | None, shared: bool) -> list[str]:
        prompts = self.source.spec.prompts
        prompt, tokens = (prompts.shared if shared else prompts.describe), self.source.max_new_tokens(shared)
        if self.explainer is not None:
            if vectors_BD is not None:
                raise UsageError("the [explainer] answers unsteered: a steering method needs the subject VLM")
            start = time.perf_counter()
            answers = self.explainer.answer(np.asarray(images_BNHWC), prompt, tokens, prompts.answer_prefix)
            self.usage.update({"seconds": time.perf_counter() - start, "images": images_BNHWC.shape[0] * images_BNHWC.shape[1],
                               "prompt_tokens": sum(a.prompt_tokens for a in answers),
                               "answer_tokens": sum(a.answer_tokens for a in answers)})
            return [a.text for a in answers]
        if vectors_BD is None:
            vectors_BD, features = torch.zeros(len(images_BNHWC), self.sae.d_in), None
            if self.config.intervention == "replace":
                unsteered = self._unsteered()
                texts = unsteered._raw_answers(images_BNHWC, vectors_BD, positions_BNT, None, shared)
                self.usage.update(unsteered.usage)
                return texts
        features_B = torch.tensor(features) if features is not None and self.config.intervention == "clamp" else None
        same = positions_BNT is None and (images_BNHWC.strides[0] == 0 or
                                          all(np.array_equal(images_BNHWC[0], row) for row in images_BNHWC[1:]))
        engine = self.engine  # loaded before the clock starts
        before, start = Counter(engine.counts), time.perf_counter()
        if same:
            texts = engine.answer(list(images_BNHWC[0]), prompt, vectors_BD, None, tokens, prompts.answer_prefix,
                                  features_B)
        else:
            texts = engine.answer_rows(images_BNHWC, prompt, vectors_BD, positions_BNT, tokens, prompts.answer_prefix,
                                       features_B)
        self.usage.update({"seconds": time.perf_counter() - start, **(engine.counts - before),
                           "images": images_BNHWC.shape[0] * images_BNHWC.shape[1]})
        return texts

    def _unsteered(self) -> Context:
        """This context with `add`: a zero vector then steers nothing (a replaced state would be zero)."""
        return Context(self.source, replace(self.config, intervention="add"))

    @cached_property
    def token_patch_T(self) -> torch.Tensor:
        """Row-major patch index of each tower token; -1 for a token that is no patch (CLS)."""
        vlm = self.source.vlm
        rc_T2 = vlm.token_patches()
        return torch.where(rc_T2[:, 0] >= 0, rc_T2[:, 0] * vlm.grid[1] + rc_T2[:, 1], -1)

    def shown_top_images(self, features: list[int]) -> tuple[np.ndarray, torch.Tensor]:
        """The top-k images of each feature as the config shows them (masked: patches where it is
        inactive blacked out; heatmap: whole, under the activation's overlay), and where it is
        active as tower token positions (a token that is no patch, like CLS, never is):
        (B, K, H, W, C), (B, K, T)."""
        shown, active_BKP = shown_top_images(self.topk_pool, self.top, features, self.config.top_k, self.patch,
                                             self.config.top_images)
        patch_T = self.token_patch_T
        return shown, active_BKP[..., patch_T.clamp(min=0)] & (patch_T >= 0)

    def answer_top(self, features: list[int], vectors_BD: torch.Tensor | None = None) -> list[Explanation]:
        """The shared prompt's answers over each feature's top images as the config shows them,
        steered by vectors_BD where the feature fires (hybrid) or not at all (top-k). With
        `firing_only`, a feature is shown only its top images where it fires: rows are asked in
        groups of equal image count, and a feature firing on none gets an empty explanation."""
        images_BKHWC, positions_BKT = self.shown_top_images(features)
        if not self.config.firing_only:
            return self.answer(images_BKHWC, vectors_BD, positions_BKT if vectors_BD is not None else None,
                               features, shared=True)
        firing_BK = positions_BKT.any(-1).numpy()
        out: list[Explanation] = [Explanation("", "")] * len(features)
        for count in sorted(set(firing_BK.sum(1).tolist()) - {0}):
            rows = np.flatnonzero(firing_BK.sum(1) == count)
            keep_RC = np.stack([np.flatnonzero(firing_BK[r]) for r in rows])  # C: the row's firing images, in rank order
            images = images_BKHWC[rows[:, None], keep_RC]
            positions = positions_BKT[torch.from_numpy(rows)[:, None], torch.from_numpy(keep_RC)]
            vectors = None if vectors_BD is None else vectors_BD[torch.from_numpy(rows)]
            texts = self.answer(images, vectors, positions if vectors is not None else None,
                                [features[r] for r in rows], shared=True)
            for r, text in zip(rows, texts):
                out[r] = text
        return out
