"""The text front end of text-to-speech: normalisation (numbers, currency, abbreviations, punctuation),
phonemes from espeak-ng through ``phonemizer`` (offline), the symbol table and the blank tokens between
symbols (Grad-TTS), and the splitting of long input at sentence boundaries."""

from .frontend import (
    BLANK,
    SYMBOLS,
    FrontEnd,
    Phonemes,
    intersperse,
    normalize_text,
    split_sentences,
    unspeakable,
)

__all__ = ["BLANK", "SYMBOLS", "FrontEnd", "Phonemes", "intersperse", "normalize_text", "split_sentences",
           "unspeakable"]
