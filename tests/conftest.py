"""Shared fixtures: one tiny world per test session, built into a temporary cache."""
from __future__ import annotations

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
