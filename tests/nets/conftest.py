import pytest
import torch


@pytest.fixture
def perturb():
    """Add seeded noise to every parameter (the output layers are zero-initialised, so a fresh network
    returns 0 and cannot show conditioning effects)."""

    def _perturb(net, scale=0.05, seed=0):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(scale * torch.randn(p.shape, generator=g))
        return net

    return _perturb
