"""Explaining features with one method, cached: each method's explanations are stored per (world
models, LM size, SAE, method, method source, method config) in an append-only store, so a run
killed at any moment and started again redoes nothing it finished."""
from __future__ import annotations

import hashlib
import inspect
from dataclasses import asdict

from tqdm import tqdm

from benchmark.cache import config_hash
from benchmark.context import Context
from benchmark.registry import UsageError
from benchmark.results import RowStore


def method_key(ctx: Context, name: str, fn) -> dict:
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = repr(fn)
    return {"vlm": ctx.world.dirs[f"vlm-{ctx.lm}"].name, "sae": ctx.world.dirs["sae"].name, "method": name,
            "source": hashlib.sha256(source.encode()).hexdigest()[:12], "config": asdict(ctx.config)}


def explain(ctx: Context, name: str, fn, features: list[int]) -> dict[int, str]:
    """Explanations of `features`, reading what the store has and computing only the rest."""
    store = RowStore(ctx.world.root / "explanations" / f"{name.replace('/', '_')}-{config_hash(method_key(ctx, name, fn))}.jsonl")
    done = {int(row["feature"]): str(row["explanation"]) for row in store.load() if "explanation" in row}
    todo = [f for f in features if f not in done]
    batch = ctx.config.batch_size
    for start in tqdm(range(0, len(todo), batch), desc=name, unit="batch", disable=not todo):
        chunk = todo[start:start + batch]
        texts = fn(ctx, chunk)
        if len(texts) != len(chunk):
            raise UsageError(f"method {name!r} returned {len(texts)} explanations for {len(chunk)} features")
        store.append([{"feature": f, "explanation": str(t)} for f, t in zip(chunk, texts)])
        done.update(zip(chunk, map(str, texts)))
    return {f: done[f] for f in features}
