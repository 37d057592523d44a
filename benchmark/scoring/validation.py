"""Showing that each metric measures what it claims, on a source that knows the truth (the world).

Two numbers per metric, over the aligned features:
- `pairwise_auroc`: how often the metric scores the right phrase (the ground truth's, e.g.
  'red at top left') above a wrong one of the same kind ('blue at top left': `GroundTruth.rivals`),
  over every (feature, wrong phrase) pair, ties counting one half;
- `spearman_oracle`: Spearman correlation of the metric's headline column with `oracle` over every
  method's explanations of those features (all built-in methods, one LM size).

`with_board_checks` adds the two sanity numbers a leaderboard's rows hold for the validated (source,
LM) (`benchmark.results.board_readme.sanity`): how well the metric tells the trained SAE's features from a
random SAE's (`separation`, per top-k, steering and hybrid) and the best real method's margin over the
best constant label (`constant`); None, with a note, where the board lacks those rows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.config.method import MethodConfig
from benchmark.config.resolve import resolve
from benchmark.explaining.context import Context
from benchmark.registry import METHODS, UsageError
from benchmark.scoring.context import ScoringContext, score
from benchmark.scoring.metric import METRICS, Metric
from benchmark.sources.capabilities import GroundTruth
from benchmark.sources.source import Source
from metrics.functional import spearman


def concept_pairs(truth: GroundTruth) -> pd.DataFrame:
    """One row per (aligned feature, rival phrase): feature, category, right and wrong phrase."""
    table = truth.table()
    rows = []
    for r in table[table.aligned.astype(bool)].itertuples():
        right = truth.phrase(int(r.feature))
        rows += [{"feature": int(r.feature), "category": r.category, "right": right, "wrong": wrong}
                 for wrong in truth.rivals(int(r.feature))]
    return pd.DataFrame(rows)


def pairwise_auroc(right: np.ndarray, wrong: np.ndarray) -> float:
    """P(right > wrong) over paired scores, ties one half; pairs with a NaN are dropped."""
    keep = ~(np.isnan(right) | np.isnan(wrong))
    if not keep.any():
        return float("nan")
    r, w = right[keep], wrong[keep]
    return float(((r > w) + 0.5 * (r == w)).mean())


def method_explanations(source: Source, features: list[int]) -> pd.DataFrame:
    """Every built-in method's explanation of `features` (cached like any run's), but the constant
    label's: a run chooses it per metric, so outside one it is no method of its own."""
    import methods  # noqa: F401
    from benchmark.explaining.explain import explain

    ctx = Context(source, resolve(MethodConfig(), source.protocol))
    rows = []
    for name in (n for n in METHODS.names() if n != "constant-label"):
        for f, text in explain(ctx, name, METHODS.get(name), features).items():
            rows.append({"method": name, "feature": f, "explanation": text})
    return pd.DataFrame(rows)


def validate(source: Source, metrics: list[Metric], sctx: ScoringContext) -> dict[str, dict[str, float]]:
    if not source.has("groundtruth"):
        raise UsageError(f"validate-metrics needs ground truth; source {source.name} has none")
    pairs = concept_pairs(source.capabilities.groundtruth)
    aligned = sorted(pairs.feature.unique().tolist())
    explained = method_explanations(source, aligned)
    oracle = _headline(sctx, METRICS.get("oracle"), explained)
    report = {}
    for m in metrics:
        right = _headline(sctx, m, pairs.assign(explanation=pairs.right))
        wrong = _headline(sctx, m, pairs.assign(explanation=pairs.wrong))
        values = _headline(sctx, m, explained)
        keep = ~(np.isnan(values) | np.isnan(oracle))
        report[m.name] = {"pairwise_auroc": _round(pairwise_auroc(right, wrong)),
                          "spearman_oracle": _round(spearman(values[keep], oracle[keep]))}
    return report


def with_board_checks(report: dict[str, dict], board: Path | None, source: str, lm: str,
                      metrics: list[Metric], protocol: str | None = None) -> dict[str, dict]:
    """`report` (`validate`'s) with, per metric, `separation`, `random_sae`, `constant` and `notes`
    (`benchmark.results.board_readme.sanity` on `board`'s rows of `source` on `lm`) and the board read (`board`).
    No board, or one without rows: every new number None, and the notes say why. Rows of another
    protocol than `protocol` are read, with a note saying so."""
    from benchmark.results.board_readme import sanity
    from benchmark.results.board_rows import load_rows

    rows, why = None, None
    if board is None:
        why = "no leaderboard directory given (--board DIR): separation and constant-label margin not measured"
    elif not any((Path(board) / "rows").glob("*.csv.gz")):
        why = f"{Path(board) / 'rows'}: no score rows: separation and constant-label margin not measured"
    else:
        rows = load_rows(Path(board))
    checks = sanity(rows, source, lm, metrics) if rows is not None else {}
    protocols = sorted(set(rows[rows.source == source].protocol.astype(str))) if rows is not None else []
    out = {}
    for m in metrics:
        entry = checks.get(m.name) or {"random_sae": None, "separation": None, "constant": None,
                                       "notes": [why or f"{board}: no {m.headline} column in the rows"]}
        notes = list(entry["notes"])
        if protocol is not None and protocols and protocols != [protocol]:
            notes.append(f"the board's rows were scored under protocol {', '.join(protocols)}, not {protocol}")
        out[m.name] = {**report.get(m.name, {}), "board": None if board is None else str(board),
                       "random_sae": entry["random_sae"], "separation": entry["separation"],
                       "constant": entry["constant"], "notes": notes}
    return out


def _headline(sctx: ScoringContext, m: Metric, rows: pd.DataFrame) -> np.ndarray:
    scores = score(sctx, m, rows.feature.tolist(), rows.explanation.tolist())
    return scores[m.headline].to_numpy(np.float64)


def _round(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 4)
