"""Haiku tools, for prepare/ and sample.py alike: a poem's lines and syllable pattern, forms such as 5-7-5, the key
that finds copies, and the haiku report that judges samples.

    >>> from haikugpt.haiku.verse import syllable_pattern, parse_form, is_form
    >>> syllable_pattern("low winter sunlight / a heron stands on one leg / the river moves on")
    [5, 7, 5]
    >>> is_form("low winter sunlight / a heron stands on one leg", parse_form("5-7-5"))
    False
"""

import itertools
import re

from haikugpt.haiku.syllables import count_line
from haikugpt.texts import dedupe_key

HAIKU = (5, 7, 5)


def haiku_lines(text: str) -> list[str]:
    """The non-empty stripped lines of a haiku; a one-line haiku may separate its lines with ' / '."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) == 1:
        lines = [part.strip() for part in re.split(r"\s+/\s+", lines[0]) if part.strip()]
    return lines


def syllable_pattern(text: str) -> list[int]:
    """Syllables in each line of a haiku, e.g. [5, 7, 5]."""
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
    """True when the text has exactly these lines, with these syllable counts."""
    return tuple(syllable_pattern(text)) == tuple(form)


def is_575(text: str) -> bool:
    """True when the text has exactly three lines of 5, 7 and 5 syllables."""
    return is_form(text, HAIKU)


def words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def distinct_2(samples: list[str]) -> tuple[int, int]:
    """Unique and total word bigrams over all samples; a bigram never spans two samples."""
    bigrams = [pair for sample in samples for pair in itertools.pairwise(words(sample))]
    return len(set(bigrams)), len(bigrams)


def haiku_report(
    samples: list[str], corpus: tuple[set[str] | None, str], form: tuple[int, ...] = HAIKU, lexicon=None,
    enforced: bool = False,
) -> str:  # fmt: skip
    """Each sample's lines with their syllable counts, then the shares of samples with the form's number of lines, of
    the form itself, of real words (those in lexicon) and of copies of training haiku, and distinct-2.

    corpus: the training haiku's dedupe keys (or None) and where they came from (or why there are none); enforced:
    the form was imposed while sampling, so its share measures the constraint rather than the model."""
    keys, source = corpus
    name = format_form(form)
    out = ["haiku report"]
    lined = shaped = copied = 0
    for n, sample in enumerate(samples, 1):
        lines = haiku_lines(sample)
        fits, is_copy = is_form(sample, form), keys is not None and dedupe_key(sample) in keys
        lined, shaped, copied = lined + (len(lines) == len(form)), shaped + fits, copied + is_copy
        marks = "".join(f" {m}" for m, on in [(name, fits), ("copied", is_copy)] if on)
        out.append(f"sample {n}: {len(lines)} line{'' if len(lines) == 1 else 's'}{marks}")
        out += [f"  {count_line(line):2d}  {line}" for line in lines]
    total = len(samples)

    def share(k: int, n: int = total) -> str:
        return f"{k}/{n} ({k / n:.0%})" if n else "n/a"

    number = {3: "three", 5: "five"}.get(len(form), str(len(form)))
    out.append(f"{number} lines: {share(lined)}")
    how = "enforced while sampling: this measures the constraint, not the model (--form=free judges the model)"
    out.append(f"{name}: {share(shaped)}" + (f", {how}" if enforced else ""))
    if lexicon is not None:
        said = [w.strip("'") for sample in samples for w in words(sample) if w.strip("'")]
        real = sum(w in lexicon.counts for w in said)
        out.append(f"real words: {share(real, len(said))} (the CMU dictionary, the training corpus, --words)")
    if keys is None:
        out.append(f"copied from the training set: not computed ({source})")
    else:
        out.append(f"copied from the training set: {share(copied)}, compared with {source}")
    unique, bigrams = distinct_2(samples)
    d2 = f"{unique / bigrams:.3f}" if bigrams else "n/a"
    out.append(f"distinct-2: {d2} ({unique} unique of {bigrams} word bigrams)")
    return "\n".join(out)
