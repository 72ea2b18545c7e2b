"""form.py: the rules on hand-built cases, the fast masks against the rules applied token by token, no dead ends for
random models (char and BPE tokens that hold several characters, spaces, punctuation, newlines, the end of one word
and the start of the next), batches, the KV cache, seeds, prompts and bad input."""

import random

import pytest
import tiktoken
import torch

import sample
from haikugpt.haiku.form import DONE, MAX_GAP, FormConstraint, Lexicon, State, read_words
from haikugpt.haiku.verse import syllable_pattern, words
from haikugpt.tokenizer import EOT, BPETokenizer, CharTokenizer
from model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("tiny_gpt2_bpe")
WORDS = {"go": 1, "slow": 1, "snow": 1, "away": 2, "the": 1, "a": 1, "i": 1, "autumn": 2, "moon": 1, "it's": 1}
CHARS = [EOT, "\n", " ", ",", ".", "!", "'", "7", "A", "G", "I", "S", *"acdeghilmnostuwy"]


def char_form(form=(2, 1), words=WORDS) -> FormConstraint:
    return FormConstraint(CharTokenizer(CHARS), form, Lexicon(dict(words)))


def tricky_bpe(gpt2_pattern: str) -> BPETokenizer:
    """Byte-level BPE with tokens of every kind: words with and without a space, a word's end and the next word's
    start ('s the'), punctuation with a newline ('.\\n'), two newlines, capitals, a contraction, half a character."""
    ranks = {bytes([i]): i for i in range(256)}
    for piece in ["th", "the", " the", "go", " go", "ow", "sl", "slow", " slow", "sn", "snow", " snow", "aw", "away",
                  " away", "s the", ".\n", "\n\n", "The", " The", "Go", "'s", "it", "it's", " it", "moon", " moon",
                  "autumn", " autumn", "umn", "e\ns", "w!", "\xc3", "7 go", ", ", " ,", "  "]:  # fmt: skip
        ranks.setdefault(piece.encode("latin-1") if piece == "\xc3" else piece.encode(), len(ranks))
    encoding = tiktoken.Encoding(
        "tricky", pat_str=gpt2_pattern, mergeable_ranks=ranks, special_tokens={EOT: len(ranks)}
    )
    return BPETokenizer(encoding)


def by_the_rules(form: FormConstraint, st: State) -> torch.Tensor:
    """allowed(st) worked out the slow way: every token's text through the character rules."""
    mask = torch.tensor([p is not None and form.advance_text(st, p) is not None for p in form.pieces])
    mask[form.tok.eot_id] = form.can_end(st)
    return mask


def test_the_rules_character_by_character():
    form = char_form()
    start = State(0, 0, "", 0)
    assert form.advance_text(start, " ") is None  # no space opens a line
    assert form.advance_text(start, "\n") is None and not form.can_end(start)
    st = form.advance_text(start, "go")
    assert st == State(0, 0, "go", 0) and form.advance_text(st, "\n") is None  # 1 of 2 syllables: no line break
    assert (
        form.advance_text(st, "x") is None and form.advance_text(st, "G") is None
    )  # no word goes on so; capitals open
    assert form.advance_text(start, "away away") is None  # 4 syllables on a line of 2
    assert form.advance_text(start, "aw") == State(0, 0, "aw", 0)  # a partial word that "away" completes
    st = form.advance_text(start, "Go, slow!\n")
    assert st == State(1, 0, "", 0)
    assert form.advance_text(st, "autumn") is None  # 2 syllables cannot fit in a line of 1, even half written
    assert form.advance_text(st, "au") is None  # no dead end: no word starting "au" fits
    st = form.advance_text(st, "it's")
    assert form.can_end(st) and form.advance_text(st, " ") is None and form.advance_text(st, "\n") is None
    assert form.advance_text(start, "go 7") is None  # no digits
    assert form.advance_text(start, "go" + "." * (MAX_GAP - 1)) is not None  # room left for a space
    assert form.advance_text(start, "go" + "." * MAX_GAP) is None
    assert form.advance_text(start, "go,,") is None and form.advance_text(start, "go!?") is not None
    assert form.advance_text(start, "go,slow") is None  # a word starts after a space, not straight after a comma
    assert form.advance_text(start, 'go "slow"') is not None and form.advance_text(start, ",go") is None
    assert form.advance_text(start, "go  ") is None  # one space is enough
    assert form.advance(st, 0) == DONE and torch.equal(form.allowed(DONE), torch.arange(len(CHARS)) == 0)


def test_where_the_model_wants_to_break_the_form_the_constraint_does_not_let_it():
    """Greedy decoding from logits that always prefer end-of-text, then a newline, then a space: the constraint picks
    the best token that keeps the form each time."""
    form = char_form()
    states = form.start("", 1)
    apply = form.logits_filter(states)
    preference = {EOT: 9.0, "\n": 8.0, " ": 7.0, "w": 6.0, "o": 5.0, "s": 4.0, "l": 3.5, "g": 3.0, "i": 2.0}
    logits = torch.tensor([[preference.get(c, 0.0) for c in CHARS]])
    text, token = "", None
    for _ in range(20):
        token = apply(logits, token).argmax(-1)
        if token.item() == 0:
            break
        text += CHARS[token.item()]
    assert text == "slow slow\nslow"  # one space, the highest-scoring word starts, the newline as soon as it fits
    assert [len(line.split()) for line in text.split("\n")] == [2, 1]


def test_masks_are_the_rules(gpt2_pattern):
    """The cached, vectorised masks equal the rules applied to every token, over random walks of a char and a BPE
    vocabulary."""
    rng = random.Random(0)
    for tok, vocab in [(CharTokenizer(CHARS), WORDS), (tricky_bpe(gpt2_pattern), WORDS | {"s": 1, "e": 1})]:
        form = FormConstraint(tok, (3, 2, 3), Lexicon(vocab))
        for _ in range(30):
            st = form.start("", 1)[0]
            while st != DONE:
                mask = form.allowed(st)
                assert torch.equal(mask, by_the_rules(form, st)), st
                st = form.advance(st, rng.choice(mask.nonzero().flatten().tolist()))


def random_samples(tok, lexicon, form, seeds, n=8, **kw):
    config = GPTConfig(block_size=32, vocab_size=-(-tok.vocab_size // 64) * 64, n_layer=1, n_head=2, n_embd=16)
    out = []
    for seed in seeds:
        model = GPT(config, seed=seed).eval()
        constraint = FormConstraint(tok, form, lexicon)
        idx = torch.full((n, 1), tok.eot_id)
        rows = model.generate(idx, constraint.max_tokens(), stop_token=tok.eot_id,
                              logits_filter=constraint.logits_filter(constraint.start("", n)),
                              generator=torch.Generator().manual_seed(seed), **{"temperature": 1.5, **kw})  # fmt: skip
        for row in rows.tolist():
            assert tok.eot_id in row[1:], "every sample ends within max_tokens"
            out.append(tok.decode(row[1 : row.index(tok.eot_id, 1)]))
    return out


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_random_models_never_get_stuck_and_always_write_the_form(kind, gpt2_pattern):
    """Untrained models (the hardest case: they want anything) finish every sample, in the form, with real words."""
    tok = CharTokenizer(CHARS) if kind == "char" else tricky_bpe(gpt2_pattern)
    lexicon = Lexicon(WORDS | {"s": 1, "e": 1})
    for form in [(5, 7, 5), (3, 1), (1,)]:
        for text in random_samples(tok, lexicon, form, seeds=range(3)):
            assert syllable_pattern(text) == list(form), text
            assert all(w.strip("'") in lexicon.counts for w in words(text)), text


def test_the_cache_batches_and_seeds_do_not_change_the_samples(gpt2_pattern):
    tok, lexicon = tricky_bpe(gpt2_pattern), Lexicon(WORDS | {"s": 1, "e": 1})
    cached = random_samples(tok, lexicon, (5, 7, 5), seeds=[4])
    assert random_samples(tok, lexicon, (5, 7, 5), seeds=[4], use_cache=False) == cached
    assert random_samples(tok, lexicon, (5, 7, 5), seeds=[4]) == cached  # same seed, same samples
    assert random_samples(tok, lexicon, (5, 7, 5), seeds=[5]) != cached
    greedy_batch = random_samples(tok, lexicon, (5, 7, 5), seeds=[4], n=3, temperature=0)
    assert greedy_batch == random_samples(tok, lexicon, (5, 7, 5), seeds=[4], n=1, temperature=0) * 3


def test_a_prompt_counts_toward_the_first_line_and_one_that_breaks_the_form_is_refused():
    form = char_form((5, 7, 5))
    assert form.start("autumn moon", 2) == [State(0, 2, "moon", 0)] * 2
    assert form.start("<|endoftext|>the go slow snow the\nthe", 1) == [State(1, 0, "the", 0)]
    with pytest.raises(ValueError, match=r"its line 1 has 6 syllables, the form's 5"):
        form.start("autumn autumn autumn", 1)
    with pytest.raises(ValueError, match=r"'gloam' is not a known word \(add it to a --words file\)"):
        form.start("autumn gloam", 1)
    with pytest.raises(ValueError, match="its line 1 has 3 syllables, the form's 5"):
        form.start("autumn moon\n", 1)


def test_word_lists(tmp_path):
    (tmp_path / "words.txt").write_text("Gloaming\nhaiku's  kigo\n42 ---\n")
    assert read_words(tmp_path / "words.txt") == ["Gloaming", "haiku's", "kigo"]
    (tmp_path / "none.txt").write_text("42 --- ...\n")
    with pytest.raises(ValueError, match="none.txt has no usable words"):
        read_words(tmp_path / "none.txt")
    with pytest.raises(FileNotFoundError, match="no word list"):
        read_words(tmp_path / "missing.txt")
    lexicon = Lexicon.load(extra=["Gloaming", "kigo"], alphabet=set("abcdefghijklmnopqrstuvwxyz"))
    assert lexicon.counts["gloaming"] == 2 and lexicon.counts["kigo"] == 2 and lexicon.counts["autumn"] == 2
    assert "hmm" not in lexicon.counts  # no syllables: it could be repeated for ever


def test_sample_py_writes_the_form_with_real_words_on_a_haiku_checkpoint(char_run, capsys):
    sample.main([f"--out_dir={char_run}", "--num_samples=6", "--haiku_report=True", "--seed=3"])
    out = capsys.readouterr().out
    assert "5-7-5: 6/6 (100%), enforced while sampling" in out and "real words: " in out and "(100%)" in out
    samples = out.split(f"\n{sample.SEPARATOR}\n")[:6]
    assert all(syllable_pattern(s) == [5, 7, 5] for s in samples)
    sample.main([f"--out_dir={char_run}", "--num_samples=6", "--haiku_report=True", "--seed=3", "--form=free"])
    assert "enforced" not in capsys.readouterr().out


def test_sample_py_forms_and_prompts(char_run, capsys, tmp_path):
    (tmp_path / "words.txt").write_text("zen\n")
    config = {"out_dir": str(char_run), "num_samples": 3, "form": "3-5-3-5", "words": str(tmp_path / "words.txt")}
    samples = sample.sample(sample.DEFAULTS | config)
    assert all(syllable_pattern(s) == [3, 5, 3, 5] for s in samples)
    samples = sample.sample(sample.DEFAULTS | {"out_dir": str(char_run), "num_samples": 2, "start": "autumn moon"})
    assert all(s.startswith("autumn moon") and syllable_pattern(s) == [5, 7, 5] for s in samples)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--form=abc"], ["form 'abc' is not syllable counts separated by dashes"]),
        (["--form=0-7-5"], ["form '0-7-5': each line needs 1 to 50 syllables"]),
        (["--max_new_tokens=50", "--form=5-7-5"], ["form 5-7-5 may take up to", "raise max_new_tokens"]),
        (["--words={tmp}/missing.txt"], ["no word list", "missing.txt"]),
        (["--words={tmp}/empty.txt"], ["has no usable words"]),
        (["--start=autumn autumn autumn"], ["breaks the form 5-7-5: its line 1 has 6 syllables, the form's 5"]),
    ],
)
def test_bad_input_is_one_line(char_run, tmp_path, args, words):
    (tmp_path / "empty.txt").write_text("123\n")
    with pytest.raises(SystemExit) as e:
        sample.main([f"--out_dir={char_run}", *(a.format(tmp=tmp_path) for a in args)])
    message = str(e.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    assert all(w in message for w in words), message


def test_a_typed_max_new_tokens_wins_over_the_default_form(char_run, capsys):
    """The form is the haiku checkpoint's default, not the user's: sample within their max_new_tokens and say which
    samples did not finish their form (nanoGPT's sample.py habit: --max_new_tokens=40)."""
    sample.main([f"--out_dir={char_run}", "--num_samples=4", "--max_new_tokens=40"])
    out = capsys.readouterr()
    assert out.out.count(sample.SEPARATOR) == 4
    assert "did not finish the form 5-7-5 within max_new_tokens=40" in out.err
