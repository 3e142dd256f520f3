import pytest
import torch

from holdsgm.errors import ConfigError
from holdsgm.nets import build_network
from holdsgm.nets.framenet import FrameNet

TINY = {"in_channels": 3 * 8, "out_channels": 8, "n_mels": 5, "dim": 12, "layers": 2, "kernel": 3, "mult": 2,
        "emb_dim": 16}


def test_shapes_zero_start_and_rebuild():
    net = FrameNet(**TINY)
    u, y, t = torch.randn(2, 24, 7), torch.randn(2, 5, 7), torch.tensor([0.1, 0.7])
    out = net(u, t, y)
    assert out.shape == (2, 8, 7) and bool((out == 0).all())  # the output layer starts at zero
    rebuilt = build_network(net.kind, **net.config)
    assert isinstance(rebuilt, FrameNet) and rebuilt.config == net.config


def test_output_depends_on_state_time_and_mel_once_the_zero_initialised_layers_move():
    torch.manual_seed(0)
    net = FrameNet(**TINY)
    for layer in (net.output, *(b.mod for b in net.blocks)):  # zero at the start: the output and the time modulation
        torch.nn.init.normal_(layer.weight, std=0.1)
    u, y, t = torch.randn(2, 24, 7), torch.randn(2, 5, 7), torch.tensor([0.1, 0.7])
    base = net(u, t, y)
    for changed in (net(u + 1, t, y), net(u, t + 0.2, y), net(u, t, y + 1)):
        assert not torch.allclose(changed, base)
    # each item is computed on its own (no mixing across the batch)
    torch.testing.assert_close(net(u[:1], t[:1], y[:1]), base[:1], rtol=1e-5, atol=1e-6)


def test_bad_inputs_and_arguments():
    net = FrameNet(**TINY)
    with pytest.raises(ConfigError, match="expects input"):
        net(torch.randn(2, 23, 7), torch.zeros(2), torch.randn(2, 5, 7))
    with pytest.raises(ConfigError, match="log-mel y"):
        net(torch.randn(2, 24, 7), torch.zeros(2), torch.randn(2, 5, 6))
    with pytest.raises(ConfigError, match="log-mel y"):
        net(torch.randn(2, 24, 7), torch.zeros(2))
    with pytest.raises(ConfigError, match="kernel must be odd"):
        FrameNet(**{**TINY, "kernel": 4})
    with pytest.raises(ConfigError, match="dim"):
        build_network("framenet", **{**TINY, "dim": 0})
