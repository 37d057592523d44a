"""benchmark.identity: file fingerprints notice in-place rewrites; code identities follow calls."""
from __future__ import annotations

import importlib
import os
import sys
import textwrap
import uuid

import pytest

from benchmark import identity
from benchmark.identity import code_identity, fingerprint

MiB = 1 << 20
SIZE = 3 * MiB
SAMPLE0 = SIZE // 17  # where the first of the 16 evenly spaced 4 KiB blocks starts


def _rewrite(path, data: bytes) -> None:
    """Writes in place and moves mtime on, as a later save would (some filesystems tick coarsely)."""
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def _big() -> bytearray:
    return bytearray((bytes(range(251)) * (SIZE // 251 + 1))[:SIZE])


# ---------------------------------------------------------------- fingerprint


def test_same_bytes_at_two_paths_match(tmp_path):
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "config.json").write_text('{"a": 1}')
        (tmp_path / d / "model.safetensors").write_bytes(_big())
    assert fingerprint(tmp_path / "x") == fingerprint(tmp_path / "y")
    assert fingerprint(tmp_path / "x" / "config.json") == fingerprint(tmp_path / "y" / "config.json")
    assert len(fingerprint(tmp_path / "x")) == 16


@pytest.mark.parametrize("offset", [100, SAMPLE0 + 10, SIZE - 10], ids=["header", "sample", "tail"])
def test_same_size_rewrite_of_big_file_is_noticed(tmp_path, offset):
    f = tmp_path / "model.safetensors"
    data = _big()
    f.write_bytes(data)
    before = fingerprint(tmp_path)
    data[offset] ^= 0xFF
    _rewrite(f, bytes(data))
    assert fingerprint(tmp_path) != before
    assert fingerprint(f) != fingerprint(tmp_path)  # a file and a directory holding it differ


def test_edit_between_samples_is_missed_as_documented(tmp_path):
    """Pins the documented trade-off: bytes between samples of a large file are not read."""
    f = tmp_path / "model.safetensors"
    data = _big()
    f.write_bytes(data)
    before = fingerprint(f)
    data[SAMPLE0 - 1000] ^= 0xFF  # after the 64 KiB header, before the first sampled block
    _rewrite(f, bytes(data))
    assert fingerprint(f) == before


def test_same_size_rewrite_of_small_file_is_noticed(tmp_path):
    f = tmp_path / "config.json"
    f.write_text('{"hidden": 768}')
    before = fingerprint(tmp_path)
    _rewrite(f, b'{"hidden": 512}')
    assert fingerprint(tmp_path) != before


def test_adding_a_file_is_noticed_but_hidden_ones_are_not(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    before = fingerprint(tmp_path)
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "lock").write_text("x")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "m.pyc").write_text("x")
    (tmp_path / ".gitattributes").write_text("x")
    assert fingerprint(tmp_path) == before
    (tmp_path / "tokenizer.json").write_text("{}")
    assert fingerprint(tmp_path) != before


def test_rewriting_same_bytes_keeps_fingerprint_and_memo_skips_reads(tmp_path, monkeypatch):
    f = tmp_path / "model.safetensors"
    f.write_bytes(_big())
    before = fingerprint(tmp_path)
    reads = []
    real = identity._file_digest
    monkeypatch.setattr(identity, "_file_digest", lambda p, n: reads.append(p) or real(p, n))
    assert fingerprint(tmp_path) == before and reads == []  # memoised: nothing read again
    _rewrite(f, f.read_bytes())
    assert fingerprint(tmp_path) == before and reads == [f]  # stat changed: re-read, same content


def test_missing_path_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        fingerprint(tmp_path / "nope")


# ---------------------------------------------------------------- code_identity


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """write(name, source) -> (re)imported module; names are unique per test so tests don't mix."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    tag = uuid.uuid4().hex[:8]
    loaded = {}

    def write(name: str, source: str):
        real = f"{name}_{tag}"
        source = textwrap.dedent(source).replace("{tag}", tag)
        (tmp_path / f"{real}.py").write_text(source)
        importlib.invalidate_caches()
        loaded[real] = importlib.reload(loaded[real]) if real in loaded else importlib.import_module(real)
        return loaded[real]

    yield write
    for real in loaded:
        sys.modules.pop(real, None)


A = """
def hybrid(x):
    return x + 1

def unrelated(x):
    return x * 2
"""
B = """
from a_{tag} import hybrid

def permuted(x):
    return hybrid(x) - 1
"""


def test_editing_a_called_function_changes_identity(modules):
    modules("a", A)
    b = modules("b", B)
    before = code_identity(b.permuted)
    assert before == code_identity(b.permuted) and len(before) == 12
    modules("a", A.replace("x + 1", "x + 100"))
    b = modules("b", B)  # re-binds `hybrid`, as a fresh process would
    assert code_identity(b.permuted) != before


def test_editing_an_unreached_function_keeps_identity(modules):
    modules("a", A)
    b = modules("b", B)
    before = code_identity(b.permuted)
    modules("a", A.replace("x * 2", "x * 2000"))
    b = modules("b", B)
    assert code_identity(b.permuted) == before


def test_lambda_calling_a_helper_is_followed(modules):
    src = """
    def helper(x):
        return -x

    def rank(xs):
        return sorted(xs, key=lambda x: helper(x))
    """
    m = modules("m", src)
    before = code_identity(m.rank)
    assert set(identity._sources(m.rank)) == {f"{m.__name__}.rank", f"{m.__name__}.helper"}
    m = modules("m", src.replace("-x", "abs(x)"))
    assert code_identity(m.rank) != before


def test_classes_methods_and_cycles_are_followed(modules):
    src = """
    def ping(n):
        return pong(n - 1) if n else 0

    def pong(n):
        return ping(n)

    class Scorer:
        def score(self, x):
            return ping(x)
    """
    m = modules("m", src)
    before = code_identity(m.Scorer().score)  # a bound method; ping <-> pong must terminate
    assert before == code_identity(m.Scorer.score) == code_identity(m.Scorer().score)
    m = modules("m", src.replace("pong(n - 1)", "pong(n - 10)"))
    assert code_identity(m.Scorer().score) != before


def test_stdlib_is_not_hashed_and_wrappers_are_unwrapped(modules):
    src = """
    import functools
    from math import sqrt
    from textwrap import dedent

    def logged(f):
        @functools.wraps(f)
        def wrapper(*args):
            return f(*args)
        return wrapper

    def inner(s):
        return s

    @logged
    def helper(s):
        return inner(s)

    def norm(s):
        return sqrt(len(dedent(s))) + len(helper(s))
    """
    m = modules("m", src)
    names = set(identity._sources(m.norm))
    assert names == {f"{m.__name__}.{n}" for n in ("norm", "helper", "inner")}, names  # no dedent
    before = code_identity(m.norm)
    assert code_identity(m.norm) == before
    m = modules("m", src.replace("return s\n", "return s + s\n"))  # reached only through the wrapper
    assert code_identity(m.norm) != before


def test_module_constants_count_by_value(modules):
    src = """
    import dataclasses

    THRESHOLD = 0.5
    LABELS = {"b": [1, 2], "a": None}

    @dataclasses.dataclass
    class Spec:
        name: str

    SPECS = [Spec("x")]  # not JSON: skipped, and must not make the identity vary

    def decide(x):
        return x > THRESHOLD and LABELS and SPECS
    """
    m = modules("m", src)
    before = code_identity(m.decide)
    assert f"{m.__name__}.THRESHOLD" in identity._sources(m.decide)
    assert code_identity(m.decide) == before
    m = modules("m", src.replace("0.5", "0.75"))
    assert code_identity(m.decide) != before
