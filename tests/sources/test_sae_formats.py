"""Each SAE format, written here in its library's own key layout, loads to the exact tensors, the right
sizes and architecture, and an encode() that matches the library's inference rule; damaged files raise
SAEFormatError with one line naming the file."""
from __future__ import annotations

import datetime
import io
import json

import pytest
import torch
from safetensors.torch import save_file

from benchmark.models.sae import SAE, TopKSAE
from benchmark.models.sae_formats import SAEFormatError, inspect_sae, load_sae, save_sae
from benchmark.registry import UsageError

D_IN, D_SAE, K = 4, 12, 3


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed + sum(shape)))


def unit_rows(n: int, d: int, seed: int = 0) -> torch.Tensor:
    w = rand(n, d, seed=seed)
    return w / w.norm(dim=1, keepdim=True)


def saelens_tensors(architecture: str) -> dict[str, torch.Tensor]:
    tensors = {"W_enc": rand(D_IN, D_SAE), "b_enc": rand(D_SAE, seed=1), "W_dec": rand(D_SAE, D_IN, seed=2),
               "b_dec": rand(D_IN, seed=3)}
    if architecture == "jumprelu":
        tensors["threshold"] = rand(D_SAE, seed=4).abs()
    return tensors


def write_saelens(dpath, cfg: dict, tensors: dict[str, torch.Tensor]) -> None:
    dpath.mkdir(parents=True, exist_ok=True)
    (dpath / "cfg.json").write_text(json.dumps(cfg))
    save_file(tensors, str(dpath / "sae_weights.safetensors"))


def assert_loaded(sae: SAE, expected: dict[str, torch.Tensor]) -> None:
    assert sae.state_dict().keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(sae.state_dict()[name], tensor), name


SAELENS_CONFIGS = {  # cfg.json as SAELens versions write it -> (architecture, k, hidden state)
    "v6-topk": ({"architecture": "topk", "d_in": D_IN, "d_sae": D_SAE, "k": K,
                 "metadata": {"hook_name": "blocks.5.hook_resid_post", "hook_layer": 5}}, "topk", K, 6),
    "pre6-topk-as-standard": ({"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE, "activation_fn_str": "topk",
                               "activation_fn_kwargs": {"k": K}, "hook_name": "blocks.5.hook_resid_pre",
                               "hook_layer": 5}, "topk", K, 5),
    "pre6-topk": ({"architecture": "topk", "d_in": D_IN, "d_sae": D_SAE, "activation_fn_kwargs": {"k": K},
                   "hook_point": "blocks.5.hook_resid_post", "hook_point_layer": 5, "normalize_activations": False},
                  "topk", K, 6),
    "bare-hook-layer": ({"architecture": "topk", "d_in": D_IN, "d_sae": D_SAE, "k": K, "hook_layer": 5}, "topk", K, None),
    "standard": ({"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE, "activation_fn_str": "relu",
                  "normalize_activations": "none"}, "relu", None, None),
    "gemma-scope-jumprelu": ({"architecture": "jumprelu", "d_in": D_IN, "d_sae": D_SAE, "apply_b_dec_to_input": False,
                              "activation_fn": "relu"}, "jumprelu", None, None),
}


@pytest.mark.parametrize("name", SAELENS_CONFIGS)
def test_saelens_configs_of_each_version(tmp_path, name):
    cfg, architecture, k, hidden_state = SAELENS_CONFIGS[name]
    tensors = saelens_tensors(architecture)
    write_saelens(tmp_path / "sae", cfg, tensors)
    sae, info = load_sae(tmp_path / "sae")
    assert_loaded(sae, tensors)
    assert info.config == cfg and sae.apply_b_dec_to_input == cfg.get("apply_b_dec_to_input", True)
    summary = inspect_sae(tmp_path / "sae")
    assert summary.pop("hidden_state_from")
    assert summary == {
        "format": "saelens", "path": str(tmp_path / "sae"), "d_in": D_IN, "d_sae": D_SAE, "k": k,
        "architecture": architecture, "apply_b_dec_to_input": cfg.get("apply_b_dec_to_input", True),
        "hidden_state": hidden_state}
    assert load_sae(tmp_path / "sae" / "sae_weights.safetensors")[1].format == "saelens"  # the file picks its folder


def test_the_worlds_saved_sae_loads_as_saelens(tmp_path):
    sae = TopKSAE(D_IN, D_SAE, K)
    torch.nn.init.normal_(sae.W_enc), torch.nn.init.normal_(sae.W_dec)
    sae.save(tmp_path / "sae", hidden_state=2)
    again, info = load_sae(tmp_path / "sae")
    assert info.config["k"] == K and again.architecture == "topk"
    assert info.config["metadata"]["hook_name"] == "blocks.1.hook_resid_post" and info.hidden_state == 2
    assert_loaded(again, sae.state_dict())
    assert info.format == "saelens"


def linear_layout(threshold: bool = True) -> dict[str, torch.Tensor]:
    """dictionary_learning's nn.Linear layout: encoder.weight [d_sae, d_in], decoder.weight [d_in, d_sae]."""
    state = {"encoder.weight": rand(D_SAE, D_IN), "encoder.bias": rand(D_SAE, seed=1),
             "decoder.weight": unit_rows(D_SAE, D_IN, seed=2).T.contiguous(), "b_dec": rand(D_IN, seed=3),
             "k": torch.tensor(K, dtype=torch.int)}
    if threshold:
        state["threshold"] = torch.tensor(0.3)
    return state


def plain_layout() -> dict[str, torch.Tensor]:
    return {"W_enc": rand(D_IN, D_SAE), "b_enc": rand(D_SAE, seed=1), "W_dec": unit_rows(D_SAE, D_IN, seed=2),
            "b_dec": rand(D_IN, seed=3)}


def reference_topk(post_relu_NF: torch.Tensor, k: int) -> torch.Tensor:
    top = post_relu_NF.topk(k, dim=-1)
    return torch.zeros_like(post_relu_NF).scatter(-1, top.indices, top.values)


# dict_class -> (state dict in its layout, architecture, the library's encode() written from its source)
def dl_cases():
    topk, batch = linear_layout(), linear_layout()
    matryoshka = {**plain_layout(), "k": torch.tensor(K, dtype=torch.int), "threshold": torch.tensor(0.3),
                  "group_sizes": torch.tensor([4, 8])}
    standard = {**{n: t for n, t in linear_layout(threshold=False).items() if n not in ("b_dec", "k")},
                "bias": rand(D_IN, seed=3)}
    jump = {**plain_layout(), "threshold": rand(D_SAE, seed=4).abs()}

    def linear_relu(s, x, b_dec):
        return torch.relu((x - b_dec) @ s["encoder.weight"].T + s["encoder.bias"])

    return {
        "AutoEncoderTopK": (topk, "topk", lambda s, x: reference_topk(linear_relu(s, x, s["b_dec"]), K)),
        "BatchTopKSAE": (batch, "batchtopk",
                         lambda s, x: linear_relu(s, x, s["b_dec"]) * (linear_relu(s, x, s["b_dec"]) > s["threshold"])),
        "MatryoshkaBatchTopKSAE": (matryoshka, "batchtopk", lambda s, x: (
            lambda r: r * (r > s["threshold"]))(torch.relu((x - s["b_dec"]) @ s["W_enc"] + s["b_enc"]))),
        "AutoEncoder": (standard, "relu", lambda s, x: linear_relu(s, x, s["bias"])),
        "JumpReluAutoEncoder": (jump, "jumprelu", lambda s, x: (  # no b_dec on the input; unit W_dec rows
            lambda pre: torch.relu(pre * (pre > s["threshold"])) * s["W_dec"].norm(dim=1))(
                x @ s["W_enc"] + s["b_enc"])),
    }


@pytest.mark.parametrize("dict_class", ["AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE", "AutoEncoder",
                                        "JumpReluAutoEncoder"])
def test_dictionary_learning_classes(tmp_path, dict_class):
    state, architecture, reference = dl_cases()[dict_class]
    torch.save(state, tmp_path / "ae.pt")
    trainer = {"dict_class": dict_class, "activation_dim": D_IN, "dict_size": D_SAE, "layer": 7}
    (tmp_path / "config.json").write_text(json.dumps({"trainer": trainer, "buffer": {"d_submodule": D_IN}}))
    sae, info = load_sae(tmp_path)
    linear = "encoder.weight" in state
    W_enc = state["encoder.weight"].T if linear else state["W_enc"]
    W_dec = state["decoder.weight"].T if linear else state["W_dec"]
    assert torch.equal(sae.W_enc, W_enc) and torch.equal(sae.W_dec, W_dec)
    assert torch.equal(sae.b_enc, state["encoder.bias"] if linear else state["b_enc"])
    assert torch.equal(sae.b_dec, state.get("bias", state.get("b_dec")))
    if architecture in ("batchtopk", "jumprelu"):
        assert torch.equal(sae.threshold, state["threshold"])
    k = K if "k" in state else None
    assert inspect_sae(tmp_path / "ae.pt") == {
        "format": "dictionary_learning", "path": str(tmp_path / "ae.pt"), "d_in": D_IN, "d_sae": D_SAE, "k": k,
        "architecture": architecture, "apply_b_dec_to_input": dict_class != "JumpReluAutoEncoder", "hidden_state": 8,
        "hidden_state_from": "config.json trainer.layer 7: the output of block 7, hidden state 8"}
    x = rand(20, D_IN, seed=9) * 2
    assert torch.allclose(sae.encode(x), reference(state, x), atol=1e-6)
    assert info.config["trainer"]["dict_class"] == dict_class


def test_dictionary_learning_without_config_reads_the_topk_layout_as_per_row_topk(tmp_path):
    torch.save(linear_layout(), tmp_path / "ae.pt")
    sae, info = load_sae(tmp_path / "ae.pt")
    assert (info.architecture, info.k, info.hidden_state, info.config) == ("topk", K, None, {})
    assert ((sae.encode(rand(8, D_IN, seed=5)) != 0).sum(1) <= K).all()


def saev_file(fpath, header: dict, state: dict[str, torch.Tensor]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    fpath.write_bytes(json.dumps(header).encode() + b"\n" + buffer.getvalue())


SAEV_HEADERS = {  # saev's header by schema -> (architecture, k, b_dec subtracted before encoding)
    "legacy": ({"d_vit": D_IN, "exp_factor": 3, "l1_coeff": 4e-4, "seed": 0}, "relu", None, True),
    "schema1-topk": ({"schema": 1, "cls": "TopK", "cfg": {"d_vit": D_IN, "exp_factor": 3, "top_k": K}},
                     "topk", K, True),
    "schema2-topk": ({"schema": 2, "cfg": {"d_vit": D_IN, "exp_factor": 3,
                                           "activation": {"cls": "TopK", "params": {"top_k": K}}}}, "topk", K, False),
    "schema5-batchtopk": ({"schema": 5, "cfg": {"d_model": D_IN, "d_sae": D_SAE, "activation": {
        "cls": "BatchTopK", "params": {"kind": "batch-top-k", "top_k": K, "momentum": 0.1}}}}, "batchtopk", K, False),
}


@pytest.mark.parametrize("name", SAEV_HEADERS)
def test_saev_checkpoints_of_each_schema(tmp_path, name):
    header, architecture, k, apply_b_dec = SAEV_HEADERS[name]
    state = plain_layout()
    if architecture == "batchtopk":
        state["activation.threshold"] = torch.tensor(0.25)
    saev_file(tmp_path / "sae.pt", header, state)
    sae, info = load_sae(tmp_path / "sae.pt")
    assert_loaded(sae, {("threshold" if n == "activation.threshold" else n): t for n, t in state.items()})
    assert info.summary() == {"format": "saev", "path": str(tmp_path / "sae.pt"), "d_in": D_IN, "d_sae": D_SAE,
                              "k": k, "architecture": architecture, "apply_b_dec_to_input": apply_b_dec,
                              "hidden_state": None, "hidden_state_from": "saev files do not record their layer"}
    x = rand(6, D_IN, seed=8)
    pre = (x - state["b_dec"] * apply_b_dec) @ state["W_enc"] + state["b_enc"]
    assert torch.allclose(sae.pre_activations(x), pre, atol=1e-6)


@pytest.mark.parametrize("architecture,k", [("topk", K), ("batchtopk", K), ("relu", None), ("jumprelu", None)])
def test_featurebench_single_file_round_trip(tmp_path, architecture, k):
    sae = SAE(D_IN, D_SAE, k, architecture, apply_b_dec_to_input=architecture != "jumprelu")
    for p in sae.parameters():
        torch.nn.init.normal_(p)
    save_sae(sae, tmp_path / "my.safetensors", hidden_state=3)
    again, info = load_sae(tmp_path / "my.safetensors")
    assert_loaded(again, sae.state_dict())
    assert info.summary() == {"format": "featurebench", "path": str(tmp_path / "my.safetensors"), "d_in": D_IN,
                              "d_sae": D_SAE, "k": k, "architecture": architecture,
                              "apply_b_dec_to_input": architecture != "jumprelu", "hidden_state": 3,
                              "hidden_state_from": "featurebench_sae metadata hidden_state 3"}


def identity_sae(architecture: str, k: int | None = None) -> SAE:
    """W_enc = W_dec = I and zero biases, so pre-activations are the input itself."""
    sae = SAE(3, 3, k, architecture)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(3)), sae.W_dec.copy_(torch.eye(3))
    return sae


def test_encode_by_hand():
    x = torch.tensor([[-1.0, 0.5, 2.0], [-3.0, -2.0, 0.7]])
    assert torch.equal(identity_sae("topk", 2).encode(x), torch.tensor([[0, 0.5, 2], [0, 0, 0.7]]))  # top 2, ReLU'd
    assert torch.equal(identity_sae("relu").encode(x), torch.tensor([[0, 0.5, 2], [0, 0, 0.7]]))
    batch = identity_sae("batchtopk", K)
    with torch.no_grad():
        batch.threshold.fill_(1.0)
    assert torch.equal(batch.encode(x), torch.tensor([[0, 0, 2.0], [0, 0, 0]]))  # one global cut, strict >
    with torch.no_grad():
        batch.threshold.fill_(-1.0)  # never set during training: a plain ReLU
    assert torch.equal(batch.encode(x), torch.tensor([[0, 0.5, 2], [0, 0, 0.7]]))
    jump = identity_sae("jumprelu")
    with torch.no_grad():
        jump.threshold.copy_(torch.tensor([0.0, 0.5, 0.6]))  # per latent; 0.5 is not above 0.5
        jump.b_dec.copy_(torch.tensor([0.0, 0.0, 1.0]))
    assert torch.equal(jump.encode(x), torch.tensor([[0, 0, 1.0], [0, 0, 0]]))  # b_dec subtracted first
    jump.apply_b_dec_to_input = False
    assert torch.equal(jump.encode(x), torch.tensor([[0, 0, 2.0], [0, 0, 0.7]]))


def test_topk_keeps_exactly_k_when_pre_activations_are_positive():
    sae = SAE(D_IN, D_SAE, K, "topk")
    with torch.no_grad():
        sae.W_enc.copy_(rand(D_IN, D_SAE)), sae.b_enc.fill_(100.0)
    acts = sae.encode(rand(10, D_IN, seed=3))
    assert ((acts > 0).sum(1) == K).all()
    assert torch.equal(acts.topk(K).values, sae.pre_activations(rand(10, D_IN, seed=3)).topk(K).values)


def corrupt(tmp_path, case: str):
    """Writes one damaged SAE; returns the path to load and the file the message must name."""
    sae_dir, good = tmp_path / "sae", saelens_tensors("topk")
    cfg = {"architecture": "topk", "d_in": D_IN, "d_sae": D_SAE, "k": K}
    if case == "empty dir":
        sae_dir.mkdir()
        return sae_dir, sae_dir
    if case == "no such path":
        return tmp_path / "nope", tmp_path / "nope"
    if case == "empty file":
        (tmp_path / "x.pt").write_bytes(b"")
        return tmp_path / "x.pt", tmp_path / "x.pt"
    if case == "cfg.json alone":
        sae_dir.mkdir()
        (sae_dir / "cfg.json").write_text(json.dumps(cfg))
        return sae_dir, sae_dir
    weights = sae_dir / "sae_weights.safetensors"
    if case.startswith("saelens"):
        what = case.removeprefix("saelens ")
        tensors = {n: t for n, t in good.items() if n != "b_dec"} if what == "missing key" else good
        tensors = {**good, "W_dec": good["W_dec"].T.contiguous()} if what == "wrong shape" else tensors
        cfg = {**cfg, "architecture": "gated"} if what == "unknown architecture" else cfg
        cfg = {**cfg, "d_in": D_IN + 1} if what == "config mismatch" else cfg
        cfg = {n: v for n, v in cfg.items() if n != "k"} if what == "topk without k" else cfg
        write_saelens(sae_dir, cfg, tensors)
        if what == "bad json":
            (sae_dir / "cfg.json").write_text('{"architecture": "topk",')
            return sae_dir, sae_dir / "cfg.json"
        if what == "truncated":
            weights.write_bytes(weights.read_bytes()[:-20])
        return sae_dir, (sae_dir / "cfg.json") if what in ("unknown architecture",) else weights
    if case.startswith("dictionary_learning"):
        state = linear_layout()
        if case.endswith("missing key"):
            del state["b_dec"]
        if case.endswith("refused pickle"):
            state["created"] = datetime.datetime(2024, 1, 1)
        torch.save(state, tmp_path / "ae.pt")
        if case.endswith("truncated"):
            (tmp_path / "ae.pt").write_bytes((tmp_path / "ae.pt").read_bytes()[:300])
        return tmp_path, tmp_path / "ae.pt"
    fpath = tmp_path / "sae.pt"
    if case.startswith("saev"):
        saev_file(fpath, SAEV_HEADERS["schema2-topk"][0], plain_layout())
        data = fpath.read_bytes()
        fpath.write_bytes(b'{"schema": 2, "cfg": ' + data[data.index(b"\n"):] if case.endswith("bad json")
                          else data[:len(data) - 200])
        return fpath, fpath
    fpath = tmp_path / "plain.safetensors"
    save_file(good, str(fpath))
    if case == "featurebench truncated":
        save_sae(identity_sae("relu"), fpath)
        fpath.write_bytes(fpath.read_bytes()[:-10])
    return fpath, fpath  # "safetensors without metadata"


CORRUPT = ["empty dir", "no such path", "empty file", "cfg.json alone", "saelens missing key", "saelens wrong shape",
           "saelens unknown architecture", "saelens config mismatch", "saelens topk without k", "saelens bad json",
           "saelens truncated", "dictionary_learning missing key", "dictionary_learning refused pickle",
           "dictionary_learning truncated", "saev bad json", "saev truncated", "featurebench truncated",
           "safetensors without metadata"]


@pytest.mark.parametrize("case", CORRUPT)
def test_damaged_files_raise_one_line_naming_the_file(tmp_path, case):
    path, named = corrupt(tmp_path, case)
    with pytest.raises(SAEFormatError) as caught:
        load_sae(path)
    message = str(caught.value)
    assert isinstance(caught.value, UsageError)
    assert "\n" not in message and message.startswith(f"{named}: "), message
    assert len(message) < 300 and "Traceback" not in message


def test_cli_inspect_prints_the_json_and_exits_2_on_a_truncated_file(tmp_path, capsys):
    from benchmark.cli import main

    sae = SAE(6, 10, k=3)
    torch.nn.init.normal_(sae.W_enc)
    save_sae(sae, tmp_path / "mine.safetensors")
    assert main(["sae", "inspect", str(tmp_path / "mine.safetensors"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {k: info[k] for k in ("format", "d_in", "d_sae", "k", "architecture")} == {
        "format": "featurebench", "d_in": 6, "d_sae": 10, "k": 3, "architecture": "topk"}
    assert info["features"]["featurebench"] == "latent ids 0..9" and "alive latents" in info["features"]["seed"]
    data = (tmp_path / "mine.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:len(data) // 2])
    assert main(["sae", "inspect", str(tmp_path / "cut.safetensors"), "--json"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1 and "cut.safetensors" in out.err
