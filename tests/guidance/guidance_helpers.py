"""Shared helpers of the guidance tests (a plain module, not conftest.py: other test folders have their own
conftest, and ``from conftest import`` would depend on collection order)."""

import torch

from holdsgm.losses import EpsModel
from holdsgm.nets import UNet
from holdsgm.sde import make_sde

SDES = ["vp", "cld", "hold"]


class CountingNet(torch.nn.Module):
    """Wraps a network and counts its forward calls and the rows it saw."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.n_classes = net.n_classes
        self.num_skips = net.num_skips
        self.kind = net.kind
        self.calls = 0
        self.rows = 0

    def forward(self, u, t, y=None, **kw):
        self.calls += 1
        self.rows += u.shape[0]
        return self.net(u, t, y, **kw)


def tiny_model(name: str, seed: int = 0) -> EpsModel:
    """A class-conditional 8x8 U-Net with perturbed (non-zero) weights, for the SDE ``name``."""
    sde = make_sde(name)
    torch.manual_seed(seed)
    net = UNet(sde.order, 1, 8, channels=8, channel_mult=(1, 2), n_classes=10, norm_groups=4).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return EpsModel(CountingNet(net), sde)
