"""`sae inspect PATH`: an SAE file's detected format and shape."""
from __future__ import annotations

import argparse
import json


def add_parser(commands) -> None:
    sae = commands.add_parser("sae", help="SAE files").add_subparsers(dest="action", required=True)
    inspect = sae.add_parser("inspect", help="detect an SAE file's format and print its shape")
    inspect.add_argument("path", help="a SAELens directory, dictionary_learning ae.pt, saev checkpoint or .safetensors")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    from benchmark.models.sae_formats import inspect_sae

    info = inspect_sae(args.path)
    info["features"] = {  # what a run's --features counts, by protocol (`benchmark.config.protocol`)
        "featurebench": f"latent ids 0..{info['d_sae'] - 1}",
        "seed": f"positions in the sorted list of alive latents (of the {info['d_sae']}, those firing on some top-k "
                f"pool image; a run's activation pass finds them); rows still name latent ids"}
    print(json.dumps(info) if args.json else "\n".join(f"{k:<21} {v}" for k, v in info.items()))
    return 0
