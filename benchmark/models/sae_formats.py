"""SAEs saved by other libraries, each format detected from the files (never from a path's name).

- `saelens`: a folder with `cfg.json` + `sae_weights.safetensors` (detected: both files there). The
  world's own SAEs are saved this way.
- `dictionary_learning`: `ae.pt`, a torch state dict, optionally with the `config.json` its trainers
  write beside it (detected: `ae.pt` in the folder, or a file that is a torch zip archive or pickle).
- `saev`: one file, a JSON header line then a torch state dict (detected: first byte `{`, and not
  safetensors).
- `featurebench`: one `.safetensors` with the config in its metadata (detected: a safetensors header,
  i.e. `{` after the 8-byte length, unless it is a SAELens folder's `sae_weights.safetensors`).

Every reader converts to our layout (`W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`, see `sae.SAE`) by
renaming and transposing only: values are never changed (they are cast to float32, exact for half
precision). Torch files are read with `weights_only=True`. Anything wrong with the files raises
`SAEFormatError`, one line naming the file and the problem.

Which tower hidden state an SAE reads is read as each format's authors define it, and reported as
transformers counts hidden states (0: the embeddings; L: the output of block L - 1), with the
sentence that derived it (`SAEInfo.hidden_state_from`):
- `saelens`: `hook_name` (top level before v6, under `metadata` from v6; `hook_point` in older
  vision forks): `blocks.N.hook_resid_post` is hidden state N + 1, `blocks.N.hook_resid_pre` is N.
  A bare `hook_layer` N does not say pre or post, so it derives nothing.
- `dictionary_learning`: `trainer.layer` L in `config.json` names the output of block L (its
  activation buffers read `hidden_states[L + 1]`), so hidden state L + 1.
- `saev`: the file records no layer (it lives in the separate activation-shard config).
- `featurebench`: `hidden_state` in the metadata, already counted as transformers counts.
A file that derives none needs `[sae] layer`.

    sae, info = load_sae("path/to/sae")      # info.format, info.d_in, info.k, ...
    inspect_sae("path/to/sae")               # the same facts as a JSON-ready dict
"""
from __future__ import annotations

import io
import json
import pickle
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from benchmark.models.sae import SAE
from benchmark.registry import UsageError

METADATA_KEY = "featurebench_sae"


class SAEFormatError(UsageError):
    """A path that holds no SAE we can read; the message is one line: the path, then the problem."""

    def __init__(self, path: Path, problem: str):
        super().__init__(" ".join(f"{path}: {problem}".split()))


@dataclass(frozen=True)
class SAEInfo:
    format: str
    path: str
    d_in: int
    d_sae: int
    k: int | None
    architecture: str
    apply_b_dec_to_input: bool
    hidden_state: int | None
    """The tower hidden state the SAE reads, as transformers counts them; None: the files do not say."""
    hidden_state_from: str
    """How `hidden_state` was derived from the files (or why it could not be)."""
    config: dict
    """The config as the files have it ({} when there is none)."""

    def summary(self) -> dict:
        """Everything but the raw config: what `sae inspect` prints."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "config"}


class _Parsed(NamedTuple):
    source: Path  # the file the tensors come from, for messages about them
    tensors: dict[str, Any]  # in our layout, by our names
    architecture: str
    k: int | None
    apply_b_dec_to_input: bool
    config: dict
    hidden_state: tuple[int | None, str] = (None, "")
    declared: dict[str, Any] = {}  # d_in / d_sae / k as the config states them, checked against the tensors


def load_sae(path: str | Path) -> tuple[SAE, SAEInfo]:
    fmt, fpath = detect_format(Path(path))
    parsed = _READERS[fmt](fpath)
    return _build(fmt, fpath, parsed)


def inspect_sae(path: str | Path) -> dict:
    """Format, d_in, d_sae, k, architecture, the hidden state it reads and how that was derived (and
    path, ...): the files are read and checked."""
    return load_sae(path)[1].summary()


def save_sae(sae: SAE, fpath: Path, hidden_state: int | None = None) -> None:
    """Writes the featurebench format: one safetensors file whose metadata holds the config (and the
    hidden state it reads, as transformers counts them), so the file describes itself and cannot be
    separated from (or paired with the wrong) cfg.json."""
    fpath.parent.mkdir(parents=True, exist_ok=True)
    tensors = {n: t.detach().contiguous() for n, t in sae.state_dict().items()}
    config = {**sae.config(), **({} if hidden_state is None else {"hidden_state": hidden_state})}
    save_file(tensors, str(fpath), metadata={METADATA_KEY: json.dumps(config)})


def detect_format(path: Path) -> tuple[str, Path]:
    """The format of the SAE at `path`, and the file or folder its reader takes."""
    if path.is_dir():
        cfg, weights = path / "cfg.json", path / "sae_weights.safetensors"
        if cfg.is_file() and weights.is_file():
            return "saelens", path
        if cfg.is_file() != weights.is_file():
            have, lack = (cfg, weights) if cfg.is_file() else (weights, cfg)
            raise SAEFormatError(path, f"has {have.name} but no {lack.name} (a SAELens SAE needs both)")
        if (path / "ae.pt").is_file():
            return "dictionary_learning", path / "ae.pt"
        raise SAEFormatError(path, "holds no SAE: expected cfg.json + sae_weights.safetensors (SAELens) or ae.pt "
                                   "(dictionary_learning); for saev or featurebench pass the file itself")
    if not path.is_file():
        raise SAEFormatError(path, "no such file or directory")
    with path.open("rb") as f:
        head = f.read(16)
    if not head:
        raise SAEFormatError(path, "is empty")
    # safetensors: an 8-byte little-endian header length, then the JSON header. A saev header line can have
    # a `{` at byte 8 too, but read as a length its first 8 bytes run far past the end of the file.
    header_fits = 8 + int.from_bytes(head[:8], "little") <= path.stat().st_size
    if head[8:9] == b"{" and (head[:1] != b"{" or header_fits):
        if path.name == "sae_weights.safetensors" and (path.parent / "cfg.json").is_file():
            return "saelens", path.parent
        return "featurebench", path
    if head[:1] == b"{":
        return "saev", path
    return "dictionary_learning", path  # what torch.save writes: a zip archive or a legacy pickle


def _read_saelens(dpath: Path) -> _Parsed:
    cfg_path, weights_path = dpath / "cfg.json", dpath / "sae_weights.safetensors"
    cfg = _read_json(cfg_path)
    tensors, _ = _read_safetensors(weights_path)
    architecture = cfg.get("architecture", "standard")
    activation = cfg.get("activation_fn", cfg.get("activation_fn_str", "relu"))
    if architecture == "standard" and activation == "topk":  # SAELens < 6 wrote TopK SAEs this way
        architecture = "topk"
    elif architecture == "standard" and activation != "relu":
        raise SAEFormatError(cfg_path, f"activation_fn {activation!r} is not supported (relu or topk)")
    ours = {"standard": "relu", "relu": "relu", "topk": "topk", "batchtopk": "batchtopk", "jumprelu": "jumprelu"}
    if architecture not in ours:
        raise SAEFormatError(cfg_path, f"architecture {architecture!r} is not supported ({', '.join(ours)})")
    normalize = cfg.get("normalize_activations")
    if normalize not in (None, False, "none"):
        raise SAEFormatError(cfg_path, f"normalize_activations={normalize!r} rescales inputs by a factor not in "
                                       "the files; fold it into the weights first (none is supported)")
    scaling = tensors.pop("scaling_factor", None)  # SAELens drops an all-ones one too
    if cfg.get("finetuning_scaling_factor") or (scaling is not None and not bool((scaling == 1).all())):
        raise SAEFormatError(weights_path, "a finetuning scaling_factor is not supported")
    # k: top-level in SAELens >= 6 (and our own cfg.json), in activation_fn_kwargs before
    k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
    apply_b_dec = bool(cfg.get("apply_b_dec_to_input", True))
    return _Parsed(weights_path, tensors, ours[architecture], _as_k(k, cfg_path), apply_b_dec, cfg,
                   _saelens_hidden_state(cfg), {"d_in": cfg.get("d_in"), "d_sae": cfg.get("d_sae")})


def _saelens_hidden_state(cfg: dict) -> tuple[int | None, str]:
    """SAELens names a hook point, `blocks.N.hook_resid_post` (the output of block N: hidden state
    N + 1) or `blocks.N.hook_resid_pre` (its input: hidden state N)."""
    meta = cfg.get("metadata") or {}
    for where, name in (("metadata.hook_name", meta.get("hook_name")), ("hook_name", cfg.get("hook_name")),
                        ("hook_point", cfg.get("hook_point"))):
        if not isinstance(name, str):
            continue
        match = re.fullmatch(r"blocks\.(\d+)\.hook_resid_(pre|post)", name)
        if match is None:
            return None, f"cfg.json {where} {name!r} is not a residual stream hook (blocks.N.hook_resid_pre/post)"
        block, side = int(match[1]), match[2]
        state = block + (side == "post")
        return state, f"cfg.json {where} {name!r}: the {'output' if side == 'post' else 'input'} of block {block}, " \
                      f"hidden state {state}"
    bare = next((v for v in (cfg.get("hook_layer"), meta.get("hook_layer"), cfg.get("hook_point_layer"))
                 if v is not None), None)
    if bare is not None:
        return None, f"cfg.json has hook_layer {bare} but no hook_name: block {bare}'s input or output is not said"
    return None, "cfg.json names no hook_name"


# dictionary_learning's classes: (architecture, apply_b_dec_to_input, {our name: their key}, buffers read
# besides). Their nn.Linear weights (`*.weight`) are stored [out, in] and are transposed.
_LINEAR = {"W_enc": "encoder.weight", "b_enc": "encoder.bias", "W_dec": "decoder.weight"}
_PLAIN = {"W_enc": "W_enc", "b_enc": "b_enc", "W_dec": "W_dec", "b_dec": "b_dec"}
_DICTIONARY_LEARNING = {
    "AutoEncoderTopK": ("topk", True, {**_LINEAR, "b_dec": "b_dec"}, {"k", "threshold"}),
    "BatchTopKSAE": ("batchtopk", True, {**_LINEAR, "b_dec": "b_dec", "threshold": "threshold"}, {"k"}),
    "MatryoshkaBatchTopKSAE": ("batchtopk", True, {**_PLAIN, "threshold": "threshold"}, {"k", "group_sizes"}),
    "AutoEncoder": ("relu", True, {**_LINEAR, "b_dec": "bias"}, set()),
    "AutoEncoderNew": ("relu", False, {**_LINEAR, "b_dec": "decoder.bias"}, set()),
    "JumpReluAutoEncoder": ("jumprelu", False, {**_PLAIN, "threshold": "threshold"}, set()),
}


def _read_dictionary_learning(fpath: Path) -> _Parsed:
    state = _torch_state_dict(fpath.read_bytes(), fpath)
    config_path = fpath.parent / "config.json"
    config = _read_json(config_path) if config_path.is_file() else {}
    trainer = config.get("trainer") or {}
    if not isinstance(trainer, dict):
        raise SAEFormatError(config_path, "'trainer' is not an object")
    dict_class = trainer.get("dict_class")
    if dict_class is not None and dict_class not in _DICTIONARY_LEARNING:
        raise SAEFormatError(config_path, f"dict_class {dict_class!r} is not supported "
                                          f"({', '.join(_DICTIONARY_LEARNING)})")

    def expected(cls: str) -> set[str]:
        return set(_DICTIONARY_LEARNING[cls][2].values()) | _DICTIONARY_LEARNING[cls][3]

    # Without a config.json, the class whose keys overlap most; AutoEncoderTopK and BatchTopKSAE have the
    # same keys, and the first (per-row top-k, the safe reading) wins.
    cls = dict_class or max(_DICTIONARY_LEARNING, key=lambda c: (len(expected(c) & state.keys()), -len(expected(c))))
    missing, unexpected = sorted(expected(cls) - state.keys()), sorted(state.keys() - expected(cls))
    if missing or unexpected:
        problems = ", ".join(f"{what} {keys}" for what, keys in [("missing", missing), ("unexpected", unexpected)]
                             if keys)
        raise SAEFormatError(fpath, f"does not match the keys of dictionary_learning's {cls}: {problems}")
    architecture, apply_b_dec, names, _ = _DICTIONARY_LEARNING[cls]
    tensors = {ours: _tensor(state, theirs, fpath) for ours, theirs in names.items()}
    tensors = {n: t.T if names[n].endswith(".weight") else t for n, t in tensors.items()}
    k = _as_k(_tensor(state, "k", fpath).item(), fpath) if "k" in state else None
    declared = {"d_in": trainer.get("activation_dim"), "d_sae": trainer.get("dict_size"), "k": trainer.get("k")}
    layer = trainer.get("layer")
    if isinstance(layer, int) and not isinstance(layer, bool) and layer >= 0:
        hidden = layer + 1, f"config.json trainer.layer {layer}: the output of block {layer}, hidden state {layer + 1}"
    else:
        hidden = None, ("config.json has no trainer.layer" if config else "no config.json beside ae.pt") \
            if layer is None else f"config.json trainer.layer {layer!r} is not a block index"
    return _Parsed(fpath, tensors, architecture, k, apply_b_dec, config, hidden, declared)


def _read_saev(fpath: Path) -> _Parsed:
    line, _, rest = fpath.read_bytes().partition(b"\n")
    try:
        header = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SAEFormatError(fpath, f"first line is not saev's JSON header ({e})") from e
    if not rest:
        raise SAEFormatError(fpath, "has a JSON header but no state dict after it")
    state = _torch_state_dict(rest, fpath)
    schema = header.get("schema") if isinstance(header, dict) else None
    cfg = header if schema is None else header.get("cfg")
    if not isinstance(cfg, dict):
        raise SAEFormatError(fpath, "JSON header has no config object (saev writes {'schema', 'cfg', ...})")
    activation, params = header.get("cls"), cfg
    if schema is None:  # before schema versions: always a ReLU SAE
        activation = "Relu"
    elif schema != 1 or activation not in ("Relu", "TopK", "BatchTopK"):  # the activation is its own object
        act = cfg.get("activation", {"cls": "Relu"})
        activation, params = (act.get("cls"), act.get("params") or {}) if isinstance(act, dict) else (None, {})
    # saev's BatchTopK keeps a running `activation.threshold` for eval in later versions; before that its
    # eval was a per-sample top-k.
    architecture = {"Relu": "relu", "TopK": "topk", "BatchTopK": "batchtopk"}.get(activation)
    if architecture is None:
        raise SAEFormatError(fpath, f"activation {activation!r} is not supported (Relu, TopK, BatchTopK)")
    if architecture == "batchtopk" and "activation.threshold" not in state:
        architecture = "topk"
    tensors = dict(state)
    if "activation.threshold" in tensors:
        tensors["threshold"] = tensors.pop("activation.threshold")
    d_in = cfg.get("d_model", cfg.get("d_vit"))
    d_sae = cfg.get("d_sae", d_in * cfg["exp_factor"] if isinstance(d_in, int) and "exp_factor" in cfg else None)
    # saev subtracted b_dec before encoding up to schema 1; from schema 2 its encode() does not.
    return _Parsed(fpath, tensors, architecture, _as_k(params.get("top_k"), fpath), schema in (None, 1), header,
                   (None, "saev files do not record their layer"), {"d_in": d_in, "d_sae": d_sae})


def _read_featurebench(fpath: Path) -> _Parsed:
    tensors, metadata = _read_safetensors(fpath)
    if METADATA_KEY not in metadata:
        raise SAEFormatError(fpath, f"a safetensors file without {METADATA_KEY!r} metadata; a SAELens SAE is a "
                                    "folder with cfg.json beside sae_weights.safetensors")
    try:
        cfg = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as e:
        raise SAEFormatError(fpath, f"{METADATA_KEY} metadata is not valid JSON ({e})") from e
    if not isinstance(cfg, dict) or cfg.get("architecture") not in ("topk", "batchtopk", "relu", "jumprelu"):
        raise SAEFormatError(fpath, f"{METADATA_KEY} metadata names no known architecture")
    apply_b_dec = bool(cfg.get("apply_b_dec_to_input", True))
    state = cfg.get("hidden_state")
    hidden = (state, f"{METADATA_KEY} metadata hidden_state {state}") if isinstance(state, int) else \
        (None, f"{METADATA_KEY} metadata has no hidden_state")
    return _Parsed(fpath, tensors, cfg["architecture"], _as_k(cfg.get("k"), fpath), apply_b_dec, cfg, hidden,
                   {"d_in": cfg.get("d_in"), "d_sae": cfg.get("d_sae")})


_READERS = {"saelens": _read_saelens, "dictionary_learning": _read_dictionary_learning, "saev": _read_saev,
            "featurebench": _read_featurebench}


def _build(fmt: str, fpath: Path, p: _Parsed) -> tuple[SAE, SAEInfo]:
    """Checks every tensor's shape against W_enc's and the config's, then builds the SAE."""
    source = p.source
    W_enc = _tensor(p.tensors, "W_enc", source)
    if W_enc.ndim != 2:
        raise SAEFormatError(source, f"W_enc has shape {list(W_enc.shape)}, expected [d_in, d_sae]")
    d_in, d_sae = W_enc.shape
    for name, value in p.declared.items():
        actual = {"d_in": d_in, "d_sae": d_sae, "k": p.k}[name]
        if value is not None and value != actual:
            raise SAEFormatError(source, f"the config says {name}={value} but the weights have {name}={actual}")
    shapes = {"W_enc": [d_in, d_sae], "b_enc": [d_sae], "W_dec": [d_sae, d_in], "b_dec": [d_in]}
    shapes |= {"batchtopk": {"threshold": []}, "jumprelu": {"threshold": [d_sae]}}.get(p.architecture, {})
    missing, unexpected = shapes.keys() - p.tensors.keys(), p.tensors.keys() - shapes.keys()
    if missing or unexpected:
        what = f"missing tensors {sorted(missing)}" if missing else f"unexpected tensors {sorted(unexpected)}"
        raise SAEFormatError(source, f"{what} for a {p.architecture} SAE")
    for name, shape in shapes.items():
        if list(_tensor(p.tensors, name, source).shape) != shape:
            raise SAEFormatError(source, f"{name} has shape {list(p.tensors[name].shape)}, expected {shape} "
                                         f"(d_in={d_in}, d_sae={d_sae})")
    if p.architecture == "topk" and (p.k is None or not 0 < p.k <= d_sae):
        raise SAEFormatError(source, f"a topk SAE needs k in [1, {d_sae}]; the config gives k={p.k}")
    sae = SAE(d_in, d_sae, p.k, p.architecture, p.apply_b_dec_to_input)
    sae.load_state_dict({n: t.to(torch.float32) for n, t in p.tensors.items()})
    info = SAEInfo(fmt, str(fpath), d_in, d_sae, p.k, p.architecture, p.apply_b_dec_to_input, *p.hidden_state,
                   p.config)
    return sae.eval().requires_grad_(False), info


def _read_json(fpath: Path) -> dict:
    try:
        cfg = json.loads(fpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SAEFormatError(fpath, f"is not valid JSON ({e})") from e
    if not isinstance(cfg, dict):
        raise SAEFormatError(fpath, f"holds a JSON {type(cfg).__name__}, expected an object")
    return cfg


def _read_safetensors(fpath: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(fpath), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for every kind of damage
        raise SAEFormatError(fpath, f"is not a readable safetensors file ({_first_line(e)})") from e


def _torch_state_dict(data: bytes, fpath: Path) -> dict:
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise SAEFormatError(fpath, "holds Python objects a weights-only load refuses (a state dict of "
                                    "tensors is what loads)") from e
    except Exception as e:  # truncated, or not a torch file at all
        raise SAEFormatError(fpath, f"is not a readable torch state dict ({_first_line(e)})") from e
    if not isinstance(state, dict):
        raise SAEFormatError(fpath, f"holds a {type(state).__name__}, expected a state dict")
    return state


def _tensor(tensors: dict, key: str, fpath: Path) -> torch.Tensor:
    if key not in tensors:
        raise SAEFormatError(fpath, f"missing tensor {key!r}")
    if not isinstance(tensors[key], torch.Tensor):
        raise SAEFormatError(fpath, f"{key!r} is a {type(tensors[key]).__name__}, expected a tensor")
    return tensors[key]


def _as_k(value: Any, fpath: Path) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0 or value != int(value):
        raise SAEFormatError(fpath, f"k must be a positive integer, got {value!r}")
    return int(value)


def _first_line(e: Exception) -> str:
    """The library's own words, cut to their first sentence."""
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__).split(". ")[0][:160]
