"""The on-disk cache: where built things live, keyed by a hash of what produced them, written so
that a crash never leaves a half-written entry that a later run would read.

Root: `$FEATUREBENCH_CACHE`, else `~/.cache/featurebench`.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

META = "meta.json"


def write_atomic(fpath: Path, data: str | bytes | Callable[[BinaryIO], None]) -> None:
    """Writes `data` (text, bytes, or a function writing to the open file) to `fpath` so that readers
    see the old file or the new one, never a half-written one: into a temporary file of this process
    and thread, then renamed into place (the last of concurrent writers wins). The one way the
    project writes a whole file atomically."""
    fpath.parent.mkdir(parents=True, exist_ok=True)
    tmp = fpath.with_name(f".{fpath.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "wb") as f:
        if callable(data):
            data(f)
        else:
            f.write(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, fpath)


def cache_root() -> Path:
    return Path(os.environ.get("FEATUREBENCH_CACHE", "~/.cache/featurebench")).expanduser()


def config_hash(config) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cached_stage(parent: Path, name: str, config: dict, build: Callable[[Path], dict]) -> tuple[Path, dict]:
    """Returns (directory, meta) of stage `name` for `config`, building it first if needed.

    `build(tmp_dpath)` writes into a fresh temporary directory and returns metrics; the directory is
    renamed into place only after `meta.json` (config, metrics, seconds) is written inside it, so a
    stage either exists whole or not at all. An interrupted build leaves only a temporary directory,
    which a later attempt on the same host removes once its process is gone. Processes building the
    same stage at once (Ray workers) each build their own; the first to finish wins."""
    dpath = parent / f"{name}-{config_hash(config)}"
    if (dpath / META).exists():
        return dpath, json.loads((dpath / META).read_text())
    parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    tmp = parent / f".{dpath.name}.tmp-{host}-{os.getpid()}"
    for stale in parent.glob(f".{dpath.name}.tmp-{host}-*"):
        if not _alive(int(stale.name.rsplit("-", 1)[1])):  # another live process (a Ray worker) may be building it too
            shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    start = time.perf_counter()
    metrics = build(tmp)
    meta = {"stage": name, "config": config, "seconds": round(time.perf_counter() - start, 2), **metrics}
    (tmp / META).write_text(json.dumps(meta, indent=1, default=str))
    try:
        os.replace(tmp, dpath)
    except OSError:  # someone else finished the same stage first; theirs is equally valid
        if not (dpath / META).exists():
            raise
        shutil.rmtree(tmp)
    return dpath, meta


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
