"""The state operators of LinearSDE against plain per-sample formulas: ``apply`` (flattened and batched
paths, memoised operators), the single-time fast paths of ``drift`` / ``reverse_drift`` (also under
autograd), and the memoised scalars ``rates``, ``ell_at`` and ``common_time``."""

import pytest
import torch

from holdsgm.sde import make_sde
from holdsgm.sde.base import FLAT_APPLY_MAX

F64 = torch.float64
ALL = ["vp", "subvp", "ve", "cld", "hold"]


def reference_apply(m, u, n):
    """m (n, n) or (B, n, n) applied per coordinate, by an explicit einsum in float64."""
    uu = u.reshape(u.shape[0], n, -1).to(F64)
    m = m.to(F64)
    out = torch.einsum("ij,bjk->bik", m, uu) if m.dim() == 2 else torch.einsum("bij,bjk->bik", m, uu)
    return out.reshape(u.shape)


@pytest.mark.parametrize("data_shape", [(5, 1), (5, 2), (5, 1, 2, 2), (5, 3), (5, 1, 3, 3), (5, 2, 4)])
def test_apply_paths_agree_with_the_per_coordinate_product(data_shape):
    sde = make_sde("hold")
    n = sde.order
    g = torch.Generator().manual_seed(0)
    u = torch.randn(sde.state_shape(data_shape), generator=g, dtype=F64)
    m = torch.randn(n, n, generator=g, dtype=F64)
    per = torch.randn(data_shape[0], n, n, generator=g, dtype=F64)
    k = u[0].numel() // n
    assert (k <= FLAT_APPLY_MAX) == (k in (1, 2, 3, 4))  # both paths are covered by the shapes above
    ref = reference_apply(m, u, n)
    assert torch.allclose(sde.apply(m, u), ref, rtol=1e-13, atol=1e-13)
    assert torch.allclose(sde.apply(m, u, key=("test", 1)), ref, rtol=1e-13, atol=1e-13)
    assert torch.allclose(sde.apply(m, u, key=("test", 1)), ref, rtol=1e-13, atol=1e-13)  # memoised
    assert torch.allclose(sde.apply(per, u), reference_apply(per, u, n), rtol=1e-13, atol=1e-13)
    # a memoised operator follows the state's dtype (one entry per dtype), float64 maths cast once
    u32 = u.float()
    out32 = sde.apply(m, u32, key=("test", 1))
    assert out32.dtype == torch.float32 and torch.allclose(out32.double(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("pf", [False, True])
def test_single_time_drifts_equal_the_per_sample_formulas(name, pf):
    sde = make_sde(name)
    g = torch.Generator().manual_seed(1)
    u = torch.randn(sde.state_shape((7, 2)), generator=g, dtype=F64)
    s = torch.randn(7, 2, generator=g, dtype=F64)
    t = 0.37 * sde.T
    per_sample = torch.full((7,), t, dtype=F64)
    assert torch.allclose(sde.drift(u, t), sde.drift(u, per_sample), rtol=1e-13, atol=1e-14)
    assert torch.allclose(sde.drift(u, torch.tensor(t, dtype=F64)), sde.drift(u, per_sample), rtol=1e-13,
                          atol=1e-14)
    fast = sde.reverse_drift(u, t, s, probability_flow=pf)
    slow = sde.reverse_drift(u, per_sample, s, probability_flow=pf)
    assert torch.allclose(fast, slow, rtol=1e-13, atol=1e-14)
    # the reverse drift is f(u) - c g^2 e_n s, from the definitions
    c = 0.5 if pf else 1.0
    expected = sde.drift(u, per_sample) - sde.embed_last(c * sde.g2(per_sample)[:, None] * s)
    assert torch.allclose(fast, expected, rtol=1e-13, atol=1e-14)


def test_single_time_reverse_drift_is_differentiable():
    """The fast path updates its fresh output in place (a narrow view): autograd must give the same
    gradients as the per-sample formula (the likelihood ODE differentiates through it)."""
    sde = make_sde("hold")
    g = torch.Generator().manual_seed(2)
    u0 = torch.randn(sde.state_shape((4, 2)), generator=g, dtype=F64)
    w = torch.randn(sde.state_shape((4, 2)), generator=g, dtype=F64)
    grads = []
    for t in (0.4, torch.full((4,), 0.4, dtype=F64)):
        u = u0.clone().requires_grad_(True)
        score = torch.tanh(sde.last(u)) * 3.0  # any differentiable function of the state
        (sde.reverse_drift(u, t, score, probability_flow=True) * w).sum().backward()
        grads.append(u.grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("name", ALL)
def test_memoised_scalars_equal_the_tensor_quantities(name):
    sde = make_sde(name)
    for t in (sde.eps, 0.1 * sde.T, 0.77 * sde.T, sde.T):
        tt = torch.tensor(t, dtype=F64)
        beta, g2 = sde.rates(t)
        assert beta == float(sde.beta(tt)) and g2 == float(sde.g2(tt))
        assert sde.ell_at(t) == pytest.approx(float(sde.marginal(tt).ell), rel=1e-15)
        assert sde.common_time(torch.full((3,), t, dtype=F64)) == t
        assert sde.common_time(tt) == t
    assert sde.common_time(torch.tensor([0.2, 0.3], dtype=F64) * sde.T) is None
    with pytest.raises(ValueError, match="must lie in"):
        sde.common_time(torch.full((2,), 2.0 * sde.T, dtype=F64))
