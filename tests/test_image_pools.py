"""Image pools from `datasets`: a saved dataset and an image folder, labels, and clear errors."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from benchmark.image_pools import ImagePool, load_image_pool, read_part, square, write_parts
from benchmark.registry import UsageError


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
    assert pool.images_NHWC.shape == (3, 4, 4, 3) and pool.labels == ["red", "blue", "green"]
    assert (pool.images_NHWC[1] == [0, 0, 255]).all()
    again = load_image_pool(str(tmp_path / "ds"), size=4, image_column="img", label_column="kind")  # from the cache
    assert np.array_equal(again.images_NHWC, pool.images_NHWC)
    assert isinstance(again.images_NHWC, np.memmap) and not again.images_NHWC.flags.writeable  # read, not loaded
    assert load_image_pool(str(tmp_path / "ds"), size=4, image_column="img", limit=2).labels is None


def test_image_folder_labels_from_sub_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATUREBENCH_CACHE", str(tmp_path / "cache"))
    for name, colour in (("cats", (10, 20, 30)), ("dogs", (200, 100, 0))):
        (tmp_path / "folder" / name).mkdir(parents=True)
        for i in range(2):
            planted(colour).save(tmp_path / "folder" / name / f"{i}.png")
    pool = load_image_pool(str(tmp_path / "folder"), size=6, label_column="label")
    assert pool.images_NHWC.shape == (4, 6, 6, 3)
    assert sorted(pool.labels) == ["cats", "cats", "dogs", "dogs"]
    for image, label in zip(pool.images_NHWC, pool.labels):
        assert (image == ((10, 20, 30) if label == "cats" else (200, 100, 0))).all()


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


def test_parts_are_written_a_chunk_at_a_time_and_read_memory_mapped(tmp_path):
    images = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    pool = ImagePool(images, [f"label {i}" for i in range(10)])
    write_parts(pool, {"a": np.array([1, 3, 5, 7, 9]), "b": np.array([0, 2])}, tmp_path, chunk=2)
    a, b = read_part(tmp_path, "a"), read_part(tmp_path, "b")
    assert isinstance(a.images_NHWC, np.memmap)
    assert a.images_NHWC[:, 0, 0, 0].tolist() == [1, 3, 5, 7, 9] and b.images_NHWC[:, 1, 1, 2].tolist() == [0, 2]
    assert a.labels == ["label 1", "label 3", "label 5", "label 7", "label 9"] and b.labels == ["label 0", "label 2"]
    write_parts(ImagePool(images, None), {"c": np.array([4])}, tmp_path)
    assert read_part(tmp_path, "c").labels is None
