"""From a network's raw output to what samplers, losses and likelihoods need.

The network predicts z_n, the noise of the last phase-space component in u_t = Phi_t [x0; 0] + C_t z (HSM;
for n = 1 this is the usual DSM eps-prediction, and eps_theta names the network's prediction). With C_t the
Cholesky factor of the kernel covariance,

    score of u_n:  s(u, t) = -eps_theta(u, t) / C_t[n, n] = -ell_t eps_theta(u, t)

CLD's "mixed score" (Dockhorn et al. 2022, sec. 3.2) adds the analytic score of the marginal that
data ~ N(0, data_var I) would have, so the network learns only a residual:

    eps_theta(u, t) = net(u, t) + C_t[n, n] [Sigma_ref(t)^{-1} u]_n,
    Sigma_ref(t) = Phi_t diag(data_var, aux_var, ...) Phi_t^T + noise part.

Preconditioning (``precond``; EDM's c_skip / c_out, Karras et al. 2022, in phase space): the network predicts
the data's deviation from the posterior mean that data ~ N(0, data_var I) would have, in units of that
posterior's standard deviation,

    xhat(u, t) = D_ref(u, t) + c_out(t) net(u, t),    D_ref = E_ref[x0 | u_t],  c_out^2 = Var_ref[x0 | u_t],

and eps_theta = a_t^T u - kappa_t xhat (Tweedie, docs/maths.md section 5) = eps_ref(u, t) + w_t net(u, t) with
w_t = -kappa_t c_out(t). At low noise w_t -> -1 (eps-prediction); at high noise w_t -> 0, so an error of the
network moves the data prediction by at most c_out <= sqrt(data_var) instead of 1 / kappa_t times the error
(~100x at t = T for HOLD). The unit-weighted loss is then taken in the network's units,
||z_n - eps_theta||^2 / w_t^2 (EDM's lambda = 1 / c_out^2): :meth:`EpsModel.loss_weight`.

The network receives t / T (so it sees times in [0, 1]) and knows nothing of the SDE.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..sde.base import LinearSDE
from ..sde.kernels import tril_factor

Net = Callable[..., Tensor]


def gaussian_precision_row(sde: LinearSDE, t: Tensor, data_var: float) -> Tensor:
    """Row n of Sigma_ref(t)^{-1}, shape (B, n): the score of N(0, Sigma_ref) is -(row . u)."""
    phi, a = sde.transition_factor(torch.zeros_like(t), t)
    s0 = sde.initial_cov(device=phi.device)
    s0[0, 0] = data_var
    chol = tril_factor(torch.cat([phi @ s0.sqrt(), a], dim=-1))
    eye = torch.eye(sde.order, dtype=chol.dtype, device=chol.device).expand_as(chol)
    prec = torch.cholesky_solve(eye, chol)
    return prec[..., -1, :]


def precond_coefficients(sde: LinearSDE, t: Tensor, data_var: float) -> tuple[Tensor, Tensor]:
    """(row (B, n), w (B,)) in float64 of the preconditioned parameterisation at times ``t`` (B,): eps_theta =
    sum_k row_k u_k + w net (see the module). A batch of one time (a sampler's step) is computed once."""
    t = torch.as_tensor(t, dtype=torch.float64)
    if t.dim() == 1 and t.numel() > 1 and bool((t == t[0]).all()):
        row, w = precond_coefficients(sde, t[0], data_var)
        return row.expand(t.numel(), -1), w.expand(t.numel())
    if t.dim() == 0:
        key = ("precond", float(t), float(data_var), str(t.device))
        row, w = sde.cached(key, lambda: _precond(sde, t.reshape(1), data_var))
        return row.clone(), w.clone()
    return _precond(sde, t, data_var)


def _precond(sde: LinearSDE, t: Tensor, data_var: float) -> tuple[Tensor, Tensor]:
    from ..sde.posterior import reference_kernel

    _, a, kappa, _ = reference_kernel(sde, t, 0.0)  # the HSM kernel: z_n = a^T u - kappa x0
    _, _, _, chol_ref = reference_kernel(sde, t, data_var)  # Sigma_ref = C_ref C_ref^T (x0 ~ N(0, data_var))
    phi, _ = sde.transition_factor(torch.zeros_like(t), t)
    m = phi[..., :, :1]  # (B, n, 1): how x0 enters u_t
    sol = torch.cholesky_solve(m, chol_ref)[..., 0]  # Sigma_ref^{-1} m, (B, n)
    post_var = (data_var - data_var**2 * (m[..., 0] * sol).sum(-1)).clamp_min(0.0)  # Var_ref[x0 | u_t]
    row = a - (kappa * data_var)[:, None] * sol  # a - kappa dD_ref/du
    return row, -kappa * post_var.sqrt()


class EpsModel:
    """Wraps ``net(u, t_normalised, y)`` (predicting z_n) as eps- and score-functions of (u, t).

    Args:
        net: the network (any callable with the signature above).
        sde: the SDE it was trained for.
        mixed: add CLD's analytic Gaussian part (the network then predicts a residual).
        precond: EDM-style preconditioning (the network predicts the data's standardised deviation from the
            Gaussian posterior mean; see the module). Excludes ``mixed``.
        data_var: the per-coordinate data variance assumed by the Gaussian part of either.
    """

    def __init__(self, net: Net, sde: LinearSDE, mixed: bool = False, data_var: float = 1.0,
                 precond: bool = False):
        if mixed and precond:
            raise ValueError("mixed and precond exclude each other (precond contains the Gaussian part)")
        self.net = net
        self.sde = sde
        self.mixed = bool(mixed)
        self.precond = bool(precond)
        self.data_var = float(data_var)
        # a module runs in its parameters' dtype: float64 states (the oracle's, GaussianMixture.sample's) are
        # cast for the network and its output cast back, instead of failing on mixed dtypes
        first = next(iter(net.parameters()), None) if isinstance(net, torch.nn.Module) else None
        self._net_dtype = first.dtype if first is not None and first.is_floating_point() else None

    def _time(self, t, u: Tensor) -> Tensor:
        return self.sde.batch_time(t, u)

    def eps(self, u: Tensor, t, y: Tensor | None = None, **net_kwargs) -> Tensor:
        t = self._time(t, u)
        tn = (t / self.sde.T if self.sde.T != 1.0 else t).to(u.dtype)  # t / 1 is t: one operation fewer
        cast = self._net_dtype is not None and u.dtype != self._net_dtype
        v, tv = (u.to(self._net_dtype), tn.to(self._net_dtype)) if cast else (u, tn)
        out = self.net(v, tv, y, **net_kwargs) if (y is not None or net_kwargs) else self.net(v, tv)
        if cast:
            out = out.to(u.dtype)
        if self.mixed:
            row = gaussian_precision_row(self.sde, t, self.data_var)  # (B, n)
            lnn = self.sde.marginal(t).chol[..., -1, -1]
            comps = torch.stack(self.sde.components(u), dim=1)  # (B, n, C, ...)
            w = (row * lnn[:, None]).to(u.dtype).reshape(*row.shape, *([1] * (comps.dim() - 2)))
            out = out + (w * comps).sum(1)
        elif self.precond:
            row, w = precond_coefficients(self.sde, t, self.data_var)  # (B, n), (B,)
            comps = torch.stack(self.sde.components(u), dim=1)  # (B, n, C, ...)
            extra = [1] * (comps.dim() - 2)
            lin = (row.to(u.dtype).reshape(*row.shape, *extra) * comps).sum(1)
            out = lin + w.to(u.dtype).reshape(-1, *extra) * out
        return out

    def loss_weight(self, t: Tensor) -> Tensor | None:
        """Per-sample factor (B,) that puts the unit-weighted loss in the network's units (1 / w_t^2 with
        ``precond``), or None (eps-prediction: the loss is already in the network's units)."""
        if not self.precond:
            return None
        _, w = precond_coefficients(self.sde, torch.as_tensor(t, dtype=torch.float64), self.data_var)
        return w.square().reciprocal()

    def score(self, u: Tensor, t, y: Tensor | None = None, **net_kwargs) -> Tensor:
        t = self._time(t, u)
        single = self.sde.common_time(t)
        if single is not None:  # one time for the whole batch (samplers): a memoised scalar
            return self.eps(u, t, y, **net_kwargs) * -self.sde.ell_at(single)
        ell = self.sde.marginal(t).ell
        return -self.sde.per_sample(ell, u) * self.eps(u, t, y, **net_kwargs)

    __call__ = score

    def with_condition(self, y: Tensor | None = None, **net_kwargs) -> Callable[[Tensor, Tensor], Tensor]:
        """A plain ``score_fn(u, t)`` with fixed labels / network options, for the samplers."""
        return lambda u, t: self.score(u, t, y, **net_kwargs)
