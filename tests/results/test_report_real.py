"""A report over a run on real models (the tiny random-weight checkpoints of test_real_models): its
images come from the checkpoints' caches, not the VLM; its pages say there is no ground truth; files
changed since the run are refused. The browser check runs where playwright and Chromium are
installed, as in test_report_browser.py."""
import json
import shutil

import pandas as pd
import pytest
from PIL import Image

from benchmark.cli import main
from benchmark.registry import UsageError
from benchmark.report import write_report
from benchmark.testing import tables, write_toml


@pytest.fixture(scope="module")
def report(files, tmp_path_factory):
    """(run directory, report directory) of steering and top-k on features 0-3, scored by detection."""
    root = tmp_path_factory.mktemp("report-real")
    toml = write_toml(root / "run.toml", {"batch-size": 4}, tables(files))
    assert main(["--config", toml, "--method", "steering,topk", "--features", "0:4", "--metrics", "detection",
                 "--out", str(root / "runs")]) == 0
    (run_dir,) = (root / "runs").iterdir()

    def load_vlm(*args, **kwargs):
        raise AssertionError("the report loaded the VLM")

    mp = pytest.MonkeyPatch()
    mp.setattr("benchmark.sources.source.load_vlm", load_vlm)
    try:
        yield run_dir, write_report([run_dir], root / "report", None)
    finally:
        mp.undo()


def _load(fpath):
    """The value of a data file `fbData(name, value);`."""
    text = fpath.read_text()
    return json.loads(text[text.index(",") + 1:text.rindex(")")])


def test_report_of_a_run_on_real_models(report):
    run_dir, out = report
    index = _load(out / "data" / "index.js")
    assert index["key"] == [f"sae/{f}" for f in range(4)] and index["no_truth"] == ["sae"]
    assert index["concept"] == [None] * 4 and index["categories"] == []
    assert [lb["label"] for lb in index["labels"]] == ["steering", "topk"] and index["labels"][0]["lm"] == "llava"
    explanations = pd.read_csv(run_dir / "scores.csv").fillna({"explanation": ""})
    for i, label in enumerate(index["labels"]):
        column = _load(out / "data" / f"label-{i}.js")
        expected = explanations[explanations.method == label["method"]].sort_values("feature").explanation
        assert column["explanation"] == expected.tolist()
    records = _load(out / "data" / "features" / "sae-0.js")["features"]
    assert [r["feature"] for r in records] == list(range(4)) and not any(r["truth"] for r in records)
    for r in records:
        assert [e["method"] for e in r["explanations"]] == ["steering", "topk"]
        assert len(r["captions"]) == len(r["activations"]) == 5 and r["captions"][0].startswith("top-k pool image")
        assert r["explanations"][0]["coefficient"] is not None  # steering: 8 x the feature's scale
        for kind in ("heat", "masked"):
            with Image.open(out / "img" / "sae" / f"{r['feature']}-{kind}.png") as image:
                image.verify()
                assert image.format == "PNG" and image.size[0] > image.size[1]  # a strip of 5 tiles
    assert "sae · llava LM" in (out / "index.html").read_text()


def test_activations_missing_from_the_cache_are_a_usage_error(report, tmp_path, monkeypatch):
    run_dir, _ = report
    monkeypatch.setenv("FEATUREBENCH_CACHE", str(tmp_path / "elsewhere"))
    with pytest.raises(UsageError, match="activations on its pools are not in the cache") as error:
        write_report([run_dir], tmp_path / "report", None)
    assert "FEATUREBENCH_CACHE" in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "report").exists()


def test_files_changed_since_the_run_are_a_usage_error(report, tmp_path):
    """A run whose recorded SAE identity is not its files' (as after re-saving the SAE in place)."""
    run_dir, _ = report
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    meta = json.loads((copy / "run.json").read_text())
    meta["source"]["identity"]["sae"] = "0" * 12
    (copy / "run.json").write_text(json.dumps(meta))
    with pytest.raises(UsageError, match=f"run {copy.name}: the files of its sae changed since the run") as error:
        write_report([copy], tmp_path / "report", None)
    assert "\n" not in str(error.value) and not (tmp_path / "report").exists()


@pytest.mark.slow
def test_pages_say_there_is_no_ground_truth(report):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH")
    _, out = report
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium)
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((out / "gallery.html").as_uri() + "#category=colour")  # a stale filter falls back to all
        page.wait_for_function("document.getElementById('status').textContent.includes('match')")
        rows = page.locator("#gallery tbody tr")
        assert rows.count() == 4 and page.locator("#category option").all_inner_texts() == ["all"]
        assert rows.first.locator("td").nth(2).inner_text() == "no ground truth"
        assert rows.first.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
        page.goto((out / "feature.html").as_uri() + "#sae/1")
        page.wait_for_selector("#explanations")
        assert "No ground truth" in page.locator("#feature").inner_text()
        assert page.locator("#heat").evaluate("img => img.naturalWidth") > 0
        browser.close()
    assert not errors
