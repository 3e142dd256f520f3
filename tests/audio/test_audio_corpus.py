import random

import pytest
import soundfile as sf

from holdsgm.audio.corpus import (
    ESPEAK_INSTALL,
    VOICES,
    build_speech_corpus,
    compose_sentence,
    number_to_words,
    utterance_spec,
)
from holdsgm.audio.dataset import load_speech
from holdsgm.cli.main import main
from holdsgm.errors import DataError, HoldsgmError


def test_corpus_is_a_valid_ljspeech_layout(corpus_dir):
    rows = (corpus_dir / "metadata.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 4
    for row in rows:
        uid, text, norm = row.split("|")
        assert text and norm and not any(ch.isdigit() for ch in norm)
        info = sf.info(str(corpus_dir / "wavs" / f"{uid}.wav"))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
        assert 0.5 < info.duration < 6.0
    ds = load_speech(corpus_dir)
    assert ds.layout == "ljspeech" and ds.sr == 16000
    assert ds.ids == [r.split("|")[0] for r in rows] == [utterance_spec(7, i).id for i in range(4)]
    assert [it.text for it in ds] == [utterance_spec(7, i).text for i in range(4)]
    for it in ds:
        peak = abs(it.wave).max()
        assert 0.9 < peak <= 0.951  # peak-normalised to 0.95 (16-bit rounding)


def test_specs_are_deterministic_and_varied():
    a = [utterance_spec(3, i) for i in range(40)]
    assert a == [utterance_spec(3, i) for i in range(40)]
    assert a != [utterance_spec(4, i) for i in range(40)]
    assert len({s.voice for s in a}) >= 8 and len({s.text for s in a}) >= 35
    assert len({s.pitch for s in a}) >= 10 and len({s.speed for s in a}) >= 10
    assert all(s.voice in VOICES for s in a)
    words = [len(s.text.split()) for s in a]
    assert min(words) <= 3 and max(words) >= 10


def test_text_normalisation():
    assert number_to_words(0) == "zero" and number_to_words(42) == "forty-two"
    assert number_to_words(305) == "three hundred and five" and number_to_words(1000) == "one thousand"
    rng = random.Random(0)
    pairs = [compose_sentence(rng) for _ in range(200)]
    with_digits = [(t, n) for t, n in pairs if any(c.isdigit() for c in t)]
    assert with_digits and all(not any(c.isdigit() for c in n) for _, n in with_digits)
    assert any("Doctor" in n or "Mister" in n for _, n in pairs)


def test_missing_espeak_says_how_to_install(tmp_path):
    with pytest.raises(HoldsgmError, match="espeak-ng was not found") as e:
        build_speech_corpus(tmp_path / "c", 1, engine="espeak", espeak="no-such-espeak-ng-binary")
    assert "apt-get install espeak-ng" in str(e.value) and ESPEAK_INSTALL in str(e.value)


def test_unwritable_or_existing_out(tmp_path, corpus_dir):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="cannot write the corpus to .*file/sub"):
        build_speech_corpus(blocker / "sub", 1)
    with pytest.raises(DataError, match="already holds a corpus"):
        build_speech_corpus(corpus_dir, 1)
    with pytest.raises(DataError, match="n must be"):
        build_speech_corpus(tmp_path / "c", 0)


def test_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["data", "speech", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(opt in out for opt in ("--out", "--n", "--seed", "--sr", "LJSpeech"))
    assert main(["data", "speech", "--out", str(tmp_path / "c"), "--n", "2", "--seed", "1", "--sr", "22050",
                 "--quiet"]) == 0
    assert "wrote 2 utterances" in capsys.readouterr().out
    ds = load_speech(tmp_path / "c", sr=22050)
    assert len(ds) == 2 and sf.info(ds[0].path).samplerate == 22050
    assert main(["data", "speech", "--out", str(tmp_path / "c"), "--n", "2"]) == 2
    assert "already holds a corpus" in capsys.readouterr().err


def test_default_engine_is_flite_slt_with_phone_end_times(corpus_dir):
    """The session corpus is the default: flite's slt, one speaker, with each phone's end time."""
    from holdsgm.audio.corpus import read_durations

    durations = read_durations(corpus_dir)
    ds = load_speech(corpus_dir)
    assert set(durations) == set(ds.ids)
    for it in ds:
        phones, ends = durations[it.id]
        assert phones[0] == "pau" and len(phones) >= 4 and all(p.isalpha() for p in phones)
        assert ends == sorted(ends) and 0 < ends[-1] <= it.num_samples / 16000 + 1e-3
        assert ends[-1] > 0.8 * it.num_samples / 16000  # the phones cover the utterance


def test_engines_voices_and_errors(tmp_path):
    espeak = build_speech_corpus(tmp_path / "espeak", 2, engine="espeak", voice=None, seed=7)
    assert espeak.engine == "espeak" and espeak.voice == "mix" and not (tmp_path / "espeak" / "durations.csv").exists()
    one = build_speech_corpus(tmp_path / "one", 2, engine="espeak", voice="en-us", seed=7)
    assert one.voice == "en-us"
    rms = build_speech_corpus(tmp_path / "rms", 2, engine="flite", voice="rms", seed=7)
    assert rms.voice == "rms" and (tmp_path / "rms" / "durations.csv").is_file()
    with pytest.raises(DataError, match="flite has no voice 'nope'; voices: .*slt"):
        build_speech_corpus(tmp_path / "bad", 1, engine="flite", voice="nope")
    with pytest.raises(DataError, match="unknown speech engine"):
        build_speech_corpus(tmp_path / "bad", 1, engine="mbrola")
    with pytest.raises(DataError, match="needs a voice"):
        build_speech_corpus(tmp_path / "bad", 1, engine="flite", voice=None)
    with pytest.raises(HoldsgmError, match="apt-get install flite"):
        build_speech_corpus(tmp_path / "bad", 1, engine="flite", program="no-such-flite")
    # festival as the other engines: CI installs it; without it the builder's error says how to install it
    fest = build_speech_corpus(tmp_path / "fest", 2, engine="festival", seed=7)
    assert fest.voice == "cmu_us_slt_arctic_hts" and (tmp_path / "fest" / "durations.csv").is_file()


def test_cli_engine_and_voice(tmp_path, capsys):
    assert main(["data", "speech", "--out", str(tmp_path / "c"), "--n", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "flite voice slt" in out and "durations.csv" in out
    assert main(["data", "speech", "--out", str(tmp_path / "e"), "--n", "2", "--engine", "espeak", "--voice", "nope",
                 "--quiet"]) == 2
    assert "espeak-ng failed" in capsys.readouterr().err and not (tmp_path / "e" / "metadata.csv").exists()
