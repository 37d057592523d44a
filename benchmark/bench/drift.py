"""`python -m benchmark.bench.drift`: how far another CPU's kernels move the activation pass, in float32
and in the numeric contract's float64 (`benchmark.numerics`); `--cost`: what float64 costs.

Another CPU is emulated on this one by settings that make its BLAS, ATen or oneDNN kernels round
differently. For each, a fresh process computes the default world's tower states (the SAE's hidden
state) and each token's TopK set on the first `IMAGES` scoring images in both dtypes; the parent
compares them with a process run without the setting. One JSON line per (setting, dtype).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

SETTINGS = ("MKL_CBWR=COMPATIBLE", "ATEN_CPU_CAPABILITY=default", "DNNL_MAX_CPU_ISA=AVX2")
"""Each changes some of this machine's kernels (on an AMD CPU, MKL ignores the other MKL_CBWR values)."""
IMAGES = 2000
DTYPES = (torch.float32, torch.float64)


def dump(out_dpath: Path) -> None:
    """Writes `<dtype>-states.npy` (N x P x D) and `<dtype>-top.npy` (tokens x k, sorted latents)."""
    from benchmark.activations.passes import TowerCodes
    from benchmark.models.adapters import load_vlm
    from benchmark.sources import open_source

    source = open_source(("world", "default", "large"))
    images = np.concatenate([b for _, b in source.pool("scoring").batches(500, 0, IMAGES)])
    for dtype in DTYPES:
        vlm = load_vlm(source.spec.vlm.family, source.spec.vlm.path, "cpu", dtype, "whole")
        codes = TowerCodes(vlm, source.layer, source.sae())
        states_NPD = torch.cat(list(codes.engine.tower_states(images, 500)))[:, codes.patches_T]
        pre_TF = codes.sae.pre_activations(states_NPD.reshape(-1, states_NPD.shape[-1]).to(codes.sae.W_enc.dtype))
        name = str(dtype).removeprefix("torch.")
        np.save(out_dpath / f"{name}-states.npy", states_NPD.numpy())
        np.save(out_dpath / f"{name}-top.npy", pre_TF.topk(codes.sae.k, dim=-1).indices.sort(-1).values.numpy())


def compare(plain: Path, other: Path, setting: str) -> list[dict]:
    """One record per dtype: the largest state difference and the tokens whose TopK set differs."""
    out = []
    for dtype in DTYPES:
        name = str(dtype).removeprefix("torch.")
        a, b = np.load(plain / f"{name}-states.npy"), np.load(other / f"{name}-states.npy")
        top_a, top_b = np.load(plain / f"{name}-top.npy"), np.load(other / f"{name}-top.npy")
        out.append({"setting": setting, "dtype": name, "max_state_difference": float(np.abs(a - b).max()),
                    "tokens": len(top_a), "tokens_with_another_topk_set": int((top_a != top_b).any(1).sum())})
    return out


def cost() -> None:
    """One JSON line per (stage, dtype): seconds of the default world's activation pass over each
    pool and of the scorer's image and patch embeddings of the scoring pool, in float32 and float64."""
    import time

    from benchmark.activations.passes import TowerCodes
    from benchmark.models.adapters import load_vlm
    from benchmark.models.scorer import Scorer
    from benchmark.sources import open_source

    source = open_source(("world", "default", "large"))
    for split in ("topk", "scoring"):
        for dtype in DTYPES:
            codes = TowerCodes(load_vlm(source.spec.vlm.family, source.spec.vlm.path, "cpu", dtype, "whole"),
                               source.layer, source.sae())
            start = time.perf_counter()
            for _ in codes.of_pool(source.pool(split)):
                pass
            _print({"stage": f"activation pass, {split} pool", "images": len(source.pool(split)),
                    "dtype": str(dtype).removeprefix("torch."), "seconds": round(time.perf_counter() - start, 2)})
    for dtype in DTYPES:
        scorer = Scorer.open(source.spec.scorer.model, source.spec.scorer.pretrained, dtype)
        start = time.perf_counter()
        for _, images in source.pool("scoring").batches(512):
            scorer.encode_images(images), scorer.encode_patches(images)
        _print({"stage": "scorer embeddings, scoring pool", "images": len(source.pool("scoring")),
                "dtype": str(dtype).removeprefix("torch."), "seconds": round(time.perf_counter() - start, 2)})


def _print(record: dict) -> None:
    print(json.dumps(record), flush=True)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        runs = {setting: Path(tmp) / str(i) for i, setting in enumerate(("plain", *SETTINGS))}
        for setting, dpath in runs.items():
            dpath.mkdir()
            env = dict(os.environ)
            if setting != "plain":
                name, value = setting.split("=")
                env[name] = value
            subprocess.run([sys.executable, "-m", "benchmark.bench.drift", "--dump", str(dpath)], env=env, check=True)
        for setting in SETTINGS:
            for record in compare(runs["plain"], runs[setting], setting):
                _print(record)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--dump"]:
        dump(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["--cost"]:
        cost()
    else:
        sys.exit(main())
