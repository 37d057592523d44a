"""The HTML report of a tiny-world run, opened from disk in headless Chromium: the leaderboard shows
the run's methods, the gallery's filters show the expected rows, a feature page shows its images
and explanations. Screenshots go to $FEATUREBENCH_ARTEFACTS (else the test's temporary directory)."""
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)"),
              pytest.mark.slow]

METHODS = ("steering", "topk", "oracle")


@pytest.fixture(scope="module")
def report(world, tmp_path_factory):
    from benchmark.config.run import RunConfig
    from benchmark.pipeline import run
    from benchmark.report import write_report

    root = tmp_path_factory.mktemp("report")
    run_dir = run(RunConfig(methods=METHODS, features="0:40", lm="small", world="tiny", metrics="detection,oracle",
                            out=str(root / "runs")))
    return write_report([run_dir], root / "report", None), pd.read_csv(run_dir / "scores.csv")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A page that fails the test on any script error or failed load."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield page
    page.close()
    assert not errors


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory) -> Path:
    dpath = Path(os.environ.get("FEATUREBENCH_ARTEFACTS") or tmp_path_factory.mktemp("artefacts"))
    dpath.mkdir(parents=True, exist_ok=True)
    return dpath


def shoot(page, artefacts: Path, name: str) -> None:
    fpath = artefacts / f"report-{name}.png"
    page.screenshot(path=str(fpath), full_page=True)
    print(f"screenshot: {fpath}")


def test_leaderboard_lists_the_runs_methods_and_sorts(report, page, artefacts):
    out, _ = report
    page.goto((out / "index.html").as_uri())
    table = page.locator("table.board")
    assert table.locator("caption").inner_text() == "tiny · small LM · featurebench protocol"
    assert table.locator("tbody th").all_inner_texts() == sorted(METHODS)
    table.locator("thead th", has_text="oracle").click()  # sort by oracle, best first
    assert table.locator("tbody th").first.inner_text() == "oracle"
    page.select_option("#metric", "oracle")
    assert page.locator("section.by-metric:visible").get_attribute("data-metric") == "oracle"
    shoot(page, artefacts, "index")


def test_gallery_filters_show_the_expected_rows(report, page, artefacts):
    out, scores = report
    steering = scores[scores.method == "steering"]
    rows = page.locator("#gallery tbody tr")
    page.goto((out / "gallery.html").as_uri())
    page.wait_for_function("document.getElementById('status').textContent.includes('match')")
    assert page.locator("#label option:checked").inner_text() == "steering" and rows.count() == 40
    page.select_option("#category", "colour")
    assert rows.count() == (steering.category == "colour").sum() < 40
    page.fill("#min", "0.6")
    expected = ((steering.category == "colour") & (steering.detection_auroc.round(4) >= 0.6)).sum()
    assert rows.count() == expected
    page.select_option("#sort", "desc")
    shown = [float(t) for t in rows.locator("td.num").all_inner_texts()]
    assert shown == sorted(shown, reverse=True) and len(shown) == expected
    assert rows.first.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
    shoot(page, artefacts, "gallery")


def test_feature_page_shows_images_explanations_and_scores(report, page, artefacts):
    out, scores = report
    feature = int(scores[scores.concept.notna() & scores.detection_auroc.notna()].feature.iloc[0])
    page.goto((out / "feature.html").as_uri() + f"#tiny/{feature}")
    page.wait_for_selector("#explanations")
    for kind in ("heat", "masked"):
        page.wait_for_function(f"document.getElementById('{kind}').complete")
        assert page.locator(f"#{kind}").evaluate("img => img.naturalWidth") > 0
    truth = scores[scores.feature == feature].set_index("method")
    assert page.locator("dl.truth b").inner_text() == truth.concept.iloc[0]
    rows = page.locator("#explanations tbody tr")
    assert rows.locator("th").all_inner_texts() == list(METHODS)
    assert rows.locator("td.explanation").all_inner_texts() == [truth.explanation.fillna("(empty)")[m] for m in METHODS]
    assert rows.first.locator("td.num").nth(0).inner_text() != "–"  # steering's coefficient
    captions = page.locator("ol.captions li").all_inner_texts()  # the world pool's caption column
    assert len(captions) == 5 and not any(c.startswith("top-k pool image") for c in captions)
    shoot(page, artefacts, "feature")
