"""The scale bench runs its three stages through the CLI on a stand-in and reports what they cost;
here on a small shape (a Gemma-3 tower at 56 px, 16 tokens pooled to 4, a 64-latent SAE)."""
from benchmark.scale import ScaleShape, growth, measure


def test_measure_reports_memory_disk_and_time_of_each_stage(tmp_path):
    shape = ScaleShape("gemma3", 56, 14, 4, d_sae=64, k=4)
    report = measure(shape, 40, tmp_path)  # 8 scoring images: simulation's minimum
    assert set(report["seconds"]) == {"activations", "explaining", "scoring"}
    assert all(report["peak_rss_bytes"][s] > 50e6 for s in report["seconds"])  # a Python with torch, at least
    cache = report["cache_bytes"]
    assert 0 < cache["activations"] <= cache["explaining"] <= cache["scoring"] == cache["final"]
    assert report["source_image_bytes"] > 40 * 1000  # 40 JPEGs of 500 x 375
    assert (tmp_path / f"run-{next(tmp_path.glob('standin-*')).name[8:]}-40-this" / "results").is_dir()
    line = growth([{"n_images": 10, "x": 110}, {"n_images": 20, "x": 210}], "x")
    assert line == {"per_image": 10, "fixed": 10, "at_50000": 500010}
    assert growth([{"n_images": 10, "x": 110}], "x")["per_image"] is None
