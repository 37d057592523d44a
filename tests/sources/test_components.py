"""The real generator and segmenters on tiny random-weight checkpoints (`tests/tiny_components.py`):
shapes at the pools' size, determinism, images and masks independent of the batch size, disk caches a
second object serves from without loading a model, one-line errors for checkpoints that are not
there; and the pixel-to-patch rule on hand-made masks."""
from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import numpy as np
import pytest

from benchmark.config.resolve import resolve
from benchmark.registry import UsageError
from benchmark.sources.components import open_component
from benchmark.sources.generators import GENERATORS, DiffusersGenerator, DiffusersSettings
from benchmark.sources.segmenters import (
    SEGMENTERS,
    ClipSegSegmenter,
    ClipSegSettings,
    GroundingSamSegmenter,
    GroundingSamSettings,
    patch_masks,
)

SIDE, PATCH = 32, 8  # pool images of 32 px on a 4 x 4 patch grid


@pytest.fixture(scope="module")
def pool_NHWC() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, SIDE, SIDE, 3), dtype=np.uint8)


def refuse_loading(monkeypatch, *names: str) -> None:
    """Makes `from_pretrained` of each `module:class` fail (patching the components themselves would
    change their code identity, and so their cache keys)."""
    import importlib

    def fail(*args, **kwargs):
        raise AssertionError("loaded a model")
    for name in names:
        module, attr = name.split(":")
        monkeypatch.setattr(getattr(importlib.import_module(module), attr), "from_pretrained", fail)


def test_patch_masks_known_answer():
    masks_IHW = np.zeros((2, 5, 5), bool)  # 2 x 2 patches of 2 px; the fifth row and column are dropped
    masks_IHW[0, 0:2, 0:2] = True          # patch 0: all 4 pixels
    masks_IHW[0, 0:2, 2] = True            # patch 1: 2 of 4, exactly half
    masks_IHW[0, 2, 0] = True              # patch 2: 1 of 4
    masks_IHW[0, 2:4, 2:4] = True          # patch 3: 3 of 4
    masks_IHW[0, 3, 3] = False
    masks_IHW[1, 4, :] = masks_IHW[1, :, 4] = True  # only outside the grid
    assert patch_masks(masks_IHW, 2).tolist() == [[True, True, False, True], [False] * 4]


def generator(path: str, cache_dir: Path, **settings) -> DiffusersGenerator:
    return DiffusersGenerator(DiffusersSettings(path=path, steps=2, **settings), image_size=12, cache_dir=cache_dir)


def test_generator_draws_seeded_images_at_the_pools_size(components, tmp_path):
    images = generator(components["sd"], tmp_path / "a", batch_size=2).draw("a red cat", 3, seed=0)
    assert images.shape == (3, 12, 12, 3) and images.dtype == np.uint8
    fresh = generator(components["sd"], tmp_path / "b", batch_size=3)  # same seed, no cache, another batch size
    assert np.array_equal(fresh.draw("a red cat", 3, seed=0), images)
    assert np.array_equal(fresh.draw("a red cat", 2, seed=0), images[:2])  # image i is seeded by (seed, i)
    other = generator(components["sd"], tmp_path / "a", batch_size=2).draw("a red cat", 3, seed=1)
    assert not np.array_equal(other, images) and not np.array_equal(images[0], images[1])
    assert generator(components["sd"], tmp_path / "a").draw("  ", 3, seed=0) is None


def test_generator_serves_a_second_object_from_disk(components, tmp_path, monkeypatch):
    images = generator(components["sd"], tmp_path, batch_size=2).draw("a blue dog", 2, seed=5)
    refuse_loading(monkeypatch, "diffusers:AutoPipelineForText2Image", "diffusers:DiffusionPipeline")
    again = generator(components["sd"], tmp_path, batch_size=1, device="cpu")  # batch size and device: not identity
    assert np.array_equal(again.draw("a blue dog", 2, seed=5), images)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".npy"]  # no temporary file left behind


def test_generator_check_refuses_what_is_not_a_pipeline(components, tmp_path):
    with pytest.raises(UsageError, match=r"^\[generator\] path .*: no such directory$"):
        generator(str(tmp_path / "missing"), tmp_path).check()
    with pytest.raises(UsageError, match=r"^\[generator\] path .*: no diffusers pipeline there \(model_index.json missing"):
        generator(components["clipseg"], tmp_path).draw("a cat", 1, seed=0)
    generator(components["sd"], tmp_path).check()
    generator("stabilityai/stable-diffusion-3.5-medium", tmp_path).check()  # a hub id: checked when it loads


def grounding_sam(components, pool_NHWC, cache_dir: Path, **settings) -> GroundingSamSegmenter:
    settings = GroundingSamSettings(detector=components["gdino"], sam=components["sam"], **settings)
    return GroundingSamSegmenter(settings, lambda index: pool_NHWC[index], PATCH, cache_dir)


def test_grounding_sam_masks_boxes_and_caches(components, pool_NHWC, tmp_path, monkeypatch):
    everything = dict(box_threshold=0.0, text_threshold=0.0)  # random weights: every query boxes something
    segmenter = grounding_sam(components, pool_NHWC, tmp_path / "a", batch_size=2, **everything)
    pixels_IHW = segmenter.pixel_masks("a red cat", pool_NHWC[:2])
    assert pixels_IHW.shape == (2, SIDE, SIDE) and pixels_IHW.dtype == bool and pixels_IHW.any()
    masks = segmenter.segment("a red cat", np.array([0, 2, 4]))
    assert masks.shape == (3, (SIDE // PATCH) ** 2) and masks.dtype == bool
    assert np.array_equal(masks[0], patch_masks(pixels_IHW[:1], PATCH)[0])
    one_by_one = grounding_sam(components, pool_NHWC, tmp_path / "b", batch_size=1, **everything)
    assert np.array_equal(one_by_one.segment("a red cat", np.array([0, 2, 4])), masks)
    none = grounding_sam(components, pool_NHWC, tmp_path / "c", box_threshold=1.0)  # no box: nothing masked
    assert not none.segment("a red cat", np.array([1, 3])).any()

    refuse_loading(monkeypatch, *(f"transformers:{name}" for name in ("GroundingDinoForObjectDetection", "SamModel")))
    again = grounding_sam(components, pool_NHWC, tmp_path / "a", batch_size=4, **everything)
    assert np.array_equal(again.segment("a red cat", np.array([0, 2, 4])), masks)
    assert again.segment(" ", np.array([0, 1])).tolist() == [[False] * 16] * 2


def test_grounding_sam_reads_sam2_and_the_first_mask_is_inside_the_union(components, pool_NHWC, tmp_path):
    """LangSAM's SAM 2.1, through transformers' Sam2Model: masks of the same boxes, and the first box's
    mask never outside the union of all of them (also on the top-k pool the images callable names)."""
    everything = dict(box_threshold=0.0, text_threshold=0.0)
    segmenter = grounding_sam({**components, "sam": components["sam2"]}, pool_NHWC, tmp_path, **everything)
    union_IHW = segmenter.pixel_masks("a red cat", pool_NHWC[:3])
    first_IHW = segmenter.pixel_masks("a red cat", pool_NHWC[:3], mask="first")
    assert union_IHW.shape == (3, SIDE, SIDE) and union_IHW.any() and not (first_IHW & ~union_IHW).any()
    assert segmenter.segment("a red cat", np.array([0, 1]), mask="first").shape == (2, (SIDE // PATCH) ** 2)
    topk_NHWC = 255 - pool_NHWC
    other = GroundingSamSegmenter(segmenter.config, lambda index, pool="scoring": (topk_NHWC if pool == "topk"
                                                                                 else pool_NHWC)[index], PATCH, tmp_path)
    assert np.array_equal(other.segment("a red cat", np.array([0]), pool="topk"),
                          patch_masks(segmenter.pixel_masks("a red cat", topk_NHWC[:1]), PATCH))


def clipseg(components, pool_NHWC, cache_dir: Path, **settings) -> ClipSegSegmenter:
    return ClipSegSegmenter(ClipSegSettings(path=components["clipseg"], **settings), lambda index: pool_NHWC[index], PATCH,
                            cache_dir)


def test_clipseg_masks_are_deterministic_and_cached(components, pool_NHWC, tmp_path, monkeypatch):
    masks = clipseg(components, pool_NHWC, tmp_path / "a", batch_size=2, threshold=0.5).segment("a red cat", range(5))
    assert masks.shape == (5, 16) and masks.dtype == bool
    fresh = clipseg(components, pool_NHWC, tmp_path / "b", batch_size=5, threshold=0.5)
    assert np.array_equal(fresh.segment("a red cat", np.arange(5)), masks)
    assert not clipseg(components, pool_NHWC, tmp_path / "c", threshold=1.0).segment("a red cat", np.arange(5)).any()

    asked = []
    refuse_loading(monkeypatch, "transformers:CLIPSegForImageSegmentation")
    again = ClipSegSegmenter(ClipSegSettings(path=components["clipseg"], threshold=0.5),
                             lambda index: asked.append(list(index)) or pool_NHWC[index], PATCH, tmp_path / "a")
    assert np.array_equal(again.segment("a red cat", np.arange(5)), masks)
    assert np.array_equal(again.segment("a red cat", np.arange(5)), masks)
    assert asked == [list(range(5))] * 2  # only the images segmented are decoded; the masks come from the cache


def test_segmenter_check_names_the_checkpoint(components, pool_NHWC, tmp_path):
    with pytest.raises(UsageError, match=r"^\[segmenter\] detector .*missing: no such directory$"):
        grounding_sam({**components, "gdino": str(tmp_path / "missing")}, pool_NHWC, tmp_path).check()
    with pytest.raises(UsageError, match=r"^\[segmenter\] sam .*: a clipseg checkpoint; sam needs a sam or sam2 one$"):
        grounding_sam({**components, "sam": components["clipseg"]}, pool_NHWC, tmp_path).segment("a cat", [0])
    with pytest.raises(UsageError, match=r"^\[segmenter\] path .*: no transformers checkpoint there \(config.json miss"):
        clipseg({**components, "clipseg": components["sd"]}, pool_NHWC, tmp_path).check()
    grounding_sam(components, pool_NHWC, tmp_path).check()


def test_open_component_reads_a_table(tmp_path):
    kwargs = dict(images=lambda index: np.zeros((len(index), 8, 8, 3), np.uint8), patch=4, cache_dir=tmp_path)
    segmenter = open_component(SEGMENTERS, {"kind": "clipseg", "threshold": 1}, "run.toml: [segmenter]", **kwargs)
    assert isinstance(segmenter, ClipSegSegmenter) and segmenter.config.threshold == 1.0
    generator = open_component(GENERATORS, {"kind": "diffusers", "path": "x/y"}, "run.toml: [generator]",
                               image_size=8, cache_dir=tmp_path)
    assert isinstance(generator, DiffusersGenerator) and generator.config.steps == 28
    for table, message in (({"kind": "clipseg", "thresh": 0.5}, "unknown key 'thresh'; keys: path, threshold"),
                           ({"kind": "clipseg", "threshold": "high"}, "threshold = 'high' is not a"),
                           ({"kind": "clipsegg"}, "unknown segmenter 'clipsegg'; did you mean clipseg"),
                           ({"threshold": 0.5}, "needs kind = one of clipseg, grounding-sam")):
        with pytest.raises(UsageError, match=message) as caught:
            open_component(SEGMENTERS, table, "run.toml: [segmenter]", **kwargs)
        assert "\n" not in str(caught.value)
    with pytest.raises(UsageError, match="missing key 'path'"):
        open_component(GENERATORS, {"kind": "diffusers"}, "run.toml: [generator]", image_size=8, cache_dir=tmp_path)


def test_component_modules_import_no_model_library_at_the_top():
    for module in ("generators", "segmenters", "components"):
        fpath = Path(__file__).resolve().parents[2] / "benchmark" / "sources" / f"{module}.py"
        top = [node for node in ast.parse(fpath.read_text()).body if isinstance(node, (ast.Import, ast.ImportFrom))]
        names = {alias.name for node in top for alias in node.names} | {node.module for node in top
                                                                           if isinstance(node, ast.ImportFrom)}
        assert not {name for name in names if name and name.split(".")[0] in ("diffusers", "transformers")}, module


def test_an_explanation_longer_than_the_detectors_text_limit_is_truncated_as_its_own_code_does(
        components, pool_NHWC, tmp_path, capsys):
    """The tiny Grounding DINO reads at most 32 text tokens (`max_text_len`); a 60-word explanation
    crashed the whole scoring run with a size mismatch. It is cut to the limit, with one warning."""
    segmenter = grounding_sam(components, pool_NHWC, tmp_path, box_threshold=0.0, text_threshold=0.0)
    long = " ".join(["a red striped circle at top left"] * 9)
    masks_IHW = segmenter.pixel_masks(long, pool_NHWC[:2])
    assert masks_IHW.shape == (2, SIDE, SIDE) and masks_IHW.any()
    segmenter.pixel_masks(long, pool_NHWC[2:4])  # its next batch of images: warned once
    tokens = len(segmenter.models()[0].tokenizer(long + ".")["input_ids"])
    warnings = re.findall(r"warning: [^\r\n]*", capsys.readouterr().err)
    assert tokens > 32 and warnings == [f"warning: [segmenter] Grounding DINO reads at most 32 text tokens; an "
                                        f"explanation of {tokens} tokens is cut to its first 32 (as Grounding DINO's "
                                        f"own code cuts it; the row's localization_text_cut says so)"]
    assert segmenter.cut(long) and not segmenter.cut("a red circle") and not segmenter.cut("")


def test_rows_say_when_a_component_read_only_part_of_the_text(components, pool_NHWC, tmp_path):
    """The tiny pipeline's CLIP tokenizer reads 16 tokens and the tiny detector 32: a long explanation
    is marked cut in the generation and localization rows, a short one not; a plug-in without `cut`
    says NaN (unknown)."""
    from types import SimpleNamespace

    from benchmark.config.scoring import ScoringConfig
    from benchmark.scoring.context import ScoringContext
    from benchmark.sources.capabilities import Capabilities

    long, short = " ".join(["a red striped circle"] * 9), "a red circle"
    parts = Capabilities(generator=generator(components["sd"], tmp_path),
                         segmenter=grounding_sam(components, pool_NHWC, tmp_path))
    ctx = ScoringContext(SimpleNamespace(capabilities=parts, protocol="featurebench"), resolve(ScoringConfig(), None))
    assert [ctx.text_cut(need, t) for need in ("generator", "segmenter") for t in (long, short, " ")] == [
        1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    blind = ScoringContext(SimpleNamespace(capabilities=Capabilities(segmenter=SimpleNamespace()),
                                           protocol="featurebench"), resolve(ScoringConfig(), None))
    assert math.isnan(blind.text_cut("segmenter", long))
