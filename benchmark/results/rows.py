"""Writing results: an append-only row store that survives kill -9 (whole files: `benchmark.cache.write_atomic`)."""
from __future__ import annotations

import json
import os
from pathlib import Path


class RowStore:
    """JSON rows appended and fsynced as each batch finishes (explanations, scores). A line torn by a
    kill mid-write is ignored on reading, so its work is simply done again."""

    def __init__(self, fpath: Path):
        self.fpath = fpath

    def load(self) -> list[dict]:
        rows: list[dict] = []
        if not self.fpath.exists():
            return rows
        for line in self.fpath.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def append(self, rows: list[dict]) -> None:
        self.fpath.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(r) + "\n" for r in rows)
        with open(self.fpath, "a") as fh:
            if fh.tell() and not self._ends_with_newline():
                fh.write("\n")  # close a torn line so the new rows parse
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    def _ends_with_newline(self) -> bool:
        with open(self.fpath, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"
