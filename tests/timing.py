"""Two computations of the same explanations agree on everything but how long they took."""
from __future__ import annotations

import json
from pathlib import Path


def untimed(run_dir: Path) -> list[dict]:
    """A run's explanation rows without `cost_seconds`, the one column that is a measurement of time."""
    rows = [json.loads(line) for line in (run_dir / "explanations.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "cost_seconds"} for row in rows]


class TickingClock:
    """Stands in for the `time` module of the code under test (monkeypatch `<module>.time`): each
    `perf_counter()` reading is `step` seconds after the one before, so whatever is timed between two
    readings took exactly `step` seconds, and every rate or cost computed from the clock has a known
    answer. Only that module's clock is replaced; the code still runs in full."""

    def __init__(self, step: float = 0.25):
        self.step, self.now = step, 0.0

    def perf_counter(self) -> float:
        self.now += self.step
        return self.now
