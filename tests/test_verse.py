"""verse.py: a haiku's lines, syllable patterns and forms, the dedupe key, distinct-2."""

import pytest

from haikugpt.haiku import verse


def test_haiku_lines():
    expected = ["low winter sunlight", "a heron stands on one leg", "the river moves on"]
    assert verse.haiku_lines("\n  low winter sunlight\n\na heron stands on one leg  \nthe river moves on\n") == expected
    assert verse.haiku_lines("low winter sunlight / a heron stands on one leg / the river moves on") == expected
    assert verse.haiku_lines("a path/road") == ["a path/road"]  # a slash inside a word is not a line break
    assert verse.haiku_lines(" \n ") == []


@pytest.mark.parametrize(
    "text",
    [
        "low winter sunlight / a heron stands on one leg / the river moves on",
        "a kettle whistles\nthe snow outside keeps falling\nno one lifts the lid",
        "morning frost again\nthe crows argue on the wire\nover one cold seed\n",
    ],
)
def test_is_575(text):
    assert verse.syllable_pattern(text) == [5, 7, 5]
    assert verse.is_form(text)


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("a kettle whistles\nthe snow keeps falling\nno one lifts the lid", [5, 5, 5]),
        ("low winter sunlight\na heron stands on one leg", [5, 7]),
        ("low winter sunlight / a heron stands on one leg / the river / moves on", [5, 7, 3, 2]),
        ("", []),
    ],
)
def test_not_575(text, pattern):
    assert verse.syllable_pattern(text) == pattern
    assert not verse.is_form(text)


@pytest.mark.parametrize(
    "text, form", [("5-7-5", (5, 7, 5)), ("5-7-5-7-7", (5, 7, 5, 7, 7)), (" 3 - 5 - 3", (3, 5, 3))]
)
def test_parse_form(text, form):
    assert verse.parse_form(text) == form
    assert verse.format_form(form) == text.replace(" ", "")


@pytest.mark.parametrize("text", ["abc", "5-7-", "0-7-5", "5-7-x", "5.5-7-5", "-5"])
def test_parse_form_refuses_what_is_not_a_form(text):
    with pytest.raises(ValueError, match="form"):
        verse.parse_form(text)


def test_is_form_for_other_forms():
    lines = ["low winter sunlight", "a heron stands on one leg", "the river moves on", "the snow keeps on falling"]
    tanka = "\n".join([*lines, "no one lifts the lid"])
    assert verse.syllable_pattern(tanka) == [5, 7, 5, 6, 5]
    assert verse.is_form(tanka, (5, 7, 5, 6, 5)) and not verse.is_form(tanka)


def test_dedupe_key_ignores_case_and_punctuation():
    assert verse.dedupe_key("Old Pond!\nA frog, leaps in...") == verse.dedupe_key("old pond a frog leaps in")
    assert verse.dedupe_key("old pond") != verse.dedupe_key("old ponds")


def test_distinct_2():
    assert verse.distinct_2(["the pond the pond", "The pond!"]) == (2, 4)  # (the, pond) x3 and (pond, the)
    assert verse.distinct_2(["frog"]) == (0, 0)
