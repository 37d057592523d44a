"""Reading what a report is made from: run directories, a leaderboard directory, and the source
(`benchmark.sources.Source`) each run was made on, rebuilt from what its run.json recorded. World
and real models are read alike: run.json names the files, and the report checks they are still the
files the run read. Every mistake a user can make here is a one-line `UsageError`."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark.config.models import models_config
from benchmark.registry import UsageError
from benchmark.results.board_rows import read_run_scores
from benchmark.sources.source import Source

SHARED_ROLES = ("sae", "pools")
"""Identity roles that runs sharing a source name must share: their feature pages show one SAE's
features on one pool. The VLM may differ (the world's LM sizes, one SAE under several VLMs)."""


@dataclass(frozen=True)
class Run:
    """One run directory: its `scores.csv` and its `run.json`."""

    name: str
    scores: pd.DataFrame
    meta: dict

    @property
    def source(self) -> str:
        """The source's name, as in the rows' source column: the world preset's, or the SAE's."""
        return self.meta["source"]["name"]

    @property
    def lm(self) -> str:
        return self.meta["source"]["lm"]

    @property
    def protocol(self) -> str:
        """The protocol the run's numbers were computed under (runs before protocols: featurebench)."""
        return self.meta.get("protocol", "featurebench")

    @property
    def top_k(self) -> int:
        return int(self.meta["config"]["method"]["top_k"])

    @property
    def groundtruth(self) -> bool:
        """Whether the source knew its features' concepts (the rows then carry them)."""
        return "groundtruth" in self.meta["source"]["capabilities"]


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
        source = meta["source"]
        valid = (isinstance(meta["config"]["method"]["top_k"], int) and isinstance(source["name"], str)
                 and isinstance(source["lm"], str) and isinstance(source["identity"], dict)
                 and isinstance(source["models"], dict) and isinstance(source["capabilities"], list))
    except (json.JSONDecodeError, KeyError, TypeError):
        valid = False
    if not valid:
        raise UsageError(f"{meta_fpath}: not a run record (needs config.method.top_k and the source's name, lm, "
                         f"identity, models and capabilities)")
    return Run(dpath.name, scores, meta)


def read_leaderboard(dpath: Path) -> Leaderboard:
    """The three tables `benchmark.results.leaderboard` writes."""
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


def first_runs(runs: list[Run]) -> dict[str, Run]:
    """Per source name (the rows' source column), its first run: the one whose source draws that
    name's feature pages. Runs of one name share those pages, so they must share `SHARED_ROLES`."""
    out: dict[str, Run] = {}
    for run in runs:
        first = out.setdefault(run.source, run)
        differ = [r for r in SHARED_ROLES
                  if first.meta["source"]["identity"].get(r) != run.meta["source"]["identity"].get(r)]
        if differ:
            raise UsageError(f"runs {first.name} and {run.name} were made on different {' and '.join(differ)} under "
                             f"one name {run.source!r}; make a report of each separately")
    return out


def open_run_source(run: Run) -> Source:
    """The run's source, opened from the files its run.json names (nothing is loaded but the SAE and
    the VLM's config). Files moved or changed since the run are refused: their caches would not
    be the run's."""
    recorded = run.meta["source"]
    spec = models_config(recorded["models"], f"run {run.name}: run.json source.models")
    paths = (spec.vlm.path, spec.sae.path, spec.pool.source, spec.pool.scoring_source, spec.scorer.model,
             spec.scorer.pretrained)
    gone = [p for p in paths if p and Path(p).is_absolute() and not Path(p).exists()]  # recorded paths are absolute
    if gone:
        raise UsageError(f"run {run.name}: {gone[0]} is gone since the run; run it again to report it")
    source = Source(spec, recorded["lm"], recorded["name"], protocol=run.protocol)
    changed = [role for role, identity in recorded["identity"].items() if source.identity.get(role) != identity]
    if changed:
        raise UsageError(f"run {run.name}: the files of its {', '.join(changed)} changed since the run; run it again "
                         f"to report it")
    return source
