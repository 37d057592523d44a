"""`python -m benchmark bench --scale`: what a run costs in host memory, disk and time as its image
pool grows, at a real setup's shapes, on a CPU.

A random-weight stand-in is built with the real shapes and a narrow width (so it runs on a CPU): the
seed paper's (Gemma-3: 896 px, 14 px patches, a SigLIP tower of 4,096 tokens pooled to 256, a
dictionary_learning TopK SAE of 8,192 latents, k = 25) or LLaVA-1.5's (336 px, 576 tokens and a
CLS). For each pool size N, a folder of N synthetic 500 x 375 JPEGs (ImageNet's typical size) is
written, and a run of steering, topk and hybrid on 64 features scored by detection, simulation and
clip-score goes through the ordinary CLI in three child processes on an empty cache: the activation
pass, explaining, scoring. Each child's peak resident memory is read from the kernel (`wait4`); the
cache is measured on disk after each. The scorer is a tiny open_clip ViT at 224 px with 16 px
patches (a 14 x 14 grid: never the tower's).

`--one-process` runs the whole pipeline as a user runs it instead: one `python -m benchmark --config`
child over every method and metric, so what one stage keeps into the next counts. Its peak resident
memory comes from the kernel (`wait4`: VmHWM, exact); its peak anonymous memory (RssAnon: heap and
tensors, not the stores' memory-mapped pages, which the kernel may drop and reread) has no kernel
high-water mark, so the parent polls `/proc/<pid>/status` every `POLL_SECONDS` and keeps the maximum
(`AnonSampler`). Polling from outside perturbs nothing in the child (no thread competing for its GIL,
no code of its own) and reads the same counters `smaps_rollup` sums; it can only miss a peak shorter
than the interval, and a memory that grows with the pool is held for as long as its pass over the
pool takes, which is far longer.

`--python-path DIR` runs the children on another checkout's code (e.g. the code before a change),
with the same stand-in, images and config.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmark.cache import config_hash
from benchmark.models.sae import SAE
from benchmark.testing import WIDTH, save_tiny_checkpoint, write_dictionary_learning  # WIDTH: narrow, so a CPU runs it

FEATURES = "0:64"
SCALE_METHODS = "steering,topk,hybrid"
SCALE_METRICS = "detection,simulation,clip-score"


@dataclass(frozen=True)
class ScaleShape:
    family: str
    image_size: int
    patch: int
    image_tokens: int
    """Image tokens the language model receives per image (Gemma-3 pools its 4,096 to 256)."""
    d_sae: int = 8192
    k: int = 25


SHAPES = {"seed": ScaleShape("gemma3", 896, 14, 256), "llava": ScaleShape("llava", 336, 14, 576)}


def build_standin(shape: ScaleShape, dpath: Path) -> None:
    """A random-weight VLM of the family's real class at the shape's image and token sizes, its
    processor (the tests' tiny checkpoint, `benchmark.testing.save_tiny_checkpoint`, at these sizes),
    a dictionary_learning TopK SAE on its hidden state 2 and a tiny open_clip scorer."""
    save_tiny_checkpoint(shape.family, dpath / "vlm", seed=0, image_size=shape.image_size, patch=shape.patch,
                         image_tokens=shape.image_tokens, max_length=4096)
    write_dictionary_learning(dpath / "sae" / "trainer_0", _standin_sae(shape), layer=1)  # its output: hidden state 2
    _save_scorer(dpath / "scorer")


def _standin_sae(shape: ScaleShape) -> SAE:
    """The seed paper's SAE at the shape's size: random unit decoder directions, the encoder tied to
    them, zero biases."""
    g = torch.Generator().manual_seed(1)
    decoder_DF = torch.nn.functional.normalize(torch.randn(WIDTH, shape.d_sae, generator=g), dim=0)
    sae = SAE(WIDTH, shape.d_sae, k=shape.k)
    with torch.no_grad():
        sae.W_enc.copy_(decoder_DF)
        sae.W_dec.copy_(decoder_DF.T)
    return sae


def _save_scorer(dpath: Path) -> None:
    from benchmark.models.scorer import Scorer

    config = {"embed_dim": 16, "vision_cfg": {"image_size": 224, "patch_size": 16, "width": 32, "layers": 1,
                                              "head_width": 16},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    torch.manual_seed(2)
    Scorer.create(dpath, "scale-scorer", config).save_weights(dpath)


def write_images(dpath: Path, n: int, seed: int = 0) -> None:
    """n synthetic 500 x 375 JPEGs: a smooth two-colour gradient with a few rectangles, so the JPEG
    bytes are of a photograph's order (tens of KB), in one class folder."""
    rng = np.random.default_rng(seed)
    folder = dpath / "all"
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:375, 0:500] / np.array([375.0, 500.0])[:, None, None]
    for i in range(n):
        a, b = rng.integers(0, 256, (2, 3))
        image = (a * x[..., None] + b * (1 - x[..., None]) * y[..., None]).clip(0, 255)
        for _ in range(3):
            r, c, h, w = rng.integers(0, 300), rng.integers(0, 420), rng.integers(20, 75), rng.integers(20, 80)
            image[r:r + h, c:c + w] = rng.integers(0, 256, 3)
        image += rng.normal(0, 6, image.shape)
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(folder / f"{i:05}.jpg", quality=90)


def write_config(fpath: Path, models: Path, images: Path, family: str) -> None:
    fpath.write_text(f"""method = "{SCALE_METHODS}"
features = "{FEATURES}"
metrics = "{SCALE_METRICS}"

[vlm]
family = "{family}"
path = "{models / 'vlm'}"
device = "cpu"
dtype = "float32"
max_new_tokens = 8

[sae]
path = "{models / 'sae' / 'trainer_0'}"

[scorer]
model = "{models / 'scorer'}"

[pool]
source = "{images}"
""")


STAGES = {
    "activations": ["-c", "import sys, tomllib\n"
                          "from benchmark.sources import open_source\n"
                          "from benchmark.config.models import models_config\n"
                          "tables = {k: v for k, v in tomllib.loads(open(sys.argv[1]).read()).items() if isinstance(v, dict)}\n"
                          "source = open_source(('models', models_config(tables, sys.argv[1]), None))\n"
                          "source.activations('topk'); source.activations('scoring')\n"],
    "explaining": ["-m", "benchmark", "--metrics", "none", "--config"],
    "scoring": ["-m", "benchmark", "--config"],
}


def _child(args: list[str], env: dict, cwd: Path) -> tuple[float, int]:
    """(wall seconds, peak resident KB) of one child process; its output goes to a log beside."""
    start = time.perf_counter()
    with open(cwd / "log.txt", "a") as log:
        process = subprocess.Popen([sys.executable, *args], env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{args[:3]} exited {process.returncode}; see {cwd / 'log.txt'}")
    return time.perf_counter() - start, usage.ru_maxrss


POLL_SECONDS = 0.005
"""How often the one-process mode reads the child's /proc/<pid>/status."""


class AnonSampler:
    """The largest RssAnon (and RssFile and VmRSS, each its own maximum) a process reached, polled
    from its /proc/<pid>/status, and the RssFile beside the anonymous peak (the stores' mapped pages
    then)."""

    FIELDS = ("RssAnon", "RssFile", "VmRSS")

    def __init__(self, pid: int):
        self.path = Path(f"/proc/{pid}/status")
        self.peak_kb = dict.fromkeys(self.FIELDS, 0)
        self.file_at_anon_peak_kb = 0
        self.samples = 0

    def sample(self) -> None:
        """One read; nothing once the process has exited (a zombie's status has no Rss lines)."""
        try:
            text = self.path.read_text()
        except OSError:
            return
        now = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in text.splitlines())
               if k in self.FIELDS}
        if len(now) < len(self.FIELDS):
            return
        self.samples += 1
        if now["RssAnon"] > self.peak_kb["RssAnon"]:
            self.file_at_anon_peak_kb = now["RssFile"]
        self.peak_kb = {k: max(v, now[k]) for k, v in self.peak_kb.items()}


def _child_polled(args: list[str], env: dict, cwd: Path) -> tuple[float, int, AnonSampler]:
    """(wall seconds, peak resident KB from the kernel, the polled sampler) of one child process."""
    start = time.perf_counter()
    with open(cwd / "log.txt", "a") as log:
        process = subprocess.Popen([sys.executable, *args], env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        sampler = AnonSampler(process.pid)
        while True:
            sampler.sample()
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)  # reaps, with the rusage, once it exits
            if pid:
                break
            time.sleep(POLL_SECONDS)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{args[:3]} exited {process.returncode}; see {cwd / 'log.txt'}")
    return time.perf_counter() - start, usage.ru_maxrss, sampler


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _prepare(shape: ScaleShape, n: int, work: Path, python_path: str | None, mode: str) -> tuple[Path, Path, dict]:
    """(run directory, its config, the children's environment) on an empty cache: the stand-in and
    the n images are built once per work directory, the run directory afresh."""
    models = work / f"standin-{config_hash(shape.__dict__)}"
    if not (models / "done").exists():
        build_standin(shape, models)
        (models / "done").touch()
    images = work / f"images-{n}"
    if not images.exists():
        write_images(images, n)
    suffix = f"{'other' if python_path else 'this'}{'-one' if mode == 'one' else ''}"
    run = work / f"run-{config_hash(shape.__dict__)}-{n}-{suffix}"
    subprocess.run(["rm", "-rf", str(run)], check=True)
    run.mkdir(parents=True)
    config = run / "run.toml"
    write_config(config, models, images, shape.family)
    env = {**os.environ, "FEATUREBENCH_CACHE": str(run / "cache"), "HF_DATASETS_CACHE": str(run / "datasets"),
           "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    if python_path:
        env["PYTHONPATH"] = python_path
    return run, config, env


def measure(shape: ScaleShape, n: int, work: Path, python_path: str | None = None) -> dict:
    """One pool size: the three stages on an empty cache, their memory, time and the cache they leave."""
    run, config, env = _prepare(shape, n, work, python_path, "stages")
    images = work / f"images-{n}"
    report = {"n_images": n, "source_image_bytes": disk_bytes(images), "seconds": {}, "peak_rss_bytes": {},
              "cache_bytes": {}}
    for stage, args in STAGES.items():
        extra = [str(config)] if stage == "activations" else [str(config), "--out", str(run / "results")]
        seconds, peak_kb = _child([*args, *extra], env, run)
        report["seconds"][stage] = round(seconds, 1)
        report["peak_rss_bytes"][stage] = peak_kb * 1024
        report["cache_bytes"][stage] = disk_bytes(run / "cache")
    report["peak_rss_bytes"]["max"] = max(report["peak_rss_bytes"].values())
    report["cache_bytes"]["final"] = disk_bytes(run / "cache")
    report["datasets_cache_bytes"] = disk_bytes(run / "datasets") if (run / "datasets").exists() else 0
    return report


def measure_one_process(shape: ScaleShape, n: int, work: Path, python_path: str | None = None) -> dict:
    """One pool size: the whole run (activations, explaining, scoring) in one `python -m benchmark
    --config` process on an empty cache, as a user runs it: its peak resident and peak anonymous
    memory, the mapped file pages beside the anonymous peak, its time and the cache it leaves."""
    run, config, env = _prepare(shape, n, work, python_path, "one")
    seconds, peak_kb, sampler = _child_polled(["-m", "benchmark", "--config", str(config), "--out",
                                               str(run / "results")], env, run)
    return {"n_images": n, "source_image_bytes": disk_bytes(work / f"images-{n}"), "seconds": round(seconds, 1),
            "peak_rss_bytes": {"max": peak_kb * 1024},
            "peak_anon_bytes": {"max": sampler.peak_kb["RssAnon"] * 1024},
            "peak_file_bytes": sampler.peak_kb["RssFile"] * 1024,
            "file_bytes_at_anon_peak": sampler.file_at_anon_peak_kb * 1024, "samples": sampler.samples,
            "cache_bytes": {"final": disk_bytes(run / "cache")},
            "datasets_cache_bytes": disk_bytes(run / "datasets") if (run / "datasets").exists() else 0}


def growth(reports: list[dict], field: str) -> dict:
    """Least-squares line of a measure against N: bytes per image and the part independent of N."""
    n = np.array([r["n_images"] for r in reports], float)
    y = np.array([_get(r, field) for r in reports], float)
    if len(n) < 2:
        return {"per_image": None, "fixed": None, "at_50000": None}  # a line needs two pool sizes
    slope, intercept = np.polyfit(n, y, 1)
    return {"per_image": round(float(slope)), "fixed": round(float(intercept)),
            "at_50000": round(float(intercept + slope * 50_000))}


def _get(report: dict, field: str) -> float:
    out = report
    for part in field.split("."):
        out = out[part]
    return out


def scale_bench(shape: str, sizes: list[int], work: Path, python_path: str | None = None,
                one_process: bool = False) -> dict:
    """The report of every pool size and the lines through them: three stage processes each, or
    (`one_process`) the whole run in one, with its peak anonymous memory too."""
    if shape not in SHAPES:
        from benchmark.registry import UsageError

        raise UsageError(f"--scale-shape {shape!r}; choose {', '.join(SHAPES)}")
    run_one = measure_one_process if one_process else measure
    reports = [run_one(SHAPES[shape], n, work, python_path) for n in sizes]
    fields = ("peak_rss_bytes.max", *(("peak_anon_bytes.max",) if one_process else ()), "cache_bytes.final")
    return {"shape": shape, **SHAPES[shape].__dict__, "features": FEATURES, "methods": SCALE_METHODS, "metrics": SCALE_METRICS,
            "code": python_path or "this checkout", "mode": "one process" if one_process else "a process per stage",
            "runs": reports, "growth": {f: growth(reports, f) for f in fields}}
