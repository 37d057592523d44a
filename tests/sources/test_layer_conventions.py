"""Each SAE format's layer convention, read as its authors define it: the hidden state a source
steers (and run.json records) is the one the files name, and steering there changes what the
language model receives. The tiny LLaVA's tower has 3 blocks and its projector reads hidden state
2 (STEERED), the output of block 1."""
from __future__ import annotations

import io
import json

import pytest
import torch
from safetensors.torch import save_file

from benchmark.cli import main
from benchmark.config.models import models_config
from benchmark.models.sae import SAE
from benchmark.models.sae_formats import save_sae
from benchmark.registry import UsageError
from benchmark.sources.source import Source
from benchmark.steering.engine import SteeringEngine
from benchmark.steering.hook import steer
from benchmark.testing import (  # noqa: F401  (tiny_sae, write_dictionary_learning: other modules import them here)
    PROMPT,
    STEERED,
    tables,
    tiny_sae,
    write_dictionary_learning,
    write_toml,
)
from tests.sources.test_adapters import planted_image


def write_saelens(dpath, sae: SAE) -> None:
    """SAELens v6: the hook under `metadata`; block 1's output is hidden state 2."""
    dpath.mkdir()
    cfg = {**sae.config(), "metadata": {"hook_name": "blocks.1.hook_resid_post"}}
    (dpath / "cfg.json").write_text(json.dumps(cfg))
    save_file({n: t.contiguous() for n, t in sae.state_dict().items()}, str(dpath / "sae_weights.safetensors"))


def write_saev(fpath, sae: SAE) -> None:
    buffer = io.BytesIO()
    torch.save({n: t.contiguous() for n, t in sae.state_dict().items()}, buffer)
    header = {"schema": 2, "cfg": {"d_vit": 32, "exp_factor": 0.5, "activation": {"cls": "TopK", "params": {"top_k": 4}}}}
    fpath.write_bytes(json.dumps(header).encode() + b"\n" + buffer.getvalue())


FORMATS = {  # writer, path inside tmp_path, [sae] layer to set, the derivation run.json records
    "saelens": (write_saelens, "saelens", None, "cfg.json metadata.hook_name 'blocks.1.hook_resid_post': the output "
                                                "of block 1, hidden state 2"),
    "dictionary_learning": (write_dictionary_learning, "layer1/trainer_0", None,
                            "config.json trainer.layer 1: the output of block 1, hidden state 2"),
    "saev": (write_saev, "sae.pt", STEERED, "[sae] layer 2"),
    "featurebench": (lambda p, sae: save_sae(sae, p, hidden_state=STEERED), "sae.safetensors", None,
                     "featurebench_sae metadata hidden_state 2"),
}


def source_for(files, path, layer: int | None) -> Source:
    t = tables(files)
    t["sae"] = {"path": str(path), **({} if layer is None else {"layer": layer})}
    return Source(models_config(t, "test"), "llava")


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_hidden_state_recorded_is_the_formats_and_steering_there_reaches_the_lm(files, tmp_path, fmt):
    write, name, layer, derivation = FORMATS[fmt]
    write(tmp_path / name, tiny_sae())
    source = source_for(files, tmp_path / name, layer)
    described = source.describe()
    assert (described["layer"], described["layer_from"], described["models"]["sae"]["layer"]) == \
        (STEERED, derivation, STEERED)
    vlm, sae = source.vlm, source.sae()
    engine = SteeringEngine(vlm, source.layer)
    pixels = vlm.encode([[planted_image(90)]], PROMPT)["pixel_values"]
    prefix = vlm.tower_prefix(pixels, source.layer)
    vector = 4.0 * sae.W_dec[3]
    plain, steered = (vlm.image_features(prefix + v, source.layer) for v in (0 * vector, vector))
    assert (steered - plain).abs().amax() > 1e-3  # the language model receives something else
    with torch.no_grad(), steer(vlm.layer(STEERED), vector[None]):  # the module whose output is hidden state 2
        hooked = vlm.model.get_image_features(pixel_values=pixels)
    hooked = hooked.pooler_output if hasattr(hooked, "pooler_output") else hooked
    torch.testing.assert_close(torch.cat(list(hooked)).reshape(steered.shape), steered)
    assert engine.hidden_state == STEERED


def test_a_layer_zero_dictionary_learning_file_is_hidden_state_one(files, tmp_path):
    write_dictionary_learning(tmp_path / "layer0" / "trainer_0", tiny_sae(), layer=0)
    assert source_for(files, tmp_path / "layer0" / "trainer_0", None).layer == 1


def test_a_file_that_names_no_layer_is_refused_saying_why(files, tmp_path):
    write_saev(tmp_path / "sae.pt", tiny_sae())
    with pytest.raises(UsageError, match=r"does not say which hidden state it reads \(saev files do not record their "
                                         r"layer\); set \[sae\] layer"):
        source_for(files, tmp_path / "sae.pt", None)


def test_run_json_records_the_paper_files_hidden_state(files, tmp_path, capsys):
    write_dictionary_learning(tmp_path / "saes" / "layer1" / "trainer_0", tiny_sae())
    models = tables(files)
    models["sae"] = {"path": str(tmp_path / "saes" / "layer1" / "trainer_0")}
    toml = write_toml(tmp_path / "run.toml", {"features": "0:2", "method": "steering", "metrics": "none"}, models)
    assert main(["--config", toml, "--out", str(tmp_path / "out")]) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    source = json.loads((run_dir / "run.json").read_text())["source"]
    assert source["layer"] == STEERED and source["models"]["sae"]["layer"] == STEERED
    assert source["layer_from"] == "config.json trainer.layer 1: the output of block 1, hidden state 2"
    assert main(["sae", "inspect", str(tmp_path / "saes" / "layer1" / "trainer_0"), "--json"]) == 0
    inspected = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (inspected["hidden_state"], inspected["hidden_state_from"]) == (STEERED, source["layer_from"])
