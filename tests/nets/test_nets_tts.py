"""The text-to-speech networks: MelUNet (the SDE decoder / ResGrad's model) and ItoTTS (encoder + decoder)."""

import pytest
import torch

from holdsgm.errors import ConfigError
from holdsgm.nets import build_network
from holdsgm.nets.tts import ItoTTS, MelUNet

UNET = {"in_channels": 3 * 6, "out_channels": 6, "n_mels": 6, "dims": [8, 12, 16], "blocks": 1, "kernel": 3,
        "mult": 2, "emb_dim": 16}
TTS = {"n_symbols": 10, "in_channels": 2 * 6, "n_mels": 6, "enc_dim": 16, "enc_layers": 1, "enc_heads": 2,
       "enc_ffn": 32, "dur_dim": 8, "dims": [8, 12], "blocks": 1, "kernel": 3, "mult": 2, "emb_dim": 16}


@pytest.mark.parametrize("frames", [8, 7, 13, 1])
def test_unet_any_length_zero_start_and_rebuild(frames, perturb):
    net = MelUNet(**UNET)
    u, y, t = torch.randn(2, 18, frames), torch.randn(2, 6, frames), torch.tensor([0.1, 0.7])
    out = net(u, t, y)
    assert out.shape == (2, 6, frames) and bool((out == 0).all())  # the output layer starts at zero
    rebuilt = build_network(net.kind, **net.config)
    assert isinstance(rebuilt, MelUNet) and rebuilt.config == net.config
    perturb(net)
    base = net(u, t, y)
    for changed in (net(u + 1, t, y), net(u, t + 0.2, y), net(u, t, y + 1)):
        assert not torch.allclose(changed, base)
    torch.testing.assert_close(net(u[:1], t[:1], y[:1]), base[:1], rtol=1e-5, atol=1e-6)


def test_unet_bad_inputs():
    net = MelUNet(**UNET)
    with pytest.raises(ConfigError, match="expects input"):
        net(torch.randn(1, 17, 8), torch.zeros(1), torch.randn(1, 6, 8))
    with pytest.raises(ConfigError, match="mu_y"):
        net(torch.randn(1, 18, 8), torch.zeros(1), torch.randn(1, 6, 9))
    with pytest.raises(ConfigError, match="odd"):
        MelUNet(**{**UNET, "kernel": 4})


def test_itotts_encoder_masks_padding_and_rebuilds(perturb):
    torch.manual_seed(0)
    net = perturb(ItoTTS(**TTS)).eval()
    rebuilt = build_network(net.kind, **net.config)
    assert isinstance(rebuilt, ItoTTS) and rebuilt.config == net.config
    ids = torch.tensor([[0, 3, 0, 4, 0, 5, 0], [0, 6, 0, 7, 0, 0, 0]])
    lengths = torch.tensor([7, 5])
    mu, logw, mask = net.encode(ids, lengths)
    assert mu.shape == (2, 6, 7) and logw.shape == (2, 7) and mask.shape == (2, 1, 7)
    assert bool((mu[1, :, 5:] == 0).all()) and bool((logw[1, 5:] == 0).all())
    # the padding changes nothing of the valid part: the short item alone gives the same outputs
    mu1, logw1, _ = net.encode(ids[1:, :5], lengths[1:])
    torch.testing.assert_close(mu1[0], mu[1, :, :5], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logw1[0], logw[1, :5], rtol=1e-4, atol=1e-5)
    # forward is the decoder's (the score network of the SDE)
    u, y = torch.randn(2, 12, 9), torch.randn(2, 6, 9)
    torch.testing.assert_close(net(u, torch.tensor([0.3, 0.5]), y), net.decoder(u, torch.tensor([0.3, 0.5]), y))


def test_itotts_rejects_ids_outside_its_table():
    net = ItoTTS(**TTS)
    with pytest.raises(ConfigError, match="symbol ids"):
        net.encode(torch.tensor([[0, 10]]), torch.tensor([2]))
    with pytest.raises(ConfigError, match="multiple of enc_heads"):
        ItoTTS(**{**TTS, "enc_dim": 15})
