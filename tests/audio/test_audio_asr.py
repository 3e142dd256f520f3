"""Offline intelligibility: pocketsphinx transcripts and the word error rate."""

import pytest

from holdsgm.audio.asr import corpus_wer, normalise_words, transcribe, word_errors
from holdsgm.errors import DataError


def test_word_errors_and_normalisation():
    assert normalise_words("Mr. Smith's forty-two DOGS!") == ["mr", "smith's", "forty", "two", "dogs"]
    assert word_errors("The cat sat.", "the cat sat") == (0, 3)
    assert word_errors("the cat sat", "the bat sat down") == (2, 3)  # one substitution, one insertion
    assert word_errors("the cat sat", "") == (3, 3)
    with pytest.raises(DataError, match="no words"):
        word_errors("...", "x")


def test_corpus_wer_pools_and_brackets():
    res = corpus_wer([(1, 10), (0, 10), (3, 10)], n_boot=500)
    assert res["wer"] == pytest.approx(4 / 30) and res["words"] == 30 and res["n"] == 3
    assert res["lo"] <= res["wer"] <= res["hi"]
    assert corpus_wer([(0, 5)] * 4)["hi"] == 0.0
    with pytest.raises(DataError):
        corpus_wer([])


def test_transcribes_the_default_voice(corpus_dir):
    """pocketsphinx understands flite's slt voice (the recordings' WER in the benchmark is ~20 %)."""
    import soundfile as sf

    rows = [r.split("|") for r in (corpus_dir / "metadata.csv").read_text().splitlines()]
    errors = words = 0
    for uid, _text, norm in rows:
        wave, sr = sf.read(corpus_dir / "wavs" / f"{uid}.wav", dtype="float32")
        e, w = word_errors(norm, transcribe(wave, sr))
        errors, words = errors + e, words + w
    assert errors / words < 0.6
    with pytest.raises(DataError, match="16 kHz"):
        transcribe(wave, 22050)
