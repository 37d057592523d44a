"""The scale bench runs its three stages through the CLI on a stand-in and reports what they cost;
here on a small shape (a Gemma-3 tower at 56 px, 16 tokens pooled to 4, a 64-latent SAE)."""
import os

import pytest

from benchmark.bench.scale import AnonSampler, ScaleShape, growth, measure, measure_one_process, scale_bench

SMALL = ScaleShape("gemma3", 56, 14, 4, d_sae=64, k=4)


@pytest.mark.slow
def test_measure_reports_memory_disk_and_time_of_each_stage(tmp_path):
    report = measure(SMALL, 40, tmp_path)  # 8 scoring images: simulation's minimum
    assert set(report["seconds"]) == {"activations", "explaining", "scoring"}
    assert all(report["peak_rss_bytes"][s] > 50e6 for s in report["seconds"])  # a Python with torch, at least
    cache = report["cache_bytes"]
    assert 0 < cache["activations"] <= cache["explaining"] <= cache["scoring"] == cache["final"]
    assert report["source_image_bytes"] > 40 * 1000  # 40 JPEGs of 500 x 375
    assert (tmp_path / f"run-{next(tmp_path.glob('standin-*')).name[8:]}-40-this" / "results").is_dir()
    line = growth([{"n_images": 10, "x": 110}, {"n_images": 20, "x": 210}], "x")
    assert line == {"per_image": 10, "fixed": 10, "at_50000": 500010}
    assert growth([{"n_images": 10, "x": 110}], "x")["per_image"] is None


@pytest.mark.slow
def test_one_process_reports_peak_resident_and_anonymous_memory_of_the_whole_run(tmp_path):
    report = measure_one_process(SMALL, 40, tmp_path)
    run = tmp_path / f"run-{next(tmp_path.glob('standin-*')).name[8:]}-40-this-one"
    assert len(list((run / "results").glob("*/scores.csv"))) == 1  # the whole run, scoring included
    anon, rss = report["peak_anon_bytes"]["max"], report["peak_rss_bytes"]["max"]
    assert 50e6 < anon <= rss  # torch's heap at least, and never more than all that was resident
    on_disk = sum(p.stat().st_size for p in (run / "cache").rglob("*") if p.is_file() and not p.is_symlink())
    assert report["samples"] > 10 and report["cache_bytes"]["final"] == on_disk > 0  # what the run left, not nothing


def test_the_sampler_reads_a_live_process_and_ignores_a_gone_one():
    sampler = AnonSampler(os.getpid())
    sampler.sample()
    assert sampler.samples == 1 and 0 < sampler.peak_kb["RssAnon"] <= sampler.peak_kb["VmRSS"]
    gone = AnonSampler(2 ** 22 + 1)  # above the kernel's largest pid
    gone.sample()
    assert gone.samples == 0 and gone.peak_kb["RssAnon"] == 0


def test_one_process_mode_fits_lines_to_anonymous_memory_too(tmp_path, monkeypatch):
    import benchmark.bench.scale as scale

    fake = [{"n_images": n, "peak_rss_bytes": {"max": 10 * n}, "peak_anon_bytes": {"max": 5 * n},
             "cache_bytes": {"final": n}} for n in (10, 20)]
    monkeypatch.setattr(scale, "measure_one_process", lambda shape, n, work, python_path: fake[n // 10 - 1])
    report = scale_bench("seed", [10, 20], tmp_path, one_process=True)
    assert report["mode"] == "one process" and report["growth"]["peak_anon_bytes.max"]["per_image"] == 5
