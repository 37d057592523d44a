"""How metrics sample the held-out scoring pool (`ScoringConfig`): part of every score's cache key
and of run.json. Light: read before any model library is imported."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

from benchmark.config.fields import governed, invalid_choice, one_of
from benchmark.config.method import TOP_IMAGES
from benchmark.registry import UsageError

MASKS = ("union", "first")
CLIP_IMAGES = ("shown", "sampled")
CONTROLS = ("shared", "per-latent")
STATISTICS = ("mean", "pooled")
LOCALIZATION_FROM = ("scoring", "sampled")


@dataclass(frozen=True)
class ScoringConfig:
    """How metrics sample the held-out scoring pool. Part of every score's cache key and of run.json;
    set from a run config's `[scoring]` table, with `top_k` and `top_images` following the methods'
    `--top-k` and `--top-images` unless the table sets them."""

    PART: ClassVar[str] = "scoring"
    """The protocol table that governs it (`benchmark.config.protocol`)."""
    top_k: int = 5
    """Top images per feature for clip-score (the methods' own top-k)."""
    top_images: str = one_of("masked", TOP_IMAGES)
    """How clip-score shows them: masked, heatmap or viridis (the methods' own style)."""
    detection_k: int = 20
    """Precision@k of retrieval over the whole pool (k is capped at the feature's positives)."""
    simulation_records: int = 50
    """Top-activating images per feature, and as many random ones (1:1)."""
    localization_images: int | None = governed(18)
    """With `localization_from = "scoring"`: top scoring-pool images per feature over which
    localization IoU is averaged."""
    localization_from: str | None = governed(18, LOCALIZATION_FROM)
    """Which images localization IoU segments: the feature's top held-out scoring-pool images
    (scoring), or the top-k pool images clip-score reads (sampled: the seed paper's, its 5 sampled
    top images)."""
    mask: str | None = governed(18, MASKS)
    """What the segmenter's masks of an explanation are on an image: the union of every box's mask
    (union; an empty explanation names nothing and scores IoU 0) or the first box's alone (first: the
    seed paper's LangSAM use, which leaves an empty explanation out of the mean)."""
    clip_images: str | None = governed(16, CLIP_IMAGES)
    """Which top images clip-score reads: the `top_k` the methods showed (shown), or `top_k` of the
    feature's n firing images among its `clip_from` best, drawn with a generator seeded `clip_seed`
    afresh for each feature, so features with as many firing images get the same ranks (sampled:
    the seed paper's, which does not score an explanation on exactly the images it was made from)."""
    clip_from: int | None = governed(16)
    """With sampled: how many best images the draw chooses from (the seed paper: 10)."""
    clip_seed: int | None = governed(16)
    """With sampled: the draw's seed (the seed paper: 42)."""
    generated_images: int | None = governed(17)
    """Images rendered from each explanation for generation-AUROC."""
    control_images: int | None = governed(17)
    """Random scoring-pool images generation-AUROC compares each feature's against."""
    controls: str | None = governed(17, CONTROLS)
    """Which: one draw shared by every feature (shared), or a draw per feature seeded by its latent id
    (per-latent: the seed paper's)."""
    generation_prompt: str | None = governed(17)
    """The generator's prompt, {} standing for the explanation (the seed paper: "A realistic image of {}")."""
    generation_lowercase: bool | None = governed(17)
    """Whether the explanation is lowercased in that prompt (the seed paper's code lowercases it)."""
    statistic: str | None = governed(17, STATISTICS)
    """generation-AUROC's statistic: the mean of each feature's AUROC (mean), or also one AUROC pooled
    over every feature's images (pooled: the seed paper's; the rows then keep each feature's
    activations so that `main.csv` can pool them)."""
    sentence_model: str | None = None
    """sentence-transformers model name or directory; None: all-MiniLM-L6-v2 bundled offline."""
    seed: int = 0

    def __post_init__(self):
        if bad := invalid_choice(self):
            name, value, choices = bad
            raise UsageError(f"[scoring] {name} {value!r}: one of {', '.join(choices)}")
        if self.generation_prompt is not None and self.generation_prompt.count("{}") != 1:
            raise UsageError(f"[scoring] generation_prompt {self.generation_prompt!r}: write {{}} once, where the "
                             f"explanation goes")
        counts = {k: v for k, v in asdict(self).items()
                  if isinstance(v, int) and not isinstance(v, bool) and k not in ("seed", "clip_seed")}
        small = [f"{k} = {v}" for k, v in counts.items() if v < 1]
        if small:
            raise UsageError(f"[scoring] {', '.join(small)}: each must be at least 1")
        if self.clip_from is not None and self.clip_images == "sampled" and self.clip_from < self.top_k:
            raise UsageError(f"[scoring] clip_from = {self.clip_from}: sampling top_k = {self.top_k} images needs "
                             f"at least as many to draw from")
