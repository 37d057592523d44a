"""Explaining features with one method, cached: each method's explanations, with what each cost,
are stored per (the source's VLM, SAE, pools and prompts by content, method name, code identity of
the method and what it calls, of the harness that answers it (`benchmark.harness`), method config,
explainer) in an append-only store, so a run killed at any moment and started again
redoes nothing it finished."""
from __future__ import annotations

from dataclasses import asdict

from tqdm import tqdm

from benchmark.cache import config_hash
from benchmark.explaining.backends import Backend, LocalBackend
from benchmark.explaining.context import Context, method_reads
from benchmark.harness import path_identity
from benchmark.identity import code_identity
from benchmark.registry import UsageError
from benchmark.results.rows import RowStore


def method_key(ctx: Context, name: str, fn) -> dict:
    """The source's VLM (whose tower the SAE reads, and who answers unless another explainer does),
    SAE, pools and prompts, the method's name, code and settings, and the explainer's identity (the
    endpoint and model), not its raw table (a key or a concurrency does not change answers)."""
    identity = ctx.source.identity
    config = asdict(ctx.config)
    del config["explainer"]
    if "evaluated" not in method_reads(fn):  # the run's feature list changes no other method's answers
        del config["evaluated"]
    return {"source": {role: identity[role] for role in ("vlm", "sae", "pools", "prompts")}, "method": name,
            "code": code_identity(fn), "harness": path_identity("answering", ctx.source.spec.vlm.family),
            "config": config,
            "explainer": None if ctx.explainer is None else ctx.explainer.identity}


def explain(ctx: Context, name: str, fn, features: list[int], backend: Backend | None = None) -> dict[int, str]:
    """Explanations of `features` (`explain_rows` without their costs)."""
    return {f: row["explanation"] for f, row in explain_rows(ctx, name, fn, features, backend).items()}


def explain_rows(ctx: Context, name: str, fn, features: list[int], backend: Backend | None = None) -> dict[int, dict]:
    """Per feature, its explanation, the answer it was cleaned from (`answer`: the method's own text
    when it asked no VLM) and what it cost when it was computed (`cost`: seconds, prompt
    and answer tokens, images; `benchmark.explaining.backends.in_batches`), reading what the store has and
    computing only the rest. The backend computes (here, or shards on workers); only this process
    writes the store, one append per finished shard, so a retried shard can never be stored twice."""
    store = RowStore(ctx.source.root / "explanations" / f"{name.replace('/', '_')}-{config_hash(method_key(ctx, name, fn))}.jsonl")
    done = {int(row["feature"]): {"explanation": str(row["explanation"]), "answer": row.get("answer", row["explanation"]),
                                  "cost": row.get("cost", {})} for row in store.load() if "explanation" in row}
    todo = [f for f in features if f not in done]
    with tqdm(total=len(todo), desc=name, unit="feature", disable=not todo) as bar:
        for chunk, texts, cost in (backend or LocalBackend()).explain(ctx, name, fn, todo):
            if len(texts) != len(chunk):
                raise UsageError(f"method {name!r} returned {len(texts)} explanations for {len(chunk)} features")
            rows = [{"feature": f, "explanation": str(t), "answer": getattr(t, "raw", str(t)), "cost": cost}
                    for f, t in zip(chunk, texts)]
            store.append(rows)
            done.update((r["feature"], {"explanation": r["explanation"], "answer": r["answer"], "cost": cost})
                        for r in rows)
            bar.update(len(chunk))
    return {f: done[f] for f in features}
