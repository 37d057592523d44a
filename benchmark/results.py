"""Writing results: an append-only explanation store that survives kill -9, and atomic files."""
from __future__ import annotations

import json
import os
from pathlib import Path


class ExplanationStore:
    """One JSON line per explained feature, appended and fsynced as each batch finishes. A line torn
    by a kill mid-write is ignored on reading, so that feature is simply explained again."""

    def __init__(self, fpath: Path):
        self.fpath = fpath

    def load(self) -> dict[int, str]:
        done: dict[int, str] = {}
        if not self.fpath.exists():
            return done
        for line in self.fpath.read_text().splitlines():
            try:
                row = json.loads(line)
                done[int(row["feature"])] = row["explanation"]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
        return done

    def append(self, explanations: dict[int, str]) -> None:
        self.fpath.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps({"feature": f, "explanation": e}) + "\n" for f, e in explanations.items())
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


def write_atomic(fpath: Path, text: str) -> None:
    """Readers see the old file or the new one, never a half-written one."""
    fpath.parent.mkdir(parents=True, exist_ok=True)
    tmp = fpath.with_name(f".{fpath.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, fpath)
