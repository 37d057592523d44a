"""The harness is in the keys: editing a function in any module on a path (`benchmark.harness`)
changes the keys of what that path caches, and the cached rows are recomputed; editing a module off
every path changes nothing."""
import ast
import shutil
from pathlib import Path

import pytest

from benchmark import harness
from benchmark.explaining.context import Context, MethodConfig
from benchmark.explaining.explain import method_key
from benchmark.pipeline import RunConfig, run
from benchmark.registry import METHODS
from benchmark.scoring.context import ScoringContext

OFF_PATH = ("benchmark.results.leaderboard", "benchmark.report.html", "benchmark.cli", "benchmark.models.adapters.gemma3")
"""Modules no key reads: tables, the report, the command line, and an adapter of another family than
the tiny world's (llava)."""


def edit_a_function(fpath: Path) -> None:
    """Inserts a statement at the top of the module's first function body (a real edit of its code)."""
    lines = fpath.read_text().splitlines(keepends=True)
    first = next(n for n in ast.walk(ast.parse("".join(lines))) if isinstance(n, ast.FunctionDef)).body[0]
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
            "answering": method_key(Context(source, MethodConfig()), "topk", METHODS.get("topk")),
            "scoring": ScoringContext(source).cache_key()}


def test_every_module_on_a_path_is_in_its_keys_and_no_other_module_is(world, checkout):
    source = world.source("small")
    before = keys(source)
    on_paths = {m for modules in harness.PATHS.values() for m in modules} | {"benchmark.models.adapters.llava"}
    for module in sorted(on_paths) + list(OFF_PATH):
        fpath = harness.module_file(module)
        original = fpath.read_bytes()
        edit_a_function(fpath)
        after = keys(source)
        fpath.write_bytes(original)
        changed = {path for path in before if after[path] != before[path]}
        expected = {path for path, modules in harness.PATHS.items() if module in modules}
        if module == "benchmark.models.adapters.llava":  # the source's own adapter is on every path
            expected = set(harness.PATHS)
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
