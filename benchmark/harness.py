"""The harness's paths: which modules turn a request into a cached result, and their identity in the
cache keys.

A method's code identity (`benchmark.identity.code_identity`) follows the functions it calls by
name, but not the harness behind `ctx.answer(...)` or `ctx.image_means(...)`: the steering engine,
interventions, the adapters, top-image masking, the stores, the scoring context. An edit there
changes every answer and score while the keys stay the same. So each cache key also holds the
identity of the modules on its path. A path is named by its entry modules; its modules are derived,
never listed: the entry's import closure over project modules (`benchmark.*`, imports inside
functions included), less `NEUTRAL`, the named infrastructure whose code cannot change a number:

- `activations`: the streamed pass that encodes a pool and the stores it writes; in the keys of the
  activation stores, so also on the two paths below;
- `answering`: what answers a method (`Context`, the steering engine, interventions, top images,
  explainers, the answer's clean-up); in every explanation key;
- `scoring`: what metrics read through `ScoringContext`; in every score key.

Each key also holds the module of the source's VLM adapter (a plug-in's file where it is one).
A module's identity is the sha256 of its file: any edit recomputes (a comment too; recomputing
more than needed is the safe side). A module off a path (the leaderboard, the report, the CLI)
changes no key.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import inspect
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""Where project modules are read from: the checkout the `benchmark` package was imported from."""

ENTRIES = {"activations": ("benchmark.activations.passes",),
           "answering": ("benchmark.activations.passes", "benchmark.explaining.context", "benchmark.explainers.endpoint"),
           "scoring": ("benchmark.activations.passes", "benchmark.scoring.context")}
"""Each path's entry modules: what computes the thing its keys name. A plug-in registered lazily (by
module name, `Registry.register_lazy`) is imported by no module, so the built-in explainer is named
here; the VLM adapters are keyed by the family a source uses (`adapter_file`)."""

NEUTRAL = frozenset({
    "benchmark.harness",  # these keys themselves
    "benchmark.identity",  # content identities: a change changes keys, never a number
    "benchmark.cache",  # where entries live and how they are written atomically
    "benchmark.results.rows",  # the append-only row store: how rows are written, not what they hold
})
"""Infrastructure on the paths whose code decides where and how results are kept, not what they are."""

PROJECT = "benchmark"


def module_file(name: str) -> Path:
    """The source file of project module `name` under `ROOT` (a package: its `__init__.py`)."""
    base = ROOT.joinpath(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _parents(name: str) -> list[str]:
    """`a.b.c` -> [a.b, a]: the packages whose `__init__` importing `name` runs too."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def imports(name: str) -> set[str]:
    """The project modules module `name` imports anywhere in its file (at the top, inside functions,
    under TYPE_CHECKING), with their parent packages: `from a import b` names `a.b` where that is a
    module and `a` in any case."""
    package = name if module_file(name).name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(module_file(name).read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from its package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if _is_module(f"{base}.{alias.name}"))
    project = {m for m in found if m.split(".")[0] == PROJECT and _is_module(m)}
    return project | {p for m in project for p in _parents(m)}


@functools.cache
def _closure(entries: tuple[str, ...], root: Path) -> tuple[str, ...]:
    todo, seen = list(entries), set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += imports(name) - seen
    return tuple(sorted(seen - NEUTRAL))


def path_modules(path: str) -> tuple[str, ...]:
    """The modules on `path` (a key of `ENTRIES`): its entries' import closure less `NEUTRAL`."""
    return _closure(ENTRIES[path], ROOT)


def adapter_file(family: str) -> Path:
    """The module defining the VLM family's adapter: a project module under `ROOT`, or a plug-in's file."""
    from benchmark.models.adapters import ADAPTERS

    adapter = ADAPTERS.get(family)
    module = adapter.__module__
    return module_file(module) if module.startswith("benchmark.") else Path(inspect.getsourcefile(adapter))


def path_identity(path: str, family: str | None = None) -> str:
    """12-hex identity of the modules on `path` and of the `family` adapter's module."""
    files = [(name, module_file(name)) for name in path_modules(path)]
    if family is not None:
        files.append((f"adapter:{family}", adapter_file(family)))
    h = hashlib.sha256()
    for name, fpath in files:
        h.update(f"\0{name}\0".encode() + fpath.read_bytes())
    return h.hexdigest()[:12]
