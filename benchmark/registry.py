"""One registry type for every kind of pluggable component: methods (here) and metrics
(`benchmark.scoring.metric.METRICS`), both light so that names are checked before any model library is
imported; sources
(`benchmark.sources.SOURCES`), VLM adapters (`benchmark.models.adapters.ADAPTERS`), world presets
(`benchmark.world.presets.WORLDS`).

    METHODS = Registry("method", entry_point_group="featurebench.methods")

    @METHODS.register("steering")
    def steering(feature, context): ...

    METHODS.register_lazy("topk", "methods.topk:topk")   # imported on first use
    METHODS.get("steering")                               # by name
    METHODS.get("plugins/mine.py:explain")                # a function in a file on disk

A name is looked up among registered components, then the entry-point group (installed plug-ins),
then as `path.py:function`. A name that finds nothing raises `UsageError` with the close matches.
"""
from __future__ import annotations

import ast
import difflib
import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class UsageError(Exception):
    """A mistake the user can fix (unknown name, bad path, malformed file): the CLI prints the
    message as one line and exits with code 2."""


def warn(message: str) -> None:
    """One line on stderr for what runs but should worry a user (expected things stay silent)."""
    print(f"warning: {message}", file=sys.stderr)


class Registry(Generic[T]):
    def __init__(self, kind: str, entry_point_group: str | None = None, contract: Callable[[object], T] | None = None):
        """`contract(obj)`: what a plug-in loaded from an entry point or a file must be, as the item
        the registry holds (it may unwrap a decorated function); raises TypeError saying what it
        should be. None: anything."""
        self.kind, self.group, self.contract = kind, entry_point_group, contract
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}

    def register(self, name: str, module: str | None = None) -> Callable[[T], T]:
        """Registers an item under `name`; `module` (default: the item's own) is where it is defined,
        so that a module named by a lazy entry can register its item when it is imported."""
        def add(item: T) -> T:
            if self.contract is not None:  # checked as it registers: a plug-in that breaks it fails on import
                self.contract(item)
            if self._lazy.get(name) == (module or getattr(item, "__module__", None)):
                del self._lazy[name]
            if name in self._items or name in self._lazy:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return add

    def register_lazy(self, name: str, target: str) -> None:
        """Registers `module:attr`, or a `module` that registers `name` itself when imported; nothing
        is imported until the name is first asked for."""
        if name in self._items or name in self._lazy:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._lazy[name] = target

    def register_package(self, package: str, decorator: str, registry: str | None = None) -> None:
        """Registers lazily every name a module of `package` gives to `@<decorator>("name", ...)`,
        `@<decorator>(name="name")` or `@<registry>.register("name")`, found by reading the modules'
        source (ast), not importing them: a package of built-ins whose modules import torch costs
        nothing until one is asked for, and adding one stays one file."""
        folder = importlib.util.find_spec(package).submodule_search_locations[0]
        for fpath in sorted(Path(folder).glob("*.py")):
            for node in ast.walk(ast.parse(fpath.read_text(), str(fpath))):
                name = _registered_name(node, decorator, registry)
                if name is not None:
                    self.register_lazy(name, f"{package}.{fpath.stem}")

    def check(self, name: str) -> None:
        """The UsageError `get` would raise for an unknown name, importing nothing of what is known."""
        if name in self._items or name in self._lazy or name in self._entry_points():
            return
        if is_file_spec(name):
            return  # a file plug-in: `get` imports it and says what is wrong with it
        self.get(name)

    def names(self) -> list[str]:
        return sorted({*self._items, *self._lazy, *self._entry_points()})

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        if name in self._lazy:
            target = self._lazy.pop(name)
            if ":" in target:
                self._items[name] = _import_target(target)
            else:
                importlib.import_module(target)  # registers `name` itself
            if name not in self._items:
                raise ValueError(f"{target} did not register {self.kind} {name!r}")
            return self._items[name]
        entry_points = self._entry_points()
        if name in entry_points:
            try:
                loaded = entry_points[name].load()
            except Exception as e:
                raise UsageError(f"{self.kind} plug-in {name!r} failed to load: {type(e).__name__}: {e}") from e
            self._items[name] = self._checked(loaded, f"{self.kind} plug-in {name!r} ({entry_points[name].value})")
            return self._items[name]
        if is_file_spec(name):
            return self._checked(_load_from_file(name, self.kind), f"{self.kind} file {name}")
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UsageError(f"unknown {self.kind} {name!r}; {hint}available: {', '.join(self.names())}")

    def resolve(self, spec: str) -> tuple[str, T]:
        """(the name rows and caches use, the item) for a registered name or a `file.py:attr` plug-in.
        A file plug-in goes by the name it registered itself under when imported (a decorator's),
        else by its function's name; never by how its path was spelt, so `./mine.py:explain` and
        `mine.py:explain` are one method with one cache."""
        item = self.get(spec)
        if not is_file_spec(spec):
            return spec, item
        declared = next((name for name, value in self._items.items() if value is item), None)
        if declared is not None:
            return declared, item
        name = getattr(item, "__name__", None) or spec.rsplit(":", 1)[1]
        if name in self._items or name in self._lazy or name in self._entry_points():
            raise UsageError(f"{self.kind} file {spec}: its function is named {name!r}, as a registered {self.kind} "
                             f"is; rename the function or register it under a name of its own")
        return name, item

    def _checked(self, loaded: object, route: str) -> T:
        """`loaded` as the registry's item, or a UsageError naming the route and what it should be."""
        if self.contract is None:
            return loaded
        try:
            return self.contract(loaded)
        except TypeError as e:
            raise UsageError(f"{route}: {e}") from None

    def _entry_points(self) -> dict[str, importlib.metadata.EntryPoint]:
        if not self.group:
            return {}
        return {ep.name: ep for ep in importlib.metadata.entry_points(group=self.group)}


def _registered_name(node: ast.AST, decorator: str, registry: str | None) -> str | None:
    """The literal name a call `decorator("x")`, `decorator(name="x")` or `registry.register("x")` registers."""
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    by_decorator = isinstance(func, ast.Name) and func.id == decorator
    by_registry = (registry is not None and isinstance(func, ast.Attribute) and func.attr == "register"
                   and isinstance(func.value, ast.Name) and func.value.id == registry)
    if not (by_decorator or by_registry):
        return None
    literal = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "name"), None)
    return literal.value if isinstance(literal, ast.Constant) and isinstance(literal.value, str) else None


PLUGIN_MODULE = "featurebench_plugin_"
"""Prefix of the module name a `file.py:attr` plug-in is imported under."""


def is_file_spec(spec: str) -> bool:
    """Whether `spec` names a function in a file on disk (`path/file.py:attr`)."""
    return ":" in spec and spec.rsplit(":", 1)[0].endswith(".py")


def _import_target(target: str):
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


_file_modules: dict[Path, object] = {}
"""Plug-in files imported so far, by resolved path: one file is one module however it is spelt."""


def _load_from_file(spec: str, kind: str):
    path_text, attr = spec.rsplit(":", 1)
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"{kind} file {path} does not exist")
    if path.resolve() not in _file_modules:
        module_spec = importlib.util.spec_from_file_location(f"{PLUGIN_MODULE}{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:
            raise UsageError(f"{kind} file {path} failed to import: {type(e).__name__}: {e}") from e
        _file_modules[path.resolve()] = module
    module = _file_modules[path.resolve()]
    if not callable(getattr(module, attr, None)):
        raise UsageError(f"{kind} file {path} has no function {attr!r}")
    return getattr(module, attr)


def class_contract(what: str, members: tuple[str, ...] = (), base: type | None = None) -> Callable[[object], type]:
    """The contract of a registry of classes: a class (a subclass of `base`) with `members`."""
    def check(obj: object) -> type:
        if not (isinstance(obj, type) and (base is None or issubclass(obj, base))
                and all(hasattr(obj, m) for m in members)):
            raise TypeError(f"{obj!r} is not {what}")
        return obj

    return check


def _as_method(obj: object) -> Callable[..., list[str]]:
    if not callable(obj) or isinstance(obj, type):
        raise TypeError(f"{obj!r} is not a method; give a function explain(ctx, features) -> list[str]")
    return obj


METHODS: Registry[Callable[..., list[str]]] = Registry("method", entry_point_group="featurebench.methods",
                                                      contract=_as_method)
"""Explanation methods: `method(ctx: Context, features: list[int]) -> list[str]`, batched over features
(`benchmark.explaining.context.method` registers one with the capabilities it needs)."""
