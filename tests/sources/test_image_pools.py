"""Image pools from `datasets`: a saved dataset and an image folder, labels, and clear errors."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from benchmark.registry import UsageError
from benchmark.sources.image_pools import (
    ProcessorResize,
    load_image_pool,
    loader_workers,
    processor_resize,
    square,
    to_square,
)


def planted(colour: tuple[int, int, int], w: int = 12, h: int = 8) -> Image.Image:
    """A w x h image: a grey border of (w - h) / 2 columns each side around a centred colour square."""
    pixels = np.full((h, w, 3), 128, dtype=np.uint8)
    pad = (w - h) // 2
    pixels[:, pad:pad + h] = colour
    return Image.fromarray(pixels)


def test_square_keeps_the_centre():
    out = square(planted((255, 0, 0)), 4)
    assert out.shape == (4, 4, 3) and (out == [255, 0, 0]).all()  # the grey border was cropped away


def test_saved_dataset_with_a_label_column(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("FEATUREBENCH_CACHE", str(tmp_path / "cache"))
    images = [planted((255, 0, 0)), planted((0, 0, 255)), planted((0, 255, 0))]
    features = datasets.Features({"img": datasets.Image(), "kind": datasets.ClassLabel(names=["red", "blue", "green"])})
    datasets.Dataset.from_dict({"img": images, "kind": [0, 1, 2]}, features=features).save_to_disk(tmp_path / "ds")
    pool = load_image_pool(str(tmp_path / "ds"), size=4, image_column="img", label_column="kind")
    assert len(pool) == 3 and pool.labels == ["red", "blue", "green"]
    assert pool.images([0, 1, 2]).shape == (3, 4, 4, 3) and (pool.images([1])[0] == [0, 0, 255]).all()
    assert (pool.images([-1, 2])[0] == 0).all() and (pool.images([-1, 2])[1] == [0, 255, 0]).all()  # -1: black
    assert [start for start, _ in pool.batches(2)] == [0, 2]
    part = pool.part(np.array([2, 0]))  # a view of rows, nothing copied
    assert part.labels == ["green", "red"] and np.array_equal(part.images([0, 1]), pool.images([2, 0]))
    assert not (tmp_path / "cache").exists()  # pixels are read from the pool's own files, never copied
    assert load_image_pool(str(tmp_path / "ds"), size=4, image_column="img", limit=2).labels is None
    assert len(load_image_pool(str(tmp_path / "ds"), size=4, image_column="img", limit=2)) == 2


def test_image_folder_labels_from_sub_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATUREBENCH_CACHE", str(tmp_path / "cache"))
    for name, colour in (("cats", (10, 20, 30)), ("dogs", (200, 100, 0))):
        (tmp_path / "folder" / name).mkdir(parents=True)
        for i in range(2):
            planted(colour).save(tmp_path / "folder" / name / f"{i}.png")
    pool = load_image_pool(str(tmp_path / "folder"), size=6, label_column="label")
    assert pool.images(range(4)).shape == (4, 6, 6, 3)
    assert sorted(pool.labels) == ["cats", "cats", "dogs", "dogs"]
    for image, label in zip(pool.images(range(4)), pool.labels):
        assert (image == ((10, 20, 30) if label == "cats" else (200, 100, 0))).all()


def test_decoding_workers_give_the_same_batches_in_order(tmp_path, monkeypatch):
    """The top-k pass on an accelerator decodes in DataLoader workers: the same (first index, images)
    batches, in the same order, as decoding in the process (a partial last batch and a start included)."""
    monkeypatch.setenv("FEATUREBENCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "folder").mkdir()
    rng = np.random.default_rng(0)
    for i in range(7):
        Image.fromarray(rng.integers(0, 255, (9, 13, 3), dtype=np.uint8)).save(tmp_path / "folder" / f"{i}.jpg")
    pool = load_image_pool(str(tmp_path / "folder"), size=6)
    inline = list(pool.batches(3, start=1))
    loaded = list(pool.batches(3, start=1, workers=2))
    assert [first for first, _ in loaded] == [first for first, _ in inline] == [1, 4]
    for (_, a), (_, b) in zip(inline, loaded):
        assert isinstance(b, np.ndarray) and b.dtype == np.uint8 and np.array_equal(a, b)
    assert sum(len(images) for _, images in loaded) == 6


def test_decoding_workers_only_beside_an_accelerator():
    import torch

    assert loader_workers(torch.device("cpu")) == 0
    assert 1 <= loader_workers(torch.device("cuda")) <= 8


@pytest.mark.parametrize("source, column, message", [
    ("./no/such/dir", None, "not a directory"),
    ("folder", "species", "no label column 'species'"),
])
def test_bad_pools_are_one_line_usage_errors(tmp_path, monkeypatch, source, column, message):
    monkeypatch.setenv("FEATUREBENCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "folder" / "a").mkdir(parents=True)
    planted((1, 2, 3)).save(tmp_path / "folder" / "a" / "0.png")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=message) as e:
        load_image_pool(source, size=4, label_column=column)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("backend", ["torchvision", "pil"])
def test_whole_resize_is_the_processors_own_on_a_non_square_image(tmp_path, backend):
    """A pool image resized whole, then handed to the processor, gives the pixel values the processor
    gives for the original file (the seed paper's path): its filter (Gemma 3: bilinear) and its
    backend's kernels, which PIL's bicubic, and even PIL's bilinear for torchvision, miss."""
    import torch
    from transformers import Gemma3ImageProcessor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    processor = (Gemma3ImageProcessor if backend == "torchvision" else Gemma3ImageProcessorPil)(
        size={"height": 28, "width": 28})
    processor.save_pretrained(tmp_path)  # as a checkpoint carries it
    if backend == "torchvision":
        assert type(processor_resize(str(tmp_path)).image_processor) is Gemma3ImageProcessor  # what loading picks
    original = Image.fromarray(np.random.default_rng(0).integers(0, 256, (45, 70, 3), dtype=np.uint8))
    resized = to_square(original, 28, "whole", ProcessorResize(processor))
    expected = processor([original], return_tensors="pt")["pixel_values"]
    assert torch.equal(processor([Image.fromarray(resized)], return_tensors="pt")["pixel_values"], expected)
    bicubic = processor([Image.fromarray(to_square(original, 28, "whole"))], return_tensors="pt")["pixel_values"]
    assert not torch.equal(bicubic, expected)
    assert ProcessorResize(processor).name == f"{type(processor).__name__}:bilinear"
