"""Backends: the Ray backend on a local cluster gives the local backend's results, its activation
pass shards over images into the same cache, and a worker killed mid-shard costs only a retry."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark.config.method import MethodConfig
from benchmark.config.run import RunConfig
from benchmark.explaining.backends import RayBackend, make_backend, shard_size
from benchmark.pipeline import run
from benchmark.registry import UsageError
from tests.slow_plugin import logged, write_slow_plugin
from tests.timing import untimed

try:
    import ray  # noqa: F401
    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="the ray extra is not installed (pip install 'featurebench[ray]')")


def explanations(run_dir: Path) -> list[dict]:
    return untimed(run_dir)


def fresh_cache(world_cache: Path, tmp_path: Path) -> Path:
    """A cache that shares the built world but none of its computed results (activations,
    explanations, scores), so a run there computes everything again."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "world").symlink_to(world_cache / "world")
    return cache


def test_local_backend_rejects_ray_options():
    with pytest.raises(UsageError, match="--backend ray only"):
        make_backend("local", workers=2)


@pytest.mark.parametrize("n, batch, max_batches, workers, size", [
    (1024, 256, 4, 2, 256),    # four shards: two per worker
    (65536, 256, 4, 8, 1024),  # capped at max_batches batches
    (10, 256, 4, 2, 256),      # never less than one batch
])
def test_shards_are_whole_batches_and_spread_over_workers(n, batch, max_batches, workers, size):
    assert shard_size(n, batch, max_batches, workers) == size


@pytest.mark.slow
@needs_ray
def test_ray_backend_gives_the_local_results_and_shards_the_activation_pass(world, world_cache, tmp_path, monkeypatch):
    config = RunConfig(methods=("steering", "topk", "hybrid"), features="0:40", lm="small", world="tiny",
                       metrics="detection,simulation", method=MethodConfig(batch_size=4))
    local_dir = run(RunConfig(**{**config.__dict__, "out": str(tmp_path / "local")}))

    monkeypatch.setenv("FEATUREBENCH_CACHE", str(fresh_cache(world_cache, tmp_path)))
    backend = RayBackend(workers=2, shard_batches=2, image_shard=128)
    try:
        ray_dir = run(RunConfig(**{**config.__dict__, "out": str(tmp_path / "ray")}), backend)
    finally:
        backend.close()

    assert explanations(ray_dir) == explanations(local_dir)
    pd.testing.assert_frame_equal(*(pd.read_csv(d / "scores.csv").drop(columns="cost_seconds") for d in (ray_dir, local_dir)))
    record = json.loads((ray_dir / "run.json").read_text())["backend"]
    assert record["name"] == "ray" and record["workers"] == {"tiny": 2}
    explained = [p for p in record["plan"] if "method" in p]
    assert {p["method"] for p in explained} == {"steering", "topk", "hybrid"}
    assert all(sum(n for _, _, n in p["shards"]) == 40 and len(p["shards"]) == 5 for p in explained)
    passes = {p["activations"]: p for p in record["plan"] if "activations" in p}
    assert passes.keys() == {"topk", "scoring"} and len(passes["topk"]["shards"]) > 1  # the pool really was split

    from benchmark.world.build import build_world
    sharded = build_world("tiny").source("small").activations("topk")  # what the Ray pass cached in the fresh cache
    monkeypatch.setenv("FEATUREBENCH_CACHE", str(world_cache))
    whole = build_world("tiny").source("small").activations("topk")
    assert torch.equal(sharded.image_FK, whole.image_FK)
    torch.testing.assert_close(sharded.score_FK, whole.score_FK)


@pytest.mark.slow
@needs_ray
def test_worker_killed_mid_shard_is_retried_and_every_feature_is_stored_once(world, world_cache, tmp_path):
    """A slow plug-in method logs (pid, feature) per batch; one worker is SIGKILLed mid-shard."""
    plugin, log = write_slow_plugin(tmp_path, 0.4)
    cache = fresh_cache(world_cache, tmp_path)
    args = [sys.executable, "-m", "benchmark", "--method", f"{plugin}:explain", "--features", "0:64", "--world", "tiny",
            "--lm", "small", "--batch-size", "4", "--metrics", "none", "--backend", "ray", "--workers", "2",
            "--out", str(tmp_path / "out")]
    proc = subprocess.Popen(args, env={**os.environ, "FEATUREBENCH_CACHE": str(cache)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and (not log.exists() or not log.read_text()):
        time.sleep(0.05)
    victim = logged(log)[0][0]
    os.kill(victim, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]

    computed = logged(log)
    assert len(computed) > 64  # the killed worker's shard ran again
    assert len({pid for pid, _ in computed}) >= 3  # two workers and the restarted one
    (run_dir,) = (tmp_path / "out").iterdir()
    assert sorted(r["feature"] for r in explanations(run_dir)) == list(range(64))
    (store,) = (cache / "explanations").glob("*.jsonl")
    stored = [json.loads(line)["feature"] for line in store.read_text().splitlines()]
    assert sorted(stored) == list(range(64))  # each feature stored exactly once
