"""Reading what a report is made from: run directories, a leaderboard directory, and the world
stages or the real models (`benchmark.real_models`) a run was made on. Every mistake a user can
make here is a one-line `UsageError`."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import benchmark.world.presets  # noqa: F401  (registers the built-in worlds)
from benchmark.leaderboard import read_run_scores
from benchmark.real_models import ModelsConfig, models_config
from benchmark.registry import WORLDS, UsageError

IMAGE_STAGES = ("pools", "tower", "sae", "groundtruth")
"""The world stages a feature page reads: images, the SAE's activations over them, ground truth."""
REAL_ROLES = ("pools", "sae")
"""The real models' cache roles a feature page reads: the pool, the SAE's activations over it."""


@dataclass(frozen=True)
class Run:
    """One run directory: its `scores.csv` and its `run.json`."""

    name: str
    scores: pd.DataFrame
    meta: dict

    @property
    def models(self) -> ModelsConfig | None:
        """The real models the run was made on (run.json's config.models), None on the embedded world."""
        tables = self.meta["config"].get("models")
        return models_config(tables, f"run {self.name}: run.json config.models") if tables else None

    @property
    def world(self) -> str:
        """The name in the rows' world column: the world's, or on real models the SAE's."""
        models = self.models
        return models.sae_name if models else self.meta["config"]["world"]

    @property
    def lm(self) -> str:
        return self.meta["config"]["lm"]

    @property
    def top_k(self) -> int:
        return int(self.meta["config"]["method"]["top_k"])


@dataclass(frozen=True)
class Leaderboard:
    main: pd.DataFrame
    per_category: pd.DataFrame
    pairwise: pd.DataFrame


def read_run(dpath: Path) -> Run:
    if not dpath.is_dir():
        raise UsageError(f"--run {dpath}: no such run directory")
    scores = read_run_scores(dpath, "--run")
    meta_fpath = dpath / "run.json"
    if not meta_fpath.is_file():
        raise UsageError(f"--run {dpath}: no run.json (not a run directory?)")
    try:
        meta = json.loads(meta_fpath.read_text())
        if meta["config"].get("models"):
            valid = (isinstance(meta["config"]["models"], dict) and isinstance(meta["config"]["lm"], str)
                     and isinstance(meta["config"]["method"]["top_k"], int)
                     and all(isinstance(meta["world"].get(role), str) for role in REAL_ROLES))
        else:
            valid = (isinstance(meta["config"]["world"], str) and isinstance(meta["config"]["method"]["top_k"], int)
                     and all(isinstance(meta["world"].get(stage), str) for stage in IMAGE_STAGES))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        valid = False
    if not valid:
        raise UsageError(f"{meta_fpath}: not a run record (needs config.world, config.method.top_k and the "
                         f"world's {', '.join(IMAGE_STAGES)} stages, or config.models, config.lm and the "
                         f"{', '.join(REAL_ROLES)} roles of real models)")
    return Run(dpath.name, scores, meta)


def read_leaderboard(dpath: Path) -> Leaderboard:
    """The three tables `benchmark.leaderboard` writes."""
    tables = {}
    for name in ("main", "per_category", "pairwise"):
        fpath = dpath / f"{name}.csv"
        if not fpath.is_file():
            raise UsageError(f"--leaderboards {dpath}: no {name}.csv (make it with `python -m benchmark leaderboard`)")
        tables[name] = pd.read_csv(fpath)
    return Leaderboard(**tables)


def check_out(out: Path, marker: str) -> None:
    """`out` may be new, empty, or an earlier report (it holds `marker`); anything else is kept safe."""
    if out.is_file():
        raise UsageError(f"--out {out}: is a file; give a directory for the report")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).is_file():
        raise UsageError(f"--out {out}: exists and is not an earlier report; give a new or empty directory")


def world_stages(runs: list[Run], cache: Path) -> dict[str, dict[str, Path]]:
    """Per world name, the stage directories its runs were made on, all present in the cache (runs
    on real models are left to `real_sources`). Two runs of one world name on different builds
    cannot share feature pages, so they are refused."""
    out: dict[str, dict[str, Path]] = {}
    owner: dict[str, str] = {}
    for run in runs:
        if run.models is not None:
            continue
        WORLDS.get(run.world)  # an unknown world is a UsageError naming the known ones
        dirs = {stage: cache / "world" / run.meta["world"][stage] for stage in IMAGE_STAGES}
        if run.world in out and dirs != out[run.world]:
            raise UsageError(f"runs {owner[run.world]} and {run.name} were made on different builds of world "
                             f"{run.world!r}; make a report of each separately")
        for stage, dpath in dirs.items():
            if not dpath.is_dir():
                raise UsageError(f"run {run.name}: its {stage} stage {dpath.name} is not in the cache {cache} "
                                 f"(set FEATUREBENCH_CACHE, or rebuild with `python -m benchmark world build "
                                 f"--preset {run.world}`)")
        out[run.world], owner[run.world] = dirs, run.name
    return out


def real_sources(runs: list[Run], worlds: dict[str, dict[str, Path]]) -> dict[str, Run]:
    """Per SAE name (the rows' world column of a run on real models), the first run made on it. Runs
    sharing that name share feature pages, so they must share the SAE's cache role (its checkpoint,
    tower, layer and pool); a world of the same name is refused too."""
    out: dict[str, Run] = {}
    for run in runs:
        if run.models is None:
            continue
        if run.world in worlds:
            raise UsageError(f"run {run.name}: its SAE is named {run.world!r}, as is a world of the other runs; "
                             f"make a report of each separately")
        first = out.setdefault(run.world, run)
        if first.meta["world"]["sae"] != run.meta["world"]["sae"]:
            raise UsageError(f"runs {first.name} and {run.name} were made on different SAEs, towers or pools named "
                             f"{run.world!r}; make a report of each separately")
    return out
