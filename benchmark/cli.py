"""Command line: `python -m benchmark world build [--preset default|tiny] [--json]`.

User errors (unknown names, bad paths) are one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from benchmark.world.presets import PRESETS


def _world_build(args: argparse.Namespace) -> int:
    from benchmark.world.build import build_world

    start = time.perf_counter()
    world = build_world(args.preset)
    report = world.report()
    report["load_seconds"] = round(time.perf_counter() - start, 2)
    print(_human(report))
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
    return 0


def _human(report: dict) -> str:
    lines = [f"world built in {report['build_seconds']['total']:.0f} s (this call: {report['load_seconds']:.1f} s)"]
    lines += [f"  {stage:<14} {s:7.1f} s" for stage, s in report["build_seconds"].items() if stage != "total"]
    lines.append(f"SAE: FVE {report['sae_fve']:.3f}, alive {report['sae_alive_fraction']:.2f}; "
                 f"scorer retrieval top-1 {report['scorer_retrieval_top1']:.3f}")
    lines.append("aligned features: " + ", ".join(f"{c} {n}" for c, n in report["aligned_features"].items()))
    for lm, recall in report["caption_recall"].items():
        lines.append(f"caption recall [{lm}]: " + ", ".join(f"{c} {r:.2f}" for c, r in recall.items()))
    for lm, cats in report["steering_sanity"].items():
        lines.append(f"steering [{lm}, x{report['steering_multiplier'][lm]}] named/clean/random: " + ", ".join(
            f"{c} {v['feature']:.2f}/{v['clean']:.2f}/{v['random']:.2f}" for c, v in cats.items()))
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    world = commands.add_parser("world", help="the embedded default world").add_subparsers(dest="action", required=True)
    build = world.add_parser("build", help="build (or load from cache) a world and print its quality report")
    build.add_argument("--preset", choices=sorted(PRESETS), default="default", help="world size (tiny is for tests)")
    build.add_argument("--json", action="store_true", help="also print the report as one JSON line (last line)")
    build.set_defaults(run=_world_build)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
