"""The training loop: determinism, resume, EMA, warm-up, NaN handling, image/conditional path."""

import math
from pathlib import Path

import pytest
import torch

from holdsgm.engine import ema_decay_at, find_checkpoint, list_checkpoints, load_checkpoint, lr_at
from holdsgm.engine.faults import NAN_AT_STEP, Faults
from holdsgm.errors import ConfigError, NumericsError
from holdsgm.runs import load_run
from holdsgm.runs import make_engine as Trainer  # noqa: N812 - the engine of a run config
from holdsgm.runs import train as train_run
from run_helpers import losses, tiny_config


def test_lr_warmup_and_ema_decay_formulas():
    assert lr_at(0, 1e-3, 0) == 1e-3
    assert lr_at(0, 1e-3, 10) == pytest.approx(1e-4)
    assert lr_at(4, 1e-3, 10) == pytest.approx(5e-4)
    assert lr_at(9, 1e-3, 10) == lr_at(500, 1e-3, 10) == 1e-3
    assert ema_decay_at(0, 0.999, True) == pytest.approx(0.1)
    assert ema_decay_at(90, 0.999, True) == pytest.approx(0.91)
    assert ema_decay_at(10**6, 0.999, True) == 0.999
    assert ema_decay_at(0, 0.999, False) == 0.999


def test_stats_lr_follows_warmup(tmp_path):
    train_run(tiny_config(steps=6), tmp_path / "r", verbose=False)
    lrs = [r[3] for r in losses(tmp_path / "r")]
    base = tiny_config().train.lr
    assert lrs == pytest.approx([base / 3, 2 * base / 3, base, base, base, base])


def test_same_seed_same_losses_other_seed_differs(tmp_path):
    a = train_run(tiny_config(steps=8), tmp_path / "a", verbose=False)
    train_run(tiny_config(steps=8), tmp_path / "b", verbose=False)
    train_run(tiny_config("train.seed=1", steps=8), tmp_path / "c", verbose=False)
    assert a.complete and a.step == 8
    la, lb, lc = losses(tmp_path / "a"), losses(tmp_path / "b"), losses(tmp_path / "c")
    assert la == lb  # bitwise: same floats
    assert [x[1] for x in la] != [x[1] for x in lc]
    ca, cb = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    assert all(torch.equal(ca.ema[k], cb.ema[k]) for k in ca.ema)


def test_resume_continues_identically(tmp_path):
    """Stop a 16-step run after step 7 (as SIGTERM does: checkpoint of step 7, mid log interval), resume: the
    log reads exactly as an uninterrupted run's, including the interval averages around the resume point."""
    cfg = tiny_config("train.log_every=3", "train.ckpt_every=100", steps=16)
    train_run(cfg, tmp_path / "full", verbose=False)
    trainer = Trainer(cfg, tmp_path / "resumed", verbose=False)
    step = trainer.train_step

    def stop_after_7():
        out = step()
        if trainer.step == 7:
            trainer._stop = "SIGTERM"
        return out

    trainer.train_step = stop_after_7
    try:
        first = trainer.fit()
    finally:
        trainer.close()
    assert first.stopped_by == "SIGTERM" and first.checkpoint.name == "ckpt-00000007"
    second = train_run(cfg, tmp_path / "resumed", verbose=False)
    assert second.resumed_from == 7 and second.step == 16 and second.stopped_by is None
    assert losses(tmp_path / "resumed") == losses(tmp_path / "full")
    full, res = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "resumed")
    assert all(torch.equal(full.model[k], res.model[k]) for k in full.model)
    assert all(torch.equal(full.ema[k], res.ema[k]) for k in full.ema)


def test_extending_a_finished_run(tmp_path):
    train_run(tiny_config(steps=6), tmp_path / "a", verbose=False)
    res = train_run(tiny_config(steps=9), tmp_path / "a", verbose=False)
    assert res.resumed_from == 6 and res.step == 9
    train_run(tiny_config(steps=9), tmp_path / "b", verbose=False)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")  # log_every=1: every step logged either way


def test_training_times_are_drawn_by_blocks_as_a_pure_function_of_seed_and_step(tmp_path, monkeypatch):
    """Times and their kernels come a block of steps at a time (3 steps here): any step, in any order and
    in a fresh trainer, gets the same stratified times and the kernel sde.marginal gives them, and a run
    extended across block boundaries logs exactly as an uninterrupted one."""
    import holdsgm.tasks.hsm as hsm

    monkeypatch.setattr(hsm, "TIME_BLOCK", 96)  # batch 32: 3 steps per block
    cfg = tiny_config(steps=8)
    a, b = Trainer(cfg, tmp_path / "a", verbose=False), Trainer(cfg, tmp_path / "b", verbose=False)
    try:
        seq = [a.task.draws.times(s) for s in range(8)]
        for s in (6, 1, 7, 3, 0):
            t, k = b.task.draws.times(s)
            assert torch.equal(t, seq[s][0]) and torch.equal(k.phi, seq[s][1].phi)
            assert torch.equal(k.chol, seq[s][1].chol)
        sde, n = a.task.sde, cfg.train.batch_size
        for t, k in seq:
            strata = ((t - sde.eps) / (sde.T - sde.eps) * n).floor().long().sort().values
            assert torch.equal(strata, torch.arange(n))  # one time per 1/n-stratum
            ref = sde.marginal(t)
            torch.testing.assert_close(k.phi, ref.phi, rtol=1e-13, atol=0)
            torch.testing.assert_close(k.chol, ref.chol, rtol=1e-12, atol=0)
        assert len({float(t[0]) for t, _ in seq}) == 8  # every step its own offset
    finally:
        a.close()
        b.close()
    train_run(tiny_config(steps=4), tmp_path / "resumed", verbose=False)
    res = train_run(cfg, tmp_path / "resumed", verbose=False)
    assert res.resumed_from == 4 and res.step == 8
    train_run(cfg, tmp_path / "full", verbose=False)
    assert losses(tmp_path / "resumed") == losses(tmp_path / "full")


def test_completed_run_is_not_retrained(tmp_path):
    train_run(tiny_config(steps=5), tmp_path / "r", verbose=False)
    again = train_run(tiny_config(steps=5), tmp_path / "r", verbose=False)
    assert again.resumed_from == 5 and again.step == 5 and again.last_loss is None


def test_keep_last_k_checkpoints(tmp_path):
    train_run(
        tiny_config("train.ckpt_every=2", "train.keep_checkpoints=2", steps=9), tmp_path / "r", verbose=False
    )
    assert [s for s, _ in list_checkpoints(tmp_path / "r")] == [8, 9]


def test_ema_decay_zero_copies_the_model(tmp_path):
    train_run(tiny_config("train.ema_decay=0", steps=4), tmp_path / "r", verbose=False)
    ck = load_checkpoint(tmp_path / "r")
    assert all(torch.equal(ck.model[k], ck.ema[k]) for k in ck.model)
    train_run(tiny_config("train.ema_decay=0.9", steps=4), tmp_path / "s", verbose=False)
    ck = load_checkpoint(tmp_path / "s")
    assert any(not torch.equal(ck.model[k], ck.ema[k]) for k in ck.model)


def test_nan_loss_stops_with_step_and_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv(NAN_AT_STEP, "7")  # the 8th update's loss is NaN (the fault hook the CLI builds)
    with pytest.raises(NumericsError) as e:
        train_run(tiny_config(steps=20), tmp_path / "r", verbose=False, faults=Faults.from_env())
    msg = str(e.value)
    assert "step 8" in msg and "ckpt-00000005" in msg
    assert [s for s, _ in list_checkpoints(tmp_path / "r")] == [5]
    ck = load_checkpoint(tmp_path / "r")
    assert all(bool(torch.isfinite(v).all()) for v in [*ck.model.values(), *ck.ema.values()])
    assert max(r[0] for r in losses(tmp_path / "r")) == 7  # nothing logged for the poisoned step


def test_exploding_lr_never_writes_a_poisoned_checkpoint(tmp_path):
    with pytest.raises(NumericsError, match=r"step \d+"):
        train_run(
            tiny_config(
                "train.lr=1e30", "train.warmup_steps=0", "train.ckpt_every=1", "train.grad_clip=0", steps=30
            ),
            tmp_path / "r",
            verbose=False,
        )
    for _, path in list_checkpoints(tmp_path / "r"):
        ck = load_checkpoint(path)
        assert all(bool(torch.isfinite(v).all()) for v in [*ck.model.values(), *ck.ema.values()])


def test_unwritable_run_dir_is_one_line_oserror(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError) as e:
        train_run(tiny_config(steps=2), blocker / "run", verbose=False)
    assert "file/run" in str(e.value) and "\n" not in str(e.value)


def test_class_conditional_unet_with_label_dropout(tmp_path):
    from holdsgm.runs import load_config
    from holdsgm.runs.inference import class_labels, generate

    cfg = load_config(
        "digits-hold",
        [
            "model.channels=8",
            "model.channel_mult=[1]",
            "model.num_res_blocks=1",
            "model.attn_resolutions=[]",
            "model.mid_attention=false",
            "data.conditional=true",
            "train.label_dropout=0.2",
            "train.batch_size=8",
            "train.steps=3",
            "train.ckpt_every=3",
            "train.log_every=1",
            "train.tensorboard=false",
        ],
    )
    res = train_run(cfg, tmp_path / "r", verbose=False)
    assert res.step == 3 and math.isfinite(res.last_loss)
    run = load_run(tmp_path / "r")
    assert run.dataset_info.n_classes == 10 and run.dataset_info.data_shape == (1, 8, 8)
    labels = class_labels(run, 4, 3)
    gen = generate(run, 4, sampler="sscs", nfe=3, labels=labels, trajectory=2)  # EM diverges at 2 steps of HOLD
    assert gen.x.shape == (4, 1, 8, 8) and torch.isfinite(gen.x).all()
    assert gen.traj.shape == (3, 2, 3, 8, 8) and gen.traj_times[0] == run.sde.T
    from holdsgm.runs.figures import image_grid_figure, trajectory_figure

    assert trajectory_figure(gen.traj_times, gen.traj, 3, tmp_path / "traj.png").stat().st_size > 0
    assert image_grid_figure(gen.x, tmp_path / "grid.png").stat().st_size > 0
    with pytest.raises(ConfigError):
        class_labels(run, 4, 10)


def test_mlp_on_images_is_a_config_error(tmp_path):
    from holdsgm.runs import load_config
    from holdsgm.runs.config import Config

    d = load_config("digits-hold").to_dict()
    d["model"] = {"kind": "mlp"}
    with pytest.raises(ConfigError, match="unet"):
        Trainer(Config.from_dict(d), tmp_path / "r", verbose=False)
    assert find_checkpoint(tmp_path / "r") is None


@pytest.mark.parametrize("clip", [1e-6, 1e6])
def test_gradient_clipping_applies_above_the_threshold_only(tmp_path, clip):
    """train_step returns the norm before clipping; the gradients it stepped with (still held until the
    next step) have norm min(norm, clip)."""
    trainer = Trainer(tiny_config(f"train.grad_clip={clip}", steps=2), tmp_path / "r", verbose=False)
    try:
        _, gnorm = trainer.train_step()
        after = float(torch.nn.utils.get_total_norm([p.grad for p in trainer._params if p.grad is not None]))
    finally:
        trainer.close()
    assert gnorm > 1e-5
    assert after == pytest.approx(min(gnorm, clip), rel=1e-4)


def test_lr_schedules_after_warmup():
    """cosine / linear decay from lr after the warm-up to lr_min at the last step; constant stays."""
    kw = dict(lr=1e-3, warmup_steps=10, steps=110, lr_min=1e-5)
    assert lr_at(4, schedule="cosine", **{k: v for k, v in kw.items() if k != "lr"}, lr=1e-3) == pytest.approx(5e-4)
    for schedule in ("cosine", "linear"):
        assert lr_at(10, schedule=schedule, **kw) == pytest.approx(1e-3)
        assert lr_at(110, schedule=schedule, **kw) == pytest.approx(1e-5)
        lrs = [lr_at(k, schedule=schedule, **kw) for k in range(10, 111)]
        assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # non-increasing
    assert lr_at(60, schedule="cosine", **kw) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)
    assert lr_at(60, schedule="linear", **kw) == pytest.approx(1e-3 - (1e-3 - 1e-5) * 0.5)
    assert lr_at(60, schedule="constant", **kw) == 1e-3


def test_lr_schedule_reaches_the_stats(tmp_path):
    train_run(tiny_config("train.lr_schedule=cosine", "train.warmup_steps=2", "train.lr_min=0", steps=10),
              tmp_path / "r", verbose=False)
    lrs = [r[3] for r in losses(tmp_path / "r")]
    base = tiny_config().train.lr
    assert lrs[1] == pytest.approx(base) and lrs[-1] == pytest.approx(base * 0.5 * (1 + math.cos(math.pi * 7 / 8)))


def test_gradient_accumulation_gives_the_same_updates(tmp_path):
    """grad_accum splits each batch into micro-batches: the same updates up to float rounding."""
    torch.set_num_threads(1)
    train_run(tiny_config(steps=6), tmp_path / "one", verbose=False)
    train_run(tiny_config("train.grad_accum=4", steps=6), tmp_path / "four", verbose=False)
    a, b = losses(tmp_path / "one"), losses(tmp_path / "four")
    assert [r[0] for r in a] == [r[0] for r in b]
    assert [r[1] for r in a] == pytest.approx([r[1] for r in b], rel=1e-5)
    assert [r[2] for r in a] == pytest.approx([r[2] for r in b], rel=1e-4)
    with pytest.raises(ConfigError, match="grad_accum"):
        tiny_config("train.grad_accum=5")  # 32 rows do not split into 5


@pytest.mark.parametrize("extra", [["train.grad_accum=2", "train.lr_schedule=cosine"],
                                   ["train.lr_schedule=linear", "train.lr_min=1e-4"]])
def test_new_training_options_resume_bit_exactly(tmp_path, extra):
    """A run that lost its last checkpoint resumes from the one before and reproduces the losses exactly
    (the schedule is a function of the step, the micro-batches of the batch)."""
    import shutil

    torch.set_num_threads(1)
    cfg = tiny_config("train.ckpt_every=4", "train.keep_checkpoints=3", *extra, steps=10)
    train_run(cfg, tmp_path / "ref", verbose=False)
    reference = losses(tmp_path / "ref")
    shutil.rmtree(tmp_path / "ref" / "checkpoints" / "ckpt-00000010")
    shutil.rmtree(tmp_path / "ref" / "checkpoints" / "ckpt-00000008")
    res = train_run(cfg, tmp_path / "ref", verbose=False)
    assert res.resumed_from == 4 and losses(tmp_path / "ref") == reference


def test_random_flip_mirrors_images_and_resumes_exactly(tmp_path):
    from holdsgm.runs import load_config

    small = ["model.channels=8", "model.channel_mult=[1]", "model.num_res_blocks=1", "model.attn_resolutions=[]",
             "model.mid_attention=false", "train.batch_size=8", "train.log_every=1", "train.tensorboard=false",
             "train.warmup_steps=1", "train.ckpt_every=2", "data.random_flip=true"]
    torch.set_num_threads(1)
    trainer = Trainer(load_config("digits-hold", [*small, "train.steps=4"]), tmp_path / "t", verbose=False)
    task = trainer.task
    try:
        idx = task.sampler.batch_at(3)
        x0 = task.x.index_select(0, idx)
        flipped = task.batch(3).x0
        same = [bool(torch.equal(f, x)) for f, x in zip(flipped, x0)]
        mirrored = [bool(torch.equal(f, x.flip(-1))) for f, x in zip(flipped, x0)]
        assert all(s or m for s, m in zip(same, mirrored)) and 0 < sum(mirrored) < 8
        task.random_flip = False
        assert torch.equal(task.batch(3).x0, x0)  # the flip is the only difference
    finally:
        trainer.close()
    train_run(load_config("digits-hold", [*small, "train.steps=4"]), tmp_path / "ref", verbose=False)
    train_run(load_config("digits-hold", [*small, "train.steps=2"]), tmp_path / "res", verbose=False)
    train_run(load_config("digits-hold", [*small, "train.steps=4"]), tmp_path / "res", verbose=False)
    assert losses(tmp_path / "res") == losses(tmp_path / "ref")
    with pytest.raises(ConfigError, match="random_flip"):
        Trainer(tiny_config("data.random_flip=true", steps=2), tmp_path / "toy", verbose=False)


def test_warmup_longer_than_the_run_warns(tmp_path, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="holdsgm"):
        train_run(tiny_config("train.warmup_steps=500", steps=4), tmp_path / "r", verbose=False)
    assert "train.warmup_steps=500 is longer than the run" in caplog.text and "train.warmup_steps=" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="holdsgm"):
        train_run(tiny_config("train.warmup_steps=2", steps=4), tmp_path / "s", verbose=False)
    assert "warmup" not in caplog.text


def test_clipped_data_predictions_keep_a_half_trained_model_in_range(tmp_path):
    """A barely trained model's data prediction (x0 ~ (a^T u + s / ell) / kappa_t, kappa_T ~ 0.01) can be
    far outside the data: a data-prediction sampler then diverges (the range guard stops it). Clipped to
    the training data's range (recorded in the run, DDPM's clip_denoised) it stays in range."""
    from holdsgm.errors import NumericsError
    from holdsgm.runs.inference import generate

    train_run(tiny_config("model.hidden=128", "model.depth=3", "data.n=20000", "train.batch_size=512",
                          "train.warmup_steps=100", steps=20), tmp_path / "r", verbose=False)
    run = load_run(tmp_path / "r")
    bound = run.dataset_info.clip_bound
    assert bound is not None and 2.0 < bound < 4.0  # the largest |x| of the 8 Gaussians' training points
    with pytest.raises(NumericsError, match="plausible range"):
        generate(run, 500, sampler="exp2m-sde", nfe=50, clip=False)
    gen = generate(run, 500, sampler="exp2m-sde", nfe=50)
    assert torch.isfinite(gen.x).all() and float(gen.u.abs().max()) < 1000


def test_bf16_autocast_runs_on_the_cpu_and_fp16_does_not(tmp_path):
    """train.amp=bf16 autocasts the network on the CPU (its losses differ from float32's in the low bits but
    train alike); fp16 has no CPU autocast here and trains in float32, bit for bit as amp=none."""
    cfg = lambda amp: tiny_config(f"train.amp={amp}", steps=10)  # noqa: E731
    runs = {}
    for amp in ("none", "bf16", "fp16"):
        t = Trainer(cfg(amp), tmp_path / amp, verbose=False)
        runs[amp] = t.amp_dtype
        t.fit()
        t.close()
    assert runs == {"none": None, "bf16": torch.bfloat16, "fp16": None}
    ref, bf, fp = (losses(tmp_path / a) for a in ("none", "bf16", "fp16"))
    assert fp == ref
    assert [r[1] for r in bf] != [r[1] for r in ref]
    for (_, a, *_), (_, b, *_) in zip(bf, ref):
        assert math.isfinite(a) and abs(a - b) < 0.05 * abs(b) + 0.05


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_takes_bf16_only_where_the_cpu_computes_it_natively(tmp_path, monkeypatch, native):
    """train.amp=auto autocasts to bf16 on a CPU with native bf16 and trains in float32 on one without (there
    emulated bf16 was measured 1.5x slower than float32)."""
    import holdsgm.engine.loop as loop

    flags = frozenset({"avx2", "avx512f"} | ({"amx_bf16"} if native else set()))
    monkeypatch.setattr(loop, "_cpu_flags", lambda: flags)
    assert loop.native_bf16(torch.device("cpu")) is native
    t = Trainer(tiny_config("train.amp=auto", steps=2), tmp_path, verbose=False)
    assert t.amp_dtype == (torch.bfloat16 if native else None)
    t.fit()
    t.close()
    assert all(math.isfinite(r[1]) for r in losses(tmp_path))


def test_cpu_flags_are_read_from_proc_cpuinfo_lines():
    """The flags come from the 'flags' (x86) or 'Features' (Arm) lines; a CPU listing none of the bf16 flags
    is not native."""
    import holdsgm.engine.loop as loop

    flags = loop._cpu_flags()
    assert isinstance(flags, frozenset)
    if Path("/proc/cpuinfo").exists():
        text = Path("/proc/cpuinfo").read_text()
        assert ("avx512_bf16" in text.split()) == ("avx512_bf16" in flags)
