import json

import pytest
import torch

from holdsgm.errors import ConfigError
from holdsgm.nets import UNet, build_network, count_parameters

TINY = dict(channels=8, channel_mult=(1, 2), num_res_blocks=1, norm_groups=4)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("size, c", [(8, 1), (28, 1), (8, 3)])
def test_unet_shapes(n, size, c):
    net = UNet(n * c, c, image_size=size, attn_resolutions=(size // 2,), **TINY)
    out = net(torch.randn(2, n * c, size, size), torch.rand(2))
    assert out.shape == (2, c, size, size) and torch.isfinite(out).all()


def test_unet_three_levels_28_and_32(perturb):
    for size in (28, 32):
        net = perturb(UNet(2, 1, image_size=size, channels=8, channel_mult=(1, 2, 2),
                           attn_resolutions=(size // 4,), norm_groups=4, dropout=0.1))
        net.eval()
        u, t = torch.randn(2, 2, size, size), torch.rand(2)
        out = net(u, t)
        assert out.shape == (2, 1, size, size)
        assert torch.equal(out, net(u, t))  # eval: dropout off, deterministic


def test_unet_rejects_bad_sizes():
    with pytest.raises(ConfigError, match="not divisible by 4"):
        UNet(1, 1, image_size=30, channel_mult=(1, 2, 2))
    with pytest.raises(ConfigError, match="resolutions are"):
        UNet(1, 1, image_size=8, attn_resolutions=(16,))
    net = UNet(2, 1, image_size=8, **TINY)
    with pytest.raises(ConfigError, match=r"\(B, 2, 8, 8\)"):
        net(torch.randn(1, 2, 16, 16), torch.rand(1))
    with pytest.raises(ConfigError, match=r"\(B, 2, 8, 8\)"):
        net(torch.randn(1, 1, 8, 8), torch.rand(1))
    rect = UNet(1, 1, image_size=(8, 12), **TINY)
    assert rect(torch.randn(1, 1, 8, 12), torch.rand(1)).shape == (1, 1, 8, 12)


def test_unet_class_conditioning_and_null_label(perturb):
    torch.manual_seed(0)
    net = perturb(UNet(2, 1, image_size=8, n_classes=10, **TINY))
    u, t = torch.randn(4, 2, 8, 8), torch.rand(4)
    a = net(u, t, torch.tensor([0, 1, 2, 3]))
    b = net(u, t, torch.tensor([4, 5, 6, 7]))
    assert not torch.allclose(a, b)
    null = net(u, t, torch.full((4,), 10))
    assert torch.equal(null, net(u, t, None))
    assert not torch.allclose(null, a)
    with pytest.raises(ConfigError):
        net(u, t, torch.full((4,), 11))
    uncond = perturb(UNet(2, 1, image_size=8, **TINY))
    assert torch.equal(uncond(u, t, torch.tensor([0, 1, 2, 3])), uncond(u, t))  # y ignored without classes


def test_skip_scale(perturb):
    torch.manual_seed(0)
    net = perturb(UNet(2, 1, image_size=8, channels=8, channel_mult=(1, 2, 2), num_res_blocks=2,
                       norm_groups=4))
    assert net.num_skips == 9 and net.skip_resolutions == [8, 8, 8, 4, 4, 4, 2, 2, 2]
    u, t = torch.randn(3, 2, 8, 8), torch.rand(3)
    ref = net(u, t)
    assert torch.equal(net(u, t, skip_scale=1), ref)
    assert torch.equal(net(u, t, skip_scale=1.0), ref)
    assert torch.equal(net(u, t, skip_scale=[1.0] * 9), ref)
    assert torch.equal(net(u, t, skip_scale=torch.ones(9)), ref)
    assert not torch.allclose(net(u, t, skip_scale=0.8), ref)
    for k in (0, 8):  # highest and lowest resolution skips both matter
        s = [1.0] * 9
        s[k] = 0.5
        assert not torch.allclose(net(u, t, skip_scale=s), ref)
    with pytest.raises(ConfigError, match="9 skip"):
        net(u, t, skip_scale=[1.0] * 8)
    with pytest.raises(ConfigError):
        net(u, t, skip_scale="1")


def test_skip_scale_zero_equals_zeroed_skips(perturb):
    """skip_scale[k] multiplies exactly skip k: scaling by 0 == feeding zeros there (checked via a hook)."""
    torch.manual_seed(1)
    net = perturb(UNet(1, 1, image_size=8, **TINY))
    u, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    s = [1.0] * net.num_skips
    s[0] = 0.0  # the input conv's output
    scaled = net(u, t, skip_scale=s)
    captured = {}

    def hook(mod, inp):
        x = inp[0]
        captured["n"] = captured.get("n", 0) + 1
        if captured["n"] == len(net.up[0]) + len(net.up[1]):  # the last decoder block takes skip 0
            x = x.clone()
            x[:, -net.config["channels"]:] = 0
            return (x, *inp[1:])

    handles = [st.register_forward_pre_hook(hook) for stages in net.up for st in stages]
    zeroed = net(u, t)
    for h in handles:
        h.remove()
    assert torch.allclose(scaled, zeroed, atol=1e-6)


def test_unet_trains_on_fixed_batch():
    torch.manual_seed(0)
    net = UNet(2, 1, image_size=8, **TINY)
    u, t = torch.randn(32, 2, 8, 8), torch.rand(32)
    target = u[:, :1] * (1 - t)[:, None, None, None]
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        loss = (net(u, t) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_small_preset_parameter_count():
    net = build_network("unet", in_channels=2, out_channels=1, image_size=8, channels=32,
                        channel_mult=[1, 2, 2])
    n = count_parameters(net)
    assert 0.5e6 < n < 1.5e6
    assert n == 1_141_217  # pinned: a change here breaks old checkpoints
    assert count_parameters(UNet(2, 1, image_size=8, num_res_blocks=2)) == 1_659_329


def test_unet_config_roundtrip(perturb):
    net = perturb(UNet(3, 1, image_size=8, n_classes=4, attn_resolutions=[4], **TINY))
    cfg = json.loads(json.dumps(net.config))
    assert cfg["channel_mult"] == [1, 2] and cfg["emb_dim"] == 32
    twin = build_network(net.kind, **cfg)
    twin.load_state_dict(net.state_dict())
    u, t, y = torch.randn(2, 3, 8, 8), torch.rand(2), torch.tensor([1, 4])
    assert torch.equal(net(u, t, y), twin(u, t, y))
