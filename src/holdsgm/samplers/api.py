"""Samplers by name, and :func:`sample`, which draws the prior and picks a grid from an NFE budget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from ..sde.base import LinearSDE, ScoreFn
from .core import SamplerOutput, adaptive_ode, euler_maruyama, predictor_corrector, probability_flow, splitting
from .exponential import exponential_integrator
from .grids import sde_time_grid
from .noise import as_noise


@dataclass(frozen=True)
class SamplerSpec:
    fn: Callable
    evals_per_step: int  # 0: adaptive (the solver chooses)
    stochastic: bool
    needs_stationary: bool = False
    description: str = ""


SAMPLERS: dict[str, SamplerSpec] = {
    "em": SamplerSpec(euler_maruyama, 1, True, description="Euler-Maruyama on the reverse SDE"),
    "pc": SamplerSpec(predictor_corrector, 2, True, description="EM predictor + Langevin corrector"),
    "euler": SamplerSpec(partial(probability_flow, method="euler"), 1, False,
                         description="Euler on the probability-flow ODE"),
    "heun": SamplerSpec(partial(probability_flow, method="heun"), 2, False,
                        description="Heun (2nd order) on the probability-flow ODE"),
    "rk4": SamplerSpec(partial(probability_flow, method="rk4"), 4, False,
                       description="classical RK4 on the probability-flow ODE"),
    "ode": SamplerSpec(adaptive_ode, 0, False, description="adaptive RK45 (scipy) on the probability-flow ODE"),
    "sscs": SamplerSpec(partial(splitting, scheme="strang"), 1, True, True,
                        description="symmetric splitting (SSCS): exact OU half steps + Euler score step"),
    "lie-trotter": SamplerSpec(partial(splitting, scheme="lie"), 1, True, True,
                               description="Lie-Trotter splitting: Euler score step + exact OU step"),
    "exp1": SamplerSpec(partial(exponential_integrator, order=1), 1, False,
                        description="exponential integrator, data prediction, 1st order (DDIM/gDDIM-like)"),
    "exp2m": SamplerSpec(partial(exponential_integrator, order=2, multistep=True), 1, False,
                         description="exponential integrator, 2nd-order multistep (DPM-Solver++(2M)-like)"),
    "exp3m": SamplerSpec(partial(exponential_integrator, order=3, multistep=True), 1, False,
                         description="exponential integrator, 3rd-order multistep (DPM-Solver++(3M)-like)"),
    "exp2s": SamplerSpec(partial(exponential_integrator, order=2, multistep=False), 2, False,
                         description="exponential integrator, 2nd-order single step (DPM-Solver-2-like)"),
    "exp3s": SamplerSpec(partial(exponential_integrator, order=3, multistep=False), 3, False,
                         description="exponential integrator, 3rd-order single step (DPM-Solver-3-like)"),
    "unipc2": SamplerSpec(partial(exponential_integrator, order=2, multistep=True, corrector=True), 1, False,
                          description="exp2m + a free corrector (UniPC-like): order 3 per step at 1 NFE"),
    "unipc3": SamplerSpec(partial(exponential_integrator, order=3, multistep=True, corrector=True), 1, False,
                          description="exp3m + a free corrector (UniPC-like)"),
    "exp-sde": SamplerSpec(partial(exponential_integrator, order=1, eta=1.0), 1, True,
                           description="stochastic exponential integrator (eta=1: the reverse SDE, exact noise)"),
    "exp2m-sde": SamplerSpec(partial(exponential_integrator, order=2, eta=1.0), 1, True,
                             description="stochastic exponential integrator, 2nd-order multistep"),
}


def parse_sampler(spec: str) -> tuple[str, dict]:
    """``"name"`` or ``"name:key=value,key=value"`` -> (name, options). Values are parsed as int, float,
    bool (true/false) or kept as strings; ``grid`` and ``eps`` are sampling options, the rest go to the
    sampler (e.g. ``"exp2m:form=eps,grid=logsnr,eps=0.1"``, ``"pc:snr=0.05"``)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"sampler must be a non-empty string, got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    _spec(name)
    options: dict = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"bad sampler option {item!r} in {spec!r}; expected key=value")
        options[key.strip()] = _parse_value(value.strip())
    return name, options


def _parse_value(v: str):
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def steps_for_nfe(sampler: str, nfe: int, denoise: bool = True, **options) -> int:
    """The number of steps a fixed-step sampler can take within ``nfe`` score evaluations."""
    spec = _spec(sampler)
    if spec.evals_per_step == 0:
        raise ValueError(f"sampler {sampler!r} is adaptive: its NFE is set by rtol/atol, not by --nfe")
    if not (isinstance(nfe, int) and not isinstance(nfe, bool) and nfe >= 1):
        raise ValueError(f"nfe must be a positive integer, got {nfe!r}")
    per_step = evals_per_step(sampler, **options)
    steps = (nfe - int(denoise)) // per_step
    if steps < 1:
        need = per_step + int(denoise)
        raise ValueError(f"nfe={nfe} is too small for sampler {sampler!r}: it needs at least {need} "
                         f"({per_step} per step{' + 1 for the denoising step' if denoise else ''})")
    return steps


def evals_per_step(sampler: str, **options) -> int:
    """Score evaluations per step of a fixed-step sampler with these options."""
    spec = _spec(sampler)
    if sampler == "pc":
        return 1 + int(options.get("corrector_steps", 1))
    if sampler.startswith("exp") and "multistep" in options and not options["multistep"]:
        return int(options.get("order", spec.evals_per_step))
    if sampler.startswith("exp") and options.get("multistep"):
        return 1
    return spec.evals_per_step


_FIXED_ARGS = {"score_fn", "sde", "u", "ts", "noise", "denoise", "progress", "callback"}


def check_sampler(spec: str, nfe: int | None = None) -> tuple[str, dict]:
    """Validate a sampler spec (``"name"`` or ``"name:key=value,..."``, see :func:`parse_sampler`) and, if
    given, an NFE budget for it, without sampling: ValueError naming the unknown sampler, option, grid or
    the NFE that is too small. Returns ``parse_sampler(spec)``."""
    import inspect

    from .grids import GRIDS

    name, options = parse_sampler(spec)
    opts = dict(options)
    grid, eps = opts.pop("grid", None), opts.pop("eps", None)
    rho = opts.pop("rho", None)
    if grid is not None and grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r} in sampler {spec!r}; choose one of {list(GRIDS)}")
    for key, value in (("eps", eps), ("rho", rho)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
            raise ValueError(f"option {key} of sampler {spec!r} must be a positive number, got {value!r}")
    allowed = set(inspect.signature(SAMPLERS[name].fn).parameters) - _FIXED_ARGS
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise ValueError(f"sampler {name!r} has no option {unknown[0]!r}; its options: "
                         f"{sorted(allowed | {'grid', 'eps', 'rho'})}")
    if nfe is not None and SAMPLERS[name].evals_per_step:
        steps_for_nfe(name, nfe, **opts)
    return name, options


def _spec(sampler: str) -> SamplerSpec:
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    return SAMPLERS[sampler]


def sample(score_fn: ScoreFn, sde: LinearSDE, data_shape, *, sampler: str = "em", nfe: int | None = None,
           steps: int | None = None, grid: str = "uniform", eps: float | None = None, noise=None,
           denoise: bool = True, progress: bool = False, callback=None, dtype=torch.float32, device=None,
           **options) -> SamplerOutput:
    """Draw ``data_shape[0]`` samples: u_T from the prior, then ``sampler`` on a ``grid`` from T to eps.

    Give either ``nfe`` (a budget of score evaluations, converted to steps) or ``steps``. ``noise`` is
    None, an int seed, a Generator, per-sample seeds (batch-size independent results) or a callable.
    Extra ``options`` go to the sampler (e.g. ``snr`` for 'pc', ``rtol`` for 'ode'); ``rho`` sets the exponent
    of the ``rho`` (default 2) and ``edm`` (default 7) grids.
    """
    if ":" in sampler:
        sampler, parsed = parse_sampler(sampler)
        options = {**parsed, **options}
        grid = options.pop("grid", grid)
        eps = options.pop("eps", eps)
    rho = options.pop("rho", 7.0 if grid == "edm" else 2.0)
    spec = _spec(sampler)
    if spec.needs_stationary and not getattr(sde, "has_stationary_law", False):
        raise ValueError(f"sampler {sampler!r} needs an SDE with a stationary law (vp, cld, hold, langevin); "
                         f"{sde.name!r} has none")
    if steps is None:
        if spec.evals_per_step == 0:
            steps = 1
        elif nfe is None:
            raise ValueError("give nfe or steps")
        else:
            steps = steps_for_nfe(sampler, nfe, denoise, **options)
    ts = sde_time_grid(sde, grid, steps, eps, rho=rho)
    noise = as_noise(noise)
    u = sde.prior_sample(data_shape, noise=noise, dtype=dtype, device=device)
    return spec.fn(score_fn, sde, u, ts, noise=noise, denoise=denoise, progress=progress, callback=callback,
                   **options)
