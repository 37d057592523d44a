"""Reading what a report is made from: run directories, a leaderboard directory, and the world
stages a run was made on. Every mistake a user can make here is a one-line `UsageError`."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import benchmark.world.presets  # noqa: F401  (registers the built-in worlds)
from benchmark.leaderboard import read_run_scores
from benchmark.registry import WORLDS, UsageError

IMAGE_STAGES = ("pools", "tower", "sae", "groundtruth")
"""The world stages a feature page reads: images, the SAE's activations over them, ground truth."""


@dataclass(frozen=True)
class Run:
    """One run directory: its `scores.csv` and its `run.json`."""

    name: str
    scores: pd.DataFrame
    meta: dict

    @property
    def world(self) -> str:
        return self.meta["config"]["world"]

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
            raise UsageError(f"--run {dpath}: a run on real models; reports cover runs on the embedded world only")
        valid = (isinstance(meta["config"]["world"], str) and isinstance(meta["config"]["method"]["top_k"], int)
                 and all(isinstance(meta["world"].get(stage), str) for stage in IMAGE_STAGES))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        valid = False
    if not valid:
        raise UsageError(f"{meta_fpath}: not a run record (needs config.world, config.method.top_k and the "
                         f"world's {', '.join(IMAGE_STAGES)} stages)")
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
    """Per world name, the stage directories its runs were made on, all present in the cache. Two
    runs of one world name on different builds cannot share feature pages, so they are refused."""
    out: dict[str, dict[str, Path]] = {}
    owner: dict[str, str] = {}
    for run in runs:
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
