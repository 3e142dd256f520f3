"""Text to speech's tasks: the decoder's few-step pass around mu_y (a zero residual model returns its input),
the Grad-TTS losses (duration, prior, decoder) on a synthetic corpus, ResGrad's residual loss, and the
determinism of the batches."""

import pytest
import torch

from holdsgm.nets.tts import ItoTTS, MelUNet
from holdsgm.sde import make_sde
from holdsgm.sde.posterior import clipped_score
from holdsgm.tasks.tts import MelNorm, ResGradTask, TextMel, TTSTask, pad_stack, segment, tts_sample

N_MELS = 6


class ZeroResidual:
    """An eps model whose data prediction is always 0: the exact score of a point mass at 0 (the clipped score
    with bound 0), i.e. a residual model that has learnt that there is nothing to add."""

    def __init__(self, sde):
        self.sde = sde

    def with_condition(self, cond):
        return clipped_score(lambda u, t: torch.zeros_like(u[:, -cond.shape[1]:]), self.sde, 0.0)


@pytest.mark.parametrize("name", ["vp", "cld", "hold"])
@pytest.mark.parametrize("nfe", [1, 2, 4])
def test_a_zero_residual_model_returns_its_input(name, nfe):
    sde = make_sde(name)
    mu = torch.randn(2, N_MELS, 11, dtype=torch.float64)  # float64: at t = T the data prediction divides by ~0.01
    out = tts_sample(ZeroResidual(sde), sde, mu, nfe=nfe, noise=0)
    torch.testing.assert_close(out, mu, rtol=0, atol=1e-9)


def synthetic_corpus(n=24, seed=0):
    """Symbols 1..5 each with its own mel frame, random durations 1-4 frames, blanks between symbols; the
    mels are the symbols' frames repeated, plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    table = 2 * torch.randn(6, N_MELS, generator=g)
    ids, mels = [], []
    for _ in range(n):
        k = int(torch.randint(3, 7, (1,), generator=g))
        seq = torch.randint(1, 6, (k,), generator=g).tolist()
        with_blanks = [0] + [s for x in seq for s in (x, 0)]
        dur = torch.randint(1, 5, (len(with_blanks),), generator=g)
        mel = torch.cat([table[s][:, None].expand(-1, int(d)) for s, d in zip(with_blanks, dur)], dim=1)
        ids.append(with_blanks)
        mels.append(mel + 0.05 * torch.randn(mel.shape, generator=g))
    return TextMel(ids, mels)


def tiny_tts(order):
    torch.manual_seed(0)
    return ItoTTS(n_symbols=6, in_channels=order * N_MELS, n_mels=N_MELS, enc_dim=16, enc_layers=1, enc_heads=2,
                  enc_ffn=32, dur_dim=8, dims=[16, 16], blocks=1, kernel=3, mult=2, emb_dim=16, enc_dropout=0.0)


def test_batches_are_a_pure_function_of_the_step():
    data = synthetic_corpus()
    sde = make_sde("hold")
    a = TTSTask(sde, tiny_tts(3), data, batch_size=4, seed=3, segment_frames=8, n_mels=N_MELS)
    b = TTSTask(sde, tiny_tts(3), data, batch_size=4, seed=3, segment_frames=8, n_mels=N_MELS)
    a.batch(0)
    ba, bb = a.batch(5), b.batch(5)
    for f in ("ids", "x_len", "mel", "y_len", "starts", "t"):
        torch.testing.assert_close(getattr(ba, f), getattr(bb, f))
    assert ba.mel.shape[0] == 4 and int(ba.x_len.max()) == ba.ids.shape[1] and int(ba.y_len.max()) == ba.mel.shape[2]


@pytest.mark.parametrize("name", ["vp", "cld", "hold"])
def test_tts_losses_fall_and_durations_are_learnt(name):
    data = synthetic_corpus()
    sde = make_sde(name)
    net = tiny_tts(sde.order)
    task = TTSTask(sde, net, data, batch_size=8, seed=0, segment_frames=8, n_mels=N_MELS)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    first = None
    for step in range(120):
        loss = task.loss(task.batch(step), net)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if first is None:
            first = dict(task.loss_parts)
    last = task.loss_parts
    assert set(last) == {"dur", "prior", "diff"}
    # the prior loss's floor is 0.5 log(2 pi) = 0.919 (unit variance): it comes close once mu and the MAS
    # alignment are right
    assert last["prior"] < first["prior"] - 0.5 and last["prior"] < 1.2
    assert last["dur"] < first["dur"]


def test_resgrad_trains_on_the_residual_of_a_frozen_prediction():
    data = synthetic_corpus()
    sde = make_sde("hold")
    base = [m + 0.3 for m in data.mels]  # a fast predictor that is off by a constant
    torch.manual_seed(0)
    net = MelUNet(in_channels=3 * N_MELS, out_channels=N_MELS, n_mels=N_MELS, dims=[16, 16], blocks=1, kernel=3,
                  emb_dim=16)
    task = ResGradTask(sde, net, data, base, batch_size=8, seed=0, segment_frames=8, n_mels=N_MELS)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    losses = []
    for step in range(60):
        loss = task.loss(task.batch(step), net)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10
    with pytest.raises(ValueError, match="one base mel per utterance"):
        ResGradTask(sde, net, data, base[:-1], batch_size=8, seed=0, segment_frames=8, n_mels=N_MELS)


def test_helpers():
    x = torch.arange(10.0).reshape(1, 1, 10).repeat(2, 1, 1)
    got = segment(x, torch.tensor([0, 7]), 5)
    assert got[0, 0].tolist() == [0, 1, 2, 3, 4] and got[1, 0].tolist()[:3] == [7, 8, 9]
    assert pad_stack([torch.ones(2, 3), torch.ones(2, 5)]).shape == (2, 2, 5)
    m = [torch.randn(4, 9) * 3 + 2, torch.randn(4, 5)]
    norm = MelNorm.of(m)
    torch.testing.assert_close(norm.denormalize(norm.normalize(m[0])), m[0])
    cat = torch.cat([norm.normalize(x) for x in m], dim=1)
    torch.testing.assert_close(cat.mean(1), torch.zeros(4), atol=1e-5, rtol=0)


def test_stage_two_lowers_the_few_step_loss_of_resgrad():
    from holdsgm.tasks.tts import TTSStageTwoTask

    data = synthetic_corpus()
    sde = make_sde("hold")
    base = [m + 0.3 * torch.sin(torch.arange(m.shape[1]) / 2.0) for m in data.mels]  # a predictor with an error
    torch.manual_seed(0)
    net = MelUNet(in_channels=3 * N_MELS, out_channels=N_MELS, n_mels=N_MELS, dims=[16, 16], blocks=1, kernel=3,
                  emb_dim=16)
    inner = ResGradTask(sde, net, data, base, batch_size=8, seed=0, segment_frames=8, n_mels=N_MELS)
    task = TTSStageTwoTask(inner, nfe=2, sampler="exp1", grid="edm", l2_weight=1.0,
                           init=lambda: ({k: v.clone() for k, v in net.state_dict().items()}, {"init": "here"}))
    assert task.init_weights() is not None and task.origin == {"init": "here"}
    fixed = [task.batch(1000 + i) for i in range(4)]  # the same held-out batches before and after
    before = sum(float(task.loss(b, net).detach()) for b in fixed)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for step in range(40):
        loss = task.loss(task.batch(step), net)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = sum(float(task.loss(b, net).detach()) for b in fixed)
    assert after < 0.8 * before


def test_temperature_scales_the_prior_draw_and_must_be_positive():
    sde = make_sde("hold")
    mu = torch.zeros(1, N_MELS, 5, dtype=torch.float64)

    class Identity:  # score 0: the sampler's steps leave u_T's spread in the output
        net = None

        def with_condition(self, cond):
            return lambda u, t: torch.zeros_like(u[:, -cond.shape[1]:])

    a = tts_sample(Identity(), sde, mu, nfe=1, noise=0, clip=None)
    b = tts_sample(Identity(), sde, mu, nfe=1, noise=0, clip=None, temperature=4.0)
    torch.testing.assert_close(b, a / 2)  # u_T / sqrt(4); with one evaluation the output is linear in u_T
    with pytest.raises(ValueError, match="temperature"):
        tts_sample(Identity(), sde, mu, nfe=1, noise=0, temperature=0.0)
