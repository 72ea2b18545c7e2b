"""
Form-constrained sampling: every sample is a poem of the form (5-7-5, or any dash-separated syllable counts) made of
real words, whatever the model. At every step, before temperature, top-k and top-p, the logits of the tokens that
would break the form are set to -inf, so the samples are the model's distribution restricted to the form and
renormalised.

    lexicon = Lexicon.load(extra=corpus_words)               # the CMU dictionary and the training corpus's words
    form = FormConstraint(tokenizer, (5, 7, 5), lexicon)
    states = form.start(prompt_text, num_samples)            # one State per row: where each row is in the poem
    model.stream(idx, max_new_tokens, stop_token=tokenizer.eot_id, logits_filter=form.logits_filter(states))

The rules, checked character by character as a token's text is appended to a row:
- A word is a run of letters (an apostrophe may follow its first letter); only its first letter may be a capital.
  Every word is a real word: one in the lexicon, with its syllables as syllables.py counts them.
- A partial word is allowed only if some lexicon word completes it within the line's remaining syllables: no row is
  ever left without a way to finish, so every sample ends within max_new_tokens (max_tokens() says how many).
- A line breaks only when its syllables reach its count exactly; after the last line only end-of-text may follow.
- Between words: spaces (never two in a row, none at a line's start or after its last syllable) and punctuation, at
  most MAX_GAP characters in all; a word starts at a line's start or after a space, an opening quote or a dash;
  digits and other symbols never. Letters alone are not words (the dictionary lists them), except a, I and O.
"""

import bisect
import functools
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from haikugpt.haiku import syllables
from haikugpt.tokenizer import Tokenizer

PUNCTUATION = set(',.;:!?"()-') | set("\u2014\u2013\u2026\u201c\u201d")  # dashes, ellipsis, curly double quotes
OPENERS = set('"(-') | set("\u2014\u2013\u201c")  # punctuation a word may follow directly, as it may a space
APOSTROPHES = "'\u2019"
MAX_GAP = 4  # characters between two words (or before a line break): ", " is 2, '..." ' is 5 and too many
NEVER = 1 << 30  # the syllables of a prefix that no word completes


class Lexicon:
    """The real words: lowercase, sorted, each with its syllables; prefix queries by bisection."""

    def __init__(self, counts: dict[str, int]):
        self.words = sorted(counts)
        self.counts = counts
        self.syllables = np.array([counts[w] for w in self.words], dtype=np.int32)
        self.min_syllables = functools.lru_cache(maxsize=1 << 20)(self._min_syllables)

    @classmethod
    def load(cls, extra: list[str] = (), alphabet: set[str] | None = None) -> "Lexicon":
        """The CMU dictionary's words and the extra words, those spelt with the alphabet's letters (all if None)."""
        counts = {w: n for w, n in syllables._dictionary().items() if n > 0 and WORD.fullmatch(w) and real(w)}
        for word in extra:
            word = word.lower().replace("\u2019", "'")
            if word not in counts and WORD.fullmatch(word) and real(word) and syllables.count_word(word) > 0:
                counts[word] = syllables.count_word(word)
        if alphabet is not None:
            counts = {w: n for w, n in counts.items() if set(w) <= alphabet}
        return cls(counts)

    def _min_syllables(self, prefix: str) -> int:
        """The fewest syllables of a word that starts with prefix; NEVER if none does."""
        lo = bisect.bisect_left(self.words, prefix)
        hi = bisect.bisect_left(self.words, prefix + "\U0010ffff", lo)
        return int(self.syllables[lo:hi].min()) if hi > lo else NEVER

    def completions(self, prefix: str) -> list[str]:
        lo = bisect.bisect_left(self.words, prefix)
        return self.words[lo : bisect.bisect_left(self.words, prefix + "\U0010ffff", lo)]


WORD = re.compile(r"[a-z][a-z']*(?<!')")  # a lexicon word: lowercase letters, apostrophes inside


def real(word: str) -> bool:
    """Letters alone are not words, though the dictionary lists them (as spoken): a, I and O are."""
    return len(word) > 1 or word in "aio"


def words_of(texts: list[str]) -> list[str]:
    """The words of some texts, as the lexicon takes them (a corpus's vocabulary)."""
    return sorted({w for text in texts for w in re.findall(r"[A-Za-z][A-Za-z'\u2019]*", text)})


class State(NamedTuple):
    """Where a row is in the poem."""

    line: int  # the line being written (len(form) once the poem is finished)
    used: int  # syllables of the complete words on it
    word: str  # the partial word, as written
    gap: int  # characters since the last word or the line's start
    last: str = ""  # the last of them: a word starts at a line's start or after a space, an opening quote or a dash


DONE = State(-1, 0, "", 0)  # a row that has emitted end-of-text


class Rules:
    """The form's rules, one character at a time (see the module's docstring): where a row is, and where it may go."""

    def __init__(self, form: tuple[int, ...], lexicon: Lexicon):
        self.form, self.lexicon = tuple(form), lexicon

    def close(self, st: State) -> State | None:
        """The state once the partial word ends: None if it is not a word or has too many syllables."""
        if not st.word:
            return st
        n = self.lexicon.counts.get(st.word.lower().replace("\u2019", "'"), 0)
        if n == 0 or st.used + n > self.form[st.line]:
            return None
        return State(st.line, st.used + n, "", 0)

    def advance_char(self, st: State, ch: str) -> State | None:
        """The state after one more character, or None if the character breaks the form."""
        if st.line >= len(self.form) or st.line < 0:
            return None
        if ch.isalpha() or (ch in APOSTROPHES and st.word):
            if st.word and ch.isupper():
                return None  # capitals open words
            if not st.word and st.gap and st.last != " " and st.last not in OPENERS:
                return None  # no word straight after a comma or a full stop
            word = st.word + ch
            room = self.form[st.line] - st.used
            if self.lexicon.min_syllables(word.lower().replace("\u2019", "'")) > room:
                return None
            return State(st.line, st.used, word, 0)
        st = self.close(st)
        if st is None:
            return None
        target = self.form[st.line]
        if ch == "\n":
            ok = st.used == target and st.line < len(self.form) - 1
            return State(st.line + 1, 0, "", 0) if ok else None
        if st.gap >= MAX_GAP:
            return None
        if ch == " ":  # between two words only, and one at a time
            ok = 0 < st.used < target and st.last != " "
        elif ch in OPENERS:  # a word may follow: not on a full line (a straight quote may close one)
            ok = st.used < target or ch == '"'
        elif ch in PUNCTUATION:  # after a word, with room for a space after it unless the line is full; no ",,"
            ok = st.used > 0 and (st.used == target or st.gap + 2 <= MAX_GAP) and (ch != st.last or ch == ".")
        else:
            return None
        return State(st.line, st.used, "", st.gap + 1, ch) if ok else None

    def advance_text(self, st: State, text: str) -> State | None:
        for ch in text:
            st = self.advance_char(st, ch)
            if st is None:
                return None
        return st

    def can_end(self, st: State) -> bool:
        st = self.close(st)
        return st is not None and st.line == len(self.form) - 1 and st.used == self.form[-1]

    def start(self, prompt: str, rows: int) -> list[State]:
        """Every row's state after the prompt (the text after its last end-of-text); an error naming the fault if the
        prompt already breaks the form."""
        text = prompt.rsplit("<|endoftext|>", 1)[-1]
        st = self.advance_text(State(0, 0, "", 0), text)
        if st is None:
            raise ValueError(f"the prompt {text!r} breaks the form {'-'.join(map(str, self.form))}: {self.why(text)}")
        return [st] * rows

    def why(self, text: str) -> str:
        """What in a text breaks the form, in words."""
        lines = text.split("\n")
        if len(lines) > len(self.form):
            return f"it has {len(lines)} lines, the form {len(self.form)}"
        for n, line in enumerate(lines):
            unknown = [w for w in re.findall(r"[^\W\d_][\w'\u2019]*", line)
                       if w.lower().replace("\u2019", "'") not in self.lexicon.counts]  # fmt: skip
            if unknown:
                return f"{unknown[0]!r} is not a known word (add it to a --words file)"
            count = syllables.count_line(line)
            last = n == len(lines) - 1
            if count > self.form[n] or (not last and count != self.form[n]):
                return f"its line {n + 1} has {count} syllables, the form's {self.form[n]}"
        return "it has characters that a poem of this form cannot hold (digits, symbols, or too many spaces)"

    def max_tokens(self) -> int:
        """The most tokens a constrained sample can take: each at least one character, each word at most its longest
        spelling per syllable, MAX_GAP characters around each, a newline per line and an end-of-text."""
        per_syllable = int(max(-(-len(w) // n) for w, n in self.lexicon.counts.items()))
        total = sum(self.form)
        return total * (per_syllable + MAX_GAP) + len(self.form) * (MAX_GAP + 1) + 1


class FormConstraint(Rules):
    """Which tokens keep each row within the form: the rules applied to every token at once, from cached parts."""

    def __init__(self, tokenizer: Tokenizer, form: tuple[int, ...], lexicon: Lexicon):
        super().__init__(form, lexicon)
        self.tok = tokenizer
        if tokenizer.eot_id is None:
            raise ValueError("form-constrained sampling needs a tokenizer with an end-of-text token")
        self.pieces = token_pieces(tokenizer)
        missing = [name for ch, name in ((" ", "a space"), ("\n", "a newline")) if ch not in self.pieces]
        if missing or not lexicon.words:
            raise ValueError(f"this tokenizer cannot write {' or '.join(missing) or 'any lexicon word'}")
        self.V = len(self.pieces)
        # Token kinds: 1 word characters only, 2 a space then a word's start, 3 any other text starting at a boundary,
        # 4 word characters then a boundary (rare: GPT-2's pre-tokenizer never makes them); 0 never allowed.
        self.kind = np.zeros(self.V, dtype=np.int8)
        self.start_min = np.full(self.V, NEVER, dtype=np.int64)  # kinds 1, 2: fewest syllables of the word begun
        self.lower: dict[str, list[int]] = {}  # kind-1 tokens in lowercase, which may continue a word, by their text
        for i, piece in enumerate(self.pieces):
            if not piece or i == tokenizer.eot_id:
                continue
            letters = piece[1:] if piece[0] == " " else piece
            if all(ch.isalpha() or ch in APOSTROPHES for ch in letters) and letters:
                self.kind[i] = 1 if letters is piece else 2
                if letters[0].isalpha() and letters[1:] == letters[1:].lower():
                    self.start_min[i] = lexicon.min_syllables(letters.lower().replace("\u2019", "'"))
                if self.kind[i] == 1 and piece == piece.lower():
                    self.lower.setdefault(piece.replace("\u2019", "'"), []).append(i)
            elif piece[0].isalpha() or piece[0] in APOSTROPHES:
                self.kind[i] = 4
            else:
                self.kind[i] = 3
        self.kind1 = np.flatnonzero(self.kind == 1)
        self.kind3, self.kind4 = np.flatnonzero(self.kind == 3), np.flatnonzero(self.kind == 4)
        self.fresh_cache: dict[State, torch.Tensor] = {}
        self.word_cache: dict[tuple[str, int], np.ndarray] = {}

    def advance(self, st: State, token: int) -> State:
        """The state after a token that allowed() allowed."""
        if st == DONE or token == self.tok.eot_id:
            return DONE
        new = self.advance_text(st, self.pieces[token])
        assert new is not None, f"token {token} ({self.pieces[token]!r}) was not allowed in {st}"
        return new

    def allowed(self, st: State) -> torch.Tensor:
        """A (vocab,) bool tensor: the tokens that keep the row within the form."""
        if st == DONE:
            mask = torch.zeros(self.V, dtype=torch.bool)
            mask[self.tok.eot_id] = True
            return mask
        closed = self.close(st)
        mask = self.fresh(closed).clone() if closed is not None else torch.zeros(self.V, dtype=torch.bool)
        room = self.form[st.line] - st.used
        if st.word:
            mask[self.continuations(st.word, room)] = True
        elif st.gap == 0 or st.last == " " or st.last in OPENERS:  # a word may start here
            mask[self.kind1[self.start_min[self.kind1] <= room]] = True
        for i in self.kind4:  # rare: simulated one by one
            mask[i] = self.advance_text(st, self.pieces[i]) is not None
        return mask

    def fresh(self, st: State) -> torch.Tensor:
        """Kinds 2 and 3 and end-of-text, from a state with no partial word (cached: there are few such states)."""
        if st not in self.fresh_cache:
            mask = np.zeros(self.V, dtype=bool)
            target = self.form[st.line]
            if 0 < st.used < target and st.gap < MAX_GAP and st.last != " ":
                mask |= (self.kind == 2) & (self.start_min <= target - st.used)
            for i in self.kind3:
                mask[i] = self.advance_text(st, self.pieces[i]) is not None
            mask[self.tok.eot_id] = self.can_end(st)
            self.fresh_cache[st] = torch.from_numpy(mask)
        return self.fresh_cache[st]

    def continuations(self, word: str, room: int) -> np.ndarray:
        """The kind-1 tokens that extend the partial word within room syllables (cached)."""
        key = (word.lower().replace("\u2019", "'"), room)
        if key not in self.word_cache:
            prefix = key[0]
            completions = self.lexicon.completions(prefix)
            if len(completions) * 8 < len(self.lower):  # few words to follow: try each of their suffixes
                pieces = {w[len(prefix) : k] for w in completions for k in range(len(prefix) + 1, len(w) + 1)}
                candidates = [p for p in pieces if p in self.lower]
            else:
                candidates = list(self.lower)
            fit = [i for p in candidates if self.lexicon.min_syllables(prefix + p) <= room for i in self.lower[p]]
            self.word_cache[key] = np.array(sorted(fit), dtype=np.int64)
        return self.word_cache[key]

    def logits_filter(self, states: list[State]):
        """A function for model.stream: it moves each row's state on by the token just emitted, then sets the
        logits of every token the form does not allow to -inf."""

        def apply(logits: torch.Tensor, token: torch.Tensor | None) -> torch.Tensor:
            if token is not None:
                for i, t in enumerate(token.tolist()):
                    states[i] = self.advance(states[i], t)
            mask = torch.stack([self.allowed(st) for st in states])  # (B, vocab)
            mask = torch.nn.functional.pad(mask, (0, logits.size(-1) - self.V))  # the model's padded ids: never
            return logits.masked_fill(~mask.to(logits.device), float("-inf"))

        return apply


def token_pieces(tokenizer: Tokenizer) -> list[str | None]:
    """Each token's text; None for a token whose bytes are not text by themselves (part of a character)."""
    pieces = []
    for i in range(tokenizer.vocab_size):
        if i == tokenizer.eot_id:
            pieces.append(None)
            continue
        data = tokenizer.token_bytes(i)
        try:
            pieces.append(data.decode("utf-8"))
        except UnicodeDecodeError:
            pieces.append(None)
    return pieces


def read_words(path: Path) -> list[str]:
    """A user's word list: one word per line (or several, separated by spaces); an error if none is usable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no word list {path} (from --words)")
    words = [w for w in path.read_text(encoding="utf-8").split() if WORD.fullmatch(w.lower().replace("\u2019", "'"))]
    if not words:
        raise ValueError(f"{path} has no usable words (letters, and apostrophes inside a word)")
    return words
