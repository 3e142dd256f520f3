"""The frame domain of the vocoder: the MDCT is orthogonal and inverts, an isotropic SDE on its coefficients is
the same SDE on the wave, and the spectral prior's scale follows the mel."""

import math

import numpy as np
import pytest
import torch

from holdsgm.audio import log_mel
from holdsgm.audio.mdct import (
    SpectralCoordinates,
    imdct,
    mdct,
    mel_to_mdct_matrix,
    spectral_envelope,
    spectral_scale,
    spectral_std,
)
from holdsgm.errors import DataError
from holdsgm.sde import make_sde


def _matrix(m: int, n: int) -> torch.Tensor:
    """The transform as an (L, L) matrix: column i is the coefficients of the unit impulse at sample i."""
    length = m * n
    return mdct(torch.eye(length, dtype=torch.float64), m).reshape(length, length).T


@pytest.mark.parametrize("m,n", [(4, 2), (8, 3), (16, 5), (256, 2)])
def test_mdct_is_orthogonal_and_inverts(m, n):
    q = _matrix(m, n)
    torch.testing.assert_close(q @ q.T, torch.eye(m * n, dtype=torch.float64), atol=1e-12, rtol=0)
    x = torch.randn(3, 2, m * n, dtype=torch.float64, generator=torch.Generator().manual_seed(m + n))
    c = mdct(x, m)
    assert c.shape == (3, 2, m, n)
    assert float((imdct(c) - x).abs().max()) < 1e-12
    # the inverse is the transpose, and energy is kept (Parseval)
    torch.testing.assert_close(imdct(c).reshape(6, -1), (q.T @ c.reshape(6, -1).T).T.reshape(6, -1))
    torch.testing.assert_close(c.square().sum(), x.square().sum())
    # float32: inverts to 1e-6 on a full-scale signal
    x32 = (torch.rand(2, m * n, generator=torch.Generator().manual_seed(1)) * 2 - 1).float()
    assert float((imdct(mdct(x32, m)) - x32).abs().max()) < 1e-6


def test_frame_t_is_centred_on_mel_frame_t():
    """An impulse in block t (samples [t*M, (t+1)*M)) lands mostly in coefficient frame t, as in the mel."""
    m, n = 32, 6
    for t in range(1, n - 1):
        x = torch.zeros(m * n, dtype=torch.float64)
        x[t * m + m // 2] = 1.0
        energy = mdct(x, m).square().sum(0)
        assert int(energy.argmax()) == t and float(energy[t]) > 0.5


def test_mdct_refuses_partial_frames():
    with pytest.raises(DataError, match="whole number of at least 2 frames"):
        mdct(torch.zeros(100), 32)
    with pytest.raises(DataError, match="at least 2 frames"):
        mdct(torch.zeros(32), 32)


@pytest.mark.parametrize("name", ["vp", "cld", "hold"])
def test_the_coefficient_domain_kernel_is_the_waveform_kernel(name):
    """u_t of the wave, transformed component by component, equals u_t of the transformed wave with the
    transformed noise (which is again N(0, I)); and the prior's density is the same in both domains."""
    sde = make_sde(name)
    m, n, b = 16, 4, 3
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(b, 1, m * n, dtype=torch.float64, generator=g)
    z = torch.randn(b, sde.order, m * n, dtype=torch.float64, generator=g)
    t = torch.tensor([0.05, 0.4, 0.9], dtype=torch.float64) * sde.T

    def to_coef(u):  # (B, k, L) -> (B, k * m, N): each component's coefficients, stacked as channels
        return mdct(u, m).reshape(u.shape[0], -1, n)

    u_wave = sde.perturb(x0, t, z)
    u_coef = sde.perturb(to_coef(x0), t, to_coef(z))
    torch.testing.assert_close(to_coef(u_wave), u_coef, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(sde.prior_logp(to_coef(u_wave)), sde.prior_logp(u_wave), atol=1e-9, rtol=1e-12)


def test_the_envelope_reads_a_flat_spectrum_back_exactly():
    p = mel_to_mdct_matrix(dtype=torch.float64)
    assert p.shape == (256, 80) and bool((p >= 0).all())
    # a flat linear magnitude s gives mel_j = s * sum_f A_jf, and the envelope reads s at every bin
    from holdsgm.audio.features import mel_basis

    a = mel_basis(dtype=torch.float64)
    s = 0.3
    mel = torch.log(s * a.sum(1))[:, None].repeat(1, 4)
    torch.testing.assert_close(spectral_envelope(mel), torch.full((256, 4), s, dtype=torch.float64))


def test_spectral_coordinates_whiten_speech_and_round_trip(speech):
    wave = torch.from_numpy(speech(2.0)).float()
    wave = wave[: len(wave) // 256 * 256]
    mel = log_mel(wave)
    c = spectral_scale([wave], [mel])
    assert 0.01 < c < 1
    coords = SpectralCoordinates(c)
    x = coords.encode(wave[None, None], mel[None])
    assert x.shape == (1, 256, mel.shape[-1])
    # about unit variance where the speech is, and the decoding inverts the encoding
    assert 0.3 < float(x.std()) < 3
    torch.testing.assert_close(coords.decode(x, mel[None])[0, 0], wave, atol=1e-5, rtol=0)
    sigma = spectral_std(mel, c)
    assert bool((sigma > 0).all()) and sigma.shape == (256, mel.shape[-1])
    # louder speech, larger scale: the scale is linear in the magnitude
    torch.testing.assert_close(spectral_std(log_mel(2 * wave), c, floor=1e-9),
                               2 * spectral_std(mel, c, floor=1e-9), rtol=1e-3, atol=1e-7)
    assert math.isfinite(float(np.log(sigma.numpy()).mean()))
