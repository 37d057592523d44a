"""The settings methods read (`MethodConfig`): part of each explanation's cache key and of run.json.
Light: the command line builds its flags from these fields before any model library is imported."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from benchmark.config.fields import governed, invalid_choice, one_of
from benchmark.explainers import ExplainerSpec
from benchmark.registry import UsageError

INTERVENTIONS = ("add", "replace", "clamp")
"""How steering writes (`benchmark.steering.interventions`)."""
EMPTY_IMAGES = ("white", "black", "noise")
TOP_IMAGES = ("masked", "heatmap", "viridis")
DIRECTIONS = ("unit", "row")
VECTOR_DTYPES = ("float32", "model")
PERMUTES = ("latents", "list")


@dataclass(frozen=True)
class MethodConfig:
    """Settings the methods read. Part of each explanation's cache key and of run.json."""

    PART: ClassVar[str] = "method"
    """The protocol table that governs it (`benchmark.config.protocol`)."""
    top_k: int = 5
    """Images shown by top-k and hybrid."""
    top_images: str = one_of("masked", TOP_IMAGES)
    """How top-k and hybrid show each top image: masked (patches where the feature is inactive
    blacked out; the paper's default), heatmap (the whole image under a green overlay as strong as
    the activation) or viridis (the paper's heatmap option: viridis, bicubic, opacity 0.35)."""
    empty: str | None = governed(6, EMPTY_IMAGES)
    """Empty image for steering: white, black or noise."""
    intervention: str = one_of("add", INTERVENTIONS)
    """How steering writes its vector (`benchmark.steering.interventions`): add (the paper), replace
    (the paper's code's replacement) or clamp (the latent's code set to the coefficient; Pach et al.)."""
    steering_multiplier: float | None = None
    """Steering coefficient in units of each feature's mean top activation; None: the source's default
    (the world's tuned value), which `Context` fills in when no `steering_coeff` is set, so the
    cache keys the value used."""
    steering_coeff: float | None = None
    """Absolute steering coefficient, used instead of the multiplier when set: the added (or written)
    vector's norm, the decoder row taken as a unit direction (the paper: 200); with clamp, the code
    the latent is set to (Pach et al.: 100)."""
    hybrid_multiplier: float | None = 1.0
    """Hybrid's coefficient, same units, added only where the feature fires."""
    hybrid_coeff: float | None = None
    """Hybrid's absolute coefficient, as `steering_coeff` (the paper: 50)."""
    batch_size: int = 256
    """Features per generate call."""
    seed: int = 0
    explainer: ExplainerSpec | None = None
    """Who answers (`benchmark.explainers`): None, the subject VLM; else `[explainer]`'s kind and
    settings (an OpenAI-compatible endpoint), for methods that do not steer."""
    firing_only: bool | None = governed(11)
    """Whether top-k and hybrid show only the top images on which the feature fires (fewer than
    `top_k` for a rare feature; none: no question, an empty explanation; the seed paper's) rather
    than always `top_k`, a blank one where it never fires. None: the run's protocol's."""
    direction: str | None = governed(4, DIRECTIONS)
    """What an absolute coefficient multiplies: the decoder row as a unit direction (unit: the
    coefficient is the vector's norm) or as stored (row: the seed paper's arithmetic, the same for
    its unit-norm rows). None: the run's protocol's."""
    vector_dtype: str | None = governed(4, VECTOR_DTYPES)
    """Where a steering vector is formed: in float32, then cast once to the tower's dtype (float32),
    or in the model's dtype, the decoder row cast to it first and every product rounded there (model:
    the seed paper's code, whose SAE is cast to bf16 with the model; states then differ from
    float32's by up to a bf16 ulp of the vector). The same under a float32 model. None: the run's protocol's."""
    permute: str | None = governed(20, PERMUTES)
    """The permuted control's partner of a feature: the latent d_sae / 2 further on (latents) or the
    feature half the evaluated list further on (list: the seed paper's). None: the run's protocol's."""
    evaluated: tuple[int, ...] = ()
    """The run's evaluated features, in order (what `permute = "list"` counts along); set by the run,
    in the cache key of the methods that read it only."""

    def __post_init__(self):
        if self.hybrid_multiplier is None and self.hybrid_coeff is None:
            raise UsageError("the hybrid needs a multiplier or an absolute coefficient")
        if bad := invalid_choice(self):
            name, value, choices = bad
            raise UsageError(f"{name} {value!r}; choose {', '.join(choices)}")
