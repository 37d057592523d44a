"""The registry: decorator, lazy targets, files on disk, entry points, and one-line errors."""
import importlib.metadata

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
