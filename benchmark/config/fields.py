"""How a setting is declared, once: its default, its choices and, when a protocol governs it, the
PAPER_PROTOCOL.md item it implements, all on the dataclass field; its help is the field's docstring.
The command line's flags, the resolver and the checks read these declarations instead of copies."""
from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from dataclasses import Field, field, fields
from typing import Any

ITEM, CHOICES = "protocol_item", "choices"


def governed(item: int, choices: tuple = ()) -> Any:
    """A field a protocol sets unless given: default None ("not given"), PAPER_PROTOCOL.md `item`."""
    return field(default=None, metadata={ITEM: item, CHOICES: tuple(choices)})


def one_of(default: object, choices: tuple) -> Any:
    """A field whose value is one of `choices` (None stays allowed where the default is None)."""
    return field(default=default, metadata={CHOICES: tuple(choices)})


def governed_fields(cls: type) -> dict[str, Field]:
    """The governed fields of settings dataclass `cls`, by name."""
    return {f.name: f for f in fields(cls) if ITEM in f.metadata}


def choices_of(cls: type, name: str) -> tuple:
    """The declared choices of field `name` of `cls` (empty: any value of its type)."""
    return next(f.metadata.get(CHOICES, ()) for f in fields(cls) if f.name == name)


def invalid_choice(obj: object) -> tuple[str, object, tuple] | None:
    """The first field of `obj` holding a value outside its declared choices: (name, value, choices)."""
    for f in fields(obj):
        value, choices = getattr(obj, f.name), f.metadata.get(CHOICES, ())
        if choices and value is not None and value not in choices:
            return f.name, value, choices
    return None


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal under its declaration), by name, read from the
    class's source: the one place a setting is described, for `--help` too."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr) \
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs
