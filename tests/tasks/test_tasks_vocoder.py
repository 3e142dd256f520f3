"""The SDE vocoder end to end on a 4-utterance flite corpus: speech training through the trainer (VP, CLD,
HOLD; the frame-domain design with its spectral prior, and the waveform-domain DiffWave with plain and
PriorGrad conditioning), resume, stage two (Lay et al. 2023), ``holdsgm vocode``."""

import json

import numpy as np
import pytest
import torch

from holdsgm.audio import PriorGradNet, SpectralNet, l2_loss, log_mel, max_frame_energy, mrstft_loss, random_segments
from holdsgm.cli.main import main
from holdsgm.engine import load_checkpoint
from holdsgm.errors import CheckpointError, ConfigError
from holdsgm.runs import load_config, load_run, make_engine, train
from holdsgm.runs.build import load_split
from holdsgm.runs.inference import vocode, vocoder_defaults
from holdsgm.samplers import PerSampleNoise
from holdsgm.tasks import vocoder_sample, vocoder_times

TINY = ["model.residual_channels=6", "model.layers=3", "model.dilation_cycle=3", "model.cond_channels=4",
        "model.emb_dim=16", "data.segment_frames=6", "train.batch_size=2", "train.log_every=1",
        "train.ckpt_every=2", "train.warmup_steps=1", "train.tensorboard=false"]


#: the frame-domain network (FrameNet on MDCT coefficients), tiny
TINY_FRAME = ["model.dim=16", "model.layers=1", "model.kernel=3", "model.mult=2", "model.emb_dim=16",
              "data.segment_frames=6", "train.batch_size=2", "train.log_every=1", "train.ckpt_every=2",
              "train.warmup_steps=1", "train.tensorboard=false"]


def tiny(corpus_dir, preset="vocoder-wave", *extra, steps=3):
    """A tiny config of ``preset``: DiffWave for the waveform preset, FrameNet for the frame-domain ones."""
    base = TINY if preset == "vocoder-wave" else TINY_FRAME
    return load_config(preset, [*base, f"data.path={corpus_dir}", f"train.steps={steps}", *extra])


def losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "stats.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def hold_run(corpus_dir, tmp_path_factory):
    """A tiny HOLD + PriorGrad vocoder trained for 4 steps."""
    run = tmp_path_factory.mktemp("vocoder") / "hold"
    train(tiny(corpus_dir, steps=4), run, verbose=False)
    return run


@pytest.fixture(scope="module")
def frame_run(corpus_dir, tmp_path_factory):
    """A tiny frame-domain HOLD vocoder (the shipped design) trained for 4 steps."""
    run = tmp_path_factory.mktemp("vocoder") / "frame-hold"
    train(tiny(corpus_dir, "vocoder-hold", steps=4), run, verbose=False)
    return run


@pytest.mark.parametrize("sde,n", [("vp", 1), ("cld", 2), ("hold", 3)])
def test_tiny_frame_vocoder_trains_with_each_sde(corpus_dir, tmp_path, sde, n):
    """The shipped design: the SDE on whitened MDCT coefficients (256 per frame), FrameNet conditioned on the
    mel; it trains (finite losses, the weights move from their start) and ``vocode`` gives a finite wave of
    frames * hop samples, never clipped. (That training lowers a loss: the stage-two test below.)"""
    cfg = tiny(corpus_dir, f"vocoder-{sde}", "train.lr=3e-3", steps=6)
    result = train(cfg, tmp_path / sde, verbose=False)
    assert result.complete and result.step == 6 and np.isfinite(losses(tmp_path / sde)).all()
    run = load_run(tmp_path / sde, which="model")
    start = make_engine(cfg, tmp_path / f"{sde}-start", verbose=False)
    try:
        moved = [not torch.equal(v, run.net.state_dict()[k]) for k, v in start.net.state_dict().items()]
    finally:
        start.close()
    assert sum(moved) >= len(moved) // 2
    assert run.sde.order == n and run.net.in_channels == n * 256 and run.net.out_channels == 256
    assert isinstance(run.eps_model.net, SpectralNet) and run.dataset_info.audio["spectral_scale"] > 0
    assert not run.eps_model.mixed and 0.3 < run.dataset_info.data_var < 3  # the whitened coefficients' variance
    mel = log_mel(torch.from_numpy(load_split(cfg.data, "test")[0].wave))
    out = vocode(run, mel, nfe=3)
    assert out.wave.shape == (mel.shape[-1] * 256,) and torch.isfinite(out.wave).all()
    assert out.wave.abs().max() <= 0.999 and out.sr == 16000 and out.nfe == 3


def test_the_mixed_score_reaches_the_vocoder_task(corpus_dir, tmp_path):
    """model.mixed_score is used in training (the task's eps model) and saved for inference; the vocoder tasks
    ignored it before, so a run said 'mixed' but was trained without."""
    cfg = tiny(corpus_dir, "vocoder-hold", "model.mixed_score=true", steps=2)
    trainer = make_engine(cfg, tmp_path / "mixed", verbose=False)
    try:
        em = trainer.task.eps_model(trainer.forward)
        assert em.mixed and em.data_var == pytest.approx(trainer.task.data_var) and 0.3 < em.data_var < 3
        trainer.fit()
    finally:
        trainer.close()
    run = load_run(tmp_path / "mixed")
    assert run.eps_model.mixed and run.eps_model.data_var == pytest.approx(em.data_var)


@pytest.mark.parametrize("sde,n", [("vp", 1), ("hold", 3)])
def test_tiny_wave_vocoder_trains_with_each_sde(corpus_dir, tmp_path, sde, n):
    cfg = tiny(corpus_dir, "vocoder-wave", f"sde.name={sde}", "model.conditioning=plain")
    result = train(cfg, tmp_path / sde, verbose=False)
    assert result.complete and result.step == 3 and np.isfinite(losses(tmp_path / sde)).all()
    run = load_run(tmp_path / sde)
    assert run.sde.order == n and run.net.in_channels == n and run.net.out_channels == 1
    assert run.dataset_info.data_shape == (1, 6 * 256) and run.dataset_info.audio["energy_max"] is None
    assert not isinstance(run.eps_model.net, PriorGradNet)
    mel = log_mel(torch.from_numpy(load_split(cfg.data, "test")[0].wave))
    out = vocode(run, mel, nfe=3)  # the config's sampler and grid (CLD: a quadratic grid)
    assert out.wave.shape == (mel.shape[-1] * 256,) and torch.isfinite(out.wave).all()
    assert out.wave.abs().max() <= 0.999 and out.sr == 16000 and out.nfe == 3


def test_speech_training_resumes_bit_for_bit(corpus_dir, tmp_path):
    cfg = tiny(corpus_dir, "vocoder-hold", steps=4)
    train(cfg, tmp_path / "straight", verbose=False)
    train(tiny(corpus_dir, "vocoder-hold", steps=2), tmp_path / "resumed", verbose=False)
    # (the frame-domain preset: the spectral scale is recomputed identically on resume)
    result = train(cfg, tmp_path / "resumed", verbose=False)
    assert result.resumed_from == 2
    assert losses(tmp_path / "straight") == losses(tmp_path / "resumed")


def test_priorgrad_whitens_the_state(corpus_dir, tmp_path, hold_run):
    """The network sees sigma * u~ (the unwhitened noisy wave), the SDE runs on u~ = u / sigma, and
    energy_max is the training mels' largest frame energy."""
    run = load_run(hold_run)
    pg = run.eps_model.net
    assert isinstance(pg, PriorGradNet) and pg.net is run.net
    train_split = load_split(run.config.data, "train")
    assert pg.energy_max == pytest.approx(max_frame_energy(train_split.mel(i) for i in range(len(train_split))))
    _, mel = random_segments(train_split, 2, 6, seed=3)
    u, t = torch.randn(2, 3, 6 * 256), torch.full((2,), 0.4)
    seen = {}
    handle = run.net.register_forward_hook(lambda m, args, out: seen.setdefault("u", args[0]))
    pg(u, t, mel)
    handle.remove()
    sigma = pg.std(mel)
    assert sigma.shape == (2, 1, 6 * 256) and 0.1 <= float(sigma.min()) and float(sigma.max()) <= 1
    torch.testing.assert_close(seen["u"], u * sigma)

    trainer = make_engine(tiny(corpus_dir, "vocoder-wave", steps=1), tmp_path / "pg", verbose=False)
    try:
        pg_net = trainer.task.eps_model(trainer.forward).net  # the task's PriorGrad wrapper of the network
        assert pg_net.energy_max == pytest.approx(pg.energy_max)
    finally:
        trainer.close()


def test_vocoder_times_and_defaults(hold_run):
    run = load_run(hold_run)
    ts, steps = vocoder_times(run.sde, 1, "exp1", "edm")
    assert steps == 0 and ts.tolist() == [run.sde.T]
    ts, steps = vocoder_times(run.sde, 6, "exp1", "edm")
    assert steps == 5 and len(ts) == 6 and ts[0] == run.sde.T and bool((ts[1:] < ts[:-1]).all())
    assert vocoder_times(run.sde, 6, "exp2s", "edm")[1] == 2  # 2 evaluations per step + the last one
    assert vocoder_defaults(run) == {"nfe": 50, "sampler": "exp1", "grid": "edm"}  # the wave preset's sample section
    # a spec's own options count (a multistep spec evaluates once per step) and its grid wins
    assert vocoder_times(run.sde, 6, "exp2s:multistep=true", "edm")[1] == 5
    assert torch.equal(vocoder_times(run.sde, 6, "exp1:grid=logsnr", "edm")[0],
                       vocoder_times(run.sde, 6, "exp1", "logsnr")[0])
    # the adaptive ODE integrates from T to the default stop with its own steps (it was refused before)
    from holdsgm.samplers import DEFAULT_SIGMA_MIN, time_at_noise_level

    ts, steps = vocoder_times(run.sde, 4, "ode", "edm")
    assert steps is None and ts.tolist() == [run.sde.T, time_at_noise_level(run.sde, DEFAULT_SIGMA_MIN)]
    with pytest.raises(ConfigError, match="unknown sampler"):
        vocoder_times(run.sde, 4, "bogus", "edm")


@pytest.mark.parametrize("which_run", ["hold_run", "frame_run"])
def test_stage_two_reduces_the_k_step_loss_on_a_fixed_batch(which_run, request):
    run = load_run(request.getfixturevalue(which_run), which="model")
    run.net.requires_grad_(True).train()
    ds = load_split(run.config.data, "train")
    wave, mel = random_segments(ds, 2, 6, seed=11)
    noise_seeds = [5, 6]

    def k_step_loss():
        x = vocoder_sample(run.eps_model, run.sde, mel, hop=256, nfe=2, sampler="exp1", grid="edm",
                           noise=PerSampleNoise(noise_seeds), grad=True)
        return l2_loss(x, wave) + mrstft_loss(x, wave)

    torch.manual_seed(0)
    opt = torch.optim.Adam(run.net.parameters(), lr=1e-2)
    history = []
    for _ in range(15):
        loss = k_step_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    with torch.no_grad():
        final = k_step_loss().item()
    assert np.isfinite(history).all() and final < 0.9 * history[0]


def test_stage_two_run_starts_from_stage_one_and_sets_the_vocoder_defaults(frame_run, corpus_dir, tmp_path):
    hold_run = frame_run
    s2 = ["stage2.enabled=true", f"stage2.init={hold_run}", "stage2.nfe=3", "train.lr=1e-3"]
    cfg = tiny(corpus_dir, "vocoder-hold-stage2", *s2, steps=2)
    assert cfg.stage2.sampler == "exp1" and cfg.stage2.grid == "edm"
    trainer = make_engine(cfg, tmp_path / "s2", verbose=False)
    try:
        init = load_checkpoint(hold_run)
        for k, v in trainer.ema.model.state_dict().items():  # starts from the stage-one EMA weights
            torch.testing.assert_close(v, init.ema[k])
        assert trainer.task.origin["init_step"] == 4
        result = trainer.fit()
    finally:
        trainer.close()
    assert result.complete and np.isfinite(losses(tmp_path / "s2")).all()
    run = load_run(tmp_path / "s2")
    assert vocoder_defaults(run) == {"nfe": 3, "sampler": "exp1", "grid": "edm"}
    assert load_checkpoint(tmp_path / "s2").state["stage2_origin"]["init_step"] == 4
    # resuming a stage-two run uses its own checkpoint (the init is not needed any more)
    more = tiny(corpus_dir, "vocoder-hold-stage2", *s2[:1], "stage2.init=/nonexistent", *s2[2:], steps=3)
    assert train(more, tmp_path / "s2", verbose=False).resumed_from == 2
    assert load_checkpoint(tmp_path / "s2").state["stage2_origin"]["init_step"] == 4
    # a stage-two config whose network differs from the init run's
    bad = tiny(corpus_dir, "vocoder-hold-stage2", *s2, "model.dim=8", steps=1)
    with pytest.raises(CheckpointError, match="stage2.init.*model settings"):
        train(bad, tmp_path / "bad", verbose=False)
    missing = tiny(corpus_dir, "vocoder-hold-stage2", *s2[:1], f"stage2.init={tmp_path / 'none'}", steps=1)
    with pytest.raises(CheckpointError, match="stage2.init"):
        train(missing, tmp_path / "missing", verbose=False)


def test_vocode_cli_writes_wav_of_the_right_length_and_rate(hold_run, corpus_dir, tmp_path, capsys):
    import soundfile as sf

    wav = sorted((corpus_dir / "wavs").glob("*.wav"))[0]
    ref = sf.read(wav)[0]
    out = tmp_path / "out" / "voc.wav"
    code = main(["vocode", str(hold_run), "--wav", str(wav), "--out", str(out), "--nfe", "2", "--quiet",
                 "--metrics"])
    assert code == 0
    info = sf.info(out)
    assert info.samplerate == 16000 and info.channels == 1 and info.frames == len(ref) // 256 * 256
    assert out.with_suffix(".png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "NFE 2" in printed and "pesq" in printed and "mrstft" in printed

    mel = log_mel(torch.from_numpy(ref.astype(np.float32)))[None].numpy()  # (1, 80, frames)
    np.save(tmp_path / "m.npy", mel)
    out2 = tmp_path / "from_mel.wav"
    assert main(["vocode", str(hold_run), "--mel", str(tmp_path / "m.npy"), "--out", str(out2), "--quiet",
                 "--nfe", "1", "--sampler", "sscs", "--seed", "3", "--no-figure"]) == 0
    assert sf.info(out2).frames == mel.shape[-1] * 256 and not out2.with_suffix(".png").exists()
    # any sampler spec, and the adaptive ode, as everywhere else
    for spec in ("unipc3:ref_var=0.01", "ode:rtol=0.01,atol=0.01"):
        spec_out = tmp_path / f"{spec.split(':')[0]}.wav"
        assert main(["vocode", str(hold_run), "--mel", str(tmp_path / "m.npy"), "--out", str(spec_out), "--quiet",
                     "--nfe", "4", "--sampler", spec, "--no-figure"]) == 0
        assert sf.info(spec_out).frames == mel.shape[-1] * 256
        assert "NFE" in capsys.readouterr().out
    # the same seed gives the same audio
    out3 = tmp_path / "again.wav"
    main(["vocode", str(hold_run), "--mel", str(tmp_path / "m.npy"), "--out", str(out3), "--quiet", "--nfe", "1",
          "--sampler", "sscs", "--seed", "3", "--no-figure"])
    assert np.array_equal(sf.read(out2)[0], sf.read(out3)[0])

    np.save(tmp_path / "bad.npy", np.zeros((40, 10), np.float32))
    assert main(["vocode", str(hold_run), "--mel", str(tmp_path / "bad.npy"), "--out", str(tmp_path / "b.wav")]) == 2
    assert "(80, frames)" in capsys.readouterr().err
    # metrics need a reference: refused before anything is written
    nometrics = tmp_path / "nometrics.wav"
    assert main(["vocode", str(hold_run), "--mel", str(tmp_path / "m.npy"), "--out", str(nometrics),
                 "--metrics"]) == 2
    assert "--metrics needs --wav" in capsys.readouterr().err and not nometrics.exists()


@pytest.mark.parametrize("overrides,needle", [
    (["data.path=null"], "data.path"),
    (["data.n=10"], "unknown config key 'data.n'"),
    (["data.conditional=true"], "data.conditional"),
    (["stage2.enabled=true"], "stage2.init"),
    (["stage2.enabled=true", "stage2.init=RUN", "data.segment_frames=4"], "data.segment_frames"),
    (["stage2.sampler=ode"], "stage2.sampler"),
    (["model.hop=128"], None),  # accepted here, refused when the network is built
])
def test_speech_config_errors_name_the_key(corpus_dir, overrides, needle):
    if needle is None:
        cfg = tiny(corpus_dir, "vocoder-wave", *overrides)
        from holdsgm.runs.build import build_components

        with pytest.raises(ConfigError, match="model.hop"):
            build_components(cfg)
        return
    with pytest.raises(ConfigError, match=needle):
        tiny(corpus_dir, "vocoder-wave", *overrides)


def test_conditioning_needs_speech():
    with pytest.raises(ConfigError, match="model.kind: speech data needs a speech network"):
        load_config(None, ["data.name=speech", "data.path=somewhere"])
    with pytest.raises(ConfigError, match="model.conditioning"):
        load_config("toy-hold", ["model.conditioning=priorgrad"])
    with pytest.raises(ConfigError, match="stage2.enabled"):
        load_config("toy-hold", ["stage2.enabled=true", "stage2.init=x"])
    with pytest.raises(ConfigError, match="framenet.*spectral"):
        load_config("vocoder-hold", ["model.conditioning=priorgrad"])


def _score_state(name: str, b: int, d: int, t: float, seed: int):
    """(sde, u, t, score, E[x0 | u_t]) for a random state and score of the SDE ``name``."""
    from holdsgm.sde import make_sde
    from holdsgm.sde.posterior import posterior_mean

    sde = make_sde(name)
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, sde.order, d, generator=g)
    ts = torch.full((b,), t, dtype=torch.float64)
    s = 0.3 * torch.randn(b, 1, d, generator=g)
    return sde, u, ts, s, posterior_mean(sde, u, ts, s)


@pytest.mark.parametrize("name", ["vp", "cld", "hold"])
def test_clipped_score_clips_the_data_prediction_only(name):
    from holdsgm.sde import clipped_score
    from holdsgm.sde.posterior import posterior_mean

    sde, u, t, s, xhat = _score_state(name, 3, 40, 0.3, 0)
    torch.testing.assert_close(clipped_score(lambda u, t: s, sde, 1e9)(u, t), s, rtol=1e-4, atol=1e-4)
    bound = 0.5 * float(xhat.abs().max())
    clipped = posterior_mean(sde, u, t, clipped_score(lambda u, t: s, sde, bound)(u, t))
    torch.testing.assert_close(clipped, xhat.clamp(-bound, bound), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["vp", "cld", "hold"])
def test_projected_score_makes_the_sampler_see_the_projected_prediction(name):
    """projected_score: the identity leaves the score as it is; any map of E[x0 | u_t] is exactly what the
    returned score's data prediction is, and it receives the prediction and the time."""
    from holdsgm.sde.posterior import posterior_mean, projected_score

    sde, u, t, s, xhat = _score_state(name, 2, 24, 0.4, 1)
    torch.testing.assert_close(projected_score(lambda u, t: s, sde, lambda x, t: x)(u, t), s, rtol=1e-4, atol=1e-4)
    seen = []

    def flip(x, tt):
        seen.append((x.clone(), tt))
        return 0.5 - x.flip(-1)

    out = posterior_mean(sde, u, t, projected_score(lambda u, t: s, sde, flip)(u, t))
    torch.testing.assert_close(out, 0.5 - xhat.flip(-1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(seen[0][0], xhat)
    torch.testing.assert_close(seen[0][1], t)
