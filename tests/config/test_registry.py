"""The registry: decorator, lazy targets, files on disk, entry points, and one-line errors."""
import importlib
import importlib.metadata
import re

import pytest

from benchmark.registry import Registry, UsageError


def test_decorator_and_lazy_registration():
    reg = Registry("method")

    @reg.register("steering")
    def steering():
        return "steered"

    reg.register_lazy("sqrt", "math:sqrt")
    assert reg.get("steering")() == "steered"
    assert reg.get("sqrt")(9.0) == 3.0
    assert reg.names() == ["sqrt", "steering"]
    with pytest.raises(ValueError):
        reg.register("steering")(lambda: None)


def test_unknown_name_lists_close_matches():
    reg = Registry("method")
    for name in ("steering", "topk", "hybrid"):
        reg.register(name)(lambda: None)
    with pytest.raises(UsageError) as err:
        reg.get("steerin")
    message = str(err.value)
    assert "\n" not in message and "did you mean steering?" in message and "available: hybrid, steering, topk" in message


def test_function_from_a_file(tmp_path):
    (tmp_path / "mine.py").write_text("def explain(feature):\n    return f'feature {feature}'\n")
    reg = Registry("method")
    assert reg.get(f"{tmp_path / 'mine.py'}:explain")(3) == "feature 3"


@pytest.mark.parametrize("body, expected", [
    ("def other(): pass\n", "has no function 'explain'"),
    ("def explain(:\n", "failed to import: SyntaxError"),
    ("import not_a_module_anywhere\n", "failed to import: ModuleNotFoundError"),
])
def test_broken_plugin_file_is_one_clear_line(tmp_path, body, expected):
    (tmp_path / "broken.py").write_text(body)
    with pytest.raises(UsageError) as err:
        Registry("method").get(f"{tmp_path / 'broken.py'}:explain")
    assert expected in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UsageError, match="does not exist"):
        Registry("method").get(f"{tmp_path / 'missing.py'}:explain")


def test_entry_point_plugin(monkeypatch):
    point = importlib.metadata.EntryPoint(name="sqrt-method", value="math:sqrt", group="featurebench.methods")
    real = importlib.metadata.entry_points

    def fake(**kwargs):
        return [point] if kwargs.get("group") == "featurebench.methods" else real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    reg = Registry("method", entry_point_group="featurebench.methods")
    assert "sqrt-method" in reg.names() and reg.get("sqrt-method")(16.0) == 4.0


def test_unknown_world_is_one_line_exit_2(capsys):
    from benchmark.cli import main

    assert main(["world", "build", "--preset", "tinny"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown world 'tinny'; did you mean tiny?" in err


def test_methods_registered_every_documented_way_in_a_package_are_found(tmp_path, monkeypatch):
    (tmp_path / "fakereg.py").write_text(
        "from benchmark.registry import Registry\nREG = Registry('method')\n"
        "def method(name, needs=()):\n    return REG.register(name)\n")
    package = tmp_path / "fakemethods"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plain.py").write_text("from fakereg import REG as METHODS\n@METHODS.register('by-register')\n"
                                      "def explain(ctx, features):\n    return ['a'] * len(features)\n")
    (package / "keyword.py").write_text("from fakereg import method\n@method(name='by-keyword')\n"
                                        "def explain(ctx, features):\n    return ['b'] * len(features)\n")
    (package / "positional.py").write_text("from fakereg import method\n@method('by-name', needs=())\n"
                                           "def explain(ctx, features):\n    return ['c'] * len(features)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import fakereg

    fakereg.REG.register_package("fakemethods", "method", "METHODS")
    assert fakereg.REG.names() == ["by-keyword", "by-name", "by-register"]
    assert [fakereg.REG.get(n)(None, [0])[0] for n in ("by-register", "by-keyword", "by-name")] == ["a", "b", "c"]


def fake_entry_points(monkeypatch, group: str, **points: str) -> None:
    """Entry points of `group` as an installed package would declare them: name -> 'module:attr'."""
    made = [importlib.metadata.EntryPoint(name=n, value=v, group=group) for n, v in points.items()]
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: made if kw.get("group") == group else real(**kw))


def test_an_entry_point_metric_is_a_metric_on_the_first_lookup_and_a_wrong_one_is_one_line(tmp_path, monkeypatch):
    from benchmark.scoring.metric import METRICS, Metric

    (tmp_path / "plugin_metric.py").write_text(
        "from benchmark.scoring.context import metric\n"
        "@metric('length', columns=('length',), higher_is_better=False)\n"
        "def score(ctx, features, texts):\n    return {'length': [len(t) for t in texts]}\n"
        "NOT_A_METRIC = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_entry_points(monkeypatch, "featurebench.metrics", length="plugin_metric:score", broken="plugin_metric:NOT_A_METRIC")
    monkeypatch.setattr(METRICS, "_items", dict(METRICS._items))  # what the plug-in registers stays in this test
    found = METRICS.get("length")
    assert isinstance(found, Metric) and found.name == "length" and not found.higher_is_better
    assert METRICS.get("length") is found
    with pytest.raises(UsageError, match=r"^metric plug-in 'broken' \(plugin_metric:NOT_A_METRIC\): 3 is not a "
                                         r"metric; decorate its score function with @metric"):
        METRICS.get("broken")
    (tmp_path / "mine.py").write_text("def explain(ctx, features):\n    return []\nNUMBER = 1\n")
    with pytest.raises(UsageError, match=r"metric file .*mine.py:explain: .* is not a metric"):
        METRICS.get(f"{tmp_path / 'mine.py'}:explain")


@pytest.mark.parametrize("registry, group, what", [
    ("benchmark.models.adapters:ADAPTERS", "featurebench.adapters", "a VLMAdapter subclass"),
    ("benchmark.explainers:EXPLAINERS", "featurebench.explainers", "an explainer: a class with a `settings` dataclass"),
    ("benchmark.sources.generators:GENERATORS", "featurebench.generators", "a generator: a class with"),
    ("benchmark.sources.segmenters:SEGMENTERS", "featurebench.segmenters", "a segmenter: a class with"),
    ("benchmark.world.presets:WORLDS", "featurebench.worlds", "not a world preset; give a"),
    ("benchmark.registry:METHODS", "featurebench.methods", "is not a method; give a function")])
def test_a_plug_in_of_the_wrong_type_is_one_line_naming_its_route(tmp_path, monkeypatch, registry, group, what):
    import importlib

    module, name = registry.split(":")
    reg = getattr(importlib.import_module(module), name)
    (tmp_path / "wrong_plugin.py").write_text("class Nothing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_entry_points(monkeypatch, group, wrong="wrong_plugin:Nothing")
    with pytest.raises(UsageError, match=rf"^{reg.kind} plug-in 'wrong' \(wrong_plugin:Nothing\): .*{re.escape(what)}"):
        reg.get("wrong")
    assert "wrong" not in reg._items
    with pytest.raises(UsageError, match=rf"^{reg.kind} file .*wrong_plugin.py:Nothing: .*{re.escape(what)}"):
        reg.get(f"{tmp_path / 'wrong_plugin.py'}:Nothing")  # the file route, the same contract


def test_the_example_package_ships_one_plug_in_of_every_entry_point_group():
    """Its docstring's claim, checked: every registry that takes plug-ins by entry point is declared once."""
    import pkgutil
    import tomllib
    from pathlib import Path

    import benchmark
    import metrics  # noqa: F401  (the metric registry's module)

    for info in pkgutil.walk_packages(benchmark.__path__, "benchmark."):
        if ".world.shipped" not in info.name and not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    import sys

    groups = {obj.group for module in list(sys.modules.values()) if (module.__name__ or "").startswith("benchmark")
              for obj in vars(module).values() if isinstance(obj, Registry) and obj.group}
    project = tomllib.loads((Path(__file__).resolve().parents[2] / "examples/featurebench-example/pyproject.toml").read_text())
    declared = project["project"]["entry-points"]
    assert set(declared) == groups
    assert all(len(entries) == 1 for entries in declared.values())
