"""A run's settings (`RunConfig`): what it explains, with which methods and metrics, under which
protocol; its method and scoring settings inside. Resolved once at the top of a run
(`benchmark.config.resolve`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from benchmark.config.fields import governed, invalid_choice
from benchmark.config.method import MethodConfig
from benchmark.config.models import ModelsConfig
from benchmark.config.protocol import protocol
from benchmark.config.scoring import ScoringConfig
from benchmark.registry import UsageError

LATENTS = ("ids", "alive")


@dataclass(frozen=True)
class RunConfig:
    PART: ClassVar[str] = "run"
    """The protocol table that governs it (`benchmark.config.protocol`)."""

    methods: tuple[str, ...] = ("hybrid",)
    """Method names, `path/file.py:function`, or installed plug-ins."""
    features: str = "0:1024"
    """Feature range `start:stop` or a comma list."""
    lm: str | None = None
    """World: the language-model size of its VLM (None: large). Real models: the VLM's name in rows
    and run directories (None: its checkpoint's last path part, e.g. llava-1.5-7b-hf)."""
    world: str = "default"
    """World: a preset, its shipped version or trained here (`benchmark.world.shipped.choose`); unused
    when `models` is set."""
    out: str = "results"
    """Directory for run directories."""
    explanations: str | None = None
    """A CSV (feature,explanation) of explanations made elsewhere, recorded as one more method."""
    metrics: str = "all"
    """Metrics that score the explanations: 'all', 'none' or a comma list."""
    tune: str | None = None
    """A metric whose headline mean over validation features picks each steering coefficient."""
    tune_features: str | None = None
    """Validation features for --tune (start:stop or a comma list); default: the first quarter of `features`."""
    sweep: tuple[str, ...] = ()
    """`FIELD=V1,V2` settings --tune sweeps besides each steering coefficient (`benchmark.explaining.tuning.TUNABLE`), for
    the methods that declare they read them."""
    method: MethodConfig = field(default_factory=MethodConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    models: ModelsConfig | None = None
    """Real models to explain instead of the world (the config file's [vlm], [sae], [scorer], [pool], [prompts])."""
    protocol: str | None = None
    """The named set of settings every one left unset takes (`benchmark.config.protocol`): featurebench
    (None) or seed. Recorded in run.json and every row."""
    latents: str | None = governed(15, LATENTS)
    """What `features` and `tune_features` count: latent ids (ids) or positions in the sorted list of
    alive latents, those that fire on some top-k pool image (alive: the seed paper's slices). None:
    the protocol's."""
    random_sae: int | None = None
    """A seed: explain a random SAE of the trained one's kind, shape and sparsity instead of it, the
    sanity control (`--sae random:<seed>`; with real models, the same as `[sae] random`). Its rows are
    a source of their own (`default@1+random-sae-0`). None: the trained SAE."""

    def __post_init__(self):
        protocol(self.protocol)  # an unknown name fails here, before anything is opened
        if bad := invalid_choice(self):
            name, value, choices = bad
            raise UsageError(f"{name} {value!r}; choose {' or '.join(choices)}")
