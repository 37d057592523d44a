"""Two computations of the same explanations agree on everything but how long they took."""
from __future__ import annotations

import json
from pathlib import Path


def untimed(run_dir: Path) -> list[dict]:
    """A run's explanation rows without `cost_seconds`, the one column that is a measurement of time."""
    rows = [json.loads(line) for line in (run_dir / "explanations.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "cost_seconds"} for row in rows]
