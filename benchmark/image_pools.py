"""Image pools for real models, from Hugging Face `datasets`: a dataset written by `save_to_disk`, a
folder of images (the `imagefolder` builder: labels from sub-folder names), or a hub name.

A pool becomes one uint8 array at the explained model's input size (centre crop to a square, then
bicubic resize), converted once and cached under the source's fingerprint: the activation pass, the
masked top-k images and the scorer all read the same pixels, and a second run decodes nothing. The
array is written and read memory-mapped (50,000 images at 336 px are 17 GB), so only the images in
use are in memory.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from benchmark.cache import cache_root, cached_stage
from benchmark.registry import UsageError


@dataclass
class ImagePool:
    images_NHWC: np.ndarray
    labels: list[str] | None
    """One label per image when the source has a label column (e.g. a class name), else None."""


def open_dataset(source: str, split: str = "train", quiet: bool = False):
    """The `datasets.Dataset` behind `source`: a `save_to_disk` directory, an image folder, or a hub
    name. `quiet`: without `datasets`' own progress bars (a check whose only output is one line)."""
    import datasets

    if quiet and datasets.is_progress_bar_enabled():
        datasets.disable_progress_bars()
        try:
            return open_dataset(source, split)
        finally:
            datasets.enable_progress_bars()

    path = Path(source).expanduser()
    try:
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            dataset = datasets.load_from_disk(str(path))
            if isinstance(dataset, datasets.DatasetDict):
                if split not in dataset:
                    raise UsageError(f"pool {source}: no split {split!r}; it has {', '.join(dataset)}")
                dataset = dataset[split]
            return dataset
        if path.is_dir():
            return datasets.load_dataset("imagefolder", data_dir=str(path), split=split)
        if path.exists() or source.startswith((".", "/", "~")):
            raise UsageError(f"pool {source}: not a directory of images or a saved dataset")
        return datasets.load_dataset(source, split=split)
    except UsageError:
        raise
    except Exception as e:  # datasets' own errors: offline hub, unknown split, unreadable files
        raise UsageError(f"pool {source}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def square(image: Image.Image, size: int) -> np.ndarray:
    """Centre crop to a square, then resize to (size, size): (size, size, 3) uint8."""
    image = image.convert("RGB")
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side))
    return np.asarray(image.resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)


def load_image_pool(source: str, size: int, split: str = "train", image_column: str = "image",
                    label_column: str | None = None, limit: int | None = None) -> ImagePool:
    dataset = open_dataset(source, split)
    for role, column in (("image", image_column), ("label", label_column)):
        if column is not None and column not in dataset.column_names:
            raise UsageError(f"pool {source}: no {role} column {column!r}; columns: {', '.join(dataset.column_names)}")
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    if len(dataset) == 0:
        raise UsageError(f"pool {source}: split {split!r} has no images")
    key = {"fingerprint": dataset._fingerprint, "image_column": image_column, "label_column": label_column,
           "size": size, "rows": len(dataset)}

    def build(dpath: Path) -> dict:
        images = np.lib.format.open_memmap(dpath / "images.npy", mode="w+", dtype=np.uint8,
                                           shape=(len(dataset), size, size, 3))
        rows = dataset.select_columns([image_column])
        for i, row in enumerate(tqdm(rows, desc=f"pool {Path(source).name}", unit="image", leave=False)):
            value = row[image_column]  # decoded by an Image column, else a file path
            images[i] = square(value if isinstance(value, Image.Image) else Image.open(value), size)
        images.flush()
        if label_column is not None:
            feature = dataset.features[label_column]
            values = dataset[label_column]
            names = [feature.int2str(v) if hasattr(feature, "int2str") else str(v) for v in values]
            (dpath / "labels.json").write_text(json.dumps(names))
        return {"source": source, "split": split}

    dpath, _ = cached_stage(cache_root() / "pools", "pool", key, build)
    labels = json.loads((dpath / "labels.json").read_text()) if (dpath / "labels.json").exists() else None
    return ImagePool(np.load(dpath / "images.npy", mmap_mode="r"), labels)


def write_parts(pool: ImagePool, parts: dict[str, np.ndarray], dpath: Path, chunk: int = 1024) -> None:
    """Each part (name -> image indices) as its own memory-mapped `<name>.npy` (and labels), copied
    a chunk at a time so the pool never needs to fit in memory."""
    for name, index in parts.items():
        out = np.lib.format.open_memmap(dpath / f"{name}.npy", mode="w+", dtype=np.uint8,
                                        shape=(len(index), *pool.images_NHWC.shape[1:]))
        for start in range(0, len(index), chunk):
            out[start:start + chunk] = pool.images_NHWC[index[start:start + chunk]]
        out.flush()
        if pool.labels is not None:
            (dpath / f"{name}.labels.json").write_text(json.dumps([pool.labels[i] for i in index]))


def read_part(dpath: Path, name: str) -> ImagePool:
    labels = dpath / f"{name}.labels.json"
    return ImagePool(np.load(dpath / f"{name}.npy", mmap_mode="r"),
                     json.loads(labels.read_text()) if labels.exists() else None)
