"""Text to speech as a user meets it: tiny VP / CLD / HOLD models train through the trainer on a 4-utterance
corpus and say a sentence (a WAV of plausible length through the shipped vocoder), ResGrad as a plug-in, the
shipped voice right after install, and bad input (one line, exit status 2, nothing written)."""

import types

import numpy as np
import pytest
import soundfile as sf
import torch

from holdsgm.cli.main import main
from holdsgm.errors import ConfigError, HoldsgmError
from holdsgm.runs import load_config, load_run, train
from holdsgm.runs.inference import PEAK
from holdsgm.runs.pretrained import DEFAULT_VOICE, PRETRAINED_DIR, load_pretrained, read_manifest
from holdsgm.runs.tts import SENTENCE_PAUSE, check_vocoder, synthesize, text_to_mel

TINY = ["model.enc_dim=16", "model.enc_layers=1", "model.enc_heads=2", "model.enc_ffn=32", "model.dur_dim=8",
        "model.dims=[8,12]", "model.blocks=1", "model.kernel=3", "model.emb_dim=16", "data.segment_frames=16",
        "train.batch_size=2", "train.steps=3", "train.ckpt_every=3", "train.warmup_steps=1",
        "train.tensorboard=false"]


@pytest.fixture(scope="module")
def tts_runs(corpus_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("tts")
    runs = {}
    for name in ("vp", "cld", "hold"):
        runs[name] = root / name
        train(load_config(f"tts-{name}", [*TINY, f"data.path={corpus_dir}"]), runs[name], verbose=False)
    return runs


@pytest.fixture(scope="module")
def vocoder():
    return load_pretrained(DEFAULT_VOICE, "vocoder")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vp", "cld", "hold"])
def test_each_sde_trains_and_speaks_a_wav_of_plausible_length(tts_runs, vocoder, name):
    run = load_run(tts_runs[name])
    assert run.net.kind == "itotts" and run.sde.order == {"vp": 1, "cld": 2, "hold": 3}[name]
    r = synthesize(run, vocoder, "Hello world. The cat sat on the mat.", nfe=2)
    assert len(r["parts"]) == 2 and r["sr"] == 16000
    hop = run.dataset_info.speech["hop"]
    frames = sum(int(p["durations"].sum()) for p in r["parts"])
    assert frames == sum(p["mel"].shape[1] for p in r["parts"])
    assert r["wave"].size == frames * hop + int(SENTENCE_PAUSE * r["sr"])  # the mel's length, one pause
    assert np.all(np.isfinite(r["wave"])) and np.abs(r["wave"]).max() <= PEAK + 1e-6
    assert np.abs(r["wave"]).max() > 0
    # mu_y alone (--nfe 0) is the encoder's means for the same predicted durations
    alone = text_to_mel(run, "Hello world.", nfe=0)[0]
    assert alone["mel"].shape == r["parts"][0]["mel"].shape and bool((alone["mel"] == alone["mu_y"]).all())


@pytest.mark.slow
def test_resgrad_is_a_plug_in_on_a_trained_run(tts_runs, corpus_dir, tmp_path, vocoder, capsys):
    rg = tmp_path / "resgrad"
    cfg = load_config("resgrad-hold", ["model.dims=[8,12]", "model.emb_dim=16", "model.kernel=3",
                                       "data.segment_frames=16", "train.batch_size=2", "train.steps=2",
                                       "train.ckpt_every=2", "train.warmup_steps=1", f"data.path={corpus_dir}",
                                       f"data.base={tts_runs['hold']}"])
    train(cfg, rg, verbose=False)
    run, refiner = load_run(tts_runs["hold"]), load_run(rg)
    assert refiner.dataset_info.speech["mel_mean"] == run.dataset_info.speech["mel_mean"]  # the base's units
    r = synthesize(run, vocoder, "Hello world.", nfe=2, resgrad=refiner)
    assert r["wave"].size == int(r["parts"][0]["durations"].sum()) * 256
    out = tmp_path / "rg.wav"
    assert main(["tts", str(tts_runs["hold"]), "--resgrad", str(rg), "--nfe", "2", "--text", "Hi there.",
                 "--out", str(out), "--quiet"]) == 0
    assert "ResGrad NFE 2" in capsys.readouterr().out and out.exists() and out.with_suffix(".png").exists()
    # a ResGrad run needs a base run; a vocoder is not a base
    with pytest.raises(ConfigError, match="data.base"):
        load_config("resgrad-hold", ["data.base=null"])


@pytest.mark.slow
def test_resgrad_with_precond_trains_on_the_shipped_model(corpus_dir, tmp_path, vocoder):
    """data.base: pretrained refines the shipped text-to-speech model's mu_y (its mel units are taken); the
    run records model.precond and loads it back, so its untrained network keeps the output near mu_y."""
    rg = tmp_path / "resgrad"
    cfg = load_config("resgrad-hold", ["model.dims=[8,12]", "model.emb_dim=16", "model.kernel=3",
                                       "data.segment_frames=16", "train.batch_size=2", "train.steps=2",
                                       "train.ckpt_every=2", "train.warmup_steps=1", f"data.path={corpus_dir}",
                                       "data.base=pretrained", "model.precond=true"])
    train(cfg, rg, verbose=False)
    base, refiner = load_pretrained(DEFAULT_VOICE, "tts"), load_run(rg)
    assert refiner.eps_model.precond and refiner.eps_model.data_var == 1.0
    assert refiner.dataset_info.speech["mel_mean"] == base.dataset_info.speech["mel_mean"]
    r = synthesize(base, vocoder, "Hello world.", nfe=2, resgrad=refiner)
    mel, mu = r["parts"][0]["mel"], r["parts"][0]["mu_y"]
    assert mel.shape == mu.shape and bool(torch.isfinite(mel).all())
    # two steps of training: the data prediction stays within a few residual scales of mu_y (eps-prediction
    # from t = T moves it by ~1 / kappa_T times the network's error)
    assert float((mel - mu).abs().mean()) < 1.0
    with pytest.raises(ConfigError, match="data.base"):
        train(load_config("resgrad-hold", [f"data.path={corpus_dir}", "data.base=pretrained:nobody"]),
              tmp_path / "none", verbose=False)


def test_the_shipped_voice_speaks_right_after_install(tmp_path, capsys):
    man = read_manifest(PRETRAINED_DIR / DEFAULT_VOICE)
    assert "tts" in man and "holdsgm train tts-" in man["tts"]["trained_by"]["command"]
    assert man["tts"]["trained_by"]["commit"] and man["tts"]["metrics"]
    size = sum(p.stat().st_size for p in PRETRAINED_DIR.rglob("*") if p.is_file())
    assert size <= 25 * 2**20
    out = tmp_path / "hello.wav"
    assert main(["tts", "--text", "Hello world.", "--out", str(out), "--quiet"]) == 0
    assert "shipped voice" in capsys.readouterr().err
    wave, sr = sf.read(out)
    assert sr == 16000 and 0.4 < len(wave) / sr < 3.0  # "Hello world." takes about a second
    assert np.sqrt(np.mean(wave**2)) > 0.01 and np.abs(wave).max() <= PEAK + 1e-4


def _bad(args, capsys, out):
    assert main(["tts", *args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not out.exists() and not out.with_suffix(".png").exists()
    return err[-1]


@pytest.mark.slow
def test_bad_input_is_one_line_and_writes_nothing(tts_runs, tmp_path, capsys):
    run, out = str(tts_runs["hold"]), tmp_path / "out.wav"
    assert "empty" in _bad([run, "--text", "  "], capsys, out)
    assert "no letters" in _bad([run, "--text", "?!... --"], capsys, out)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9".encode("latin-1"))
    assert "not UTF-8" in _bad([run, "--text-file", str(latin1)], capsys, out)
    assert "no such file" in _bad([run, "--text-file", str(tmp_path / "missing.txt")], capsys, out)
    assert "not a vocoder" in _bad([run, "--vocoder", run, "--text", "Hi."], capsys, out)
    assert "must name a .wav" in _bad([run, "--text", "Hi."], capsys, tmp_path / "out.mp3")


def test_a_vocoder_of_other_features_is_refused():
    speech = {"sr": 16000, "hop": 256, "n_fft": 1024, "n_mels": 80, "fmin": 0.0, "fmax": 8000.0}
    info = lambda **kw: types.SimpleNamespace(is_speech=True, speech={**speech, **kw})
    tts = types.SimpleNamespace(dataset_info=info())
    voc = lambda **kw: types.SimpleNamespace(dataset_info=info(**kw), net=types.SimpleNamespace(kind="framenet"),
                                             run_dir="VOC")
    check_vocoder(tts, voc())
    for kw in ({"sr": 22050}, {"n_mels": 100}, {"hop": 200}):
        with pytest.raises(HoldsgmError, match="same features"):
            check_vocoder(tts, voc(**kw))


@pytest.mark.slow
def test_long_text_is_split_at_sentences_and_unknown_characters_dropped(tts_runs, vocoder, monkeypatch):
    from holdsgm.text import frontend

    got: list[str] = []
    monkeypatch.setattr(frontend.log, "warning", lambda msg, *a: got.append(msg % a))
    run = load_run(tts_runs["hold"])
    text = " ".join(f"Sentence number {i} is here ☃." for i in range(12))
    r = synthesize(run, vocoder, text, nfe=1)
    assert len(r["parts"]) == 12 and all("☃" not in p["text"] for p in r["parts"])
    assert any("☃" in w for w in got)
