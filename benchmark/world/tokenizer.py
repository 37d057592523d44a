"""The world's word-level tokenizer: `tokenizers.WordLevel` wrapped as a `PreTrainedTokenizerFast`,
so that it saves and loads with `save_pretrained` / `from_pretrained` like any real tokenizer."""
from __future__ import annotations

from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import PreTrainedTokenizerFast

from benchmark.world.concepts import CONCEPTS

PAD, UNK, BOS, EOS, IMAGE = "<pad>", "<unk>", "<bos>", "<eos>", "<image>"
SPECIALS = (PAD, UNK, BOS, EOS, IMAGE)
GRAMMAR_WORDS = ("nothing", "a", "and", "at", "background")
PROMPT_WORDS = ("describe", "what", "you", "see", "name", "the", "one", "element", "shared", "by",
                "all", "images", "answer", ".", ":")


def vocabulary() -> list[str]:
    concept_words = sorted({w for c in CONCEPTS for w in c.name.split()})
    return list(SPECIALS) + list(GRAMMAR_WORDS) + concept_words + list(PROMPT_WORDS)


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {word: i for i, word in enumerate(vocabulary())}
    core = Tokenizer(WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   unk_token=UNK, extra_special_tokens={"image_token": IMAGE},
                                   model_max_length=512)
