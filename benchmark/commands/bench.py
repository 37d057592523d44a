"""`bench`: the steering engine against the one-feature loop on the world (`benchmark.bench.engine`),
at a real model's shape (`--shape`, `benchmark.bench.shapes`), or a run's memory, disk and time
against its pool's size (`--scale`, `benchmark.bench.scale`)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmark.commands import emit


def add_parser(commands) -> None:
    bench = commands.add_parser("bench", help="time the steering engine against the one-feature loop")
    bench.add_argument("--world", default="default")
    bench.add_argument("--lm", default="large")
    bench.add_argument("--features", type=int, default=512, help="features the engine explains")
    bench.add_argument("--loop-features", type=int, default=32, help="features the one-at-a-time loop explains")
    bench.add_argument("--batch-size", type=int, default=256, help="the engine's features per generate call")
    bench.add_argument("--shape", help="time the engine against the seed's setting and plain batched generate on a "
                       "real model shape: llava-1.5-7b, gemma-3-4b, gemma-3-27b; cpu-llava (LLaVA's prompt geometry at CPU "
                       "widths), tiny, tiny-gemma3 (CPU)")
    bench.add_argument("--random-weights", action="store_true", help="with --shape: build it from its config, no download")
    bench.add_argument("--checkpoint", help="with --shape: a local checkpoint of that family instead of random weights")
    bench.add_argument("--device", default="cuda", help="with --shape: torch device (cuda, cpu)")
    bench.add_argument("--static-cache", action="store_true", help="with --shape: also time a static KV cache")
    bench.add_argument("--varied-lengths", action="store_true", help="with --shape: also time steering with answers "
                       "ending at drawn lengths, dynamic cache against static (with --static-cache)")
    bench.add_argument("--new-tokens", type=int, default=100, help="with --shape: new tokens every rival generates "
                       "(the seed's 100)")
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
    return emit(engine_lines(report), report, args.json)


def engine_lines(report: dict) -> list[str]:
    """The engine against the one-feature loop, for steering and hybrid: features per second and their ratio."""
    return [f"{name:<9} engine {s['engine_features_per_s']:8.1f} feat/s   loop {s['loop_features_per_s']:6.1f} feat/s"
            f"   x{s['ratio']:.1f}" for name, s in ((name, report[name]) for name in ("steering", "hybrid"))]


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
    """With --json every finished part is printed as a JSON line as it ends (a time-out keeps them),
    then the lines for people, then the whole report."""
    from benchmark.bench.shape_bench import run_shape_bench

    def part(name: str, value: dict) -> None:
        if args.json:
            print(json.dumps({"shape": args.shape, "part": name, **value}, separators=(",", ":")), flush=True)

    report = run_shape_bench(args.shape, args.device, random_weights=args.random_weights, path=args.checkpoint,
                             new_tokens=args.new_tokens, static_cache=args.static_cache,
                             varied_lengths=args.varied_lengths, on_part=part)
    return emit(shape_lines(report), report, args.json) or int(bool(report["failed_parts"]))


def shape_lines(report: dict) -> list[str]:
    """Per method: each rival's features/s and the engine's ratios; then the top-k pass; then what failed."""
    lines = []
    for name in ("steering", "hybrid"):
        s = report[name]
        if "rows" not in s:
            lines.append(f"{name:<9} failed: {s['error']}")
            continue
        rivals = [k for k in ("seed", "plain", "engine", "engine_static") if k in s]
        ratios = ", ".join(f"x{s[f'engine_over_{k}']:.2f} {k}" for k in ("seed", "plain") if f"engine_over_{k}" in s)
        lines.append(f"{name:<9} " + "   ".join(f"{k} {_rate(s[k])}" for k in rivals)
                     + f" feat/s   engine {ratios or 'without a ratio'}   ({s['rows']} rows)")
    lines.append(f"top-k pass {_rate(report['topk'], 'images')} images/s from tensors, "
                 f"{_rate(report['topk_jpeg'], 'images')} from JPEGs")
    varied = report.get("steering_lengths", {})
    if "engine" in varied:
        lines.append(f"steering, answers of {varied['lengths']} tokens: "
                     + "   ".join(f"{k} {_rate(varied[k])}" for k in ("engine", "engine_static") if k in varied)
                     + " feat/s")
    return lines + [f"{name} failed: {_part(report, name)['error']}" for name in report["failed_parts"]]


def _part(report: dict, name: str) -> dict:
    """A part's entry in the report: `hybrid_static` is hybrid's `engine_static`."""
    return report[name.removesuffix("_static")]["engine_static"] if name.endswith("_static") else report[name]


def _rate(timing: dict, unit: str = "features") -> str:
    """A rival's rate, or what stopped it (a failure's error has a line of its own)."""
    rate = timing.get(f"{unit}_per_s")
    if rate is not None:
        return f"{rate:.2f}"
    return "out-of-memory" if timing["error"] == "out of memory" else "failed"
