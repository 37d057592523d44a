"""Shared fixtures, each built once per test session into a temporary directory: the tiny world (in a
temporary cache), the tiny real-model checkpoints and the files a user runs real models from
(`benchmark.testing`), and the tiny generator and segmenter checkpoints (`tests/tiny_components.py`).
Modules read them and never change them; a test that would gets a copy."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def world_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("featurebench-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("FEATUREBENCH_CACHE", str(root))
    yield root
    mp.undo()


@pytest.fixture(scope="session")
def world(world_cache):
    from benchmark.world.build import build_world

    return build_world("tiny")


@pytest.fixture(scope="session")
def vlm_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A tiny random-weight checkpoint of each VLM family (`benchmark.testing.save_vlm_checkpoints`), by family."""
    from benchmark.testing import save_vlm_checkpoints

    return save_vlm_checkpoints(tmp_path_factory.mktemp("vlms"))


@pytest.fixture(scope="session")
def vlms(vlm_checkpoints):
    """Those checkpoints loaded through the user path (`load_vlm`, CPU, float32), by family. Shared
    objects: a test that hooks or steers a model undoes it (`steer`, `handle.remove()` in a finally)."""
    from benchmark.models.adapters import load_vlm

    return {family: load_vlm(family, str(path), "cpu", torch.float32) for family, path in vlm_checkpoints.items()}


@pytest.fixture(scope="session")
def real_model_files(tmp_path_factory) -> Path:
    """The checkpoints, SAE, images and scorer a user would have on disk
    (`benchmark.testing.write_real_model_files`), and beside them `cache/`, the one cache every module
    that runs on them shares, so their activations are computed once a session."""
    from benchmark.testing import write_real_model_files

    return write_real_model_files(tmp_path_factory.mktemp("real"))


@pytest.fixture(scope="module")
def files(real_model_files):
    """`real_model_files`, with FEATUREBENCH_CACHE at its `cache/` while the module runs."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FEATUREBENCH_CACHE", str(real_model_files / "cache"))
    yield real_model_files
    mp.undo()


@pytest.fixture(scope="session")
def components(tmp_path_factory) -> dict[str, str]:
    """The tiny generator and segmenter checkpoints (`tests/tiny_components.py`), by name: sd (a
    Stable Diffusion pipeline), gdino (Grounding DINO), sam, sam2 and clipseg."""
    from tests.tiny_components import (
        save_tiny_clipseg,
        save_tiny_diffusers,
        save_tiny_grounding_dino,
        save_tiny_sam,
        save_tiny_sam2,
    )

    root = tmp_path_factory.mktemp("components")
    return {name: str(save(root / name)) for name, save in (
        ("sd", save_tiny_diffusers), ("gdino", save_tiny_grounding_dino), ("sam", save_tiny_sam),
        ("sam2", save_tiny_sam2), ("clipseg", save_tiny_clipseg))}
