"""The house shows the flow: no module outside `benchmark/world/` imports the world except the one
place that registers it as a source, and the project's modules form no import cycle. Read from the
source (nothing imported); an import inside a function counts like one at the top."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "methods", "metrics")
WORLD_GATE = "benchmark.sources.world"


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports, each as the longest known prefix of what it names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_only_the_source_registration_imports_the_world():
    outside = {name: sorted(t for t in targets if t == "benchmark.world" or t.startswith("benchmark.world."))
               for name, targets in graph().items()
               if not (name == "benchmark.world" or name.startswith("benchmark.world.")) and name != WORLD_GATE}
    assert {name: t for name, t in outside.items() if t} == {}
    assert any(t.startswith("benchmark.world") for t in graph()[WORLD_GATE])  # the gate is where it claims


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each cycle met in a depth-first walk, as the path that closes it."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_cycles():
    assert find_cycles(graph()) == []


def test_the_checker_sees_a_cycle_and_a_lazy_import(tmp_path, monkeypatch):
    """The two checks can fail: a planted cycle through a function-level import is found."""
    pkg = tmp_path / "benchmark"
    (pkg / "world").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "world" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from benchmark import b\n")
    (pkg / "b.py").write_text("def f():\n    from benchmark.a import x\n    import benchmark.world\n")
    for package in ("methods", "metrics"):
        (tmp_path / package).mkdir()
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    edges = graph()
    assert edges["benchmark.a"] == {"benchmark", "benchmark.b"}  # a package's __init__ runs too
    assert edges["benchmark.b"] == {"benchmark.a", "benchmark.world"}
    assert find_cycles(edges) == [["benchmark.a", "benchmark.b", "benchmark.a"]]
