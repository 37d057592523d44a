"""The harness is in the keys: editing a function in any module on a path (`benchmark.harness`)
changes the keys of what that path caches, and the cached rows are recomputed; editing a module off
every path changes nothing; and no module a path imports is missing from its key."""
import ast
import dis
import shutil
import types
from pathlib import Path

import pytest

from benchmark import harness
from benchmark.config.method import MethodConfig
from benchmark.config.resolve import resolve
from benchmark.config.run import RunConfig
from benchmark.config.scoring import ScoringConfig
from benchmark.explaining.context import Context
from benchmark.explaining.explain import method_key
from benchmark.pipeline import run
from benchmark.registry import METHODS
from benchmark.scoring.context import ScoringContext

OFF_PATH = ("benchmark.results.leaderboard", "benchmark.report.html", "benchmark.cli", "benchmark.models.adapters.gemma3")
"""Modules no key reads: tables, the report, the command line, and an adapter of another family than
the tiny world's (llava)."""


def imported_by_bytecode(name: str) -> set[str]:
    """The project modules `name`'s compiled code imports (every IMPORT_NAME in it and its nested
    code, with the names a `from` import takes), found from bytecode: another route than the
    harness's syntax tree."""
    fpath = harness.module_file(name)
    package = name if fpath.name == "__init__.py" else name.rpartition(".")[0]
    found, todo = set(), [compile(fpath.read_text(), str(fpath), "exec")]
    while todo:
        code = todo.pop()
        todo += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        args = []
        for ins in dis.get_instructions(code):
            if ins.opname == "LOAD_CONST":
                args.append(ins.argval)
            elif ins.opname == "IMPORT_NAME":
                level, fromlist = args[-2], args[-1]
                base = ins.argval
                if level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - level + 1] + ([base] if base else []))
                parts = base.split(".")
                found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
                found |= {f"{base}.{n}" for n in fromlist or ()}
    return {m for m in found if m.startswith("benchmark") and (harness.module_file(m).is_file())}


def independent_closure(path: str) -> set[str]:
    todo, seen = list(harness.ENTRIES[path]), set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += imported_by_bytecode(name) - seen
    return seen


def missing_from_keys(path: str, keyed: set[str]) -> set[str]:
    """Modules imported on `path` whose code is not in its key `keyed` (less the named neutral ones)."""
    return independent_closure(path) - keyed - harness.NEUTRAL


@pytest.mark.parametrize("path", sorted(harness.ENTRIES))
def test_every_module_imported_on_a_path_is_in_its_key(path):
    keyed = set(harness.path_modules(path))
    assert missing_from_keys(path, keyed) == set()
    dropped = sorted(keyed - {"benchmark"})[len(keyed) // 2]  # a module dropped from the key is found
    assert missing_from_keys(path, keyed - {dropped}) == {dropped}


def test_the_answer_clean_up_is_on_the_answering_path():
    """`clean_answer` cleans every answer: an edit to it must recompute cached explanations."""
    assert "benchmark.config.protocol" in harness.path_modules("answering")


def edit_a_function(fpath: Path) -> None:
    """Inserts a statement at the top of the module's first function body (a real edit of its code)."""
    lines = fpath.read_text().splitlines(keepends=True)
    functions = [n for n in ast.walk(ast.parse("".join(lines))) if isinstance(n, ast.FunctionDef)]
    if not functions:  # a package's __init__ with a docstring alone: a statement at its end
        fpath.write_text("".join(lines) + "\nEDITED = True\n")
        return
    first = functions[0].body[0]
    lines.insert(first.lineno - 1, " " * first.col_offset + "pass  # edited\n")
    fpath.write_text("".join(lines))


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A copy of the project's modules that the keys read instead of this checkout's."""
    shutil.copytree(harness.ROOT / "benchmark", tmp_path / "benchmark",
                    ignore=shutil.ignore_patterns("__pycache__", "shipped"))
    monkeypatch.setattr(harness, "ROOT", tmp_path)
    return tmp_path


def keys(source) -> dict[str, object]:
    import methods  # noqa: F401  (registers the built-in methods)

    return {"activations": source.store_key("scoring"),
            "answering": method_key(Context(source, resolve(MethodConfig(), None)), "topk", METHODS.get("topk")),
            "scoring": ScoringContext(source, resolve(ScoringConfig(), None)).cache_key()}


def test_every_module_on_a_path_is_in_its_keys_and_no_other_module_is(world, checkout):
    source = world.source("small")
    before = keys(source)
    on_paths = {m for path in harness.ENTRIES for m in harness.path_modules(path)} | {"benchmark.models.adapters.llava"}
    for module in sorted(on_paths) + list(OFF_PATH):
        fpath = harness.module_file(module)
        original = fpath.read_bytes()
        edit_a_function(fpath)
        after = keys(source)
        fpath.write_bytes(original)
        changed = {path for path in before if after[path] != before[path]}
        expected = {path for path in harness.ENTRIES if module in harness.path_modules(path)}
        if module == "benchmark.models.adapters.llava":  # the source's own adapter is on every path
            expected = set(harness.ENTRIES)
        assert changed == expected, module
    assert keys(source) == before


def test_an_edit_on_the_answering_path_recomputes_the_cached_rows_and_one_off_it_does_not(world, world_cache,
                                                                                          checkout, tmp_path):
    config = RunConfig(methods=("topk",), features="0:4", lm="small", world="tiny", metrics="detection",
                       out=str(tmp_path / "runs"))

    def stores() -> set[str]:
        return {p.name for d in ("explanations", "scores", "activations") for p in (world_cache / d).glob("*")}

    run(config)
    cached = stores()
    edit_a_function(harness.module_file("benchmark.results.leaderboard"))
    run(config)
    assert stores() == cached
    edit_a_function(harness.module_file("benchmark.activations.top_images"))  # on the answering and the scoring path
    run(config)
    new = stores() - cached
    assert {name.split("-")[0] for name in new} == {"topk", "detection"}
    edit_a_function(harness.module_file("benchmark.activations.stores"))  # on every path: the activation stores too
    run(config)
    assert {name.split("-")[0] for name in stores() - cached - new} == {"topk", "detection", "activations"}
