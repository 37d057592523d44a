"""The world's concept vocabulary, its categories, and the caption grammar.

Grouping (documented in the README): colour and texture are *low-level* concepts (a single patch
shows them); shape, size and position are *high-level* (they need the object's extent or its place
in the image). A concept is named in text by its phrase; position phrases are two words.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 165, 60),
    "blue": (40, 85, 225),
    "yellow": (235, 215, 35),
    "purple": (140, 55, 200),
    "orange": (245, 135, 25),
}
SHAPES = ("circle", "square", "triangle", "cross")
SIZES = ("small", "large")
TEXTURES = ("plain", "striped")
POSITIONS = ("top left", "top right", "bottom left", "bottom right")

CATEGORY_VALUES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "texture": TEXTURES,
    "shape": SHAPES,
    "size": SIZES,
    "position": POSITIONS,
}
CATEGORY_LEVEL = {"colour": "low", "texture": "low", "shape": "high", "size": "high", "position": "high"}
CATEGORIES = tuple(CATEGORY_VALUES)


@dataclass(frozen=True)
class Concept:
    name: str
    category: str

    @property
    def level(self) -> str:
        return CATEGORY_LEVEL[self.category]


CONCEPTS: tuple[Concept, ...] = tuple(Concept(v, c) for c, vs in CATEGORY_VALUES.items() for v in vs)
CONCEPT_BY_NAME: dict[str, Concept] = {c.name: c for c in CONCEPTS}


@dataclass(frozen=True)
class ObjectSpec:
    """One thing in a scene. A *background field* (the whole image one colour and texture) has no
    shape, size or position: it teaches the VLM what a colour or texture alone looks like."""

    colour: str
    texture: str
    shape: str | None = None
    size: str | None = None
    position: str | None = None

    @property
    def is_field(self) -> bool:
        return self.shape is None

    def concepts(self) -> dict[str, str]:
        """Category -> concept name, for the categories this object has."""
        return {c: getattr(self, c) for c in CATEGORIES if getattr(self, c) is not None}

    def phrase(self) -> str:
        if self.is_field:
            return f"a {self.colour} {self.texture} background"
        return f"a {self.size} {self.colour} {self.texture} {self.shape} at {self.position}"


def caption(objects: tuple[ObjectSpec, ...] | list[ObjectSpec]) -> str:
    """The caption grammar: 'nothing', one object phrase, or two joined by 'and' in position order."""
    if not objects:
        return "nothing"
    return " and ".join(o.phrase() for o in objects)


def fragment(concepts: dict[str, str]) -> str:
    """A partial description in caption word order, e.g. 'large red', 'striped', 'at top left'."""
    words = [concepts[c] for c in ("size", "colour", "texture", "shape") if concepts.get(c)]
    if concepts.get("position"):
        words.append(f"at {concepts['position']}")
    return " ".join(words)


def names(text: str, concept: str) -> bool:
    """Whether `text` names `concept` as whole words (so 'red' is not found in 'reddish')."""
    return re.search(rf"(?<![a-z]){re.escape(concept)}(?![a-z])", text.lower()) is not None


def named_concepts(text: str) -> set[str]:
    return {c.name for c in CONCEPTS if names(text, c.name)}


SYNONYMS: dict[str, tuple[str, ...]] = {
    "red": ("crimson", "scarlet"), "green": ("lime",), "blue": ("navy", "azure"), "yellow": ("golden",),
    "purple": ("violet", "magenta"), "orange": ("amber",),
    "plain": ("solid", "uniform", "unpatterned"), "striped": ("stripes", "stripe", "stripy", "banded", "lines"),
    "circle": ("circles", "circular", "round", "disc", "disk", "dot", "ring"),
    "square": ("squares", "box", "rectangle", "rectangular"), "triangle": ("triangles", "triangular"),
    "cross": ("crosses", "plus", "x"), "small": ("tiny", "little"), "large": ("big", "huge"),
    "top left": ("upper left",), "top right": ("upper right",),
    "bottom left": ("lower left",), "bottom right": ("lower right",),
}
"""Words a free-text explanation may use for a concept (explanations made outside the world)."""


def mentioned_concepts(text: str) -> set[str]:
    """Concepts `text` names, by their own word or a synonym."""
    return {c.name for c in CONCEPTS if any(names(text, w) for w in (c.name, *SYNONYMS.get(c.name, ())))}


def is_clean(text: str, concept: str) -> bool:
    """Names `concept`, no rival concept of its category, and parses in the caption grammar."""
    category = CONCEPT_BY_NAME[concept].category
    rivals = set(CATEGORY_VALUES[category]) - {concept}
    found = named_concepts(text)
    return concept in found and not (found & rivals) and is_well_formed(text)


_OBJECT = (
    rf"a ({'|'.join(SIZES)}) ({'|'.join(COLOURS)}) ({'|'.join(TEXTURES)}) ({'|'.join(SHAPES)})"
    rf" at ({'|'.join(POSITIONS)})"
)
_FIELD = rf"a ({'|'.join(COLOURS)}) ({'|'.join(TEXTURES)}) background"
_WELL_FORMED = re.compile(rf"^(nothing|{_FIELD}|{_OBJECT}( and {_OBJECT})?)$")


def is_well_formed(text: str) -> bool:
    return _WELL_FORMED.match(text.strip()) is not None
