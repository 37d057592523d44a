"""Protocols: named, complete sets of the settings that turn explanations into numbers.

A run names one (`protocol = "seed"` in a run config, `--protocol seed`); every setting a protocol
governs is declared `governed(item)` in its settings dataclass and left None until the run resolves
it (`benchmark.config.resolve`), so a key the user gives explicitly always wins and a setting nobody
gave takes the protocol's value. The protocol's
name goes into run.json, every row and the leaderboards; what it sets goes into the cache keys
through the settings themselves.

- `featurebench` (the default): the project's own choices, as the README argues them.
- `seed`: the seed paper's protocol as its public code runs it (HPAI-BSC/vision-interp;
  `../shared/PAPER_PROTOCOL.md` lists each item with the file it comes from). Its prompts and the
  phrases it removes from answers are the paper's data, used verbatim.

Each table below holds one value for every governed field of the dataclass named beside it; the
field's `governed(item)` names the PAPER_PROTOCOL.md item it implements; the tests walk both.
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.registry import UsageError

DESCRIBE = ("Describe in one sentence the highlighted element in this image: a low-level visual pattern or an "
            "abstract concept. Prefer the most general reading.")
SHARED = ("Each image shows one element; everything else is blacked out. In one sentence, name the one element "
          "shared by all images: a low-level visual pattern or an abstract concept.")
ANSWER_PREFIX = "The element is"
"""The project's own questions: short, and an answer forced to start naming the element, so that no
answer spends its tokens on a preamble and none has to be cleaned."""

PAPER_STEERING_PROMPT = (
    "You are given an image highlighting a visual or semantic element. This element may range from a low-level "
    "visual feature to a high-level abstract concept. Your task is to describe this element in a single, clear "
    "sentence. If the element is a high-level abstract concept, describe it as such; otherwise, describe its visual "
    "patterns. Favor a more general interpretation. Start the highlighted element description with \"The highlighted "
    "element in the image is a\"")
"""The seed paper's steering prompt (its `load_prompt`, steering type raw, blank base image): item 7."""
PAPER_TOPK_PROMPT = (
    "You are given set of images highlighting a visual or semantic element. The patches of the images not showing "
    "the element are masked out, giving the impression of a pixelated image. This element may range from a "
    "low-level visual feature to a high-level abstract concept. Your task is to describe this element in a single, "
    "clear sentence. If the element is a high-level abstract concept, describe it as such; otherwise, describe its "
    "visual patterns. Favor a more general interpretation. Provide a single description for the highlighted element "
    "appearing in all images, and please ignore the pixelated effect of the mask when describing the element. Start "
    "the highlighted element description with \"The highlighted element in the image is a\".")
"""The seed paper's masked top-k and hybrid prompt (its `load_prompt` with `mask_flag`): item 8."""
PAPER_REMOVED = ("The highlighted element in the image is a ",
                 "Here's a description of the highlighted element in the image:",
                 "Here's a description of the highlighted element across all the images:",
                 "Here's a description of the highlighted element across all images:",
                 "*", "Summary:")
"""The strings the seed paper's code removes from every answer, in its order (`to_replace_list`): item 9."""


@dataclass(frozen=True)
class Protocol:
    """A protocol's value for every governed setting, by the config object that holds it."""

    name: str
    prompts: dict
    """`benchmark.config.models.PromptSpec`: the questions and the answer clean-up."""
    pool: dict
    """`benchmark.config.models.PoolSpec`: how pool images are brought to the tower's size."""
    method: dict
    """`benchmark.config.method.MethodConfig`: which top images are shown, the steering arithmetic, controls."""
    scoring: dict
    """`benchmark.config.scoring.ScoringConfig`: the metrics' images, statistics and masks."""
    run: dict
    """`benchmark.config.run.RunConfig`: what `--features` counts."""
    vlm: dict
    """`benchmark.config.models.VLMLoading`: how the VLM takes its dtype (`cast`) and the dtype the
    SAE encodes the activation pass in (`sae_dtype`: float32, or a wider measuring dtype; or the
    model's, as the seed paper's code casts its SAE with the model)."""


FEATUREBENCH = Protocol(
    "featurebench",
    prompts={"describe": DESCRIBE, "shared": SHARED, "answer_prefix": ANSWER_PREFIX, "remove": (), "capitalize": False},
    pool={"resize": "crop"},
    method={"firing_only": False, "direction": "unit", "vector_dtype": "float32", "permute": "latents",
            "empty": "white"},
    scoring={"clip_images": "shown", "clip_from": 10, "clip_seed": 42,
             "generated_images": 32, "control_images": 256, "controls": "shared", "generation_prompt": "{}",
             "generation_lowercase": False, "statistic": "mean",
             "localization_images": 10, "localization_from": "scoring", "mask": "union"},
    run={"latents": "ids"},
    vlm={"cast": "load", "sae_dtype": "float32"})
"""The project's own choices (README, "Protocols")."""

SEED = Protocol(
    "seed",
    prompts={"describe": PAPER_STEERING_PROMPT, "shared": PAPER_TOPK_PROMPT, "answer_prefix": "",
             "remove": PAPER_REMOVED, "capitalize": True},
    pool={"resize": "whole"},
    method={"firing_only": True, "direction": "row", "vector_dtype": "model", "permute": "list", "empty": "white"},
    scoring={"clip_images": "sampled", "clip_from": 10, "clip_seed": 42,
             "generated_images": 3, "control_images": 3, "controls": "per-latent",
             "generation_prompt": "A realistic image of {}", "generation_lowercase": True, "statistic": "pooled",
             "localization_images": 5, "localization_from": "sampled", "mask": "first"},
    run={"latents": "alive"},
    vlm={"cast": "whole", "sae_dtype": "model"})

PROTOCOLS = {p.name: p for p in (FEATUREBENCH, SEED)}

def protocol(name: str | None) -> Protocol:
    """The protocol `name` (None: featurebench); an unknown name is a one-line UsageError."""
    if name is None:
        return FEATUREBENCH
    if name not in PROTOCOLS:
        raise UsageError(f"protocol {name!r}; choose {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def clean_answer(answer: str, remove: tuple[str, ...], capitalize: bool) -> str:
    """An answer as the seed paper's code turns it into an explanation: for each string of `remove`
    in order, that string replaced by nothing, the answer stripped and (`capitalize`) passed through
    `str.capitalize`, which also lowercases the rest, so a later string with capitals matches only
    before the first pass lowercases it, as in its code. Without strings, stripped (and capitalised) once."""
    for phrase in remove or ("",):
        answer = answer.replace(phrase, "").strip() if phrase else answer.strip()
        answer = answer.capitalize() if capitalize else answer
    return answer
