"""The text front end: normalisation, espeak-ng phonemes through phonemizer, the symbol table, blanks,
characters it cannot speak, and the splitting of long input."""

import pytest

from holdsgm.errors import HoldsgmError
from holdsgm.text import BLANK, SYMBOLS, FrontEnd, intersperse, normalize_text, split_sentences, unspeakable
from holdsgm.text.frontend import number_to_words, ordinal_words


def test_numbers_in_words():
    assert number_to_words(0) == "zero" and number_to_words(42) == "forty-two"
    assert number_to_words(305) == "three hundred and five"
    assert number_to_words(2005) == "two thousand and five"
    assert number_to_words(1_234_567) == "one million two hundred and thirty-four thousand five hundred and sixty-seven"
    assert ordinal_words(1) == "first" and ordinal_words(21) == "twenty-first" and ordinal_words(40) == "fortieth"
    assert ordinal_words(112) == "one hundred and twelfth"


@pytest.mark.parametrize("text, expected", [
    ("Mr. Smith paid $5.50.", "Mister Smith paid five dollars fifty cents."),
    ("It costs £1.", "It costs one pound."),
    ("12% of 1,234 people", "twelve percent of one thousand two hundred and thirty-four people"),
    ("on the 3rd day", "on the third day"),
    ("pi is 3.14", "pi is three point one four"),
    ("Dr. Who & co.", "Doctor Who and company"),
    ("a café — naïve", "a cafe, naive"),
    ("“quoted”  text", '"quoted" text'),
])
def test_normalisation(text, expected):
    assert normalize_text(text) == expected
    assert not any(c.isdigit() for c in normalize_text(text))


def test_unspeakable_characters_are_named():
    assert unspeakable(normalize_text("snow ☃ and 你好")) == ["☃", "你", "好"]
    assert unspeakable(normalize_text("Hello, world! (It's 5.)")) == []


def test_split_sentences_keeps_parts_short_and_drops_empty_ones():
    assert split_sentences("One. Two! Three?") == ["One.", "Two!", "Three?"]
    assert split_sentences("... !!") == []
    long = "Alpha beta gamma, " * 40 + "end."
    parts = split_sentences(long, max_chars=100)
    assert len(parts) > 1 and all(len(p) <= 100 for p in parts)
    assert " ".join(parts).split() == long.split()  # nothing lost, nothing added


def test_intersperse_blanks():
    assert intersperse([5, 6]) == [0, 5, 0, 6, 0]
    assert intersperse([]) == [0]


def test_symbol_table():
    assert SYMBOLS[0] == BLANK and len(set(SYMBOLS)) == len(SYMBOLS)
    for c in " ,.?!ˈˌːəɪʊθðŋʃʒɹɾ":
        assert c in SYMBOLS


@pytest.fixture(scope="module")
def front():
    return FrontEnd()


def test_phonemes_with_blanks(front):
    ph = front.encode("Hello world, 42 times!")
    assert ph.text == "Hello world, forty-two times!"
    assert "h" in ph.ipa and "w" in ph.ipa and "ˈ" in ph.ipa and "," in ph.ipa  # stress and pauses kept
    assert ph.ids[0::2] == [0] * (len(ph.ids) // 2 + 1) and all(i > 0 for i in ph.ids[1::2])
    assert "".join(SYMBOLS[i] for i in ph.ids[1::2]) == ph.ipa
    # every phoneme espeak-ng writes for ordinary English is in the table
    many = front.encode_many(["The quick brown fox jumps over the lazy dog.", "Think of these three things.",
                              "Measure the pleasure of a beige garage."])
    for p in many:
        assert "".join(SYMBOLS[i] for i in p.ids[1::2]) == p.ipa


def warnings_of(monkeypatch) -> list[str]:
    """The front end's warnings, recorded at the logger (caplog misses them once the CLI's tests have set up
    the package's logging, which does not propagate)."""
    from holdsgm.text import frontend

    got: list[str] = []
    monkeypatch.setattr(frontend.log, "warning", lambda msg, *a: got.append(msg % a))
    return got


def test_unknown_characters_are_dropped_with_a_warning(front, monkeypatch):
    got = warnings_of(monkeypatch)
    ph = front.encode("snow ☃ man")
    assert any("☃" in w for w in got) and "☃" not in ph.text and ph.text == "snow man"


@pytest.mark.parametrize("text", ["", "   ", "?!...", "☃☃", "—"])
def test_nothing_to_say_is_one_clear_error(front, text):
    with pytest.raises(HoldsgmError, match="nothing to say|no letters"):
        front.encode(text)


def test_a_table_must_start_with_the_blank():
    with pytest.raises(HoldsgmError, match="blank"):
        FrontEnd(("a", "b"))
