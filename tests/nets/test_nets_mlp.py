import json

import pytest
import torch

from holdsgm.errors import ConfigError
from holdsgm.nets import MLP, build_network
from holdsgm.nets.embeddings import GaussianFourierEmbedding, SinusoidalEmbedding


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("emb", ["fourier", "sinusoidal"])
def test_mlp_shapes(n, emb):
    net = MLP(2 * n, 2, hidden=32, depth=2, time_embedding=emb, emb_dim=16)
    out = net(torch.randn(5, 2 * n), torch.rand(5))
    assert out.shape == (5, 2) and out.dtype == torch.float32
    assert torch.equal(out, torch.zeros(5, 2))  # zero-initialised output layer
    assert net(torch.randn(5, 2 * n), 0.5).shape == (5, 2)  # scalar time broadcasts


def test_mlp_time_and_class_conditioning(perturb):
    torch.manual_seed(0)
    net = perturb(MLP(4, 2, hidden=32, depth=2, emb_dim=16, n_classes=3))
    u, t = torch.randn(6, 4), torch.rand(6)
    y0, y1 = torch.zeros(6, dtype=torch.long), torch.ones(6, dtype=torch.long)
    assert not torch.allclose(net(u, t, y0), net(u, t, y1))
    assert not torch.allclose(net(u, t, y0), net(u, 1 - t, y0))
    null = torch.full((6,), 3, dtype=torch.long)
    assert torch.equal(net(u, t, None), net(u, t, null))
    with pytest.raises(ConfigError, match=r"\[0, 3\]"):
        net(u, t, torch.full((6,), 4, dtype=torch.long))
    with pytest.raises(ConfigError, match="shape"):
        net(u, t, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ConfigError, match=r"\(B, 4\)"):
        net(torch.randn(6, 3), t)
    with pytest.raises(ConfigError, match="skip"):
        net(u, t, skip_scale=0.5)


def test_mlp_trains_on_fixed_batch():
    torch.manual_seed(0)
    net = MLP(4, 2, hidden=64, depth=2, emb_dim=32)
    u, t = torch.randn(128, 4), torch.rand(128)
    target = torch.sin(3 * u[:, :2]) * t[:, None]
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    losses = []
    for _ in range(40):
        loss = (net(u, t) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.4 * losses[0]


def test_mlp_config_roundtrip(perturb):
    net = perturb(build_network("mlp", in_features=6, out_features=2, hidden=16, depth=2, emb_dim=8))
    cfg = json.loads(json.dumps(net.config))
    twin = build_network(net.kind, **cfg)
    twin.load_state_dict(net.state_dict())
    u, t = torch.randn(3, 6), torch.rand(3)
    assert torch.equal(net(u, t), twin(u, t))


def test_embeddings():
    t = torch.linspace(0, 1, 7)
    a = GaussianFourierEmbedding(10, seed=3)
    assert torch.equal(a.W, GaussianFourierEmbedding(10, seed=3).W)
    assert not torch.equal(a.W, GaussianFourierEmbedding(10, seed=4).W)
    assert "W" in a.state_dict()
    e = a(t)
    assert e.shape == (7, 10) and torch.isfinite(e).all() and e.abs().max() <= 1
    s = SinusoidalEmbedding(9)(t)
    assert s.shape == (7, 9) and torch.allclose(s[0, :4], torch.ones(4))  # cos(0) = 1
    assert not torch.allclose(s[1], s[2])
