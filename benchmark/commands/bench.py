"""`bench`: the steering engine against the one-feature loop on the world (`benchmark.bench.engine`),
at a real model's shape (`--shape`, `benchmark.bench.shapes`), or a run's memory, disk and time
against its pool's size (`--scale`, `benchmark.bench.scale`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.commands import emit


def add_parser(commands) -> None:
    bench = commands.add_parser("bench", help="time the steering engine against the one-feature loop")
    bench.add_argument("--world", default="default")
    bench.add_argument("--lm", default="large")
    bench.add_argument("--features", type=int, default=512, help="features the engine explains")
    bench.add_argument("--loop-features", type=int, default=32, help="features the one-at-a-time loop explains")
    bench.add_argument("--batch-size", type=int, default=256, help="the engine's features per generate call")
    bench.add_argument("--shape", help="time a real model shape instead of the world: llava-1.5-7b, gemma-3-27b, "
                       "tiny (CPU), tiny-gemma3 (CPU)")
    bench.add_argument("--random-weights", action="store_true", help="with --shape: build it from its config, no download")
    bench.add_argument("--checkpoint", help="with --shape: a local checkpoint of that family instead of random weights")
    bench.add_argument("--device", default="cuda", help="with --shape: torch device (cuda, cpu)")
    bench.add_argument("--static-cache", action="store_true", help="with --shape: also time a static KV cache")
    bench.add_argument("--scale", action="store_true", help="memory, disk and time against the pool's size at a real "
                       "setup's shapes, on a narrow random-weight stand-in (CPU)")
    bench.add_argument("--scale-shape", default="seed", help="with --scale: seed (Gemma-3, 896 px, 4,096 tokens) or "
                       "llava (336 px, 576 tokens)")
    bench.add_argument("--images", default="500,1000,2000", help="with --scale: comma list of pool sizes")
    bench.add_argument("--work", help="with --scale: where the stand-in, images and runs go (default: the cache)")
    bench.add_argument("--python-path", help="with --scale: run the stages on another checkout's code")
    bench.add_argument("--one-process", action="store_true", help="with --scale: the whole run in one process, as a "
                       "user runs it; reports peak anonymous memory too")
    bench.add_argument("--json", action="store_true", help="also print the report as one JSON line (last line)")
    bench.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    if args.scale:
        return scale_main(args)
    if args.shape:
        return shape_main(args)
    from benchmark.bench.engine import bench

    report = bench(("world", args.world, args.lm), args.features, args.loop_features, args.batch_size)
    return emit(engine_lines(report, "engine_features_per_s", "loop_features_per_s", "ratio", 1), report, args.json)


def engine_lines(report: dict, engine: str, loop: str, ratio: str, digits: int) -> list[str]:
    """The engine against the one-feature loop, for steering and hybrid: features per second and their ratio."""
    return [f"{name:<9} engine {report[name][engine]:8.{digits}f} feat/s   loop {report[name][loop]:6.{digits}f} feat/s"
            f"   x{report[name][ratio]:.1f}" for name in ("steering", "hybrid")]


def scale_main(args: argparse.Namespace) -> int:
    from benchmark.bench.scale import scale_bench
    from benchmark.cache import cache_root
    from benchmark.registry import UsageError

    try:
        sizes = [int(n) for n in args.images.split(",")]
    except ValueError:
        raise UsageError(f"--images {args.images!r}: a comma list of pool sizes, e.g. 500,1000,2000") from None
    work = Path(args.work) if args.work else cache_root() / "scale-bench"
    report = scale_bench(args.scale_shape, sizes, work, args.python_path, args.one_process)
    return emit(scale_lines(report, args.one_process), report, args.json)


def scale_lines(report: dict, one_process: bool) -> list[str]:
    """Per pool size: peak memory, cache and image bytes, seconds; then each quantity's growth per image."""
    if one_process:
        lines = [f"{'N':>6} {'peak RSS MB':>12} {'peak anon MB':>13} {'cache MB':>9} {'images MB':>10}   seconds"]
        lines += [f"{r['n_images']:>6} {r['peak_rss_bytes']['max'] / 1e6:>12.0f} "
                  f"{r['peak_anon_bytes']['max'] / 1e6:>13.0f} {r['cache_bytes']['final'] / 1e6:>9.1f} "
                  f"{r['source_image_bytes'] / 1e6:>10.1f}   {r['seconds']}" for r in report["runs"]]
    else:
        lines = [f"{'N':>6} {'peak RSS MB':>12} {'cache MB':>9} {'images MB':>10}   seconds: activations / explaining / "
                 f"scoring"]
        lines += [f"{r['n_images']:>6} {r['peak_rss_bytes']['max'] / 1e6:>12.0f} {r['cache_bytes']['final'] / 1e6:>9.1f} "
                  f"{r['source_image_bytes'] / 1e6:>10.1f}   {r['seconds']['activations']} / "
                  f"{r['seconds']['explaining']} / {r['seconds']['scoring']}" for r in report["runs"]]
    return lines + [f"{field}: {g['per_image'] / 1e3:.1f} KB per image + {g['fixed'] / 1e6:.0f} MB; at 50,000 images "
                    f"{g['at_50000'] / 1e9:.2f} GB" for field, g in report["growth"].items() if g["per_image"] is not None]


def shape_main(args: argparse.Namespace) -> int:
    from benchmark.bench.shapes import run_shape_bench

    report = run_shape_bench(args.shape, args.device, random_weights=args.random_weights, path=args.checkpoint,
                             static_cache=args.static_cache)
    lines = engine_lines(report, "engine_per_s", "loop_per_s", "engine_ratio", 2)
    return emit([*lines, f"top-k pass {report['topk']['images_per_s']:.0f} images/s"], report, args.json)
