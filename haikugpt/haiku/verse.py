"""What makes a haiku, for prepare/, sample.py and the form constraint alike: a poem's lines and syllable pattern,
forms such as 5-7-5, season words (kigo), rhymes, cuts, words that cannot end a line, and the report that judges
samples by all of them.

    >>> from haikugpt.haiku.verse import syllable_pattern, parse_form, is_form
    >>> syllable_pattern("low winter sunlight / a heron stands on one leg / the river moves on")
    [5, 7, 5]
    >>> is_form("low winter sunlight / a heron stands on one leg", parse_form("5-7-5"))
    False
"""

import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from haikugpt.haiku.syllables import count_line, rhyme_key
from haikugpt.texts import dedupe_key

HAIKU = (5, 7, 5)
SEASONS = ("spring", "summer", "autumn", "winter")
SEASON_WORDS = Path(__file__).with_name("season_words")  # one plain list per season: spring.txt, ...
CUTS = ("\u2014", "\u2013", "-", ":", ";", "\u2026", "...")  # dashes, colon, semicolon, ellipsis: English kireji
# Words that leave a phrase open, so a line should not end on them: articles, possessive determiners, conjunctions and
# the prepositions that need an object (an adverb such as "up", "out" or "down" ends a line well). 3.3% of the
# embedded corpus's lines end on one (or on a possessive such as "the sweeper's"), some of them on purpose.
_FUNCTION = """a an the my your his its our their whose and or but nor if than as because although whether unless of to
at from with into onto upon for among amid amongst between toward towards against despite via per like"""
FUNCTION_WORDS = frozenset(_FUNCTION.split())
_CONTRACTIONS = "it's he's she's that's what's there's here's who's let's where's how's"  # not possessives
CONTRACTIONS = frozenset(_CONTRACTIONS.split())


def haiku_lines(text: str) -> list[str]:
    """The non-empty stripped lines of a haiku; a one-line haiku may separate its lines with ' / '."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) == 1:
        lines = [part.strip() for part in re.split(r"\s+/\s+", lines[0]) if part.strip()]
    return lines


def syllable_pattern(text: str) -> list[int]:
    return [count_line(line) for line in haiku_lines(text)]


def parse_form(text: str) -> tuple[int, ...]:
    """A form written as dash-separated syllable counts: '5-7-5' (haiku), '5-7-5-7-7' (tanka), '3-5-3'."""
    parts = str(text).split("-")
    if not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"form {text!r} is not syllable counts separated by dashes, such as 5-7-5")
    form = tuple(int(p) for p in parts)
    if min(form) < 1 or len(form) > 20 or max(form) > 50:
        raise ValueError(f"form {text!r}: each line needs 1 to 50 syllables, and at most 20 lines")
    return form


def format_form(form: tuple[int, ...]) -> str:
    return "-".join(map(str, form))


def is_form(text: str, form: tuple[int, ...] = HAIKU) -> bool:
    return tuple(syllable_pattern(text)) == tuple(form)


def words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower().replace("\u2019", "'"))


def distinct_2(samples: list[str]) -> tuple[int, int]:
    """Unique and total word bigrams over all samples; a bigram never spans two samples."""
    bigrams = [pair for sample in samples for pair in itertools.pairwise(words(sample))]
    return len(set(bigrams)), len(bigrams)


def is_function_word(word: str) -> bool:
    """A word a line should not end on: FUNCTION_WORDS, or a possessive ("sweeper's") waiting for its noun."""
    word = word.lower().replace("\u2019", "'")
    return word in FUNCTION_WORDS or (word.endswith("'s") and word not in CONTRACTIONS)


def has_cut(lines: list[str]) -> bool:
    """Whether line 1 or line 2 ends with a cutting mark (CUTS)."""
    return any(line.rstrip().endswith(CUTS) for line in lines[:2])


def rhymes(lines: list[str]) -> bool:
    """Whether the last words of two lines rhyme (or are the same word)."""
    keys = [rhyme_key(w[-1]) for w in map(words, lines) if w]
    return len(set(keys)) < len(keys)


def read_season_words(extra: Path | None = None) -> dict[str, set[str]]:
    """Each season's words: the shipped lists, and a user's file (lines of words, led by "winter:" etc. or nothing)."""
    out = {s: set(lines_of((SEASON_WORDS / f"{s}.txt").read_text())) for s in SEASONS}
    if extra is None:
        return out
    try:
        text = Path(extra).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read the season words in {extra} ({e}); pass a UTF-8 text file of words") from None
    added = 0
    for line in lines_of(text):
        season, sep, rest = line.partition(":")
        if sep and (season := season.strip().lower()) not in SEASONS:
            raise ValueError(f"{extra}: unknown season {season!r}; lines start with one of {', '.join(SEASONS)}, "
                             "or with no season for words of every season")  # fmt: skip
        found = re.findall(r"[a-z][a-z']*", (rest if sep else line).lower())
        for s in [season] if sep else SEASONS:
            out[s].update(found)
        added += len(found)
    if not added:
        raise ValueError(f'{extra} holds no season words; write words, one or more a line ("winter: sleet")')
    return out


def lines_of(text: str) -> list[str]:
    """The lines of a word list, less blank lines and # comments."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


# ---------------------------------------------------------------------------------------------------------------------
# The report


@dataclass
class Corpus:
    """What the report compares samples with: the training haiku and lines (dedupe keys), their source or why none."""

    source: str
    haiku: set[str] | None = None
    lines: set[str] | None = None
    docs: list[str] = field(default_factory=list)


def haiku_report(
    samples: list[str], corpus: Corpus, form: tuple[int, ...] = HAIKU, lexicon=None, enforced: str = "",
    season_words: dict[str, set[str]] | None = None, log_likelihood: tuple[float, int] | None = None,
) -> str:  # fmt: skip
    """Each sample's lines and syllables, then the share of samples (or lines) with each mark, distinct-2 and the
    log-likelihood per token (log_likelihood: its sum and the tokens). enforced: the rules imposed while sampling."""
    season_words = season_words or read_season_words()
    name, out, tally, seasons = format_form(form), ["haiku report"], Counter(), Counter()  # samples with each mark
    lines_copied = lines_dangling = n_lines = 0
    for n, sample in enumerate(samples, 1):
        lines = haiku_lines(sample)
        found = [(s, w) for w in words(sample) for s in SEASONS if w in season_words[s]]  # (season, word)
        dangling = [w[-1] for w in map(words, lines) if w and is_function_word(w[-1])]
        marks = {name: is_form(sample, form), "copied": corpus.haiku is not None and dedupe_key(sample) in corpus.haiku,
                 "rhymes": rhymes(lines), "cut": has_cut(lines), "season": bool(found)}  # fmt: skip
        tally.update(k for k, on in {**marks, "lined": len(lines) == len(form), "dangling": dangling}.items() if on)
        seasons.update({s for s, _ in found})
        n_lines, lines_dangling = n_lines + len(lines), lines_dangling + len(dangling)
        lines_copied += sum(corpus.lines is not None and dedupe_key(line) in corpus.lines for line in lines)
        said = [k if k != "season" else f"{found[0][0]}: {', '.join(dict.fromkeys(w for _, w in found))}"
                for k, on in marks.items() if on]  # fmt: skip
        out.append(f"sample {n}: {len(lines)} line{'' if len(lines) == 1 else 's'}" + "".join(f" {m}" for m in said))
        out += [f"  {count_line(line):2d}  {line}" for line in lines]

    def share(k: int, n: int = len(samples)) -> str:
        return f"{k}/{n} ({k / n:.0%})" if n else "n/a"

    number = {3: "three", 5: "five"}.get(len(form), str(len(form)))
    out += [f"{number} lines: {share(tally['lined'])}", f"{name}: {share(tally[name])}"]
    if lexicon is not None:
        said = [w.strip("'") for sample in samples for w in words(sample) if w.strip("'")]
        real = sum(w in lexicon.counts for w in said)
        out.append(f"real words: {share(real, len(said))} (the CMU dictionary, the training corpus, --words)")
    if corpus.haiku is None:
        out.append(f"copied from the training set: not computed ({corpus.source})")
    else:
        out.append(f"copied from the training set: {share(tally['copied'])} haiku, {share(lines_copied, n_lines)} "
                   f"lines, compared with {corpus.source}")  # fmt: skip
    by_season = ", ".join(f"{s} {seasons[s]}" for s in SEASONS if s in seasons)
    out.append(f"with a season word: {share(tally['season'])}" + (f" ({by_season})" if by_season else ""))
    out.append(f"with rhyming line ends: {share(tally['rhymes'])}")
    out.append(f"lines ending on a function word: {share(lines_dangling, n_lines)} (in {tally['dangling']} samples)")
    out.append(f"with a cut (line 1 or 2 ending in a dash, colon, semicolon or ellipsis): {share(tally['cut'])}")
    unique, bigrams = distinct_2(samples)
    ratio = f"{unique / bigrams:.3f}" if bigrams else "n/a"
    out.append(f"distinct-2: {ratio} ({unique} unique of {bigrams} word bigrams)")
    if log_likelihood is not None and log_likelihood[1]:
        total, tokens = log_likelihood
        out.append(f"log-likelihood per token under the model: {total / tokens:.3f} nats (over {tokens:,} tokens)")
    if enforced:
        out.append(f"enforced while sampling: {enforced}; those shares measure the constraint, not the model "
                   "(--form=free judges the model)")  # fmt: skip
    return "\n".join(out)
