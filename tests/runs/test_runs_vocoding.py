"""``holdsgm vocode`` as a user meets it: the voice shipped with the package, shipped models (export, load,
tamper checks), and bad input (one line, exit status 2, no output file)."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from holdsgm.cli.main import main
from holdsgm.errors import CheckpointError
from holdsgm.runs import load_config, load_run, train
from holdsgm.runs.inference import PEAK, vocode
from holdsgm.runs.pretrained import DEFAULT_VOICE, PRETRAINED_DIR, export_part, load_pretrained, read_manifest

TINY = ["model.dim=16", "model.layers=1", "model.kernel=3", "model.mult=2", "model.emb_dim=16",
        "data.segment_frames=6", "train.batch_size=2", "train.ckpt_every=2", "train.warmup_steps=1",
        "train.tensorboard=false", "train.steps=2"]


@pytest.fixture(scope="module")
def tiny_run(corpus_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("voc") / "run"
    train(load_config("vocoder-hold", [*TINY, f"data.path={corpus_dir}"]), run, verbose=False)
    return run


@pytest.fixture(scope="module")
def wav(corpus_dir):
    return sorted((corpus_dir / "wavs").glob("*.wav"))[0]


def test_shipped_voice_vocodes_a_wav_right_after_install(wav, tmp_path, capsys):
    """No RUN: the default voice shipped with the package; right length, not silent, never clipped."""
    man = read_manifest(PRETRAINED_DIR / DEFAULT_VOICE)
    v = man["vocoder"]
    assert "holdsgm train vocoder-" in v["trained_by"]["command"] and v["trained_by"]["commit"]
    assert v["metrics"] and v["dtype"] == "float16"
    size = sum(p.stat().st_size for p in PRETRAINED_DIR.rglob("*") if p.is_file())
    assert size <= 25 * 2**20
    out = tmp_path / "shipped.wav"
    assert main(["vocode", "--wav", str(wav), "--out", str(out), "--quiet"]) == 0
    assert "shipped voice" in capsys.readouterr().err
    ref, sr = sf.read(wav)
    got, sr_out = sf.read(out)
    assert sr_out == sr == 16000 and len(got) == len(ref) // 256 * 256
    assert np.sqrt(np.mean(got**2)) > 0.01 and np.abs(got).max() <= PEAK + 1e-4
    # it speaks: the output's spectrum follows the recording's (the log-mel correlation of a working vocoder)
    from holdsgm.audio import log_mel

    a, b = log_mel(torch.from_numpy(ref[: len(got)]).float()), log_mel(torch.from_numpy(got).float())
    assert float(np.corrcoef(a.flatten(), b.flatten())[0, 1]) > 0.9


def test_export_and_load_a_shipped_model(tiny_run, tmp_path, corpus_dir):
    path = export_part(tiny_run, "voice", command="holdsgm train vocoder-hold --out RUN", commit="abc1234",
                       metrics={"pesq": 1.0}, root=tmp_path)
    man = json.loads((tmp_path / "voice" / "manifest.json").read_text())
    assert man["vocoder"]["trained_by"]["commit"] == "abc1234" and man["vocoder"]["metrics"] == {"pesq": 1.0}
    shipped, run = load_pretrained("voice", root=tmp_path), load_run(tiny_run)
    assert shipped.dataset_info.speech == run.dataset_info.speech and shipped.sde.to_dict() == run.sde.to_dict()
    for k, w in run.net.state_dict().items():  # float16 weights, read back as float32
        torch.testing.assert_close(shipped.net.state_dict()[k], w.half().float())
    from holdsgm.audio import log_mel

    mel = log_mel(torch.from_numpy(sf.read(sorted((corpus_dir / "wavs").glob("*.wav"))[0], dtype="float32")[0]))
    a, b = vocode(shipped, mel, nfe=2).wave, vocode(run, mel, nfe=2).wave
    assert float((a - b).abs().max()) < 1e-2 * max(float(b.abs().max()), 1e-3)
    # a file that does not match its manifest is refused; so is a part that is not there
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its manifest"):
        load_pretrained("voice", root=tmp_path)
    with pytest.raises(CheckpointError, match="holds no shipped model"):
        load_pretrained("nobody", root=tmp_path)


def _bad(args, capsys, out):
    assert main(["vocode", *args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and not out.exists() and not out.with_suffix(".png").exists()
    return err[0]


def test_bad_input_is_one_line_and_writes_nothing(tiny_run, wav, tmp_path, capsys):
    out = tmp_path / "o.wav"
    run = str(tiny_run)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(200)))
    assert "cannot read WAV" in _bad([run, "--wav", str(corrupt)], capsys, out)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    assert "no samples" in _bad([run, "--wav", str(empty)], capsys, out)
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(300, np.float32), 16000)
    assert "too short" in _bad([run, "--wav", str(short)], capsys, out)
    assert "does not exist" in _bad([run, "--wav", str(tmp_path / "missing.wav")], capsys, out)
    np.save(tmp_path / "bins.npy", np.zeros((40, 10), np.float32))
    assert "(80, frames)" in _bad([run, "--mel", str(tmp_path / "bins.npy")], capsys, out)
    nan = np.zeros((80, 10), np.float32)
    nan[3, 4] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    assert "NaN" in _bad([run, "--mel", str(tmp_path / "nan.npy")], capsys, out)
    np.save(tmp_path / "one.npy", np.zeros((80, 1), np.float32))
    assert "at least 2" in _bad([run, "--mel", str(tmp_path / "one.npy")], capsys, out)
    assert "--project must be >= 0" in _bad([run, "--wav", str(wav), "--project", "-1"], capsys, out)
    assert "--refine must be >= 0" in _bad([run, "--wav", str(wav), "--refine", "-2"], capsys, out)


def test_other_rates_and_stereo_are_converted_with_a_note(tiny_run, wav, tmp_path, capsys):
    import soxr

    x, sr = sf.read(wav, dtype="float32")
    low = tmp_path / "8k.wav"
    sf.write(low, soxr.resample(x, sr, 8000), 8000)
    out = tmp_path / "from8k.wav"
    assert main(["vocode", str(tiny_run), "--wav", str(low), "--out", str(out), "--quiet", "--nfe", "1"]) == 0
    assert "resampled to 16000 Hz" in capsys.readouterr().err
    assert sf.info(out).samplerate == 16000 and abs(sf.info(out).frames - len(x)) <= 512
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([x, 0.5 * x], axis=1), sr)
    out2 = tmp_path / "fromstereo.wav"
    assert main(["vocode", str(tiny_run), "--wav", str(stereo), "--out", str(out2), "--quiet", "--nfe", "1"]) == 0
    assert "mixed down to mono" in capsys.readouterr().err and sf.info(out2).channels == 1


def test_a_loud_output_is_scaled_not_clipped(tiny_run, wav, tmp_path, capsys, monkeypatch):
    import holdsgm.runs.inference as inference

    real = inference.vocoder_sample
    monkeypatch.setattr(inference, "vocoder_sample", lambda *a, **k: 0 * real(*a, **k) + torch.linspace(
        -2.5, 2.0, real(*a, **k).shape[-1]))
    out = tmp_path / "loud.wav"
    assert main(["vocode", str(tiny_run), "--wav", str(wav), "--out", str(out), "--quiet", "--nfe", "1",
                 "--refine", "0"]) == 0
    assert "scaled by 0.400" in capsys.readouterr().err
    got = sf.read(out)[0]
    assert np.abs(got).max() == pytest.approx(PEAK, abs=1e-4) and np.sum(np.abs(got) >= 1.0) == 0
    # the shape is kept: a straight line, not flattened at the ends
    assert np.allclose(np.diff(got), np.diff(got).mean(), atol=1e-4)


def test_refine_brings_the_output_mel_to_the_input(tiny_run, corpus_dir):
    """The mel-consistency projection after the SDE: the output's mel moves to the input's, the length stays."""
    from holdsgm.audio import log_mel

    mel = log_mel(torch.from_numpy(sf.read(sorted((corpus_dir / "wavs").glob("*.wav"))[0], dtype="float32")[0]))
    run = load_run(tiny_run)
    raw, refined = vocode(run, mel, nfe=1, refine=0), vocode(run, mel, nfe=1, refine=16)
    assert raw.refine == 0 and refined.refine == 16 and raw.wave.shape == refined.wave.shape
    err = [float((log_mel(v.wave / v.gain) - mel).abs().mean()) for v in (raw, refined)]
    assert err[1] < 0.5 * err[0], err
    with pytest.raises(Exception, match="refine"):
        vocode(run, mel, nfe=1, refine=-1)


def test_project_inside_the_sampler(tiny_run, corpus_dir, monkeypatch):
    """GLA-Grad: every sampler step's data prediction goes through the mel projection (one call per step,
    towards the input's mel), which changes the output; the last evaluation's prediction is not projected."""
    import holdsgm.audio as audio
    from holdsgm.audio import log_mel

    mel = log_mel(torch.from_numpy(sf.read(sorted((corpus_dir / "wavs").glob("*.wav"))[0], dtype="float32")[0]))
    run = load_run(tiny_run)
    plain = vocode(run, mel, nfe=3, sampler="exp1", refine=0)
    calls, real = [], audio.mel_consistent

    def counted(wave, target, n_iter, **kw):
        calls.append((tuple(wave.shape), n_iter, bool(torch.equal(target.reshape(mel.shape), mel))))
        return real(wave, target, n_iter, **kw)

    monkeypatch.setattr(audio, "mel_consistent", counted)
    projected = vocode(run, mel, nfe=3, sampler="exp1", refine=0, project=4)
    assert calls == [((1, mel.shape[1] * 256), 4, True)] * 2  # exp1 at 3 NFE: two steps, then the output
    assert projected.wave.shape == plain.wave.shape and bool(torch.isfinite(projected.wave).all())
    assert not torch.allclose(projected.wave, plain.wave)
    with pytest.raises(Exception, match="project"):
        vocode(run, mel, nfe=1, project=-1)
    from holdsgm.tasks import vocoder_sample

    with pytest.raises(Exception, match="STFT settings"):  # never a silent default sample rate
        vocoder_sample(run.eps_model, run.sde, mel[None], hop=256, nfe=3, project=4)
    # defaults: refine=0 alone is the SDE's sample (no projection anywhere); otherwise DEFAULT_PROJECT per step
    from holdsgm.runs.inference import DEFAULT_PROJECT, DEFAULT_REFINE

    calls.clear()
    assert torch.equal(vocode(run, mel, nfe=3, sampler="exp1", refine=0).wave, plain.wave) and calls == []
    v = vocode(run, mel, nfe=3, sampler="exp1")
    assert (v.project, v.refine) == (DEFAULT_PROJECT, DEFAULT_REFINE)
    assert [c[1] for c in calls] == [DEFAULT_PROJECT] * 2 + [DEFAULT_REFINE]
