import math

import numpy as np
import pytest
import torch

from holdsgm.audio.metrics import (
    MCD_CONSTANT,
    aggregate_metrics,
    dnsmos,
    dnsmos_available,
    l2_loss,
    mel_cepstral_distortion,
    mel_cepstrum,
    mrstft_loss,
    pesq_wb,
    rtf,
    utterance_metrics,
)
from holdsgm.errors import DataError


@pytest.fixture(scope="module")
def pair(speech):
    clean = speech(2.5)
    noise = 0.3 * np.random.default_rng(1).standard_normal(len(clean))
    return clean, noise


def test_identical_signals_score_perfectly(pair):
    clean, _ = pair
    r = utterance_metrics(clean, torch.from_numpy(clean).float())  # float32 copy: tiny differences
    assert r["pesq"] == pytest.approx(4.644, abs=0.01)
    assert r["estoi"] == pytest.approx(1.0, abs=1e-3)
    assert r["mrstft"] < 1e-3 and r["mcd"] < 1e-2
    assert r["seconds"] == pytest.approx(2.5)
    exact = utterance_metrics(clean, clean)
    assert exact["mrstft"] == 0.0 and exact["mcd"] == 0.0


def test_speech_vs_white_noise_scores_badly(pair):
    clean, noise = pair
    r = utterance_metrics(clean, noise)
    assert r["pesq"] < 1.5
    assert r["estoi"] < 0.2
    assert r["mrstft"] > 3.0
    assert r["mcd"] > 3.0  # half the frames are pauses: white noise in both, same cepstrum shape
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(len(clean)) / 16000)
    rt = utterance_metrics(clean, tone)
    assert rt["pesq"] < 1.5 and rt["estoi"] < 0.2 and rt["mrstft"] > 1.0


def test_metrics_are_monotone_in_noise(pair):
    clean, noise = pair
    light, heavy = (utterance_metrics(clean, clean + a * noise) for a in (0.05, 0.5))
    assert light["estoi"] > heavy["estoi"]
    assert light["mrstft"] < heavy["mrstft"] and light["mcd"] < heavy["mcd"]


def test_lengths_are_cut_to_the_shorter(pair):
    clean, _ = pair
    r = utterance_metrics(clean, np.concatenate([clean, np.zeros(100)]))
    assert r["mrstft"] == 0.0 and r["seconds"] == pytest.approx(2.5)


def test_pesq_nan_on_silence_and_resampling(pair):
    clean, _ = pair
    assert math.isnan(pesq_wb(np.zeros(32000), np.zeros(32000)))
    import soxr

    x22 = soxr.resample(clean, 16000, 22050)
    assert pesq_wb(x22, x22, sr=22050) == pytest.approx(4.644, abs=0.01)


def test_mrstft_loss_batched_and_differentiable(speech):
    target = torch.from_numpy(np.stack([speech(1.0, seed=s) for s in range(3)])).float()[:, None]
    pred = (target + 0.05 * torch.randn_like(target)).requires_grad_(True)
    per = mrstft_loss(pred, target, reduction="none")
    assert per.shape == (3, 1)
    for i in range(3):
        torch.testing.assert_close(per[i, 0], mrstft_loss(pred[i, 0], target[i, 0]), rtol=1e-5, atol=1e-6)
    loss = mrstft_loss(pred, target)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert mrstft_loss(target, target).item() == 0.0
    torch.testing.assert_close(l2_loss(pred, target), ((pred - target) ** 2).mean())
    assert l2_loss(pred, target, reduction="none").shape == (3, 1)
    with pytest.raises(DataError, match="at least 1025 samples"):
        mrstft_loss(torch.zeros(1000), torch.zeros(1000))
    with pytest.raises(DataError, match="same shape"):
        mrstft_loss(torch.zeros(2, 2000), torch.zeros(2000))


def test_mcd_definition_and_alignment(pair):
    clean, _noise = pair
    assert MCD_CONSTANT == pytest.approx(6.14185, abs=1e-5)
    # a constant gain changes only c_0, which MCD leaves out
    assert mel_cepstral_distortion(clean, 0.5 * clean) < 0.05
    shifted = np.roll(clean, 1600)  # 0.1 s late
    assert mel_cepstral_distortion(clean, shifted, align=True) < 0.5 * mel_cepstral_distortion(clean, shifted)
    # c_k is the cosine-series coefficient of the log-mel: a pure cosine log-mel gives c_3 = 1/2
    n = 80
    lm = torch.cos(math.pi * 3 * (torch.arange(n, dtype=torch.float64) + 0.5) / n)[:, None]
    c = mel_cepstrum(lm, 5)[0]
    torch.testing.assert_close(c, torch.tensor([0, 0, 0, 0.5, 0, 0]).double(), atol=1e-12, rtol=0)


def test_rtf_and_aggregate():
    assert rtf(0.5, 16000) == pytest.approx(0.5)
    assert rtf(2.0, 8000, sr=8000) == pytest.approx(2.0)
    with pytest.raises(DataError):
        rtf(1.0, 0)
    agg = aggregate_metrics([{"pesq": 4.0, "mcd": 1.0}, {"pesq": float("nan"), "mcd": 3.0}])
    assert agg["pesq"] == {"mean": 4.0, "std": 0.0, "min": 4.0, "max": 4.0, "n": 1, "n_nan": 1}
    assert agg["mcd"]["mean"] == 2.0 and agg["mcd"]["n"] == 2
    with pytest.raises(DataError):
        aggregate_metrics([])


def test_bad_inputs():
    with pytest.raises(DataError, match="1-D"):
        utterance_metrics(np.zeros((2, 16000)), np.zeros((2, 16000)))
    with pytest.raises(DataError, match="NaN"):
        utterance_metrics(np.full(16000, np.nan), np.zeros(16000))


def test_dnsmos_is_optional(pair):
    clean, _ = pair
    out = dnsmos(clean)
    if dnsmos_available():
        assert set(out) == {"dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808"}
        assert all(1.0 <= v <= 5.0 for v in out.values())
    else:
        assert out is None
        with pytest.raises(ValueError, match="speechmos"):
            utterance_metrics(clean, clean, with_dnsmos=True)


def test_f0_metrics_zero_for_identical_and_an_octave_is_1200_cents():
    from holdsgm.audio.metrics import f0_metrics

    sr = 16000
    t = np.arange(sr) / sr
    env = (np.sin(2 * np.pi * 2 * t) > 0).astype(np.float64)  # voiced half the time
    tone = lambda f: env * sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 6)) * 0.3
    same = f0_metrics(tone(150.0), tone(150.0), sr)
    assert same["f0_rmse"] == 0.0 and same["vuv"] == 0.0
    octave = f0_metrics(tone(150.0), tone(300.0), sr)
    assert octave["f0_rmse"] == pytest.approx(1200.0, rel=0.03)
    silent = f0_metrics(tone(150.0), np.zeros(sr), sr)
    assert math.isnan(silent["f0_rmse"]) and 0.3 < silent["vuv"] < 0.7
