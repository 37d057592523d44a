"""Explainers: what answers a method's prompt with images.

The subject VLM (the one whose tower carries the SAE) is the default explainer: `Context.answer`
asks it through the steering engine, and only it can be steered. Any other explainer answers the
same prompts with the same images, unsteered: methods that need no access to the subject's
internals (`topk`, `caption-top1`, `describe-top1`, `no-steer`, `random-words`, ...) can use one;
methods registered with `steers=True` (steering, hybrid and their controls) are refused with one
line when a run names another explainer.

A run config names one in `[explainer]`: a `kind` and its settings, e.g. any OpenAI-compatible
chat endpoint that takes images (`benchmark.explainers.endpoint`):

    [explainer]
    kind = "openai"
    base_url = "http://localhost:8000/v1"
    model = "google/gemma-3-27b-it"
    api_key_env = "OPENAI_API_KEY"

Plug-in explainers register under the entry-point group `featurebench.explainers`: a class with a
`settings` dataclass, `__init__(settings, cache_dir)`, `check()`, `identity` and `answer`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from benchmark.registry import Registry, UsageError, class_contract

EXPLAINERS: Registry[type] = Registry("explainer", entry_point_group="featurebench.explainers", contract=class_contract(
    "an explainer: a class with a `settings` dataclass, check() and answer()", ("settings", "check", "answer")))
EXPLAINERS.register_lazy("openai", "benchmark.explainers.endpoint")  # registers itself when imported


class Answer(NamedTuple):
    text: str
    prompt_tokens: int
    """Tokens of the prompt as the explainer counted them (images included); for an endpoint, the
    provider's reported usage."""
    answer_tokens: int


class Explainer(Protocol):
    identity: str
    """What its answers depend on (endpoint, model, settings that change answers): part of every
    explanation's cache key."""

    def check(self) -> None:
        """A one-line UsageError when it cannot be used as configured; sends nothing."""

    def answer(self, images_BNHWC: np.ndarray, prompt: str, max_new_tokens: int, answer_prefix: str) -> list[Answer]:
        """One greedy answer per row, row b showing its N images (uint8) before the prompt; the answer
        continues `answer_prefix`, which is not part of it."""


@dataclass(frozen=True)
class ExplainerSpec:
    """`[explainer]` as written: its kind and settings (hashable, so a method config can carry it)."""

    kind: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_table(cls, table: object, where: str) -> ExplainerSpec:
        if not isinstance(table, dict) or not isinstance(table.get("kind"), str):
            raise UsageError(f"{where}: [explainer] must be a table with kind = one of {', '.join(EXPLAINERS.names())}")
        return cls(table["kind"], tuple(sorted((str(k), v) for k, v in table.items() if k != "kind")))

    def table(self) -> dict:
        return {"kind": self.kind, **dict(self.options)}


def open_explainer(spec: ExplainerSpec, cache_dir) -> Explainer:
    """The explainer `spec` names, its settings checked, ready to answer (nothing is sent yet)."""
    from benchmark.sources.components import open_component

    explainer = open_component(EXPLAINERS, spec.table(), "[explainer]", cache_dir=cache_dir)
    explainer.check()
    return explainer
