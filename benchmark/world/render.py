"""Procedural scenes: sample a scene spec, draw it, and keep the exact per-pixel object masks.

An image is `size` x `size` RGB, split into four quadrants (the positions). Each object sits in its
own quadrant, so objects never overlap and every pixel belongs to at most one object. A scene is
blank (caption 'nothing'), a background field, or one or two objects.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from benchmark.world.concepts import COLOURS, CONCEPT_BY_NAME, POSITIONS, SHAPES, SIZES, TEXTURES, ObjectSpec

STRIPE_SHADE = 0.45  # dark stripes are the object's colour times this
GENERATOR_VERSION = 2  # part of the pools' cache key: bump when drawing changes
HALF_EXTENT = {"large": 7.0, "small": 4.5}  # in pixels of a 32-px image; scaled with the size
BACKGROUNDS = {255: 0.5, 0: 0.25, 128: 0.25}  # grey level: probability
KIND_PROBS = {"blank": 0.06, "field": 0.06, "one": 0.44, "two": 0.44}


@dataclass(frozen=True)
class Scene:
    objects: tuple[ObjectSpec, ...]
    background: int  # grey level of the background, 0..255
    centres: tuple[tuple[float, float], ...]  # (x, y) pixel centre of each object; fields: ()


def sample_scene(rng: np.random.Generator, size: int) -> Scene:
    kind = rng.choice(list(KIND_PROBS), p=list(KIND_PROBS.values()))
    background = _sample_background(rng)
    if kind == "blank":
        return Scene((), background, ())
    if kind == "field":
        field = ObjectSpec(colour=rng.choice(list(COLOURS)), texture=rng.choice(TEXTURES))
        return Scene((field,), background, ())
    n = 1 if kind == "one" else 2
    positions = sorted(rng.choice(len(POSITIONS), size=n, replace=False))
    objects, centres = [], []
    for p in positions:
        objects.append(ObjectSpec(colour=str(rng.choice(list(COLOURS))), texture=str(rng.choice(TEXTURES)),
                                  shape=str(rng.choice(SHAPES)), size=str(rng.choice(SIZES)),
                                  position=POSITIONS[p]))
        jitter = rng.uniform(-1.0, 1.0, size=2) * size / 32
        centres.append(tuple(float(v) for v in quadrant_centre(POSITIONS[p], size) + jitter))
    return Scene(tuple(objects), background, tuple(centres))


def _sample_background(rng: np.random.Generator) -> int:
    """White, black or mid grey: the VLM must not tie 'nothing' to one brightness. Few discrete
    levels, because a continuum of greys would spend most of the SAE's latents on background."""
    return int(rng.choice(list(BACKGROUNDS), p=list(BACKGROUNDS.values())))


def quadrant_centre(position: str, size: int) -> np.ndarray:
    row, col = position.split()
    q = size / 4
    return np.array([q if col == "left" else 3 * q, q if row == "top" else 3 * q])


@lru_cache(maxsize=4)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size]
    return yy, xx


def shape_mask(shape: str, centre: tuple[float, float], half: float, size: int) -> np.ndarray:
    """Boolean (size, size) mask of the pixels whose centres fall inside the shape."""
    yy, xx = _pixel_grid(size)
    yy, xx = yy + 0.5, xx + 0.5
    dx, dy = xx - centre[0], yy - centre[1]
    if shape == "circle":
        return dx**2 + dy**2 <= half**2
    if shape == "square":
        return np.maximum(abs(dx), abs(dy)) <= 0.85 * half
    if shape == "triangle":  # apex up, base 0.8 half below the centre
        return (dy >= -half) & (dy <= 0.8 * half) & (abs(dx) <= (dy + half) / 1.8)
    if shape == "cross":
        arm = 0.33 * half
        return ((abs(dx) <= arm) & (abs(dy) <= half)) | ((abs(dy) <= arm) & (abs(dx) <= half))
    raise ValueError(f"unknown shape {shape!r}")


def _paint(image: np.ndarray, mask: np.ndarray, colour: np.ndarray, texture: str) -> None:
    size = image.shape[0]
    yy, xx = _pixel_grid(size)
    dark = ((xx + yy) * 32 // size // 2) % 2 == 1 if texture == "striped" else np.zeros_like(mask)
    image[mask & ~dark] = colour
    image[mask & dark] = colour * STRIPE_SHADE


def render(scene: Scene, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw a scene. Returns the image (size, size, 3) uint8 and the segmentation (size, size)
    uint8, where pixel value i + 1 marks object i and 0 the background. Colours get a small
    per-object jitter from `rng`, so the same spec does not always give the same pixels."""
    image = np.full((size, size, 3), scene.background, dtype=np.float32)
    segmentation = np.zeros((size, size), dtype=np.uint8)
    for i, obj in enumerate(scene.objects):
        colour = np.clip(np.array(COLOURS[obj.colour], np.float32) + rng.uniform(-12, 12, 3), 0, 255)
        if obj.is_field:
            mask = np.ones((size, size), dtype=bool)
        else:
            mask = shape_mask(obj.shape, scene.centres[i], HALF_EXTENT[obj.size] * size / 32, size)
        _paint(image, mask, colour, obj.texture)
        segmentation[mask] = i + 1
    return image.round().astype(np.uint8), segmentation


def render_many(n: int, size: int, seed: int) -> tuple[list[Scene], np.ndarray, np.ndarray]:
    """`n` scenes from `seed`: (scenes, images_NHWC uint8, segmentation_NHW uint8). Deterministic."""
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng, size) for _ in range(n)]
    images = np.empty((n, size, size, 3), np.uint8)
    segmentation = np.empty((n, size, size), np.uint8)
    for i, scene in enumerate(scenes):
        images[i], segmentation[i] = render(scene, size, rng)
    return scenes, images, segmentation


def render_concepts(concepts: set[str], n: int, size: int, seed: int) -> np.ndarray:
    """`n` images (N, H, W, 3) uint8 drawn from a set of concept names: the world's text-to-image
    model. Each image has one object; a category with named values takes one of them in turn, every
    other attribute is random. No concepts: `n` blank scenes."""
    rng = np.random.default_rng(seed)
    by_category: dict[str, list[str]] = {}
    for name in sorted(concepts):
        by_category.setdefault(CONCEPT_BY_NAME[name].category, []).append(name)
    options = {"colour": list(COLOURS), "texture": list(TEXTURES), "shape": list(SHAPES), "size": list(SIZES),
               "position": list(POSITIONS)}
    images = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        background = _sample_background(rng)
        if not concepts:
            images[i] = render(Scene((), background, ()), size, rng)[0]
            continue
        attrs = {c: (by_category[c][i % len(by_category[c])] if c in by_category else str(rng.choice(vs)))
                 for c, vs in options.items()}
        jitter = rng.uniform(-1.0, 1.0, size=2) * size / 32
        centre = tuple(float(v) for v in quadrant_centre(attrs["position"], size) + jitter)
        images[i] = render(Scene((ObjectSpec(**attrs),), background, (centre,)), size, rng)[0]
    return images
