"""What the real generator (`benchmark.sources.generators`) and segmenters
(`benchmark.sources.segmenters`) share: opening one from a run config's table, telling a local
checkpoint from a hub id, and caching their outputs as `.npy` files.

    open_component(SEGMENTERS, {"kind": "clipseg", "threshold": 0.5}, "run.toml: [segmenter]",
                   images=lambda: pool_NHWC, patch=14, cache_dir=root / "segmentations")

A component is a class registered by kind, with a class attribute `settings` naming its frozen
settings dataclass and a constructor `cls(settings, **kwargs)`. Nothing here imports torch.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmark.cache import write_atomic
from benchmark.config.models import read_table
from benchmark.identity import fingerprint
from benchmark.registry import Registry, UsageError


def open_component(registry: Registry, table: dict, where: str, **kwargs):
    """The component a table names (`kind` plus its settings' keys), built with `kwargs`; an unknown
    kind or key, a missing key or a value of the wrong type is a one-line UsageError."""
    if not isinstance(table, dict) or "kind" not in table:
        raise UsageError(f"{where}: needs kind = one of {', '.join(registry.names())}")
    settings = dict(table)
    cls = registry.get(str(settings.pop("kind")))
    return cls(read_table(cls.settings, settings, where), **kwargs)


def local_dir(path: str) -> Path | None:
    """`path` as a local directory when it names one (it exists, or is written as a path: ./, /, ~);
    None for a hub id, which is checked when it loads."""
    local = Path(path).expanduser()
    return local if local.exists() or path.startswith((".", "/", "~")) else None


def content(path: str) -> str:
    """A local checkpoint's content fingerprint; a hub id stands for itself."""
    local = local_dir(path)
    return fingerprint(local) if local is not None and local.exists() else path


def require(table: str, key: str, path: str, filename: str, what: str) -> Path | None:
    """The local directory `path` after checking it holds `filename` (a config, so no weights are
    read); None for a hub id. A missing directory or file is a one-line UsageError naming
    `[table] key`."""
    local = local_dir(path)
    if local is None:
        return None
    if not local.is_dir():
        raise UsageError(f"[{table}] {key} {path}: no such directory")
    if not (local / filename).is_file():
        raise UsageError(f"[{table}] {key} {path}: no {what} there ({filename} missing)")
    return local


def cached_array(fpath: Path, build: Callable[[], np.ndarray]) -> np.ndarray:
    """The array saved at `fpath`, built and saved first if it is not there. Written to a temporary
    file and renamed into place, so an interrupted write never leaves a file a later run would read;
    processes building the same entry at once each write their own and the last rename wins."""
    if fpath.is_file():
        return np.load(fpath)
    array = build()
    write_atomic(fpath, lambda f: np.save(f, array))
    return array


def torch_device(device: str | None) -> str:
    """`device`, or cuda when available, else cpu."""
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")
