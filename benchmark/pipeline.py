"""Running explanation methods over SAE features.

Each method's explanations are cached per (world models, LM size, SAE, method, method source,
method config) in an append-only store, so a run killed at any moment and started again redoes
nothing it finished. The run directory then gets `explanations.jsonl` (one row per method and
feature) and `run.json` (the full config, its hash, package versions, git sha)."""
from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import inspect
import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from benchmark.cache import config_hash
from benchmark.context import Context, MethodConfig
from benchmark.registry import METHODS, UsageError
from benchmark.results import RowStore, write_atomic
from benchmark.scoring import Metric, ScoringConfig, ScoringContext, resolve_metrics, score

PACKAGES = ("torch", "transformers", "open_clip_torch", "datasets", "safetensors", "numpy")


@dataclass(frozen=True)
class RunConfig:
    methods: tuple[str, ...] = ("hybrid",)
    """Method names, `path/file.py:function`, or installed plug-ins."""
    features: str = "0:1024"
    """Feature range `start:stop` or a comma list."""
    lm: str = "large"
    """Language-model size of the world's VLM."""
    world: str = "default"
    """World preset."""
    out: str = "results"
    """Directory for run directories."""
    explanations: str | None = None
    """A CSV (feature,explanation) of explanations made elsewhere, recorded as one more method."""
    metrics: str = "all"
    """Metrics that score the explanations: 'all', 'none' or a comma list."""
    method: MethodConfig = field(default_factory=MethodConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)


def parse_features(spec: str, d_sae: int) -> list[int]:
    try:
        if ":" in spec:
            start, stop = (int(x) if x else None for x in spec.split(":"))
            features = list(range(d_sae))[slice(start, stop)]
        else:
            features = [int(x) for x in spec.split(",")]
    except ValueError:
        raise UsageError(f"--features {spec!r}: expected start:stop or a comma list of integers") from None
    bad = [f for f in features if not 0 <= f < d_sae]
    if bad or not features:
        raise UsageError(f"--features {spec!r}: features must lie in 0..{d_sae - 1} (the SAE has {d_sae})")
    return features


def read_submission(fpath: Path, d_sae: int) -> dict[int, str]:
    """A `feature,explanation` CSV; any malformed line is named in a one-line UsageError."""
    if not fpath.is_file():
        raise UsageError(f"--explanations {fpath}: no such file")
    out: dict[int, str] = {}
    with open(fpath, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header != ["feature", "explanation"]:
            raise UsageError(f"{fpath}:1: expected the header 'feature,explanation', found {header}")
        for line, row in enumerate(reader, start=2):
            if len(row) != 2:
                raise UsageError(f"{fpath}:{line}: expected 2 columns, found {len(row)}")
            try:
                feature = int(row[0])
            except ValueError:
                raise UsageError(f"{fpath}:{line}: feature {row[0]!r} is not an integer") from None
            if not 0 <= feature < d_sae:
                raise UsageError(f"{fpath}:{line}: feature {feature} is outside 0..{d_sae - 1}")
            if feature in out:
                raise UsageError(f"{fpath}:{line}: feature {feature} appears twice")
            out[feature] = row[1]
    return out


def method_key(ctx: Context, name: str, fn) -> dict:
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = repr(fn)
    return {"vlm": ctx.world.dirs[f"vlm-{ctx.lm}"].name, "sae": ctx.world.dirs["sae"].name, "method": name,
            "source": hashlib.sha256(source.encode()).hexdigest()[:12], "config": asdict(ctx.config)}


def explain(ctx: Context, name: str, fn, features: list[int]) -> dict[int, str]:
    """Explanations of `features`, reading what the store has and computing only the rest."""
    store = RowStore(ctx.world.root / "explanations" / f"{name.replace('/', '_')}-{config_hash(method_key(ctx, name, fn))}.jsonl")
    done = {int(row["feature"]): str(row["explanation"]) for row in store.load() if "explanation" in row}
    todo = [f for f in features if f not in done]
    batch = ctx.config.batch_size
    for start in tqdm(range(0, len(todo), batch), desc=name, unit="batch", disable=not todo):
        chunk = todo[start:start + batch]
        texts = fn(ctx, chunk)
        if len(texts) != len(chunk):
            raise UsageError(f"method {name!r} returned {len(texts)} explanations for {len(chunk)} features")
        store.append([{"feature": f, "explanation": str(t)} for f, t in zip(chunk, texts)])
        done.update(zip(chunk, map(str, texts)))
    return {f: done[f] for f in features}


def run(config: RunConfig) -> Path:
    """Resolves every name first (a mistake stops the run before anything is written), then runs."""
    import methods  # noqa: F401  (registers the built-in methods)
    from benchmark.world.build import build_world

    fns = {name: METHODS.get(name) for name in config.methods}
    metrics = [] if config.metrics == "none" else resolve_metrics(config.metrics)
    world = build_world(config.world)
    ctx = Context(world, config.lm, config.method)
    features = parse_features(config.features, ctx.sae.d_sae)
    submission = read_submission(Path(config.explanations), ctx.sae.d_sae) if config.explanations else None
    rows = []
    for name, fn in fns.items():
        for f, text in explain(ctx, name, fn, features).items():
            rows.append({"world": world.config.name, "lm": config.lm, "method": name, "feature": f, "explanation": text})
    if submission is not None:
        name = f"submission:{Path(config.explanations).stem}"
        wanted = set(features)
        rows += [{"world": world.config.name, "lm": config.lm, "method": name, "feature": f, "explanation": e}
                 for f, e in sorted(submission.items()) if f in wanted]
    settings = asdict(config)
    run_dir = Path(config.out) / f"{world.config.name}-{config.lm}-{config_hash(settings)}"
    write_atomic(run_dir / "explanations.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    if metrics:
        table = score_rows(ScoringContext(world, config.scoring), metrics, pd.DataFrame(rows))
        write_atomic(run_dir / "scores.csv", table.to_csv(index=False, lineterminator="\n"))
    write_atomic(run_dir / "run.json", json.dumps({
        "config": settings, "config_hash": config_hash(settings), "versions": _versions(), "git_sha": _git_sha(),
        "world": {name: d.name for name, d in world.dirs.items()},
        "steering_multiplier": ctx.steering_multiplier,
    }, indent=1))
    return run_dir


def score_rows(sctx: ScoringContext, metrics: list[Metric], rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` (world, lm, method, feature, explanation) with the feature's ground truth and every
    metric's columns added."""
    truth = sctx.groundtruth[["concept", "category", "level", "aligned"]]
    table = rows.join(truth, on="feature")
    for m in metrics:
        scores = score(sctx, m, table.feature.tolist(), table.explanation.tolist())
        table[list(m.columns)] = scores[list(m.columns)].to_numpy()
    return table


def _versions() -> dict[str, str | None]:
    out = {}
    for package in PACKAGES:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out


def _git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
