import torch
from transformers import CLIPTokenizer

from negation_encoder.testing.tiny import BOS_TOKEN, EOS_TOKEN, build_clip_text_model, build_clip_tokenizer


def test_special_tokens_are_the_highest_ids():
    tok = build_clip_tokenizer()
    assert tok.convert_tokens_to_ids(EOS_TOKEN) == len(tok) - 1
    assert tok.convert_tokens_to_ids(BOS_TOKEN) == len(tok) - 2
    assert tok.pad_token == EOS_TOKEN


def test_known_words_are_single_tokens_and_round_trip():
    tok = build_clip_tokenizer()
    ids = tok("There is no dog on the street").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert len(ids) == 2 + 7  # every known word is one token
    assert tok.decode(ids, skip_special_tokens=True) == "there is no dog on the street"


def test_unknown_words_fall_back_to_bytes_not_unk():
    tok = build_clip_tokenizer()
    ids = tok("zebra").input_ids[1:-1]
    assert len(ids) > 1
    # the unknown token is <|endoftext|>: it must never stand in for a word (it would end the caption
    # for CLIP's eos pooling), so an unknown word is spelled in byte pieces
    assert tok.unk_token_id == tok.eos_token_id and tok.eos_token_id not in ids
    assert tok.decode(ids) == "zebra"


def test_padding_to_77_and_truncation():
    tok = build_clip_tokenizer()
    enc = tok(["a dog", "a " * 200], padding="max_length", max_length=77, truncation=True)
    assert all(len(x) == 77 for x in enc.input_ids)
    assert enc.input_ids[0][3:] == [tok.eos_token_id] * 74  # pad is eos
    assert enc.input_ids[1][-1] == tok.eos_token_id  # truncation keeps the eos


def test_save_and_reload(tmp_path):
    tok = build_clip_tokenizer(["zebra crossing", "giraffe"])
    tok.save_pretrained(tmp_path)
    again = CLIPTokenizer.from_pretrained(tmp_path)
    text = "a zebra crossing without a giraffe"
    assert again(text).input_ids == tok(text).input_ids
    assert len(again) == len(tok)


def test_eos_pooling_reads_the_eos_position():
    tok = build_clip_tokenizer()
    model = build_clip_text_model(seed=0, tokenizer=tok)
    assert model.config.eos_token_id == tok.eos_token_id
    enc = tok(["a dog", "a red car on the street"], padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc)
    for row, ids in enumerate(enc.input_ids):
        eos_pos = (ids == tok.eos_token_id).nonzero()[0].item()
        torch.testing.assert_close(out.pooler_output[row], out.last_hidden_state[row, eos_pos])
        assert eos_pos == len(tok(["a dog", "a red car on the street"][row]).input_ids) - 1
