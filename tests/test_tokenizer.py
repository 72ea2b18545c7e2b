import json

import pytest
import requests
import tiktoken

from haikugpt import tokenizer
from haikugpt.tokenizer import (
    EOT,
    BPETokenizer,
    CharTokenizer,
    gpt2_tokenizer,
    load_tokenizer,
    same_vocabulary,
    train_bpe,
)


def test_bpe_round_trip_and_end_of_text(tiny_encoding):
    tok = gpt2_tokenizer(tiny_encoding())
    assert (tok.name, tok.vocab_size, tok.eot_id) == ("gpt2", 259, 258)
    ids = tok.encode("the pond<|endoftext|>the frog")
    assert ids[0] == 257 and ids.count(258) == 1
    assert tok.decode(ids) == "the pond<|endoftext|>the frog"
    assert tok.decode([*ids, 259, 300]) == tok.decode(ids)  # ids of a padded vocab are dropped
    # training text: the marker is ordinary text, documents are separated by the writer
    assert 258 not in tok.encode_array("a<|endoftext|>b").tolist()


def test_bpe_needs_end_of_text(gpt2_pattern):
    plain = tiktoken.Encoding(
        "plain", pat_str=gpt2_pattern, mergeable_ranks={bytes([i]): i for i in range(256)}, special_tokens={}
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


@pytest.mark.parametrize("kind", ["char", "gpt2"])
def test_load_tokenizer_from_meta_alone(kind, tiny_encoding):
    tok = CharTokenizer.from_texts(["haiku\n"]) if kind == "char" else gpt2_tokenizer(tiny_encoding())
    meta = json.loads(json.dumps(tok.meta()))  # as meta.json stores it
    loaded = load_tokenizer(meta, tiny_encoding())
    assert (loaded.name, loaded.vocab_size, loaded.eot_id) == (tok.name, tok.vocab_size, tok.eot_id)
    ids = tok.encode("haiku\nhaiku<|endoftext|>")
    assert loaded.encode("haiku\nhaiku<|endoftext|>") == ids
    assert loaded.decode(ids) == "haiku\nhaiku<|endoftext|>"


def test_load_tokenizer_unknown():
    with pytest.raises(ValueError, match="unknown tokenizer 'sentencepiece'"):
        load_tokenizer({"tokenizer": "sentencepiece"})


def test_a_char_table_without_end_of_text():
    """nanoGPT's tables hold only the dataset's characters, in its own order."""
    tok = CharTokenizer(["\n", " ", "a", "b"])
    assert tok.eot_id is None and tok.encode("ab a\n") == [2, 3, 1, 2, 0] and tok.decode([3, 2]) == "ba"
    with pytest.raises(ValueError, match="has no <|endoftext|>"):
        tok.encode("a<|endoftext|>b")


def test_a_bpe_learnt_from_texts(corpus):
    """The most frequent pieces become tokens, in a fixed order; meta.json rebuilds the same tokenizer."""
    encoding = train_bpe(corpus[:400], 400)
    assert encoding.n_vocab == 400 and encoding.eot_token == 399
    assert train_bpe(corpus[:400], 400)._mergeable_ranks == encoding._mergeable_ranks  # the same every time
    assert encoding.encode_ordinary(" the") == [encoding.encode_single_token(b" the")]  # a frequent word is one token
    tok = BPETokenizer(encoding, name="bpe")
    text = corpus[401] + "<|endoftext|>naïve 🐸"  # text it never saw still encodes, as bytes
    assert tok.decode(tok.encode(text)) == text and tok.encode(text).count(399) == 1
    loaded = load_tokenizer(json.loads(json.dumps(tok.meta())))
    assert loaded.name == "bpe" and loaded.encode(text) == tok.encode(text)
    assert same_vocabulary(tok.meta(), loaded.meta()) and not same_vocabulary(tok.meta(), {**tok.meta(), "bpe": []})
