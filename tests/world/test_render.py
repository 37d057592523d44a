"""The procedural generator: determinism, exact masks, captions that match the spec."""
import numpy as np

from benchmark.world.concepts import CATEGORY_VALUES, ObjectSpec, caption, fragment, is_clean, is_well_formed, names
from benchmark.world.pools import load_pool, make_pool, save_pool
from benchmark.world.render import STRIPE_SHADE, Scene, render, render_many


def test_same_seed_same_world_other_seed_other_world():
    a, b, c = render_many(50, 32, seed=7), render_many(50, 32, seed=7), render_many(50, 32, seed=8)
    assert a[0] == b[0] and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
    assert not np.array_equal(a[1], c[1])


def test_square_mask_has_the_drawn_pixel_count_and_colour():
    # half-extent 7 px -> 0.85 * 7 = 5.95 each way from centre 8: pixel centres 2.5 .. 13.5 -> 12 x 12
    square = ObjectSpec(colour="red", texture="plain", shape="square", size="large", position="top left")
    image, seg = render(Scene((square,), background=255, centres=((8.0, 8.0),)), 32, np.random.default_rng(0))
    assert (seg == 1).sum() == 144
    assert np.array_equal(np.argwhere(seg == 1).min(0), [2, 2]) and np.array_equal(np.argwhere(seg == 1).max(0), [13, 13])
    assert (image[seg == 0] == 255).all()
    red = image[seg == 1].astype(int)
    assert (abs(red - [215, 35, 35]) <= 12).all()


def test_stripes_are_dark_pixels_inside_the_mask_only():
    obj = ObjectSpec(colour="blue", texture="striped", shape="circle", size="large", position="bottom right")
    image, seg = render(Scene((obj,), background=0, centres=((24.0, 24.0),)), 32, np.random.default_rng(1))
    inside = image[seg == 1].astype(float).sum(1)
    bright, dark = inside.max(), inside.min()
    assert abs(dark / bright - STRIPE_SHADE) < 0.05
    assert 0.3 < (inside < bright * 0.7).mean() < 0.7
    assert (image[seg == 0] == 0).all()


def test_caption_grammar_and_naming():
    a = ObjectSpec(colour="red", texture="striped", shape="circle", size="large", position="top left")
    b = ObjectSpec(colour="blue", texture="plain", shape="cross", size="small", position="bottom right")
    text = caption([a, b])
    assert text == "a large red striped circle at top left and a small blue plain cross at bottom right"
    assert caption([]) == "nothing"
    assert caption([ObjectSpec(colour="green", texture="plain")]) == "a green plain background"
    assert is_well_formed(text) and not is_well_formed("a large red red circle")
    assert names(text, "top left") and not names(text, "top right") and not names("reddish", "red")
    assert is_clean("a large red plain circle at top left", "red")
    assert not is_clean(text, "red")  # names blue too, a rival colour
    assert fragment({"colour": "red", "position": "top left", "size": "large"}) == "large red at top left"


def test_every_row_caption_matches_its_objects_and_segmentation(tmp_path):
    pool = make_pool(300, 32, seed=3)
    save_pool(pool, tmp_path / "pool")
    back = load_pool(tmp_path / "pool")
    assert np.array_equal(back.images_NHWC, pool.images_NHWC) and back.objects == pool.objects
    for objs, text, seg in zip(back.objects, back.captions, back.segmentation_NHW):
        assert text == caption(objs)
        assert set(np.unique(seg)) - {0} == set(range(1, len(objs) + 1))
        for obj in objs:
            for category, concept in obj.concepts().items():
                assert concept in CATEGORY_VALUES[category] and names(text, concept)
