"""form.py: the rules on hand-built cases (syllables, real words, line ends, rhymes, season words, cuts), the fast masks
against the rules applied token by token, no dead ends for random models (char tokens, a BPE learnt from haiku, and
GPT-2-style tokens that hold several characters, spaces, punctuation, newlines, the end of one word and the start of
the next), batches, the KV cache, seeds, prompts and bad input."""

import random

import numpy as np
import pytest
import tiktoken
import torch

import sample
from haikugpt.haiku import syllables
from haikugpt.haiku.form import DONE, MAX_GAP, FormConstraint, Lexicon, Particles, Rules, State, read_words
from haikugpt.haiku.verse import haiku_lines, has_cut, is_function_word, rhymes, syllable_pattern, words
from haikugpt.tokenizer import EOT, BPETokenizer, CharTokenizer, train_bpe
from model import GPT, GPTConfig, padded_vocab

pytestmark = pytest.mark.usefixtures("tiny_gpt2_bpe")
WORDS = {"go": 1, "slow": 1, "snow": 1, "away": 2, "the": 1, "a": 1, "i": 1, "autumn": 2, "moon": 1, "it's": 1}
MORE = WORDS | {"s": 1, "e": 1, "frost": 1, "pine": 1, "stone": 1, "sleet": 1, "sun": 1, "rain": 1, "wind": 1}
CHARS = [EOT, "\n", " ", ",", ".", "!", "'", "-", ":", "7", "A", "G", "I", "S", *"acdefghilmnoprstuwy"]


def char_form(form=(2, 1), words=WORDS, **rules) -> FormConstraint:
    return FormConstraint(CharTokenizer(CHARS), Rules(form, Lexicon(dict(words)), **rules))


def tricky_bpe(gpt2_pattern: str) -> BPETokenizer:
    """Byte-level BPE with tokens of every kind: words with and without a space, a word's end and the next word's
    start ('s the'), punctuation with a newline ('.\\n'), two newlines, capitals, a contraction, half a character."""
    ranks = {bytes([i]): i for i in range(256)}
    for piece in ["th", "the", " the", "go", " go", "ow", "sl", "slow", " slow", "sn", "snow", " snow", "aw", "away",
                  " away", "s the", ".\n", "\n\n", "The", " The", "Go", "'s", "it", "it's", " it", "moon", " moon",
                  "autumn", " autumn", "umn", "e\ns", "w!", "\xc3", "7 go", ", ", " ,", "  ", "—", " —\n", "...",
                  "st", "frost", " frost", "ine", "pine", "ain", "rain", " rain", "w:", "sleet"]:  # fmt: skip
        ranks.setdefault(piece.encode("latin-1") if piece == "\xc3" else piece.encode(), len(ranks))
    encoding = tiktoken.Encoding(
        "tricky", pat_str=gpt2_pattern, mergeable_ranks=ranks, special_tokens={EOT: len(ranks)}
    )
    return BPETokenizer(encoding)


def learnt_bpe(corpus: list[str]) -> BPETokenizer:
    """A 600-token BPE learnt from haiku, as prepare/haiku.py --tokenizer bpe learns one."""
    return BPETokenizer(train_bpe(corpus[:400], 600), name="bpe")


def by_the_rules(form: FormConstraint, st: State) -> np.ndarray:
    """allowed(st) worked out the slow way: every token's text through the character rules."""
    mask = np.array([p is not None and form.rules.advance_text(st, p) is not None for p in form.pieces])
    mask[form.tok.eot_id] = form.rules.can_end(st)
    return mask


def test_the_rules_character_by_character():
    form = char_form()
    rules, start = form.rules, State(0, 0, "", 0)
    assert rules.advance_text(start, " ") is None  # no space opens a line
    assert rules.advance_text(start, "\n") is None and not rules.can_end(start)
    st = rules.advance_text(start, "go")
    assert st == State(0, 0, "go", 0) and rules.advance_text(st, "\n") is None  # 1 of 2 syllables: no line break
    assert rules.advance_text(st, "x") is None and rules.advance_text(st, "G") is None  # capitals open words
    assert rules.advance_text(start, "away away") is None  # 4 syllables on a line of 2
    assert rules.advance_text(start, "aw") == State(0, 0, "aw", 0)  # a partial word that "away" completes
    st = rules.advance_text(start, "Go, slow!\n")
    assert st == State(1, 0, "", 0, ends=(int(rules.rhyme[rules.lexicon.words.index("slow")]),))
    assert rules.advance_text(st, "autumn") is None  # 2 syllables cannot fit in a line of 1, even half written
    assert rules.advance_text(st, "au") is None  # no dead end: no word starting "au" fits
    st = rules.advance_text(st, "it's")
    assert rules.can_end(st) and rules.advance_text(st, " ") is None and rules.advance_text(st, "\n") is None
    assert rules.advance_text(start, "go 7") is None  # no digits
    assert rules.advance_text(start, "go" + "." * (MAX_GAP - 1)) is not None  # room left for a space
    assert rules.advance_text(start, "go" + "." * MAX_GAP) is None
    assert rules.advance_text(start, "go,,") is None and rules.advance_text(start, "go!?") is not None
    assert rules.advance_text(start, "go,slow") is None  # a word starts after a space, not straight after a comma
    assert rules.advance_text(start, 'go "slow"') is not None and rules.advance_text(start, ",go") is None
    assert rules.advance_text(start, "go  ") is None  # one space is enough
    assert form.advance(st, 0) == DONE and np.array_equal(form.allowed(DONE), np.arange(len(CHARS)) == 0)


def test_lines_end_where_a_phrase_can_end_and_their_ends_do_not_rhyme():
    rules = char_form((2, 1, 1)).rules
    start = State(0, 0, "", 0)
    assert rules.advance_text(start, "go the") is None and rules.advance_text(start, "go th") is None  # "the" only
    assert rules.advance_text(start, "the go") is not None  # mid-line, a function word is fine
    st = rules.advance_text(start, "go slow\n")
    assert rules.advance_text(st, "snow") is None and rules.advance_text(st, "sn") is None  # rhymes with "slow"
    assert rules.advance_text(st, "go") is None  # the same sound, the same word
    assert rules.advance_text(st, "moon\nit's") is not None and rules.advance_text(st, "moon\nmoon") is None
    assert is_function_word("the") and is_function_word("sweeper's") and not is_function_word("it's")
    assert rhymes(["old pond", "a frog jumps in the pond"]) and not rhymes(["old pond", "a frog"])


def test_a_season_word_in_every_poem_with_room_kept_for_it():
    kigo = {"snow", "moon", "it's", "frost"}
    rules = char_form((3, 1), MORE, season_words=kigo).rules
    st = rules.advance_text(State(0, 0, "", 0), "go away")  # no season word yet: the last word must be one
    assert st is not None and rules.advance_text(st, "\nsleet") is None and rules.advance_text(st, "\nmoon") is not None
    assert rules.advance_text(st, "\nfrost") is not None and rules.advance_text(st, "\nfr") is not None
    assert rules.advance_text(st, "\ngo") is None  # not a season word
    st = rules.advance_text(State(0, 0, "", 0), "snow away\n")  # a season word already: any word ends it
    assert rules.can_end(rules.advance_text(st, "sleet")) and rules.advance_text(st, "sleet").kigo
    with pytest.raises(ValueError, match="too few season words of one syllable"):
        char_form((1, 1, 1), MORE, season_words={"snow", "slow"})  # one rhyme between them: 3 line ends need 3


def test_a_cut_ends_line_one_or_two():
    rules = char_form((1, 1, 1), MORE, cut=True).rules
    st = rules.advance_text(State(0, 0, "", 0), "moon\nsun")
    assert rules.advance_text(st, "\n") is None  # line 2 must end with a cut, as line 1 did not
    for mark in ("-", ":", "..."):
        assert rules.advance_text(st, mark + "\n") is not None, mark
    assert rules.advance_text(st, "!,.") is not None and rules.advance_text(st, "!,.!") is None  # room for the cut
    assert rules.advance_text(rules.advance_text(State(0, 0, "", 0), "moon:\n"), "sun\n") is not None
    assert has_cut(haiku_lines("old pond —\na frog\nsplash")) and not has_cut(["a", "b", "c —"])
    with pytest.raises(ValueError, match="at least two lines"):
        char_form((5,), cut=True)


def test_where_the_model_wants_to_break_the_form_the_constraint_does_not_let_it():
    """Greedy decoding from logits that always prefer end-of-text, then a newline, then a space: the constraint picks
    the best token that keeps the rules each time."""
    form = char_form()
    states = form.rules.start("", 1)
    apply = form.logits_filter(states)
    preference = {EOT: 9.0, "\n": 8.0, " ": 7.0, "w": 6.0, "o": 5.0, "s": 4.0, "l": 3.5, "g": 3.0, "i": 2.0}
    logits = torch.tensor([[preference.get(c, 0.0) for c in CHARS]])
    text, token = "", None
    for _ in range(20):
        token = apply(logits, token).argmax(-1)
        if token.item() == 0:
            break
        text += CHARS[token.item()]
    assert text == "slow slow\ni"  # one space, the best word starts, the newline as soon as it fits, no rhyme
    assert [len(line.split()) for line in text.split("\n")] == [2, 1]


def walks(form: FormConstraint, n: int, seed: int = 0):
    """Random walks through the rules, checking at every step that the fast mask is the rules'."""
    rng = random.Random(seed)
    for _ in range(n):
        st = form.rules.start("", 1)[0]
        while st != DONE:
            mask = form.allowed(st)
            assert np.array_equal(mask, by_the_rules(form, st)), st
            assert mask.any(), f"a dead end at {st}"
            st = form.advance(st, rng.choice(np.flatnonzero(mask).tolist()))


@pytest.mark.parametrize("rules", [{}, {"season_words": {"snow", "moon", "it's", "frost", "rain"}, "cut": True}])
def test_masks_are_the_rules(gpt2_pattern, corpus, rules):
    """The cached, vectorised masks equal the rules applied to every token, over random walks of a char vocabulary,
    GPT-2-style tokens and a BPE learnt from haiku."""
    for tok, vocab in [(CharTokenizer(CHARS), MORE), (tricky_bpe(gpt2_pattern), MORE), (learnt_bpe(corpus), MORE)]:
        walks(FormConstraint(tok, Rules((3, 2, 3), Lexicon(vocab), **rules)), 20)


def random_samples(tok, rules: Rules, seeds, n=8, prompt="", **kw):
    config = GPTConfig(block_size=48, vocab_size=padded_vocab(tok.vocab_size), n_layer=1, n_head=2, n_embd=16)
    out = []
    for seed in seeds:
        model = GPT(config, seed=seed).eval()
        constraint = FormConstraint(tok, rules)
        idx = torch.tensor([[tok.eot_id, *tok.encode(prompt)]] * n)
        rows = model.generate(idx, constraint.rules.max_tokens(), stop_token=tok.eot_id,
                              logits_filter=constraint.logits_filter(constraint.rules.start(prompt, n)),
                              generator=torch.Generator().manual_seed(seed), **{"temperature": 1.5, **kw})  # fmt: skip
        for row in rows.tolist():
            assert tok.eot_id in row[1:], "every sample ends within max_tokens"
            out.append(tok.decode(row[1 : row.index(tok.eot_id, 1)]))
    return out


@pytest.mark.parametrize("kind", ["char", "gpt2-style", "learnt"])
def test_random_models_never_get_stuck_and_always_keep_every_rule(kind, gpt2_pattern, corpus):
    """Untrained models (the hardest case: they want anything) finish every sample, in the form, with real words,
    line ends that close a phrase and do not rhyme, a season word and a cut."""
    tok = {"char": lambda: CharTokenizer(CHARS), "gpt2-style": lambda: tricky_bpe(gpt2_pattern),
           "learnt": lambda: learnt_bpe(corpus)}[kind]()  # fmt: skip
    kigo = {"snow", "moon", "it's", "frost", "rain"}
    for form, rules in [((5, 7, 5), {"season_words": kigo, "cut": True}), ((3, 1), {}), ((1,), {})]:
        lexicon = Lexicon(MORE)
        for text in random_samples(tok, Rules(form, lexicon, **rules), seeds=range(3)):
            lines = haiku_lines(text)
            assert syllable_pattern(text) == list(form), text
            assert all(w.strip("'") in lexicon.counts for w in words(text)), text
            assert not rhymes(lines) and not any(is_function_word(words(line)[-1]) for line in lines), text
            if rules:
                assert set(words(text)) & kigo and has_cut(lines), text


def test_the_cache_batches_prompts_and_seeds_do_not_change_the_samples(gpt2_pattern):
    tok, rules = tricky_bpe(gpt2_pattern), Rules((5, 7, 5), Lexicon(MORE), season_words={"snow", "moon", "frost"})
    cached = random_samples(tok, rules, seeds=[4])
    assert random_samples(tok, rules, seeds=[4], use_cache=False) == cached
    assert random_samples(tok, rules, seeds=[4]) == cached  # same seed, same samples
    assert random_samples(tok, rules, seeds=[5]) != cached
    greedy_batch = random_samples(tok, rules, seeds=[4], n=3, temperature=0)
    assert greedy_batch == random_samples(tok, rules, seeds=[4], n=1, temperature=0) * 3
    prompted = random_samples(tok, rules, seeds=[4], prompt="The autumn")
    assert all(s.startswith("The autumn") and syllable_pattern(s) == [5, 7, 5] for s in prompted)


def test_particles_resample_rows_with_their_history_and_weigh_them_exactly(gpt2_pattern):
    """Resampled rows carry their KV cache and logits along: the same tokens as recomputing every context. A share the
    rules allow that a float32 softmax loses to underflow is weighed exactly all the same."""
    tok, rules = tricky_bpe(gpt2_pattern), Rules((5, 7, 5), Lexicon(MORE), season_words={"snow", "moon", "frost"})
    config = GPTConfig(block_size=48, vocab_size=padded_vocab(tok.vocab_size), n_layer=1, n_head=2, n_embd=16)
    model, idx = GPT(config, seed=1).eval(), torch.full((12, 1), tok.eot_id)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8)  # sharp attention and logits: what a row's history holds shows in its weights
    runs, weights = [], []
    for use_cache in (True, False):
        form = FormConstraint(tok, rules)
        particles, resampled = Particles(form, rules.start("", 12), 3, 1.5, seed=7), []
        for token in model.stream(idx, rules.max_tokens(), temperature=1.5, stop_token=tok.eot_id, use_cache=use_cache,
                                  generator=torch.Generator().manual_seed(7), logits_filter=particles):  # fmt: skip
            resampled.append(particles.rows is not None and not torch.equal(particles.rows, torch.arange(12)))
            particles.rows = None
            runs.append(token)
        assert sum(resampled) >= 3 and torch.isfinite(particles.log_weights).all()
        weights.append(particles.log_weights)
    assert torch.equal(torch.stack(runs[: len(runs) // 2]), torch.stack(runs[len(runs) // 2 :]))
    assert torch.allclose(*weights, atol=1e-4)
    form = FormConstraint(tok, rules)
    particles = Particles(form, rules.start("", 3), 3, 1.0, seed=0)
    allowed = form.allowed(rules.start("", 1)[0])
    logits = torch.where(torch.from_numpy(allowed), -200.0, 0.0)[None].repeat(3, 1)  # e^-200: 0 in float32
    particles(logits.clone(), None)
    exact = torch.logsumexp(logits[0, torch.from_numpy(allowed)], 0) - torch.logsumexp(logits[0], 0)
    assert torch.allclose(particles.log_weights, exact.double().expand(3), atol=1e-4)


def test_a_prompt_counts_toward_the_first_line_and_one_that_breaks_a_rule_is_refused():
    form = char_form((5, 7, 5))
    assert form.rules.start("autumn moon", 2) == [State(0, 2, "moon", 0)] * 2
    assert form.rules.start("<|endoftext|>the go slow snow go\nthe", 1)[0][:4] == (1, 0, "the", 0)
    with pytest.raises(ValueError, match=r"its line 1 has 6 syllables, the form's 5"):
        form.rules.start("autumn autumn autumn", 1)
    with pytest.raises(ValueError, match=r"'gloam' is not a known word \(add it to a --words file\)"):
        form.rules.start("autumn gloam", 1)
    with pytest.raises(ValueError, match="its line 1 has 3 syllables, the form's 5"):
        form.rules.start("autumn moon\n", 1)
    with pytest.raises(ValueError, match="its line 1 ends on 'the', which leaves the phrase open"):
        form.rules.start("autumn go go the\n", 1)
    with pytest.raises(ValueError, match="its line 2 ends on 'moon', which rhymes with an earlier line's end"):
        form.rules.start("autumn go go moon\naway away go go moon", 1)
    seasons = char_form((2, 1), MORE, season_words={"snow", "moon", "frost"})
    with pytest.raises(ValueError, match=r"no season word of the season asked \(--season\)"):
        seasons.rules.start("go slow\nsun", 1)


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


def test_the_lexicon_is_kept_in_the_users_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    alphabet = set("abcdefghijklmnopqrstuvwxyz'")

    def same(a: Lexicon, b: Lexicon) -> bool:
        return a.words == b.words and all(np.array_equal(getattr(a, k), getattr(b, k)) for k in Lexicon.TABLES)

    built = Lexicon.load(extra=["Gloaming"], alphabet=alphabet)
    [path] = (tmp_path / "haikugpt").iterdir()
    monkeypatch.setattr(syllables, "rhyme_keys", lambda: pytest.fail("built again, not read from the cache"))
    assert same(Lexicon.load(extra=["Gloaming"], alphabet=alphabet), built)
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    other = Lexicon.load(extra=["Gloaming", "Zyzzx"], alphabet=alphabet)  # other inputs: another file
    assert "zyzzx" in other.counts and "zyzzx" not in built.counts and len(list(path.parent.iterdir())) == 2
    path.write_bytes(path.read_bytes()[:1000])  # a broken file is built again and replaced
    assert same(Lexicon.load(extra=["Gloaming"], alphabet=alphabet), built) and path.stat().st_size > 1000
    (tmp_path / "a file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a file"))  # a cache that cannot be written: no error
    assert same(Lexicon.load(extra=["Gloaming"], alphabet=alphabet), built)


def test_sample_py_keeps_every_rule_on_a_haiku_checkpoint(char_run, capsys):
    sample.main([f"--out_dir={char_run}", "--num_samples=6", "--haiku_report=True", "--seed=3", "--season=winter"])
    out = capsys.readouterr().out
    for line in ("5-7-5: 6/6 (100%)", "with a season word: 6/6 (100%) (winter 6)", "with rhyming line ends: 0/6 (0%)",
                 "lines ending on a function word: 0/18 (0%)", "enforced while sampling: 5-7-5"):  # fmt: skip
        assert line in out, line
    samples = out.split(f"\n{sample.SEPARATOR}\n")[:6]
    assert all(syllable_pattern(s) == [5, 7, 5] for s in samples)
    sample.main([f"--out_dir={char_run}", "--num_samples=4", "--haiku_report=True", "--cut=True"])
    assert (
        "with a cut (line 1 or 2 ending in a dash, colon, semicolon or ellipsis): 4/4 (100%)" in capsys.readouterr().out
    )
    sample.main([f"--out_dir={char_run}", "--num_samples=6", "--haiku_report=True", "--seed=3", "--form=free"])
    assert "enforced" not in capsys.readouterr().out


def test_sample_py_forms_and_prompts(char_run, capsys, tmp_path):
    (tmp_path / "words.txt").write_text("zen\n")
    config = {"out_dir": str(char_run), "num_samples": 3, "form": "3-5-3-5", "words": str(tmp_path / "words.txt")}
    samples = sample.sample(sample.DEFAULTS | config)
    assert all(syllable_pattern(s) == [3, 5, 3, 5] for s in samples)
    samples = sample.sample(sample.DEFAULTS | {"out_dir": str(char_run), "num_samples": 2, "start": "autumn moon"})
    assert all(s.startswith("autumn moon") and syllable_pattern(s) == [5, 7, 5] for s in samples)
    (tmp_path / "kigo.txt").write_text("winter: gloaming\nzen\n")
    config = {"out_dir": str(char_run), "num_samples": 3, "season": "winter", "words": str(tmp_path / "words.txt"),
              "season_words": str(tmp_path / "kigo.txt")}  # fmt: skip
    assert len(sample.sample(sample.DEFAULTS | config)) == 3


@pytest.mark.parametrize(
    "args, words",
    [
        (["--form=abc"], ["form 'abc' is not syllable counts separated by dashes"]),
        (["--form=0-7-5"], ["form '0-7-5': each line needs 1 to 50 syllables"]),
        (["--max_new_tokens=50", "--form=5-7-5"], ["form 5-7-5 may take up to", "raise max_new_tokens"]),
        (["--words={tmp}/missing.txt"], ["no word list", "missing.txt"]),
        (["--words={tmp}/empty.txt"], ["has no usable words"]),
        (["--start=autumn autumn autumn"], ["breaks the form 5-7-5: its line 1 has 6 syllables, the form's 5"]),
        (["--season=monsoon"], ["unknown season 'monsoon': choose spring, summer, autumn, winter, any or free"]),
        (["--cut=True", "--form=7"], ["the form needs at least two lines"]),
        (["--season=winter", "--form=free"], ["--season=winter is a rule of the form"]),
        (["--season_words={tmp}/empty.txt"], ["holds no season words"]),
        (["--season_words={tmp}/bad.txt"], ["unknown season 'monsoon'"]),
        (["--season_words={tmp}/binary.txt"], ["cannot read the season words"]),
        (["--season_words={tmp}/missing.txt"], ["cannot read the season words", "missing.txt"]),
        (["--season=winter", "--start=autumn go go the\n"], ["its line 1 ends on 'the', which leaves the phrase"]),
    ],
)
def test_bad_input_is_one_line(char_run, tmp_path, args, words):
    (tmp_path / "empty.txt").write_text("123\n")
    (tmp_path / "bad.txt").write_text("monsoon: rain\n")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00snow")
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
