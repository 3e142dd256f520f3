import numpy as np
import pytest
import soundfile as sf
import torch

from holdsgm.audio.dataset import load_speech, random_segments
from holdsgm.audio.features import log_mel
from holdsgm.errors import DataError, HoldsgmError


def _wav(path, seconds=0.5, sr=16000, channels=1, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.1 * np.random.default_rng(seed).standard_normal((int(seconds * sr), channels))
    sf.write(str(path), x, sr, subtype="PCM_16")
    return x


def _lj(root, rows, make=None):
    """An LJSpeech folder with the given metadata lines; WAVs for the ids in ``make``."""
    root.mkdir(parents=True, exist_ok=True)
    for i, uid in enumerate(make or []):
        _wav(root / "wavs" / f"{uid}.wav", seed=i)
    (root / "metadata.csv").write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    return root


def test_folder_of_wavs_recursive_mono_resampled(tmp_path):
    _wav(tmp_path / "a.wav", 0.5)
    (tmp_path / "sub").mkdir()
    tone = np.sin(2 * np.pi * 440 * np.arange(22050) / 22050)
    sf.write(str(tmp_path / "sub" / "b.WAV"), np.stack([0.4 * tone, 0.2 * tone], axis=1), 22050)
    (tmp_path / "notes.txt").write_text("not audio")
    ds = load_speech(tmp_path)
    assert ds.layout == "folder" and ds.sr == 16000 and ds.ids == ["a", "sub/b"]
    b = ds[1]
    assert b.wave.dtype == np.float32 and b.wave.ndim == 1 and b.text == ""
    assert abs(b.num_samples - 16000) <= 1  # 1 s at 22.05 kHz -> 16 kHz
    rms = np.sqrt(np.mean(b.wave[100:-100] ** 2))
    assert rms == pytest.approx(0.3 / np.sqrt(2), rel=0.01)  # the mean of the channels
    assert ds.seconds == pytest.approx(1.5, abs=1e-3)
    assert load_speech(tmp_path, recursive=False).ids == ["a"]
    assert len(load_speech(tmp_path, limit=1)) == 1
    assert load_speech(tmp_path, sr=8000)[0].num_samples == 4000


def test_ljspeech_layout(tmp_path):
    _lj(tmp_path, ["X-1|Dr. Who, 2 times.|Doctor Who, two times.", "", "X-2|Only text"], make=["X-1", "X-2"])
    _wav(tmp_path / "wavs" / "unlisted.wav")
    ds = load_speech(tmp_path)
    assert ds.layout == "ljspeech" and ds.ids == ["X-1", "X-2"]
    assert ds[0].text == "Dr. Who, 2 times." and ds[0].normalized_text == "Doctor Who, two times."
    assert ds[1].normalized_text == "Only text"


def test_split_is_deterministic_by_id(tmp_path):
    for i in range(20):
        _wav(tmp_path / f"u{i:02d}.wav", 0.05, seed=i)
    ds = load_speech(tmp_path)
    train, test = ds.split(0.25, seed=3)
    assert len(test) == 5 and len(train) == 15
    assert sorted(train.ids + test.ids) == ds.ids and not set(train.ids) & set(test.ids)
    assert train.ids == sorted(train.ids)  # original order kept
    assert ds.split(0.25, seed=3)[1].ids == test.ids
    assert ds.split(0.25, seed=4)[1].ids != test.ids
    # depends on the ids only, not on which other utterances are present
    sub = load_speech(tmp_path, limit=19)
    assert set(test.ids) & set(sub.ids) <= set(sub.split(0.25, seed=3)[1].ids)
    with pytest.raises(DataError, match="test_fraction"):
        ds.split(1.0)


def test_random_segments_match_the_utterance_mel(tmp_path):
    _wav(tmp_path / "long.wav", 1.0, seed=1)
    _wav(tmp_path / "short.wav", 0.1, seed=2)
    ds = load_speech(tmp_path)
    waves, mels = random_segments(ds, 8, segment_frames=16, seed=5)
    assert waves.shape == (8, 1, 16 * 256) and mels.shape == (8, 80, 16)
    assert waves.dtype == torch.float32 and mels.dtype == torch.float32
    w2, m2 = random_segments(ds, 8, segment_frames=16, seed=5)
    assert torch.equal(waves, w2) and torch.equal(mels, m2)
    assert not torch.equal(random_segments(ds, 8, segment_frames=16, seed=6)[0], waves)
    long_wave = torch.from_numpy(ds[ds.ids.index("long")].wave)
    full_mel = log_mel(long_wave)
    n_long = 0
    for w, m in zip(waves[:, 0], mels):
        if w[1600:].abs().sum() == 0:  # the 0.1 s utterance, zero-padded
            torch.testing.assert_close(m, log_mel(w))
            continue
        starts = [s for s in range(0, len(long_wave) - len(w) + 1, 256)
                  if torch.equal(long_wave[s: s + len(w)], w)]
        assert len(starts) == 1  # aligned to the hop
        f = starts[0] // 256
        torch.testing.assert_close(m, full_mel[:, f: f + 16])
        n_long += 1
    assert n_long > 0
    with pytest.raises(DataError, match="batch_size"):
        random_segments(ds, 0, 16)


def _errors(tmp_path):
    d = tmp_path
    (d / "empty").mkdir()
    (d / "corrupt").mkdir()
    (d / "corrupt" / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really a wave file")
    (d / "silent").mkdir()
    sf.write(str(d / "silent" / "zero.wav"), np.zeros((0, 1)), 16000)
    (d / "afile.wav").write_bytes(b"")
    _lj(d / "missing", ["A|text|text", "B|text|text"], make=["A"])
    _lj(d / "onefield", ["A|text|text", "B"], make=["A", "B"])
    _lj(d / "fourfields", ["A|a|b|c"], make=["A"])
    _lj(d / "emptyid", ["|text|text"], make=[])
    _lj(d / "dup", ["A|x|x", "A|y|y"], make=["A"])
    _lj(d / "nometa", [], make=[])
    (d / "latin1").mkdir()
    (d / "latin1" / "metadata.csv").write_bytes("A|caf\xe9|caf\xe9\n".encode("latin-1"))
    return [
        (d / "nowhere", "does not exist", "nowhere"),
        (d / "afile.wav", "is not a folder", "afile.wav"),
        (d / "empty", "no .wav files", "empty"),
        (d / "corrupt", "cannot read WAV", "bad.wav"),
        (d / "silent", "holds no samples", "zero.wav"),
        (d / "missing", "metadata.csv:2: id 'B' has no audio file", "B.wav"),
        (d / "onefield", "metadata.csv:2: expected 'id|text|normalized text'", "metadata.csv"),
        (d / "fourfields", "metadata.csv:1: expected .* got 4 field", "metadata.csv"),
        (d / "emptyid", "metadata.csv:1: bad id", "metadata.csv"),
        (d / "dup", "metadata.csv:2: id 'A' appears twice", "metadata.csv"),
        (d / "nometa", "lists no utterances", "metadata.csv"),
        (d / "latin1", "is not UTF-8", "metadata.csv"),
    ]


def test_loader_errors_are_one_line_and_name_the_file(tmp_path):
    for path, needle, name in _errors(tmp_path):
        with pytest.raises(DataError, match=needle) as e:
            load_speech(path)
        msg = str(e.value)
        assert name in msg and "\n" not in msg and isinstance(e.value, HoldsgmError), msg
    with pytest.raises(DataError, match="sr must be"):
        load_speech(tmp_path, sr=0)
