"""Running explanation methods over SAE features.

Explanations and scores are cached (`benchmark.explaining.explain`, `benchmark.scoring.context`), so a run
killed at any moment and started again redoes nothing it finished. The run directory gets
`explanations.jsonl` (one row per method and feature, with what each explanation cost:
`cost_seconds`, `cost_prompt_tokens`, `cost_answer_tokens`, `cost_images`), `scores.csv` (those rows
with ground truth and every metric's columns) and `run.json` (the full config, its hash, package versions, git sha,
the coefficients used and, with --tune, the sweep that chose them).

What is explained is a source (`benchmark.sources`): the embedded world (`--world`), or real
checkpoints when the config has `models`. Both answer through the same engine and are scored by
the same code; a method or metric that needs a capability the source lacks (ground truth, a
generator, a segmenter, a vocabulary) is refused before anything is computed."""
from __future__ import annotations

import csv
import ctypes
import gc
import importlib.metadata
import json
import subprocess
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.activations.stores import TOP_KEPT
from benchmark.cache import config_hash, write_atomic
from benchmark.config.models import COMPONENTS
from benchmark.config.resolve import resolve
from benchmark.config.run import RunConfig
from benchmark.config.scoring import ScoringConfig
from benchmark.explaining.backends import Backend, LocalBackend
from benchmark.explaining.context import COSTS, Context, method_needs, method_steers
from benchmark.explaining.explain import explain_rows
from benchmark.explaining.tuning import constant_labels, parse_sweep, tune
from benchmark.registry import METHODS, UsageError, warn
from benchmark.results.leaderboard import CONSTANT_METHOD, constant_name
from benchmark.scoring.context import Metric, ScoringContext, score
from benchmark.sources import open_source
from benchmark.sources.capabilities import NEEDS
from benchmark.sources.source import Source

PACKAGES = ("torch", "transformers", "open_clip_torch", "datasets", "safetensors", "numpy")


def parse_features(spec: str, d_sae: int) -> list[int]:
    """`start:stop` (either side may be left out: 0 and d_sae) or a comma list, every feature in
    0..d_sae-1. Nothing is clipped: a range past the SAE's end, a negative number or an empty range is
    a one-line UsageError saying what would work."""
    where = f"--features {spec!r}"
    try:
        if ":" in spec:
            start_text, stop_text = spec.split(":", 1)
            start, stop = int(start_text) if start_text else 0, int(stop_text) if stop_text else d_sae
            features = list(range(start, stop))
            bounds = [start, stop - 1]
        else:
            features = bounds = [int(x) for x in spec.split(",")]
    except ValueError:
        raise UsageError(f"{where}: expected start:stop or a comma list of integers") from None
    if any(f < 0 for f in bounds):
        raise UsageError(f"{where}: features are numbered from 0; negative numbers are not counted from the end")
    if ":" in spec and not features:
        raise UsageError(f"{where}: the range is empty (start must be below stop), e.g. 0:{min(d_sae, 128)}")
    outside = sorted({f for f in bounds if f >= d_sae})
    if outside:
        raise UsageError(f"{where}: the SAE has {d_sae} features (0..{d_sae - 1}); {outside[-1]} is past its end"
                         + (f"; use {bounds[0]}:{d_sae}" if ":" in spec else ""))
    if len(set(features)) != len(features):
        raise UsageError(f"{where}: a feature is listed twice")
    return features


def read_submission(fpath: Path, d_sae: int) -> dict[int, str]:
    """A `feature,explanation` CSV read strictly: an unclosed quote, a wrong column count, a feature
    that is no integer, outside the SAE or repeated, an empty explanation, or no rows at all is a
    one-line UsageError naming the line."""
    if not fpath.is_file():
        raise UsageError(f"--explanations {fpath}: no such file")
    out: dict[int, str] = {}
    with open(fpath, newline="") as fh:
        reader = csv.reader(fh, strict=True)
        try:
            header = next(reader, None)
            if header != ["feature", "explanation"]:
                raise UsageError(f"{fpath}:1: expected the header 'feature,explanation', found {header}")
            for row in reader:
                line = reader.line_num
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
                if not row[1].strip():
                    raise UsageError(f"{fpath}:{line}: feature {feature} has an empty explanation")
                out[feature] = row[1]
        except csv.Error as e:
            raise UsageError(f"{fpath}:{reader.line_num}: malformed CSV ({e}; an unclosed quote?)") from None
    if not out:
        raise UsageError(f"{fpath}: a header and no explanations")
    return out


@dataclass(frozen=True)
class Plan:
    """A run checked before anything is computed: its resolved settings, source, methods and metrics."""

    config: RunConfig
    source: Source
    fns: dict
    metrics: list
    tune_metric: Metric | None
    sweep: dict
    constant: bool
    """Whether the best-constant-label control is asked for (chosen per metric, not explained)."""
    sctx: ScoringContext


def plan_run(config: RunConfig) -> Plan:
    """Every name resolved and every need checked: a mistake stops the run before anything is written."""
    import methods  # noqa: F401  (registers the built-in methods)
    from metrics import named_metrics

    config = resolve(config, config.protocol)  # the one place a protocol fills what nobody gave
    fns = dict(METHODS.resolve(spec) for spec in config.methods)
    refuse_unsteerable(config, fns)
    source = open_source(source_recipe(config))
    available = {need for need in NEEDS if source.has(need)}
    metrics = [] if config.metrics == "none" else named_metrics(config.metrics, available)
    tune_metric = named_metrics(config.tune)[0] if config.tune else None
    sweep = parse_sweep(config.sweep)
    if sweep and tune_metric is None:
        raise UsageError("--sweep names what --tune sweeps; give --tune METRIC too")
    refuse_unmet(source, fns, [*metrics, *([tune_metric] if tune_metric else [])])
    constant = fns.pop(CONSTANT_METHOD, None) is not None
    if constant and not metrics:
        raise UsageError(f"{CONSTANT_METHOD}: the label is chosen by the run's metrics; run it without --metrics none")
    if metrics or tune_metric:
        source.check_scorer()  # a misnamed scorer fails now, not after every explanation
    sctx = ScoringContext(source, config.scoring)
    refuse_unoffered(sctx, [*metrics, *([tune_metric] if tune_metric else [])])
    check_pools(source, config.method.top_k, [*metrics, *([tune_metric] if tune_metric else [])], sctx.config)
    # run.json and the run's key record the LM and the protocol by name, not None
    config = replace(config, lm=source.lm, protocol=source.protocol,
                     random_sae=source.spec.sae.random)  # set by the flag or by [sae] random
    return Plan(config, source, fns, metrics, tune_metric, sweep, constant, sctx)


def run(config: RunConfig, backend: Backend | None = None) -> Path:
    """Checks the run (`plan_run`), then runs it, computing on `backend` (default: this process). The
    backend is how, not what: it is recorded in run.json but is no part of the run's key, since every
    backend gives the same results."""
    from methods.baselines import candidate_labels

    plan = plan_run(config)
    config, source, sctx = plan.config, plan.source, plan.sctx
    backend = backend or LocalBackend()
    backend.start(source)
    # here, before any worker needs them (the scoring pass gives the scales; the top-k pass, alive latents)
    top = source.activations("topk", backend.activation_pass(source, "topk"), keep=max(TOP_KEPT, config.method.top_k))
    source.activations("scoring", backend.activation_pass(source, "scoring"))
    release_freed_memory()  # what the passes freed, before the stages that follow start on top of it
    ctx = Context(source, config.method)  # the method settings as the context completes them
    d_sae = ctx.sae.d_sae
    counted = np.flatnonzero(top.alive_F).tolist() if config.latents == "alive" else None
    features = counted_features(config.features, d_sae, counted)
    submission = read_submission(Path(config.explanations), d_sae) if config.explanations else None  # checked now
    method_config, tuning, validation = ctx.config, None, None
    if plan.tune_metric is not None:
        validation, features = split_validation(features, config.tune_features, d_sae, counted)
        method_config, tuning = tune(source, replace(method_config, evaluated=tuple(validation)), plan.fns,
                                     plan.tune_metric, sctx, validation, backend, plan.sweep)
    ctx = Context(source, replace(method_config, evaluated=tuple(features)))
    made_on = {"source": source.name, "source_id": source.source_id, "protocol": source.protocol,
               "lm": source.lm}  # what every row was computed on
    rows = [{**made_on, "method": name, "feature": f, "explanation": row["explanation"], "answer": row["answer"],
             **cost_columns(row["cost"])}
            for name, fn in plan.fns.items() for f, row in explain_rows(ctx, name, fn, features, backend).items()]
    constants = None
    if plan.constant:
        if validation is None:
            validation = split_validation(features, config.tune_features, d_sae, counted)[0]
        constants = constant_labels(sctx, plan.metrics, validation, candidate_labels(source.vocabulary()))
        rows += constant_rows(made_on, constants, features)
    if submission is not None:
        rows += submission_rows(made_on, f"submission:{Path(config.explanations).stem}", submission, features)
    return write_run(plan, ctx, rows, {"tuning": tuning, "constant_labels": constants, "backend": backend.describe()})


def submission_rows(made_on: dict, name: str, submission: dict[int, str], features: list[int]) -> list[dict]:
    """The `--explanations` CSV's rows for the run's features, as one more method at no cost."""
    wanted = set(features)
    return [{**made_on, "method": name, "feature": f, "explanation": e, "answer": e, **cost_columns({})}
            for f, e in sorted(submission.items()) if f in wanted]


def write_run(plan: Plan, ctx: Context, rows: list[dict], record: dict) -> Path:
    """Writes the run directory: explanations, their scores, and run.json with what produced them."""
    config, source, sctx = plan.config, plan.source, plan.sctx
    settings = asdict(config)
    if settings["random_sae"] is None:  # a trained SAE's run keeps the settings (and run directory) it had
        del settings["random_sae"]
    run_dir = Path(config.out) / f"{source.name}-{source.lm}-{config_hash(settings)}"
    write_atomic(run_dir / "explanations.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    if plan.metrics:
        release_freed_memory()
        table = score_rows(sctx, plan.metrics, pd.DataFrame(rows).drop(columns="answer"))
        write_atomic(run_dir / "scores.csv", table.to_csv(index=False, lineterminator="\n"))
    write_atomic(run_dir / "run.json", json.dumps({
        "config": settings, "config_hash": config_hash(settings), "versions": _versions(), "git_sha": _git_sha(),
        "protocol": source.protocol, "source": source.describe(), "method_config": asdict(ctx.config),
        "scoring_config": asdict(sctx.config),
        "steering_multiplier": ctx.config.steering_multiplier, "hybrid_multiplier": ctx.config.hybrid_multiplier,
        "tuning": record["tuning"], "constant_labels": record["constant_labels"], "backend": record["backend"],
    }, indent=1))
    return run_dir


def constant_rows(made_on: dict, constants: dict[str, dict], features: list[int]) -> list[dict]:
    """The best-constant-label control's rows: per metric, `constant-label[METRIC]` giving its chosen
    label to every reported feature, at no explaining cost. With --tune the validation slice it was chosen
    on is not among them; without, it is (every method covers the same features): that can only favour
    the control, so a method that beats it still beats it fairly."""
    free = cost_columns({k: 0.0 for k in COSTS})
    return [{**made_on, "method": constant_name(metric), "feature": f, "explanation": c["label"],
             "answer": c["label"], **free} for metric, c in constants.items() for f in features]


def release_freed_memory() -> None:
    """Hands the heap memory a finished stage freed back to the kernel (glibc's `malloc_trim`; nothing
    where the C library has none). glibc keeps freed blocks below its mmap threshold, which the first
    large free raises to 32 MB, in its heaps: the activation pass's sparse batches (a few MB each,
    buffered up to a chunk of the scoring store) stay resident after they are freed, about 2.5 KB per
    scoring-pool token, and every later stage of the same process would start on top of them, so its
    peak anonymous memory would grow with the pool (`python -m benchmark bench --scale --one-process`)."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # no glibc (macOS, musl): nothing to hand back this way
        pass


def cost_columns(cost: dict) -> dict[str, float]:
    """A row's `cost_*` columns; NaN for what was not recorded (explanations made elsewhere)."""
    return {f"cost_{k}": float(cost.get(k, "nan")) for k in COSTS}


def refuse_unsteerable(config: RunConfig, methods: dict) -> None:
    """One UsageError naming the methods that steer when another explainer than the subject answers."""
    steering = [name for name, fn in methods.items() if method_steers(fn)]
    if config.method.explainer is not None and steering:
        raise UsageError(f"{', '.join(steering)}: steer{'s' if len(steering) == 1 else ''} the subject VLM's tower, "
                         f"which the [explainer] ({config.method.explainer.kind}) cannot; run "
                         f"{'it' if len(steering) == 1 else 'them'} without [explainer]")


def source_recipe(config: RunConfig) -> tuple:
    """How to open the run's source: the config's real models, or the world preset, under its protocol."""
    if config.models is not None:
        models = config.models
        if config.random_sae is not None:
            models = replace(models, sae=replace(models.sae, random=config.random_sae))
        return ("models", models, config.lm, config.protocol)
    return ("world", config.world, config.lm, config.protocol,
            *((config.random_sae,) if config.random_sae is not None else ()))


def refuse_unmet(source: Source, methods: dict, metrics: list[Metric]) -> None:
    """One UsageError naming every method and metric whose needs the source does not meet."""
    unmet = {}
    for name, needs in [*((n, method_needs(fn)) for n, fn in methods.items()), *((m.name, m.needs) for m in metrics)]:
        missing = [need for need in needs if not source.has(need)]
        if missing:
            unmet[name] = missing
    if unmet:
        lacks = sorted({need for missing in unmet.values() for need in missing})
        named = [f"[{need}]" for need in lacks if need in COMPONENTS]
        hint = f"; a run config names one in {' and '.join(named)}" if named else ""
        raise UsageError(f"{', '.join(unmet)}: need{'s' if len(unmet) == 1 else ''} {' and '.join(lacks)}, which "
                         f"source {source.name} does not have{hint}")


def refuse_unoffered(sctx: ScoringContext, metrics: list[Metric]) -> None:
    """One UsageError, before anything is computed, when a metric that segments asks the source's
    segmenter for something it does not declare it offers (`Segmenter.offers`)."""
    if any("segmenter" in m.needs for m in metrics) and (lacks := sctx.segmenter_lacks()):
        segmenter = type(sctx.source.capabilities.segmenter).__name__
        raise UsageError(f"[scoring] mask = {sctx.config.mask!r}, localization_from = {sctx.config.localization_from!r}:"
                         f" the segmenter {segmenter} offers no {' or '.join(lacks)}; it gives the union of its masks "
                         f"on the scoring pool only (set [scoring] mask = \"union\", localization_from = \"scoring\")")


def check_pools(source: Source, top_k: int, metrics: list[Metric], scoring: ScoringConfig) -> None:
    """One UsageError when a pool is too small for the top images methods show or for a metric's
    statistic to be defined at all, and a warning when it is smaller than what a metric samples;
    counted from the datasets, before anything is decoded."""
    n_topk = source.pool_size("topk")
    if n_topk < top_k:
        raise UsageError(f"the top-k pool has {n_topk} images, fewer than --top-k {top_k}; use a larger pool")
    n_scoring = source.pool_size("scoring")
    short = [f"{m.name} needs {m.min_images}" for m in metrics if n_scoring < m.min_images]
    if short:
        raise UsageError(f"the scoring pool has {n_scoring} images; {', '.join(short)}: use a larger pool or "
                         f"--metrics without them")
    for m in metrics:
        if m.records is not None and n_scoring < m.records(scoring):
            warn(f"the scoring pool has {n_scoring} images; {m.name} samples {m.records(scoring)} per feature, so "
                 f"its scores rest on fewer")


def counted_features(spec: str, d_sae: int, counted: list[int] | None) -> list[int]:
    """The latents `spec` names: latent ids (`counted` None), or positions in `counted`, the sorted
    alive latents (the seed paper's slices: its first 500 alive latents validate, the next 1,000 test)."""
    if counted is None:
        return parse_features(spec, d_sae)
    try:
        return [counted[i] for i in parse_features(spec, len(counted))]
    except UsageError as e:
        raise UsageError(f"{e} (with latents = alive, features count the {len(counted)} alive latents of the "
                         f"{d_sae})") from None


def split_validation(features: list[int], spec: str | None, d_sae: int,
                     counted: list[int] | None = None) -> tuple[list[int], list[int]]:
    """(validation, test): the features `spec` names (counted as `counted_features` counts), or else
    the first quarter of `features`; the test slice is the rest, so no feature is both tuned on and
    reported."""
    if spec is None:
        cut = max(1, len(features) // 4)
        validation = features[:cut]
    else:
        validation = counted_features(spec, d_sae, counted)
    test = [f for f in features if f not in set(validation)]
    if not test:
        raise UsageError(f"--tune: no test features left after the validation slice ({len(validation)} features)")
    return validation, test


def score_rows(sctx: ScoringContext, metrics: list[Metric], rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` (source, source_id, lm, method, feature, explanation) with the feature's ground truth, its
    near-ties (`ScoringContext.near_ties`) and every metric's columns added."""
    truth = sctx.source.groundtruth().set_index("feature")[["concept", "category", "level", "aligned"]]
    table = rows.join(truth, on="feature").join(sctx.near_ties(), on="feature")
    for m in metrics:
        scores = score(sctx, m, table.feature.tolist(), table.explanation.tolist())
        table[list(m.columns)] = scores[list(m.columns)].to_numpy()
        if m.samples_column in scores:
            table[m.samples_column] = scores[m.samples_column].to_numpy()
        if table[m.headline].isna().all():
            warn(f"{m.headline} is NaN for every feature (dead features, or too few scoring images to define it)")
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
