"""`run` (the default command): explain features with one or more methods and score them.

Its flags are generated from the settings' dataclass fields (`benchmark.config`): each flag's
default, type, choices and help are its field's, so a setting is declared once. A run config file
(`--config`) is read once (`benchmark.config.read`); its options become flags that the command line
overrides.
"""
from __future__ import annotations

import argparse
from dataclasses import MISSING, fields

from benchmark.config.fields import choices_of, field_docs
from benchmark.config.method import MethodConfig
from benchmark.config.protocol import PROTOCOLS
from benchmark.config.run import RunConfig

RUN_FIELDS = ("features", "lm", "world", "out", "explanations", "metrics", "tune", "tune_features", "latents")
"""RunConfig fields that are flags as they are (`--tune-features` for `tune_features`)."""
METHOD_FIELDS = ("top_k", "top_images", "empty", "intervention", "steering_multiplier", "steering_coeff",
                 "hybrid_multiplier", "hybrid_coeff", "batch_size")
"""MethodConfig fields that are flags; the governed ones a protocol sets come from [explaining]."""
TYPES = {"int": int, "float": float, "str": str}


def field_flag(options: argparse.ArgumentParser, cls: type, name: str) -> argparse.Action:
    """Adds `--name` for field `name` of `cls`, with the field's default, type, choices and docstring."""
    f = next(f for f in fields(cls) if f.name == name)
    kind = TYPES[str(f.type).split("|")[0].strip()]
    doc = field_docs(cls).get(name, "")
    return options.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None if f.default is MISSING else f.default,
                                choices=choices_of(cls, name) or None, help=doc.split(". ")[0])


def run_options() -> tuple[argparse.ArgumentParser, dict[str, tuple[str, bool]]]:
    """The run command's options, as a parser of their own (a parent of `run`'s), and each option's
    dest -> (its flag, whether a config file's list gives it once per item)."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--config", metavar="FILE", help="a TOML or YAML file of these options (flags override it)")
    actions = [
        options.add_argument("--protocol", choices=list(PROTOCOLS), help="the named set of settings every one not "
                             "given takes: featurebench (the default: the project's own) or seed (the seed paper's, as "
                             "its code runs it); README, Protocols"),
        options.add_argument("--method", default=",".join(RunConfig.methods), help="comma list of methods, or "
                             "path/file.py:function"),
        options.add_argument("--sae", metavar="random:SEED", help="explain a random SAE of the trained one's kind, "
                             "shape and sparsity instead (the sanity control); with real models the same as [sae] "
                             "random = SEED"),
        options.add_argument("--sweep", action="append", metavar="FIELD=V1,V2", help="with --tune, also sweep this "
                             "setting (steering_coeff, intervention, top_images, ...); repeatable"),
        *(field_flag(options, RunConfig, name) for name in RUN_FIELDS),
        *(field_flag(options, MethodConfig, name) for name in METHOD_FIELDS),
        options.add_argument("--backend", default="local", choices=("local", "ray"), help="where explanations are "
                             "computed: this process, or shards over a Ray cluster (the ray extra)"),
        options.add_argument("--address", help="Ray cluster to join (auto, ray://host:10001); default: start a local "
                             "one"),
        options.add_argument("--workers", type=int, help="Ray workers (default: one per GPU, else one per CPU)"),
    ]
    return options, {a.dest: (a.option_strings[0], a.dest == "sweep") for a in actions}


def add_parser(commands) -> None:
    run = commands.add_parser("run", parents=[run_options()[0]], help="explain features with one or more methods "
                              "(the default command)")
    run.set_defaults(run=main, file=None)


def run_config(args: argparse.Namespace) -> RunConfig:
    """The run's settings from its arguments and its config file's tables (`args.file`), unresolved:
    `benchmark.pipeline.run` resolves them under the protocol."""
    from benchmark.config.models import parse_random_sae, read_table
    from benchmark.config.scoring import ScoringConfig
    from benchmark.explainers import ExplainerSpec

    tables = args.file.tables if args.file else {}
    where = f"--config {args.config}"
    explainer = ExplainerSpec.from_table(tables["explainer"], where) if "explainer" in tables else None
    method = MethodConfig(**{n: getattr(args, n) for n in METHOD_FIELDS}, explainer=explainer,
                          **governed_method_settings(tables.get("explaining") or {}, f"{where}: [explaining]"))
    scoring = read_table(ScoringConfig, {"top_k": args.top_k, "top_images": args.top_images,
                                         **(tables.get("scoring") or {})}, f"{where}: [scoring]")
    return RunConfig(methods=tuple(m for m in args.method.split(",") if m), **{n: getattr(args, n) for n in RUN_FIELDS},
                     sweep=tuple(args.sweep or ()), method=method, scoring=scoring,
                     models=args.file.models if args.file else None, protocol=args.protocol,
                     random_sae=None if args.sae is None else parse_random_sae(args.sae))


def governed_method_settings(table: dict, where: str) -> dict:
    """[explaining]: the method settings a protocol governs and no flag sets, checked key by key."""
    from benchmark.config.fields import governed_fields
    from benchmark.config.models import read_table
    from benchmark.registry import UsageError

    table = {str(k).replace("-", "_"): v for k, v in table.items()}
    allowed = governed_fields(MethodConfig)
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}; keys: {', '.join(allowed)}")
    read = read_table(MethodConfig, table, where)
    return {k: getattr(read, k) for k in table}


def check_names(args: argparse.Namespace) -> None:
    """Method and metric names checked before any model library is imported: a typo costs a tenth
    of a second, not the seconds torch takes to import."""
    import methods  # noqa: F401  (built-ins by name)
    import metrics  # noqa: F401
    from benchmark.registry import METHODS
    from benchmark.scoring.metric import METRICS

    for name in args.method.split(","):
        if name:
            METHODS.check(name)
    for spec in (args.metrics if args.metrics not in ("all", "none") else "", args.tune or ""):
        for name in spec.split(","):
            if name:
                METRICS.check(name)


def main(args: argparse.Namespace) -> int:
    check_names(args)
    from benchmark.explaining.backends import make_backend
    from benchmark.pipeline import run

    config = run_config(args)
    backend = make_backend(args.backend, args.address, args.workers)
    try:
        run_dir = run(config, backend)
    finally:
        backend.close()
    print(f"explanations: {run_dir / 'explanations.jsonl'}")
    if (run_dir / "scores.csv").exists():
        print_means(run_dir)
    return 0


def print_means(run_dir) -> None:
    import pandas as pd

    scores = pd.read_csv(run_dir / "scores.csv")
    labels = ["source", "source_id", "protocol", "lm", "feature", "explanation", "concept", "category", "level",
              "aligned"]
    numbers = scores.drop(columns=labels).select_dtypes("number").assign(method=scores.method)
    print(f"protocol {scores.protocol.iloc[0]}")
    print(numbers.groupby("method").mean().round(3).to_string())
    print(f"scores: {run_dir / 'scores.csv'}")
