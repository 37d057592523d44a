"""Explaining features with one method, cached: each method's explanations are stored per (the
source's VLM, SAE, pools and prompts by content, method name, code identity of the method and what
it calls, method config) in an append-only store, so a run killed at any moment and started again
redoes nothing it finished."""
from __future__ import annotations

from dataclasses import asdict

from tqdm import tqdm

from benchmark.backends import Backend, LocalBackend
from benchmark.cache import config_hash
from benchmark.context import Context
from benchmark.identity import code_identity
from benchmark.registry import UsageError
from benchmark.results import RowStore


def method_key(ctx: Context, name: str, fn) -> dict:
    identity = ctx.source.identity
    return {"source": {role: identity[role] for role in ("vlm", "sae", "pools", "prompts")}, "method": name,
            "code": code_identity(fn), "config": asdict(ctx.config)}


def explain(ctx: Context, name: str, fn, features: list[int], backend: Backend | None = None) -> dict[int, str]:
    """Explanations of `features`, reading what the store has and computing only the rest. The
    backend computes (here, or shards on workers); only this process writes the store, one append
    per finished shard, so a retried shard can never be stored twice."""
    store = RowStore(ctx.source.root / "explanations" / f"{name.replace('/', '_')}-{config_hash(method_key(ctx, name, fn))}.jsonl")
    done = {int(row["feature"]): str(row["explanation"]) for row in store.load() if "explanation" in row}
    todo = [f for f in features if f not in done]
    with tqdm(total=len(todo), desc=name, unit="feature", disable=not todo) as bar:
        for chunk, texts in (backend or LocalBackend()).explain(ctx, name, fn, todo):
            if len(texts) != len(chunk):
                raise UsageError(f"method {name!r} returned {len(texts)} explanations for {len(chunk)} features")
            store.append([{"feature": f, "explanation": str(t)} for f, t in zip(chunk, texts)])
            done.update(zip(chunk, map(str, texts)))
            bar.update(len(chunk))
    return {f: done[f] for f in features}
