"""Image pools for real models, from Hugging Face `datasets`: a dataset written by `save_to_disk`, a
folder of images (the `imagefolder` builder: labels from sub-folder names), or a hub name.

A pool is read from its own files: an image is decoded and brought to the explained model's square
input (`resize`: centre crop to a square then bicubic resize, or the whole image resized by the subject
VLM's own image processor, its aspect ratio lost, as the seed paper does) when it is asked for, in the activation pass
and for the few images a method shows or a metric scores. No copy of the pool at the model's size is
written, so the cache does not grow with the pool's pixels (50,000 images at 896 px would be 120 GB).
A split of one pool into `topk` and `scoring` parts is a list of row numbers, not a copy.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmark.registry import UsageError


@dataclass
class ImagePool:
    """Images `rows` of a dataset's `column`, decoded at `size` x `size` on demand."""

    dataset: object
    """The `datasets.Dataset` the images are read from."""
    column: str
    rows: np.ndarray
    """The dataset row of each pool image, in pool order."""
    size: int
    labels: list[str] | None
    """One label per image when the source has a label column (e.g. a class name), else None."""
    resize: str = "crop"
    """crop or whole (`to_square`)."""
    whole: Callable[[Image.Image, int], np.ndarray] | None = None
    """What resizes a whole image (`resize = "whole"`): the subject processor's own (`ProcessorResize`)."""

    def __len__(self) -> int:
        return len(self.rows)

    def images(self, index_I) -> np.ndarray:
        """(I, size, size, 3) uint8: pool images `index_I`, decoded and resized now; index -1 is a
        black image (a slot with no image)."""
        index_I = np.asarray(index_I, dtype=np.int64).reshape(-1)
        out = np.zeros((len(index_I), self.size, self.size, 3), np.uint8)
        real = np.flatnonzero(index_I >= 0)
        if len(real):
            values = self.dataset[self.rows[index_I[real]].tolist()][self.column]
            for i, value in zip(real, values):  # decoded by an Image column, else a file path
                out[i] = to_square(value if isinstance(value, Image.Image) else Image.open(value), self.size, self.resize,
                                   self.whole)
        return out

    def batches(self, batch: int, start: int = 0, stop: int | None = None,
                workers: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """(first index, images) for consecutive batches of pool images [start, stop), in order.
        `workers` > 0: decoded by that many processes of a `torch.utils.data.DataLoader`, a few
        batches ahead, so the model never waits on JPEG decoding (an accelerator's case; on a CPU
        the model needs the cores itself)."""
        stop = len(self) if stop is None else stop
        if workers == 0:
            for first in range(start, stop, batch):
                yield first, self.images(np.arange(first, min(first + batch, stop)))
            return
        from torch.utils.data import DataLoader

        yield from DataLoader(_PoolBatches(self, batch, start, stop), batch_size=None, num_workers=workers,
                              collate_fn=_as_is, prefetch_factor=4)

    def part(self, index: np.ndarray) -> "ImagePool":
        """The pool images `index`, in that order, as a pool of their own (a view: nothing is copied)."""
        labels = None if self.labels is None else [self.labels[i] for i in index]
        return ImagePool(self.dataset, self.column, self.rows[index], self.size, labels, self.resize, self.whole)


@dataclass
class _PoolBatches:
    """A pool's batches as a map-style dataset: item i is (first index, images) of batch i."""

    pool: ImagePool
    batch: int
    start: int
    stop: int

    def __len__(self) -> int:
        return -(-(self.stop - self.start) // self.batch)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray]:
        first = self.start + i * self.batch
        return first, self.pool.images(np.arange(first, min(first + self.batch, self.stop)))


def _as_is(item: tuple[int, np.ndarray]) -> tuple[int, np.ndarray]:
    """The DataLoader's collate: a batch stays (first index, uint8 array), not tensors."""
    return item


def loader_workers(device: torch.device) -> int:
    """Decoding processes for a pass whose model runs on `device`: none on the CPU (the model needs
    the cores), else all cores but one, at most 8."""
    return 0 if device.type == "cpu" else max(1, min(8, (os.cpu_count() or 2) - 1))


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


def to_square(image: Image.Image, size: int, resize: str = "crop",
              whole: Callable[[Image.Image, int], np.ndarray] | None = None) -> np.ndarray:
    """(size, size, 3) uint8: the image centre-cropped to a square then resized (crop), or resized
    whole (whole: the seed paper's, which stretches a non-square image) by `whole` (the subject
    processor's own resize, `ProcessorResize`; None: PIL's bicubic). An image already at
    (size, size) is kept as it is: every processor leaves it so."""
    if resize == "crop":
        return square(image, size)
    image = image.convert("RGB")
    if image.size == (size, size):
        return np.asarray(image, dtype=np.uint8)
    if whole is not None:
        return whole(image, size)
    return np.asarray(image.resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)


class ProcessorResize:
    """The whole image resized to a square exactly as the subject VLM's own image processor resizes
    it: its filter (`resample`: BILINEAR for Gemma 3) and its backend's arithmetic (torchvision's
    antialiased kernels differ from PIL's by a grey level). The seed paper hands the original file to
    the processor; a pool image resized here, then handed to the same processor (which keeps a
    square image at its size as it is), gives the same pixel values, so top images rank alike."""

    def __init__(self, image_processor):
        self.image_processor = image_processor

    @property
    def name(self) -> str:
        """What the identity of a pool resized this way records: the processor's class and filter."""
        resample = getattr(self.image_processor, "resample", None)
        filter_name = getattr(resample, "name", None) or _FILTERS.get(resample, str(resample))
        return f"{type(self.image_processor).__name__}:{filter_name.lower()}"

    def __call__(self, image: Image.Image, size: int) -> np.ndarray:
        """(size, size, 3) uint8: `image` through the processor's own resize, nothing else."""
        from transformers.image_utils import SizeDict

        processor = self.image_processor
        channels_first = processor.process_image(image.convert("RGB"), do_convert_rgb=True)
        resized = processor.resize(channels_first, SizeDict(height=size, width=size), resample=processor.resample)
        resized = resized.numpy() if hasattr(resized, "numpy") else np.asarray(resized)
        return np.ascontiguousarray(resized.transpose(1, 2, 0), dtype=np.uint8)


_FILTERS = {int(f): f.name for f in Image.Resampling}
"""PIL filter codes by name, for a processor that stores its `resample` as a plain int."""


def processor_resize(path: str) -> ProcessorResize:
    """The whole-image resize of the checkpoint at `path`: its image processor as `from_pretrained`
    loads it (the backend the VLM's own processor gets); reads no weights."""
    from transformers import AutoImageProcessor

    try:
        return ProcessorResize(AutoImageProcessor.from_pretrained(path))
    except (OSError, ValueError) as e:
        raise UsageError(f"[pool] resize whole: no image processor in {path}: {str(e).splitlines()[0]}") from None


def load_image_pool(source: str, size: int, split: str = "train", image_column: str = "image",
                    label_column: str | None = None, limit: int | None = None, resize: str = "crop",
                    whole: Callable[[Image.Image, int], np.ndarray] | None = None) -> ImagePool:
    """The pool `source` (its first `limit` images) read at `size` px, brought to a square by
    `resize` (`to_square`, with `whole` resizing a whole image); labels are read now, pixels when
    asked for."""
    dataset = open_dataset(source, split)
    for role, column in (("image", image_column), ("label", label_column)):
        if column is not None and column not in dataset.column_names:
            raise UsageError(f"pool {source}: no {role} column {column!r}; columns: {', '.join(dataset.column_names)}")
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise UsageError(f"pool {source}: split {split!r} has no images")
    labels = None
    if label_column is not None:
        feature = dataset.features[label_column]
        values = dataset.select_columns([label_column])[:n][label_column]
        labels = [feature.int2str(v) if hasattr(feature, "int2str") else str(v) for v in values]
    return ImagePool(dataset.select_columns([image_column]), image_column, np.arange(n), size, labels, resize,
                     whole)
