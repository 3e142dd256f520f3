import pytest
import torch

from holdsgm.audio.features import log_mel
from holdsgm.audio.priorgrad import frame_energy, max_frame_energy, priorgrad_std
from holdsgm.errors import ConfigError, DataError
from holdsgm.nets import count_parameters
from holdsgm.nets.diffwave import DIFFWAVE_PRESETS, DiffWave, MelUpsampler, split_stride

TINY = {"residual_channels": 8, "layers": 4, "dilation_cycle": 2, "n_mels": 16, "hop": 32, "emb_dim": 32}


def _perturb(net, scale=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return net


@pytest.mark.parametrize("n", [1, 2, 3])
def test_shapes_for_phase_space_orders(n):
    net = DiffWave(in_channels=n, **TINY)
    u, t, y = torch.randn(2, n, 10 * 32), torch.rand(2), torch.randn(2, 16, 10)
    out = net(u, t, y)
    assert out.shape == (2, 1, 320) and (out == 0).all()  # zero-initialised output layer
    out = _perturb(net)(u, t, y)
    assert out.shape == (2, 1, 320) and torch.isfinite(out).all() and out.abs().sum() > 0
    assert net.kind == "diffwave" and DiffWave(**net.config).config == net.config


def test_conditioning_and_time_matter():
    net = _perturb(DiffWave(in_channels=2, **TINY))
    u, y = torch.randn(1, 2, 256), torch.randn(1, 16, 8)
    base = net(u, torch.tensor([0.3]), y)
    assert not torch.allclose(base, net(u, torch.tensor([0.7]), y))
    assert not torch.allclose(base, net(u, torch.tensor([0.3]), y + 1))
    # a mel frame influences the samples around its own block (local conditioning)
    y2 = y.clone()
    y2[..., 0] += 5
    diff = (net(u, torch.tensor([0.3]), y2) - base).abs()[0, 0]
    assert diff[:32].sum() > 0


def test_upsampler_total_stride_is_hop():
    assert split_stride(256) == (16, 16) and split_stride(300) == (15, 20) and split_stride(7) == (1, 7)
    for hop in (256, 75, 7):
        assert MelUpsampler(hop)(torch.randn(2, 5, 9)).shape == (2, 5, 9 * hop)


def test_unconditional_and_errors():
    net = DiffWave(in_channels=1, residual_channels=4, layers=2, dilation_cycle=2, n_mels=0, hop=32)
    assert net(torch.randn(1, 1, 100), torch.rand(1)).shape == (1, 1, 100)
    with pytest.raises(ConfigError, match="unconditional"):
        net(torch.randn(1, 1, 64), torch.rand(1), torch.randn(1, 80, 2))
    cond = DiffWave(in_channels=2, **TINY)
    with pytest.raises(ConfigError, match="pass y"):
        cond(torch.randn(1, 2, 64), torch.rand(1))
    with pytest.raises(ConfigError, match="mel y must have shape"):
        cond(torch.randn(1, 2, 64), torch.rand(1), torch.randn(1, 16, 3))
    with pytest.raises(ConfigError, match="expects input"):
        cond(torch.randn(1, 3, 64), torch.rand(1), torch.randn(1, 16, 2))
    with pytest.raises(ConfigError, match="skip_scale"):
        cond(torch.randn(1, 2, 64), torch.rand(1), torch.randn(1, 16, 2), skip_scale=1.0)
    with pytest.raises(ConfigError, match="layers must be"):
        DiffWave(layers=0)


def test_presets():
    assert 0.55e6 < count_parameters(DiffWave(**DIFFWAVE_PRESETS["cpu-small"])) < 0.7e6
    assert DiffWave(**DIFFWAVE_PRESETS["cpu-small"]).receptive_field == 1 + 2 * 1023


def test_few_steps_reduce_the_loss_on_a_fixed_batch(speech):
    """eps-prediction on a fixed noisy batch, conditioned on the real log-mel of the clean wave."""
    torch.manual_seed(0)
    x0 = torch.from_numpy(speech(0.128, seed=1)).float()[None, None] * 2  # (1, 1, 2048)
    y = log_mel(x0[:, 0], n_mels=16, n_fft=128, hop=32)  # (1, 16, 64)
    net = DiffWave(in_channels=1, **TINY)
    t = torch.full((4,), 0.5)
    eps = torch.randn(4, 1, 2048)
    u = 0.7 * x0 + 0.7 * eps
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = (net(u, t, y.expand(4, -1, -1)) - eps).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_priorgrad_std(speech):
    x = torch.from_numpy(speech(1.0)).float()
    m = log_mel(torch.stack([x, 0.1 * x]))  # (2, 80, 62)
    e = frame_energy(m)
    assert e.shape == (2, 62) and (e > 0).all()
    emax = max_frame_energy([m[0], m[1]])
    std = priorgrad_std(m, emax, min_std=0.1)
    assert std.shape == (2, 1, 62 * 256)
    assert std.min() >= 0.1 and std.max() <= 1.0 and std[0].max() == pytest.approx(1.0)
    assert (std[1] <= std[0]).all() and std[1].mean() < std[0].mean()  # quieter -> less noise
    # constant over each hop-sized block
    assert torch.equal(std[0, 0, :256], std[0, 0, :1].expand(256))
    per_item = priorgrad_std(m, None)
    assert per_item[1].max() == pytest.approx(1.0) and per_item[0].max() == pytest.approx(1.0)
    with pytest.raises(DataError, match="min_std"):
        priorgrad_std(m, emax, min_std=0)
    with pytest.raises(DataError, match="energy_max"):
        priorgrad_std(m, -1.0)


def test_builds_through_the_network_registry(monkeypatch):
    """``build_network(net.kind, **net.config)`` rebuilds it once ``nets.NETWORKS`` lists it."""
    from holdsgm import nets

    monkeypatch.setitem(nets.NETWORKS, "diffwave", DiffWave)
    net = DiffWave(in_channels=3, **TINY)
    again = nets.build_network(net.kind, **net.config)
    assert isinstance(again, DiffWave) and again.config == net.config
    again.load_state_dict(net.state_dict())
    with pytest.raises(ConfigError, match="unknown argument 'channels'"):
        nets.build_network("diffwave", channels=8)


def test_projected_conditioner_variant():
    """cond_channels > 0: the mel is projected to k channels at the frame rate, upsampled, and projected to
    every layer at once; cond_channels = 0 keeps the paper's layout (and its state-dict keys)."""
    net = _perturb(DiffWave(in_channels=3, **TINY, cond_channels=4))
    u, y = torch.randn(2, 3, 8 * 32), torch.randn(2, 16, 8)
    out = net(u, torch.tensor([0.3, 0.6]), y)
    assert out.shape == (2, 1, 256) and torch.isfinite(out).all()
    assert net.cond_proj.out_channels == TINY["layers"] * 2 * TINY["residual_channels"]
    assert all(layer.cond_proj is None for layer in net.layers)
    assert not torch.allclose(out, net(u, torch.tensor([0.3, 0.6]), y + 1))
    y2 = y.clone()
    y2[..., 0] += 5  # local conditioning survives the projection
    assert (net(u, torch.tensor([0.3, 0.6]), y2) - out).abs()[0, 0, :32].sum() > 0
    assert DiffWave(**net.config).config == net.config
    plain = DiffWave(in_channels=3, **TINY)
    assert "layers.0.cond_proj.weight" in plain.state_dict() and "cond_in.weight" not in plain.state_dict()
    fast = DiffWave(**DIFFWAVE_PRESETS["cpu-fast"])
    assert count_parameters(fast) < 0.3 * count_parameters(DiffWave(**DIFFWAVE_PRESETS["cpu-small"]))
    with pytest.raises(ConfigError, match="cond_channels"):
        DiffWave(n_mels=0, cond_channels=4)
