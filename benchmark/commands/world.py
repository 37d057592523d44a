"""`world build` and `world ship`: the embedded world, built (or read from its shipped version) with
its quality report, or trained and written as the next shipped version (maintainers)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmark.commands import emit


def add_parser(commands) -> None:
    world = commands.add_parser("world", help="the embedded default world").add_subparsers(dest="action", required=True)
    build = world.add_parser("build", help="build (or load from cache) a world and print its quality report")
    build.add_argument("--preset", default="default", help="world preset (tiny is for tests), or a shipped version "
                       "(default@1)")
    build.add_argument("--train", action="store_true", help="train it on this machine instead of reading the shipped "
                       "version, and print how the two differ")
    build.add_argument("--seed", type=int, help="train it from this seed (implies --train)")
    build.add_argument("--json", action="store_true", help="also print the report as one JSON line (last line)")
    build.set_defaults(run=build_main)
    ship = world.add_parser("ship", help="train a preset and write it as the next shipped version (maintainers)")
    ship.add_argument("--preset", default="default")
    ship.set_defaults(run=ship_main)


def world_spec(args: argparse.Namespace) -> str:
    """The world `world build` names: `--preset`, trained here with `--train` or `--seed N`."""
    from benchmark.registry import UsageError

    if (args.train or args.seed is not None) and "@" in args.preset:
        raise UsageError(f"--preset {args.preset}: give the preset alone with --train or --seed")
    if args.seed is not None:
        return f"{args.preset}@seed{args.seed}"
    return f"{args.preset}@train" if args.train else args.preset


def build_main(args: argparse.Namespace) -> int:
    from benchmark.sources.world import build_world, differences, shipped_dir, versions

    start = time.perf_counter()
    world = build_world(world_spec(args))
    report = world.report()
    shipped = versions(world.config.name) if "@" in world_spec(args) else []
    if shipped:  # trained here: how it differs from what the project ships
        report["differences"] = differences(world.dirs, shipped_dir(world.config.name, shipped[-1]))
    report["load_seconds"] = round(time.perf_counter() - start, 2)
    print(human(report))
    largest = list(report["run_configs"])[-1]
    config = Path(report["run_configs"][largest])
    for line in report.get("differences", []):
        print(line)
    return emit([f"run configs (the world's files, read as real models): {', '.join(report['run_configs'].values())}",
                 f"--- {config}", config.read_text().rstrip()], report, args.json)


def ship_main(args: argparse.Namespace) -> int:
    from benchmark.sources.world import build_world, shipped_dir, trained_stages, versions, write

    world = build_world(f"{args.preset}@train")
    dpath = shipped_dir(world.config.name, (versions(world.config.name) or [0])[-1] + 1)
    pools = {"config": world.metas["pools"]["config"], "content": world.pool_content()}
    manifest = write(world.dirs, pools, trained_stages(world.config), dpath)
    total = sum(entry["bytes"] for entry in manifest["files"].values())
    print(f"shipped {dpath} ({len(manifest['files'])} files, {total / 1e6:.1f} MB); commit it")
    return 0


def human(report: dict) -> str:
    made = "shipped; its models were trained in" if report["shipped"] else "built in"
    lines = [f"world {report['name']} ({made} {report['build_seconds']['total']:.0f} s; this call: "
             f"{report['load_seconds']:.1f} s)"]
    lines += [f"  {stage:<14} {s:7.1f} s" for stage, s in report["build_seconds"].items() if stage != "total"]
    lines.append(f"SAE: FVE {report['sae_fve']:.3f}, alive {report['sae_alive_fraction']:.2f}; "
                 f"scorer retrieval top-1 {report['scorer_retrieval_top1']:.3f}")
    lines.append("aligned features: " + ", ".join(f"{c} {n}" for c, n in report["aligned_features"].items()))
    for lm, recall in report["caption_recall"].items():
        lines.append(f"caption recall [{lm}]: " + ", ".join(f"{c} {r:.2f}" for c, r in recall.items()))
    for lm, cats in report["steering_sanity"].items():
        lines.append(f"steering [{lm}, x{report['steering_multiplier'][lm]}] named/clean/random: " + ", ".join(
            f"{c} {v['feature']:.2f}/{v['clean']:.2f}/{v['random']:.2f}" for c, v in cats.items()))
    for lm, cats in report["topk_sanity"].items():
        lines.append(f"top-k prompt [{lm}] named/nothing: " + ", ".join(
            f"{c} {v['named']:.2f}/{v['nothing']:.2f}" for c, v in cats.items()))
    return "\n".join(lines)
