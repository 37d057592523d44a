"""Command line.

    python -m benchmark [--config run.toml] --method hybrid [--features 0:512] [--lm large] [--world default] [--out results]
                        [--protocol featurebench|seed] [--latents ids|alive] [--sae random:SEED]
                        [--metrics all] [--tune METRIC [--tune-features 0:128]]
                        [--backend local|ray [--address auto|ray://...] [--workers N]]
    python -m benchmark methods | metrics
    python -m benchmark validate-metrics [--lm large] [--board leaderboards] [--json]
    python -m benchmark leaderboard [--add RUN_DIR ... [--replace]] [--dir leaderboards] [--seeds DIR ...]
    python -m benchmark leaderboard --readme [--dir leaderboards] [--validation FILE]
    python -m benchmark check-submission RUN_DIR [--leaderboards leaderboards]
    python -m benchmark findings DIR [DIR ...] [--json]
    python -m benchmark report [--run RUN_DIR ...] [--leaderboards leaderboards] [--out report]
    python -m benchmark bench [--json]
    python -m benchmark bench --shape llava-1.5-7b|gemma-3-27b --random-weights --device cuda [--json]
    python -m benchmark bench --scale [--scale-shape seed|llava] [--images 500,1000,2000] [--json]
    python -m benchmark world build [--preset default|tiny|default@1] [--train | --seed N] [--json]
    python -m benchmark world ship [--preset default]
    python -m benchmark sae inspect PATH [--json]

`run` is the default subcommand. User errors (unknown names, bad paths, malformed files) are one
line on stderr and exit code 2, with nothing written.
"""
from __future__ import annotations

import argparse
import difflib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmark.config.models import ModelsConfig


def _world_spec(args: argparse.Namespace) -> str:
    """The world `world build` names: `--preset`, trained here with `--train` or `--seed N`."""
    from benchmark.registry import UsageError

    if (args.train or args.seed is not None) and "@" in args.preset:
        raise UsageError(f"--preset {args.preset}: give the preset alone with --train or --seed")
    if args.seed is not None:
        return f"{args.preset}@seed{args.seed}"
    return f"{args.preset}@train" if args.train else args.preset


def _world_build(args: argparse.Namespace) -> int:
    from benchmark.sources.world import build_world, differences, shipped_dir, versions

    start = time.perf_counter()
    world = build_world(_world_spec(args))
    report = world.report()
    shipped = versions(world.config.name) if "@" in _world_spec(args) else []
    if shipped:  # trained here: how it differs from what the project ships
        report["differences"] = differences(world.dirs, shipped_dir(world.config.name, shipped[-1]))
    report["load_seconds"] = round(time.perf_counter() - start, 2)
    print(_human(report))
    largest = list(report["run_configs"])[-1]
    config = Path(report["run_configs"][largest])
    for line in report.get("differences", []):
        print(line)
    print(f"run configs (the world's files, read as real models): "
          f"{', '.join(report['run_configs'].values())}\n--- {config}\n{config.read_text().rstrip()}")
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
    return 0


def _world_ship(args: argparse.Namespace) -> int:
    from benchmark.sources.world import build_world, shipped_dir, trained_stages, versions, write

    world = build_world(f"{args.preset}@train")
    dpath = shipped_dir(world.config.name, (versions(world.config.name) or [0])[-1] + 1)
    pools = {"config": world.metas["pools"]["config"], "content": world.pool_content()}
    manifest = write(world.dirs, pools, trained_stages(world.config), dpath)
    total = sum(entry["bytes"] for entry in manifest["files"].values())
    print(f"shipped {dpath} ({len(manifest['files'])} files, {total / 1e6:.1f} MB); commit it")
    return 0


def _human(report: dict) -> str:
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


def _run(args: argparse.Namespace) -> int:
    _check_names(args)
    from benchmark.config.method import MethodConfig
    from benchmark.config.run import RunConfig
    from benchmark.explaining.backends import make_backend
    from benchmark.pipeline import run

    method = MethodConfig(top_k=args.top_k, top_images=args.top_images, empty=args.empty,
                          intervention=args.intervention, steering_multiplier=args.steering_multiplier,
                          steering_coeff=args.steering_coeff, hybrid_multiplier=args.hybrid_multiplier,
                          hybrid_coeff=args.hybrid_coeff, batch_size=args.batch_size, explainer=args.explainer,
                          **explaining_config(args))
    config = RunConfig(methods=tuple(m for m in args.method.split(",") if m), features=args.features, lm=args.lm,
                       world=args.world, out=args.out, explanations=args.explanations, metrics=args.metrics,
                       tune=args.tune, tune_features=args.tune_features, sweep=tuple(args.sweep or ()),
                       method=method, scoring=scoring_config(args), models=args.models, protocol=args.protocol,
                       latents=args.latents, random_sae=random_sae(args.sae))
    backend = make_backend(args.backend, args.address, args.workers)
    try:
        run_dir = run(config, backend)
    finally:
        backend.close()
    print(f"explanations: {run_dir / 'explanations.jsonl'}")
    if (run_dir / "scores.csv").exists():
        import pandas as pd

        scores = pd.read_csv(run_dir / "scores.csv")
        labels = ["source", "source_id", "protocol", "lm", "feature", "explanation", "concept", "category", "level",
                  "aligned"]
        numbers = scores.drop(columns=labels).select_dtypes("number").assign(method=scores.method)
        print(f"protocol {scores.protocol.iloc[0]}")
        print(numbers.groupby("method").mean().round(3).to_string())
        print(f"scores: {run_dir / 'scores.csv'}")
    return 0


def _check_names(args: argparse.Namespace) -> None:
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


def _methods(args: argparse.Namespace) -> int:
    import methods  # noqa: F401
    from benchmark.registry import METHODS

    for name in METHODS.names():
        doc = (METHODS.get(name).__doc__ or "").strip().splitlines()
        print(f"{name:<18} {doc[0] if doc else ''}")
    return 0


def _metrics(args: argparse.Namespace) -> int:
    from metrics import all_metrics

    for m in all_metrics():
        doc = (sys.modules[m.score.__module__].__doc__ or "").strip().splitlines()
        print(f"{m.name:<20} {', '.join(m.columns):<70} {doc[0] if doc else ''}")
    return 0


def _validate_metrics(args: argparse.Namespace) -> int:
    from benchmark.config.resolve import resolve
    from benchmark.config.scoring import ScoringConfig
    from benchmark.scoring.context import ScoringContext
    from benchmark.scoring.validation import validate, with_board_checks
    from benchmark.sources import open_source
    from metrics import named_metrics

    source = open_source(("world", args.world, args.lm))
    metrics = named_metrics(args.metrics)
    report = validate(source, metrics, ScoringContext(source, resolve(ScoringConfig(), source.protocol)))
    board = None if args.board in ("", "none") else Path(args.board)
    report = with_board_checks(report, board, source.name, source.lm, metrics, getattr(source, "protocol", None))
    for name, r in report.items():
        print(f"{name:<20} pairwise AUROC {_fmt(r['pairwise_auroc'])}   Spearman with oracle {_fmt(r['spearman_oracle'])}")
        separation = r["separation"] or {}
        print(f"{'':<20} vs random SAE, AUROC " + "   ".join(
            f"{m} {_fmt((separation.get(m) or {}).get('auroc'))}" for m in ("topk", "steering", "hybrid"))
            + f"   margin over constant label {_fmt((r['constant'] or {}).get('margin'))}"
            + (f" ({r['constant']['method']})" if r["constant"] else ""))
        for note in r["notes"]:
            print(f"{'':<20} note: {note}")
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
    return 0


def _fmt(x: float | None) -> str:
    return "  n/a" if x is None else f"{x:.3f}"


def _leaderboard(args: argparse.Namespace) -> int:
    from pathlib import Path

    from benchmark.registry import UsageError
    from benchmark.results.leaderboard import markdown, regenerate

    if args.readme:
        return _board_readme(args)
    if args.validation:
        raise UsageError("--validation: only with --readme")
    if args.replace and not args.add:
        raise UsageError("--replace: give the runs whose rows replace the old ones with --add RUN_DIR")
    seeds = None if args.seeds is None else [Path(d) for d in args.seeds]
    tables = regenerate(Path(args.dir), [Path(p) for p in args.add], args.replace, seeds)
    print(markdown(tables["main"]))
    print(f"wrote {', '.join(str(Path(args.dir) / f'{n}.csv') for n in tables)}")
    return 0


def _board_readme(args: argparse.Namespace) -> int:
    """Writes DIR/README.md from DIR's rows, nothing else (`benchmark.results.board_readme`)."""
    from benchmark.registry import UsageError
    from benchmark.results.board_readme import write_readme

    if args.add or args.replace or args.seeds is not None:
        raise UsageError("--readme writes the README from the rows as they are: run --add/--replace/--seeds first, "
                         "without it")
    agreement = None
    if args.validation:
        try:
            lines = Path(args.validation).read_text().strip().splitlines()
            agreement = json.loads(lines[-1]) if lines else None
        except (OSError, json.JSONDecodeError) as e:
            raise UsageError(f"--validation {args.validation}: not validate-metrics --json output ({e})") from None
        if not isinstance(agreement, dict):
            raise UsageError(f"--validation {args.validation}: not validate-metrics --json output")
    print(f"wrote {write_readme(Path(args.dir), agreement)}")
    return 0


def _check_submission(args: argparse.Namespace) -> int:
    from benchmark.results.submission import check_submission

    checks = check_submission(Path(args.run_dir), Path(args.leaderboards))
    for passed, line in checks:
        print(f"{'ok  ' if passed else 'FAIL'}  {line}")
    failed = sum(not passed for passed, _ in checks)
    print(f"{len(checks) - failed} of {len(checks)} checks passed" + ("; fix the failing ones before a pull request"
                                                                   if failed else ""))
    return 2 if failed else 0


def _findings(args: argparse.Namespace) -> int:
    import pandas as pd

    from benchmark.results.findings import (
        CONTROLS,
        FIDELITY,
        METHODS,
        control_comparisons,
        markdown,
        orderings,
        separation_markdown,
        separation_table,
        table,
        without_random_saes,
    )
    from benchmark.results.leaderboard import headline_columns, load_rows

    rows = pd.concat([load_rows(Path(d)) for d in args.dirs], ignore_index=True)
    other = rows.protocol != "featurebench"  # another protocol's rows are a source of their own
    rows.loc[other, "source"] = rows.source[other] + " [" + rows.protocol[other] + "]"
    by_source = dict(list(rows.groupby("source", sort=False)))  # the first directory's first source leads
    separation = separation_table(by_source, headline_columns(rows))  # random SAEs: a control, not a source
    by_source = without_random_saes(by_source)
    found, order = table(by_source), orderings(by_source)
    print(markdown(found, order))
    if len(separation):
        print("\ntrained SAE vs random SAE: how well each metric tells their features apart (AUROC 0.5: not at all)")
        print(separation_markdown(separation))
    for source, rows in by_source.items():
        weak = control_comparisons(rows, "large")
        weak = weak[weak.p >= 0.05]
        print(f"{source}: methods vs controls, {len(weak)} of {len(METHODS) * len(CONTROLS) * len(FIDELITY)} not "
              f"significant" + "".join(f"; {r.method} > {r.control} on {r.metric} p = {r.p:.2g}"
                                       for r in weak.itertuples()))
    if args.json:
        print(json.dumps({"findings": found.to_dict("records"), "orderings": order.to_dict("records"),
                          "separation": separation.to_dict("records")}, separators=(",", ":")))
    return 0


def _bench(args: argparse.Namespace) -> int:
    if args.scale:
        return _scale_bench(args)
    if args.shape:
        return _shape_bench(args)
    from benchmark.bench.engine import bench

    report = bench(("world", args.world, args.lm), args.features, args.loop_features, args.batch_size)
    for name in ("steering", "hybrid"):
        r = report[name]
        print(f"{name:<9} engine {r['engine_features_per_s']:8.1f} feat/s   loop {r['loop_features_per_s']:6.1f} feat/s"
              f"   x{r['ratio']:.1f}")
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
    return 0


def _report(args: argparse.Namespace) -> int:
    from benchmark.report import write_report

    board = Path(args.leaderboards) if args.leaderboards else None
    out = write_report([Path(d) for d in args.runs], Path(args.out), board)
    print(f"report: {out / 'index.html'}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from benchmark.explainers.serve import make_server, subject_answerer
    from benchmark.sources import open_source

    models = config_models(args.config) if args.config else None
    source = open_source(("models", models, args.lm) if models else ("world", args.world, args.lm))
    server = make_server(subject_answerer(source), source.lm, args.host, args.port)
    host, port = server.server_address[:2]
    print(f"serving {source.lm} at http://{host}:{port}/v1 (model {source.lm!r}); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def _sae_inspect(args: argparse.Namespace) -> int:
    from benchmark.models.sae_formats import inspect_sae

    info = inspect_sae(args.path)
    info["features"] = {  # what a run's --features counts, by protocol (`benchmark.config.protocol`)
        "featurebench": f"latent ids 0..{info['d_sae'] - 1}",
        "seed": f"positions in the sorted list of alive latents (of the {info['d_sae']}, those firing on some top-k "
                f"pool image; a run's activation pass finds them); rows still name latent ids"}
    print(json.dumps(info) if args.json else "\n".join(f"{k:<21} {v}" for k, v in info.items()))
    return 0


def _scale_bench(args: argparse.Namespace) -> int:
    from benchmark.bench.scale import scale_bench
    from benchmark.cache import cache_root
    from benchmark.registry import UsageError

    try:
        sizes = [int(n) for n in args.images.split(",")]
    except ValueError:
        raise UsageError(f"--images {args.images!r}: a comma list of pool sizes, e.g. 500,1000,2000") from None
    work = Path(args.work) if args.work else cache_root() / "scale-bench"
    report = scale_bench(args.scale_shape, sizes, work, args.python_path, args.one_process)
    if args.one_process:
        print(f"{'N':>6} {'peak RSS MB':>12} {'peak anon MB':>13} {'cache MB':>9} {'images MB':>10}   seconds")
        for r in report["runs"]:
            print(f"{r['n_images']:>6} {r['peak_rss_bytes']['max'] / 1e6:>12.0f} "
                  f"{r['peak_anon_bytes']['max'] / 1e6:>13.0f} {r['cache_bytes']['final'] / 1e6:>9.1f} "
                  f"{r['source_image_bytes'] / 1e6:>10.1f}   {r['seconds']}")
    else:
        print(f"{'N':>6} {'peak RSS MB':>12} {'cache MB':>9} {'images MB':>10}   seconds: activations / explaining / "
              f"scoring")
        for r in report["runs"]:
            s = r["seconds"]
            print(f"{r['n_images']:>6} {r['peak_rss_bytes']['max'] / 1e6:>12.0f} {r['cache_bytes']['final'] / 1e6:>9.1f} "
                  f"{r['source_image_bytes'] / 1e6:>10.1f}   {s['activations']} / {s['explaining']} / {s['scoring']}")
    for field, g in report["growth"].items():
        if g["per_image"] is None:
            continue
        print(f"{field}: {g['per_image'] / 1e3:.1f} KB per image + {g['fixed'] / 1e6:.0f} MB; at 50,000 images "
              f"{g['at_50000'] / 1e9:.2f} GB")
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
    return 0


def _shape_bench(args: argparse.Namespace) -> int:
    from benchmark.bench.shapes import run_shape_bench

    report = run_shape_bench(args.shape, args.device, random_weights=args.random_weights, path=args.checkpoint,
                             static_cache=args.static_cache)
    for name in ("steering", "hybrid"):
        r = report[name]
        print(f"{name:<9} engine {r['engine_per_s']:8.2f} feat/s   loop {r['loop_per_s']:6.2f} feat/s   x{r['engine_ratio']:.1f}")
    print(f"top-k pass {report['topk']['images_per_s']:.0f} images/s")
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
    return 0


COMMANDS = ("run", "methods", "metrics", "validate-metrics", "leaderboard", "check-submission", "findings", "report",
            "world", "bench", "sae", "serve")


def parser() -> argparse.ArgumentParser:
    from benchmark.config.protocol import PROTOCOLS

    top = argparse.ArgumentParser(prog="python -m benchmark", description="featurebench: explain SAE features, score the explanations")
    commands = top.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="explain features with one or more methods (the default command)")
    run.add_argument("--config", metavar="FILE", help="a TOML or YAML file of these options (flags override it)")
    run.add_argument("--protocol", choices=list(PROTOCOLS), help="the named set of settings every one not given "
                     "explicitly takes: featurebench (the default: the project's own) or seed (the seed paper's, as "
                     "its code runs it); README, Protocols")
    run.add_argument("--latents", choices=("ids", "alive"), help="what --features counts: latent ids, or positions in "
                     "the sorted list of alive latents (the seed paper's slices); default: the protocol's")
    run.add_argument("--method", default="hybrid", help="comma list of methods, or path/file.py:function")
    run.add_argument("--features", default="0:1024", help="start:stop or a comma list")
    run.add_argument("--lm", help="language-model size of the world's VLM (default large); with real models, the "
                     "VLM's name in rows (default: its checkpoint's last path part)")
    run.add_argument("--world", default="default", help="world: default (its shipped version, default@1), "
                     "default@train or default@seedN (trained here), tiny, or a registered plug-in; unused when the "
                     "config file has [vlm], [sae], [pool] tables")
    run.add_argument("--sae", metavar="random:SEED", help="explain a random SAE of the trained one's kind, shape and "
                     "sparsity instead (the sanity control; its rows are the source <name>+random-sae-SEED); with "
                     "real models the same as [sae] random = SEED")
    run.add_argument("--out", default="results", help="directory for run directories")
    run.add_argument("--explanations", help="CSV (feature,explanation) of explanations made elsewhere")
    run.add_argument("--top-k", type=int, default=5, help="images shown by top-k and hybrid")
    run.add_argument("--top-images", default="masked", choices=("masked", "heatmap", "viridis"),
                     help="how top-k and hybrid show each top image: masked to where the feature fires, or whole under "
                          "a green heatmap of it, or under the seed paper's viridis heatmap")
    run.add_argument("--empty", default="white", choices=("white", "black", "noise"), help="empty image for steering")
    run.add_argument("--intervention", default="add", choices=("add", "replace", "clamp"),
                     help="how steering writes: add the vector, replace the state by it, or clamp the latent's code")
    run.add_argument("--steering-multiplier", type=float, help="steering coefficient in units of the feature's mean "
                     "top activation (default: the world's tuned value)")
    run.add_argument("--steering-coeff", type=float, help="absolute steering coefficient, instead of the multiplier: "
                     "the vector's norm (the paper: 200), or with clamp the latent's code")
    run.add_argument("--hybrid-multiplier", type=float, default=1.0, help="hybrid's coefficient, same units")
    run.add_argument("--hybrid-coeff", type=float, help="hybrid's absolute coefficient (the paper: 50)")
    run.add_argument("--batch-size", type=int, default=256, help="features per generate call")
    run.add_argument("--metrics", default="all", help="metrics that score the explanations: all, none or a comma list")
    run.add_argument("--tune", metavar="METRIC", help="pick each steering coefficient by this metric's mean on a "
                     "validation slice, then run the rest with it")
    run.add_argument("--tune-features", help="validation slice for --tune (default: the first quarter of --features)")
    run.add_argument("--sweep", action="append", metavar="FIELD=V1,V2", help="with --tune, also sweep this setting "
                     "(steering_coeff, intervention, top_images, ...); repeatable")
    run.add_argument("--backend", default="local", choices=("local", "ray"), help="where explanations are computed: "
                     "this process, or shards over a Ray cluster (the ray extra)")
    run.add_argument("--address", help="Ray cluster to join (auto, ray://host:10001); default: start a local one")
    run.add_argument("--workers", type=int, help="Ray workers (default: one per GPU, else one per CPU)")
    run.set_defaults(run=_run, models=None, explainer=None, scoring=None, explaining=None)
    commands.add_parser("methods", help="list the registered methods").set_defaults(run=_methods)
    commands.add_parser("metrics", help="list the registered metrics").set_defaults(run=_metrics)
    validate = commands.add_parser("validate-metrics", help="check each metric against the world's ground truth")
    validate.add_argument("--world", default="default")
    validate.add_argument("--lm", default="large", help="LM size whose methods' explanations are correlated with oracle")
    validate.add_argument("--metrics", default="all", help="all or a comma list")
    validate.add_argument("--board", default="leaderboards", metavar="DIR", help="leaderboard directory whose rows "
                          "give each metric's trained-vs-random-SAE separation and margin over the best constant "
                          "label for this (source, LM); none: skip (default: leaderboards)")
    validate.add_argument("--json", action="store_true", help="also print the report as one JSON line (last line)")
    validate.set_defaults(run=_validate_metrics)
    board = commands.add_parser("leaderboard", help="regenerate leaderboards/*.csv from score rows (no model runs)")
    board.add_argument("--add", nargs="*", default=[], metavar="RUN_DIR", help="merge these runs' scores first")
    board.add_argument("--dir", default="leaderboards", help="leaderboard directory (rows/ inside)")
    board.add_argument("--replace", action="store_true", help="with --add: the runs' rows replace every row of their "
                       "(source, LM), e.g. after the source's models changed")
    board.add_argument("--seeds", nargs="*", default=None, metavar="DIR", help="leaderboard directories of the same "
                       "worlds at other seeds, read for pairwise.csv's reseed spread (mrd); default: DIR/seeds when it "
                       "has rows; --seeds with no DIR: none")
    board.add_argument("--readme", action="store_true", help="write DIR/README.md (what each metric column measures, "
                       "from the random-SAE and constant-label rows) from DIR's rows; no table is rewritten")
    board.add_argument("--validation", metavar="FILE", help="with --readme: validate-metrics --json output whose "
                       "ground-truth agreement joins the README's table")
    board.set_defaults(run=_leaderboard)
    submission = commands.add_parser("check-submission", help="check a run before it is added to the leaderboards: "
                                     "rows complete, the committed rows' source identity, no NaN headline")
    submission.add_argument("run_dir", metavar="RUN_DIR")
    submission.add_argument("--leaderboards", default="leaderboards", help="leaderboard directory (rows/ inside)")
    submission.set_defaults(run=_check_submission)
    findings = commands.add_parser("findings", help="the README's findings tested on every source of these "
                                   "leaderboards (a verdict on the first source, its p-value on each)")
    findings.add_argument("dirs", nargs="+", metavar="DIR", help="leaderboard directories (rows/ inside)")
    findings.add_argument("--json", action="store_true", help="also print both tables as one JSON line (last line)")
    findings.set_defaults(run=_findings)
    report = commands.add_parser("report", help="write a static HTML report of runs and leaderboards")
    report.add_argument("--run", nargs="*", default=[], dest="runs", metavar="RUN_DIR",
                        help="run directories whose features get pages")
    report.add_argument("--leaderboards", default="leaderboards", help="leaderboard directory for the index tables "
                        "('' to use the runs' own scores)")
    report.add_argument("--out", default="report", help="directory to write (an earlier report there is replaced)")
    report.set_defaults(run=_report)
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
    bench.set_defaults(run=_bench)
    world = commands.add_parser("world", help="the embedded default world").add_subparsers(dest="action", required=True)
    build = world.add_parser("build", help="build (or load from cache) a world and print its quality report")
    build.add_argument("--preset", default="default", help="world preset (tiny is for tests), or a shipped version "
                       "(default@1)")
    build.add_argument("--train", action="store_true", help="train it on this machine instead of reading the shipped "
                       "version, and print how the two differ")
    build.add_argument("--seed", type=int, help="train it from this seed (implies --train)")
    build.add_argument("--json", action="store_true", help="also print the report as one JSON line (last line)")
    build.set_defaults(run=_world_build)
    ship = world.add_parser("ship", help="train a preset and write it as the next shipped version (maintainers)")
    ship.add_argument("--preset", default="default")
    ship.set_defaults(run=_world_ship)
    sae = commands.add_parser("sae", help="SAE files").add_subparsers(dest="action", required=True)
    inspect = sae.add_parser("inspect", help="detect an SAE file's format and print its shape")
    inspect.add_argument("path", help="a SAELens directory, dictionary_learning ae.pt, saev checkpoint or .safetensors")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.set_defaults(run=_sae_inspect)
    serve = commands.add_parser("serve", help="the subject VLM behind an OpenAI-compatible chat endpoint")
    serve.add_argument("--config", metavar="FILE", help="a run config whose [vlm], [sae], ... tables name the subject")
    serve.add_argument("--world", default="default", help="world preset, when no --config")
    serve.add_argument("--lm", help="the world's LM size (default large), or the VLM's name")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(run=_serve)
    return top


def read_config(fpath: str) -> dict:
    """A TOML or YAML run config's top-level table; an unreadable file is a one-line UsageError."""
    from benchmark.registry import UsageError

    path = Path(fpath)
    if not path.is_file():
        raise UsageError(f"--config {fpath}: no such file")
    try:
        if path.suffix == ".toml":
            import tomllib

            config = tomllib.loads(path.read_text())
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            config = yaml.safe_load(path.read_text())
        else:
            raise UsageError(f"--config {fpath}: expected a .toml, .yaml or .yml file")
    except (ValueError, ImportError) as e:  # tomllib.TOMLDecodeError and yaml.YAMLError
        raise UsageError(f"--config {fpath}: {' '.join(str(e).split())}") from None
    except Exception as e:
        if type(e).__module__.startswith("yaml"):
            raise UsageError(f"--config {fpath}: {' '.join(str(e).split())}") from None
        raise
    if not isinstance(config, dict):
        raise UsageError(f"--config {fpath}: expected a table of run options at the top level")
    return config


def config_arguments(fpath: str, run: argparse.ArgumentParser) -> list[str]:
    """A TOML or YAML run config's options as `run` arguments, so argparse checks their values
    exactly as it checks flags; flags after these override the file. The model tables are
    `config_models`' to read."""
    from benchmark.config.models import ALL_TABLES as TABLES
    from benchmark.registry import UsageError

    flags = {a.dest: a for a in run._actions if a.option_strings and a.dest not in ("help", "config")}
    out: list[str] = []
    for key, value in read_config(fpath).items():
        dest = str(key).replace("-", "_")
        if (dest in TABLES and not (dest == "sae" and isinstance(value, str))) or dest in ("explainer", "scoring",
                                                                                             "explaining"):
            continue  # a top-level sae = "random:0" is the --sae flag; an [sae] table, config_models'
        if dest not in flags:
            close = difflib.get_close_matches(dest, [*flags, *TABLES], n=1)
            raise UsageError(f"--config {fpath}: unknown option {key!r}; " + (f"did you mean {close[0]!r}? " if close else "")
                             + f"options: {', '.join(sorted(flags))}; tables: {', '.join(TABLES)}")
        if dest == "explanations" and isinstance(value, str) and (Path(fpath).parent / value).is_file():
            value = str(Path(fpath).parent / value)  # a file named in a config is read from the config's folder
        flag = flags[dest].option_strings[0]
        if isinstance(value, list) and isinstance(flags[dest], argparse._AppendAction):
            out += [part for item in value for part in (flag, str(item))]  # one flag per item
            continue
        if isinstance(value, list):
            value = ",".join(map(str, value))
        if isinstance(value, bool) or isinstance(value, dict) or value is None:
            raise UsageError(f"--config {fpath}: {key} = {value!r} is not a value for {flag}")
        out += [flag, str(value)]
    return out


def config_models(fpath: str) -> ModelsConfig | None:
    """The real models a run config's [vlm], [sae], [scorer], [pool], [prompts], [generator] and
    [segmenter] tables name
    (`benchmark.config.models.ModelsConfig`), or None when it has none: the run explains the world."""
    from benchmark.config.models import ALL_TABLES as TABLES
    from benchmark.config.models import models_config

    names = {str(k).replace("-", "_"): v for k, v in read_config(fpath).items()}
    tables = {k: v for k, v in names.items() if k in TABLES and not (k == "sae" and isinstance(v, str))}  # --sae
    return models_config(tables, f"--config {fpath}").relative_to(Path(fpath).parent) if tables else None


def random_sae(value: str | None) -> int | None:
    """`--sae random:<seed>`'s seed (None: the trained SAE); a malformed value is a one-line UsageError."""
    from benchmark.config.models import parse_random_sae

    return None if value is None else parse_random_sae(value)


def scoring_config(args: argparse.Namespace):
    """The metrics' settings (`benchmark.config.scoring.ScoringConfig`): the config file's `[scoring]` table,
    checked key by key, over `top_k` and `top_images` taken from the methods' flags."""
    from benchmark.config.models import read_table
    from benchmark.config.scoring import ScoringConfig

    table = args.scoring or {}
    where = f"--config {args.config}: [scoring]"
    return read_table(ScoringConfig, {"top_k": args.top_k, "top_images": args.top_images, **table}, where)


def explaining_config(args: argparse.Namespace) -> dict:
    """The config file's `[explaining]` table: the method settings a protocol governs and no flag sets
    (`firing_only`, `direction`, `permute`), checked key by key; what it leaves out, the protocol sets."""
    from benchmark.config.method import MethodConfig
    from benchmark.config.models import read_table
    from benchmark.config.protocol import FEATUREBENCH
    from benchmark.registry import UsageError

    table = {str(k).replace("-", "_"): v for k, v in (args.explaining or {}).items()}
    where = f"--config {args.config}: [explaining]"
    unknown = sorted(set(table) - set(FEATUREBENCH.method))
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}; keys: {', '.join(FEATUREBENCH.method)}")
    read = read_table(MethodConfig, table, where)
    return {k: getattr(read, k) for k in table}


def config_table(fpath: str, name: str) -> dict | None:
    """A run config's table `name`, or None."""
    return {str(k).replace("-", "_"): v for k, v in read_config(fpath).items()}.get(name)


def config_explainer(fpath: str):
    """The run config's `[explainer]` (`benchmark.explainers.ExplainerSpec`), or None: the subject answers."""
    from benchmark.explainers import ExplainerSpec

    table = {str(k).replace("-", "_"): v for k, v in read_config(fpath).items()}.get("explainer")
    return None if table is None else ExplainerSpec.from_table(table, f"--config {fpath}")


def main(argv: list[str] | None = None) -> int:
    from benchmark.registry import UsageError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")
    top = parser()
    args = top.parse_args(argv)
    try:
        if getattr(args, "config", None) and args.run is _run:
            run = top._subparsers._group_actions[0].choices["run"]
            args = top.parse_args(["run", *config_arguments(args.config, run), *argv[1:]])
            args.models = config_models(args.config)
            args.explainer = config_explainer(args.config)
            args.scoring = config_table(args.config, "scoring")
            args.explaining = config_table(args.config, "explaining")
        return args.run(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
