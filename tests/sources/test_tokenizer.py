from transformers import AutoTokenizer

from benchmark.world.tokenizer import build_tokenizer, vocabulary
from benchmark.world.vlm import DESCRIBE, SHARED


def test_round_trip_of_every_word_and_both_prompts(tmp_path):
    tok = build_tokenizer()
    words = [w for w in vocabulary() if not w.startswith("<")]
    for text in [" ".join(words), DESCRIBE, SHARED, "a large red striped circle at top left"]:
        ids = tok(text, add_special_tokens=False).input_ids
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("a small blue cross").input_ids == tok("a small blue cross").input_ids
    assert again.image_token == "<image>" and again.image_token_id == tok.image_token_id


def test_unknown_words_map_to_unk():
    tok = build_tokenizer()
    assert tok("zebra red", add_special_tokens=False).input_ids[0] == tok.unk_token_id
