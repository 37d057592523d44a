"""Cheap identities for cache keys: of files on disk (`fingerprint`) and of code (`code_identity`).

A cache keyed by a path or a function's name serves stale results once a checkpoint is re-saved at
the same path or a helper is edited; these key on content instead.

`fingerprint` reads, for every file under the path, its relative name and size, and hashes: the
whole file if it is at most 1 MiB (configs, JSON, tokenizer files); else the first 64 KiB (for
safetensors the JSON header: tensor names, dtypes, shapes, offsets), the last 64 KiB and 16 blocks
of 4 KiB at evenly spaced offsets -- under 200 KiB per large file. Hashing a whole multi-GB
checkpoint costs about a minute; names, sizes, headers and samples catch a re-save, a different
checkpoint, a changed config. What it can miss: an in-place edit of a large file that keeps its
size and changes only bytes between the samples (e.g. some weights fine-tuned and written back
into the same file). Results are memoised per process on the size and mtime_ns of every file, so
a same-size rewrite that keeps the mtime (within one clock tick, or `cp -p`) is not re-read.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import sysconfig
import types
from pathlib import Path

SMALL, EDGE, BLOCK, N_BLOCKS = 1 << 20, 64 << 10, 4 << 10, 16
_memo: dict[tuple, str] = {}


def _files(root: Path) -> list[tuple[str, Path]]:
    """Sorted (relative name, path) of the files under `root`, skipping hidden names and
    `__pycache__`; follows symlinks (Hugging Face cache snapshots link to blobs)."""
    if root.is_file():
        return [(".", root)]  # a lone file's own name is not content: copies elsewhere match
    out, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        if os.path.realpath(dirpath) in seen:  # a symlink loop
            dirnames[:] = []
            continue
        seen.add(os.path.realpath(dirpath))
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        for name in filenames:
            if not name.startswith("."):
                p = Path(dirpath, name)
                out.append((p.relative_to(root).as_posix(), p))
    return sorted(out)


def _file_digest(path: Path, size: int) -> str:
    """sha256 of the whole file when small, else of its head, tail and evenly spaced blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= SMALL:
            h.update(f.read())
            return h.hexdigest()
        offsets = [0, size - EDGE] + [(i + 1) * size // (N_BLOCKS + 1) for i in range(N_BLOCKS)]
        for off, n in zip(offsets, [EDGE, EDGE] + [BLOCK] * N_BLOCKS):
            f.seek(off)
            h.update(f.read(n))
    return h.hexdigest()


def fingerprint(path: str | Path) -> str:
    """16-hex content identity of a file or directory (see the module docstring for what is read).
    Raises FileNotFoundError for a missing path; resolving hub ids is the caller's job."""
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    stats = [(rel, p, p.stat()) for rel, p in _files(root)]
    key = (str(root), tuple((rel, s.st_size, s.st_mtime_ns) for rel, _, s in stats))
    if key not in _memo:
        h = hashlib.sha256(b"dir" if root.is_dir() else b"file")
        for rel, p, s in stats:
            h.update(f"\0{rel}\0{s.st_size}\0{_file_digest(p, s.st_size)}".encode())
        _memo[key] = h.hexdigest()[:16]
    return _memo[key]


_LIBRARY_DIRS = tuple(str(Path(sysconfig.get_paths()[k]).resolve()) for k in ("stdlib", "platstdlib"))


def _is_project(obj: object) -> bool:
    """True for code in a source file outside site-packages, dist-packages and the stdlib."""
    try:
        file = inspect.getfile(obj)
    except TypeError:  # builtins, C extensions
        return False
    if file.startswith("<") or "site-packages" in file or "dist-packages" in file:
        return False  # REPL / frozen modules, installed libraries
    return not str(Path(file).resolve()).startswith(_LIBRARY_DIRS)


def _code_names(code: types.CodeType) -> set[str]:
    """Names a code object looks up, including those of nested lambdas and comprehensions."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _sources(fn: object) -> dict[str, str]:
    """{qualified name: source} of `fn` and of the project functions and classes it reaches
    through global names (recursively, each once)."""
    out: dict[str, str] = {}
    todo, seen = [fn], set()
    while todo:
        obj = todo.pop()
        obj = inspect.unwrap(getattr(obj, "__func__", obj))  # bound methods, functools.wraps
        if not (inspect.isroutine(obj) or inspect.isclass(obj)):
            obj = type(obj)  # a callable instance: its class
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        name = f"{getattr(obj, '__module__', None)}.{getattr(obj, '__qualname__', '?')}"
        try:
            out[name] = inspect.getsource(obj)
        except (OSError, TypeError):  # no source: builtins, REPL definitions
            out[name] = getattr(getattr(obj, "__code__", None), "co_code", b"").hex()
        functions = [obj] if inspect.isfunction(obj) else []
        if inspect.isclass(obj):
            todo += [base for base in obj.__mro__[1:] if _is_project(base)]
            for member in vars(obj).values():
                member = getattr(member, "__func__", None) or getattr(member, "fget", None) or member
                if inspect.isfunction(member):
                    functions.append(inspect.unwrap(member))
        for f in functions:
            for ref in _code_names(f.__code__):
                value = f.__globals__.get(ref)
                if (inspect.isfunction(value) or inspect.isclass(value)) and _is_project(value):
                    todo.append(value)
                elif ref in f.__globals__ and not callable(value) and not inspect.ismodule(value):
                    try:  # a module-level constant such as THRESHOLD = 0.5: its value, if JSON
                        out[f"{f.__module__}.{ref}"] = json.dumps(value, sort_keys=True)
                    except (TypeError, ValueError):
                        pass  # other objects: no repr that is stable across processes
    return out


def code_identity(fn: object) -> str:
    """12-hex identity of the source of a function, method or class and of the project code it
    calls, so that editing a helper invalidates cached results of every method/metric using it.

    Followed: global names the code looks up (also in nested lambdas and comprehensions) that
    resolve to functions or classes defined outside site-packages, dist-packages and the stdlib
    (libraries change with their versions, not hashed here); for classes, their methods' globals
    and project base classes; `functools.wraps` wrappers are unwrapped; module-level constants
    whose value is JSON (numbers, strings, lists/dicts of them) by value. Not followed: attribute
    calls like `ctx.answer(...)` or `module.helper(...)` -- the harness behind `ctx` is in the keys
    through `benchmark.harness`. An attribute name that equals a global name pulls that
    global in; that only over-invalidates. Source is read from disk: a file edited while a run is
    going gets its new identity although that run still executes the old code.
    """
    pairs = sorted(_sources(fn).items())
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:12]
