"""Resolving a protocol: the one place where a setting nobody gave takes the run's protocol's value.

A setting a protocol governs is declared once, in its settings dataclass, with `governed(item)`
(`benchmark.config.fields`): its default None means "not given", and `item` names the
PAPER_PROTOCOL.md item it implements. Each
protocol (`benchmark.config.protocol`) holds one typed value per governed field, by the dataclass's
`PART`. `resolve` runs where a run's settings become objects (the top of `benchmark.pipeline.run`, a
source as it is opened, a command's own settings); every stage below receives resolved, frozen
objects and checks them with `require_resolved`: no stage reads a protocol.
"""
from __future__ import annotations

from dataclasses import fields, replace
from typing import TypeVar

from benchmark.config.fields import governed_fields
from benchmark.config.protocol import protocol

T = TypeVar("T")


def resolve(obj: T, name: str | None) -> T:
    """`obj` (a frozen settings dataclass with a `PART`) with every governed field still None set to
    protocol `name`'s value (None: featurebench), and every settings dataclass it holds resolved the
    same way (a run's method and scoring settings); a value given explicitly stays."""
    values = getattr(protocol(name), type(obj).PART)
    changes = {f: values[f] for f in governed_fields(type(obj)) if getattr(obj, f) is None}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if hasattr(type(value), "PART") and f.name not in changes:
            changes[f.name] = resolve(value, name)
    return replace(obj, **changes) if changes else obj


def require_resolved(obj: object) -> None:
    """Raises unless every governed field of `obj` (and of the settings it holds) has a value: a
    stage given unresolved settings would otherwise compute with a setting nobody chose."""
    unset = [f for f in governed_fields(type(obj)) if getattr(obj, f) is None]
    for f in fields(obj):
        if hasattr(type(getattr(obj, f.name)), "PART"):
            require_resolved(getattr(obj, f.name))
    if unset:
        raise ValueError(f"{type(obj).__name__}: {', '.join(unset)} unset; resolve it under a protocol first "
                         f"(benchmark.config.resolve.resolve)")
