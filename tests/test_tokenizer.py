import json

import pytest
import requests
import tiktoken

import tokenizer
from tokenizer import EOT, BPETokenizer, CharTokenizer, gpt2_tokenizer, load_tokenizer

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def tiny_encoding(eot_id: int | None = None) -> tiktoken.Encoding:
    """A GPT-2-style BPE small enough to build in a test: GPT-2's pattern, the 256 bytes, two merges, <|endoftext|>."""
    ranks = {bytes([i]): i for i in range(256)} | {b"th": 256, b"the": 257}
    eot = {EOT: len(ranks) if eot_id is None else eot_id}
    return tiktoken.Encoding("tiny", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=eot)


def test_bpe_round_trip_and_end_of_text():
    tok = gpt2_tokenizer(tiny_encoding())
    assert (tok.name, tok.vocab_size, tok.eot_id) == ("gpt2", 259, 258)
    ids = tok.encode("the pond<|endoftext|>the frog")
    assert ids[0] == 257 and ids.count(258) == 1
    assert tok.decode(ids) == "the pond<|endoftext|>the frog"
    assert tok.decode([*ids, 259, 300]) == tok.decode(ids)  # ids of a padded vocab are dropped
    # training text: the marker is ordinary text, documents are separated by the writer
    assert 258 not in tok.encode_array("a<|endoftext|>b").tolist()


def test_bpe_needs_end_of_text():
    plain = tiktoken.Encoding(
        "plain", pat_str=GPT2_PATTERN, mergeable_ranks={bytes([i]): i for i in range(256)}, special_tokens={}
    )
    with pytest.raises(ValueError, match="endoftext"):
        BPETokenizer(plain)


def test_gpt2_offline_is_one_clear_error(monkeypatch):
    def offline(name):
        raise requests.exceptions.ConnectionError("Max retries exceeded with url: /gpt-2/encodings/main/vocab.bpe")

    monkeypatch.setattr(tokenizer.tiktoken, "get_encoding", offline)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "/nowhere")
    with pytest.raises(RuntimeError) as e:
        gpt2_tokenizer()
    message = str(e.value)
    assert "\n" not in message
    assert "ConnectionError" in message and "TIKTOKEN_CACHE_DIR" in message and "/nowhere" in message


def test_char_table():
    tok = CharTokenizer.from_texts(["old pond\nfrog", "splash!"])
    assert tok.chars[0] == EOT and tok.eot_id == 0
    assert tok.chars[1:] == sorted(set("old pond\nfrogsplash!"))
    assert tok.vocab_size == len(tok.chars)
    ids = tok.encode("frog<|endoftext|>pond")
    assert ids[4] == 0 and 0 not in ids[:4] + ids[5:]
    assert tok.decode(ids) == "frog<|endoftext|>pond"
    assert tok.decode([*ids, tok.vocab_size, 63]) == tok.decode(ids)
    assert tok.encode_array("old frog").tolist() == tok.encode("old frog")
    with pytest.raises(ValueError, match="'z'"):
        tok.encode("zen")
    with pytest.raises(ValueError, match=r"U\+1F438"):
        tok.encode("🐸")


def test_char_table_beyond_ascii():
    tok = CharTokenizer.from_texts(["古池や 蛙飛び込む 水の音", "café — naïve 🐸"])
    assert tok.decode(tok.encode("水の音 🐸 café")) == "水の音 🐸 café"


@pytest.mark.parametrize("tok", [CharTokenizer.from_texts(["haiku\n"]), gpt2_tokenizer(tiny_encoding())])
def test_load_tokenizer_from_meta_alone(tok):
    meta = json.loads(json.dumps(tok.meta()))  # as meta.json stores it
    loaded = load_tokenizer(meta, tiny_encoding())
    assert (loaded.name, loaded.vocab_size, loaded.eot_id) == (tok.name, tok.vocab_size, tok.eot_id)
    ids = tok.encode("haiku\nhaiku<|endoftext|>")
    assert loaded.encode("haiku\nhaiku<|endoftext|>") == ids
    assert loaded.decode(ids) == "haiku\nhaiku<|endoftext|>"


def test_load_tokenizer_unknown():
    with pytest.raises(ValueError, match="unknown tokenizer 'sentencepiece'"):
        load_tokenizer({"tokenizer": "sentencepiece"})
