"""Samplers by name, and :func:`sample`, which draws the prior and picks a grid from an NFE budget."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from ..errors import NumericsError
from ..sde.base import LinearSDE, ScoreFn
from .core import SamplerOutput, adaptive_ode, euler_maruyama, predictor_corrector, probability_flow, splitting
from .exponential import exponential_integrator
from .grids import sde_time_grid, time_at_noise_level
from .noise import as_noise


@dataclass(frozen=True)
class SamplerSpec:
    fn: Callable
    evals_per_step: int  # 0: adaptive (the solver chooses)
    stochastic: bool
    needs_stationary: bool = False
    description: str = ""
    grid: str = "uniform"
    """The default time grid, chosen by measurement (benchmarks/README.md, section 1)."""


SAMPLERS: dict[str, SamplerSpec] = {
    "em": SamplerSpec(euler_maruyama, 1, True, grid="log", description="Euler-Maruyama on the reverse SDE"),
    "pc": SamplerSpec(predictor_corrector, 2, True, grid="log", description="EM predictor + Langevin corrector"),
    "euler": SamplerSpec(partial(probability_flow, method="euler"), 1, False, grid="quadratic",
                         description="Euler on the probability-flow ODE"),
    "heun": SamplerSpec(partial(probability_flow, method="heun"), 2, False, grid="quadratic",
                        description="Heun (2nd order) on the probability-flow ODE"),
    "rk4": SamplerSpec(partial(probability_flow, method="rk4"), 4, False, grid="quadratic",
                       description="classical RK4 on the probability-flow ODE"),
    "ode": SamplerSpec(adaptive_ode, 0, False, description="adaptive RK45 (scipy) on the probability-flow ODE"),
    "sscs": SamplerSpec(partial(splitting, scheme="strang"), 1, True, True, grid="log",
                        description="symmetric splitting (SSCS): exact OU half steps + Euler score step"),
    "lie-trotter": SamplerSpec(partial(splitting, scheme="lie"), 1, True, True, grid="log",
                               description="Lie-Trotter splitting: Euler score step + exact OU step"),
    "exp1": SamplerSpec(partial(exponential_integrator, order=1), 1, False, grid="quadratic",
                        description="exponential integrator, data prediction, 1st order (DDIM/gDDIM-like)"),
    "exp2m": SamplerSpec(partial(exponential_integrator, order=2, multistep=True), 1, False, grid="log",
                         description="exponential integrator, 2nd-order multistep (DPM-Solver++(2M)-like)"),
    "exp3m": SamplerSpec(partial(exponential_integrator, order=3, multistep=True), 1, False, grid="log",
                         description="exponential integrator, 3rd-order multistep (DPM-Solver++(3M)-like)"),
    "exp2s": SamplerSpec(partial(exponential_integrator, order=2, multistep=False), 2, False, grid="quadratic",
                         description="exponential integrator, 2nd-order single step (DPM-Solver-2-like)"),
    "exp3s": SamplerSpec(partial(exponential_integrator, order=3, multistep=False), 3, False, grid="quadratic",
                         description="exponential integrator, 3rd-order single step (DPM-Solver-3-like)"),
    "unipc2": SamplerSpec(partial(exponential_integrator, order=2, multistep=True, corrector=True), 1, False,
                          grid="log", description="exp2m + a free corrector (UniPC-like): order 3 per step at 1 NFE"),
    "unipc3": SamplerSpec(partial(exponential_integrator, order=3, multistep=True, corrector=True), 1, False,
                          grid="log", description="exp3m + a free corrector (UniPC-like)"),
    "exp-sde": SamplerSpec(partial(exponential_integrator, order=1, eta=1.0), 1, True, grid="log",
                           description="stochastic exponential integrator (eta=1: the reverse SDE, exact noise)"),
    "exp2m-sde": SamplerSpec(partial(exponential_integrator, order=2, eta=1.0), 1, True, grid="log",
                             description="stochastic exponential integrator, 2nd-order multistep"),
}


#: The default stop of every sampler, as a noise level sigma = 1 / |kappa_t| (EDM's sigma for VP): the same
#: meaning on every SDE and horizon, measured best or tied for nearly every sampler on VP, CLD, HOLD and
#: CLD-SGM (benchmarks/README.md, section 1). For VP it is t = 1e-3, the usual stop; for HOLD's preset,
#: whose old stop t = 1e-3 meant sigma ~ 4e-8, t ~ 0.25.
DEFAULT_SIGMA_MIN = 0.01

#: What :func:`default_sampler` picks, by SDE order and NFE budget: (bound, sampler) pairs, the first whose
#: bound exceeds the budget. Measured (benchmarks/README.md, section 1): each sampler at its default grid and
#: stop with the exact score (8 Gaussians) and with learned scores (toy and digits models), ranked by the
#: geometric mean of their ratios to the best at 10, 20, 50 and 100 NFE; the bounds lie between those budgets.
#: From 50 NFE (from 20 for VP and HOLD) the second-order stochastic exponential integrator is first, or
#: within 3 % of the first (CLD at 100); below, each SDE has its own best.
DEFAULTS: dict[int, list[tuple[float, str]]] = {
    1: [(15, "sscs"), (math.inf, "exp2m-sde")],  # VP
    2: [(15, "unipc2"), (35, "unipc3"), (math.inf, "exp2m-sde")],  # CLD
    3: [(15, "exp3s"), (math.inf, "exp2m-sde")],  # HOLD (and higher orders)
}
#: ``sampler="auto"`` (a config's ``sample.sampler: auto``): :func:`default_sampler` at the budget asked for
AUTO = "auto"


def default_sampler(sde: LinearSDE, nfe: int | None = None) -> str:
    """The measured best sampler for this SDE's order at this NFE budget (see :data:`DEFAULTS`); samplers that
    need a stationary law are replaced by the runner-up ``exp3s`` for SDEs without one (VE, sub-VP)."""
    table = DEFAULTS[min(max(sde.order, 1), 3)]
    name = next(name for bound, name in table if nfe is None or nfe < bound)
    if SAMPLERS[name].needs_stationary and not sde.has_stationary_law:
        name = "exp3s"
    if nfe is not None and nfe <= SAMPLERS[name].evals_per_step:  # too few for one step and the denoising
        name = "exp1"
    return name


def suggest_sampler(sde: LinearSDE, plan: "SamplingPlan") -> str:
    """A sampler to try when ``plan`` failed: the default one for this SDE and budget, or else a robust one."""
    name = default_sampler(sde, plan.nfe)
    if name != plan.sampler:
        return name
    return "sscs" if sde.has_stationary_law and plan.sampler != "sscs" else "exp1"


def parse_sampler(spec: str) -> tuple[str, dict]:
    """``"name"`` or ``"name:key=value,key=value"`` -> (name, options); ``"auto"`` -> ("auto", {}). Values are
    parsed as int, float, bool (true/false) or kept as strings; ``grid``, ``rho``, ``sigma_min`` and ``eps``
    (:data:`GRID_OPTIONS`) shape the time grid, the rest go to the sampler (e.g.
    ``"exp2m:form=eps,grid=logsnr,sigma_min=0.005"``, ``"pc:snr=0.05"``)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"sampler must be a non-empty string, got {spec!r}")
    if spec.strip() == AUTO:
        return AUTO, {}
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


#: spec options that shape the time grid (taken by :func:`sample`, not passed to the sampler function)
GRID_OPTIONS = ("grid", "eps", "rho", "sigma_min")

_FIXED_ARGS = {"score_fn", "sde", "u", "ts", "noise", "denoise", "progress", "callback"}


def check_sampler(spec: str, nfe: int | None = None) -> tuple[str, dict]:
    """Validate a sampler spec (``"name"`` or ``"name:key=value,..."``, see :func:`parse_sampler`) and, if
    given, an NFE budget for it, without sampling: ValueError naming the unknown sampler, option, grid or
    the NFE that is too small. Returns ``parse_sampler(spec)``."""
    import inspect

    from .grids import GRIDS

    name, options = parse_sampler(spec)
    if name == AUTO:  # resolved against the SDE and the budget when sampling
        return name, options
    opts = dict(options)
    grid, eps = opts.pop("grid", None), opts.pop("eps", None)
    rho, sigma_min = opts.pop("rho", None), opts.pop("sigma_min", None)
    if grid is not None and grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r} in sampler {spec!r}; choose one of {list(GRIDS)}")
    if eps is not None and sigma_min is not None:
        raise ValueError(f"sampler {spec!r}: give the stop as eps (a time) or sigma_min (a noise level), not both")
    for key, value in (("eps", eps), ("rho", rho), ("sigma_min", sigma_min)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
            raise ValueError(f"option {key} of sampler {spec!r} must be a positive number, got {value!r}")
    allowed = set(inspect.signature(SAMPLERS[name].fn).parameters) - _FIXED_ARGS
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise ValueError(f"sampler {name!r} has no option {unknown[0]!r}; its options: "
                         f"{sorted(allowed | {'grid', 'eps', 'rho', 'sigma_min'})}")
    if nfe is not None and SAMPLERS[name].evals_per_step:
        steps_for_nfe(name, nfe, **opts)
    return name, options


def _spec(sampler: str) -> SamplerSpec:
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    return SAMPLERS[sampler]


@dataclass(frozen=True)
class SamplingPlan:
    """A sampler spec resolved against an SDE and a budget: what :func:`sample` runs, and what reports say
    was run (the spec's own ``grid`` / stop win over the arguments, which win over the sampler's defaults)."""

    sampler: str
    options: dict
    """Options passed to the sampler function."""
    grid: str
    rho: float
    eps: float
    """The stop time: the last time of the grid (the final denoising step is taken there)."""
    sigma_min: float | None
    """The stop as a noise level (:func:`~holdsgm.samplers.grids.noise_level`), when it was given as one."""
    steps: int
    nfe: int | None
    """The budget asked for (None for the adaptive ``ode``)."""

    @property
    def spec(self) -> str:
        """The full spec string, every setting spelled out (``exp1:grid=quadratic,sigma_min=0.01``)."""
        opts = dict(self.options, grid=self.grid)
        if self.grid in ("rho", "edm"):
            opts["rho"] = self.rho
        if self.sigma_min is not None:
            opts["sigma_min"] = self.sigma_min
        else:
            opts["eps"] = self.eps
        return f"{self.sampler}:" + ",".join(f"{k}={_fmt(v)}" for k, v in opts.items())

    def describe(self) -> dict:
        """JSON-ready settings for reports."""
        return {"sampler": self.sampler, "spec": self.spec, "grid": self.grid, "stop_time": self.eps,
                "sigma_min": self.sigma_min, "steps": self.steps, "nfe_budget": self.nfe, "options": self.options}


def _fmt(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return f"{v:g}" if isinstance(v, float) else str(v)


def plan_sampling(sde: LinearSDE, sampler: str | None = None, *, nfe: int | None = None, steps: int | None = None,
                  grid: str | None = None, eps: float | None = None, sigma_min: float | None = None,
                  denoise: bool = True, **options) -> SamplingPlan:
    """Resolve ``sampler`` (a name or spec; None: :func:`default_sampler` for this SDE and budget) into a
    :class:`SamplingPlan`: its options, its grid (spec > ``grid`` > the sampler's measured default), its stop
    (spec > ``eps`` (a time) or ``sigma_min`` (a noise level) > :data:`DEFAULT_SIGMA_MIN`) and its steps."""
    if sampler is None or sampler == AUTO:
        sampler = default_sampler(sde, nfe)
    name, parsed = parse_sampler(sampler)
    options = {**parsed, **options}
    grid = options.pop("grid", grid)
    spec_eps, spec_sigma = options.pop("eps", None), options.pop("sigma_min", None)
    if spec_eps is not None or spec_sigma is not None:  # the spec's stop replaces the arguments'
        eps, sigma_min = spec_eps, spec_sigma
    if eps is not None and sigma_min is not None:
        raise ValueError("give the stop as eps (a time) or sigma_min (a noise level), not both")
    spec = _spec(name)
    grid = spec.grid if grid is None else grid
    rho = float(options.pop("rho", 7.0 if grid == "edm" else 2.0))
    if spec.needs_stationary and not sde.has_stationary_law:
        raise ValueError(f"sampler {name!r} needs an SDE with a stationary law (vp, cld, hold, langevin); "
                         f"{sde.name!r} has none")
    if eps is None:
        sigma_min = DEFAULT_SIGMA_MIN if sigma_min is None else sigma_min
        eps = time_at_noise_level(sde, sigma_min)
    if steps is None:
        if spec.evals_per_step == 0:
            steps = 1
        elif nfe is None:
            raise ValueError("give nfe or steps")
        else:
            steps = steps_for_nfe(name, nfe, denoise, **options)
    return SamplingPlan(name, options, grid, rho, float(eps), sigma_min, steps, nfe)


def sample(score_fn: ScoreFn, sde: LinearSDE, data_shape, *, sampler: str | None = None, nfe: int | None = None,
           steps: int | None = None, grid: str | None = None, eps: float | None = None,
           sigma_min: float | None = None, noise=None, denoise: bool = True, progress: bool = False, callback=None,
           dtype=torch.float32, device=None, bound: float | str | None = "auto", **options) -> SamplerOutput:
    """Draw ``data_shape[0]`` samples: u_T from the prior, then ``sampler`` on a time grid from T to the stop.

    ``sampler``: a name or spec ``name:key=value,...`` (None or 'auto': :func:`default_sampler`, the measured
    best for this SDE at this budget). Give either ``nfe`` (a budget of score evaluations, converted to steps) or
    ``steps``. ``grid`` (None: the sampler's default) and the stop, ``sigma_min`` (a noise level, the default
    :data:`DEFAULT_SIGMA_MIN`) or ``eps`` (a time), are overridden by the spec's own ``grid`` / ``sigma_min``
    / ``eps``; ``rho`` sets the exponent of the ``rho`` (default 2) and ``edm`` (default 7) grids (see
    :func:`plan_sampling`). ``noise`` is None, an int seed, a Generator, per-sample seeds (batch-size
    independent results) or a callable. Extra ``options`` go to the sampler (e.g. ``snr`` for 'pc',
    ``rtol`` for 'ode').

    ``bound``: the sampler stops with :class:`~holdsgm.errors.NumericsError` naming the step when any state
    entry exceeds it in absolute value ('auto': :func:`default_bound`; None: no check), instead of returning
    numbers that are finite but garbage.
    """
    plan = plan_sampling(sde, sampler, nfe=nfe, steps=steps, grid=grid, eps=eps, sigma_min=sigma_min,
                         denoise=denoise, **options)
    ts = sde_time_grid(sde, plan.grid, plan.steps, plan.eps, rho=plan.rho)
    noise = as_noise(noise)
    u = sde.prior_sample(data_shape, noise=noise, dtype=dtype, device=device)
    if bound is not None:
        callback = _Guard(sde, plan, default_bound(sde) if bound == "auto" else float(bound), callback)
    return SAMPLERS[plan.sampler].fn(score_fn, sde, u, ts, noise=noise, denoise=denoise, progress=progress,
                                     callback=callback, **plan.options)


#: ``bound='auto'``: a state entry beyond this many prior standard deviations (and beyond this value) stops
#: a sampler. The reverse process's states are distributed like the data or the prior (O(1) here); a sampler
#: that diverges goes far beyond (HOLD with exp2m on a uniform grid: a ~ 2e5; images |x| ~ 1e5), while an
#: undertrained but working model can wander to ~100 (a 30-step demo model with SSCS: 106)
BOUND_FACTOR = 1000.0


def default_bound(sde: LinearSDE) -> float:
    """The 'auto' bound on a sampler's state: :data:`BOUND_FACTOR` x max(1, the prior's largest sd)."""
    sd = sde.cached(("prior_sd",), lambda: float(torch.diagonal(sde.prior_cov()).max().sqrt()))
    return BOUND_FACTOR * max(1.0, sd)


class _Guard:
    """A step callback that raises NumericsError when the state leaves [-bound, bound] or is not finite,
    then calls the caller's callback."""

    def __init__(self, sde: LinearSDE, plan: SamplingPlan, bound: float, inner=None):
        self.sde, self.plan, self.bound, self.inner = sde, plan, bound, inner

    def __call__(self, i: int, t: float, u) -> None:
        m = float(u.detach().abs().amax())
        if not m <= self.bound:  # NaN fails too
            what = "NaN/inf" if not math.isfinite(m) else f"|u| = {m:.3g} > {self.bound:.3g}"
            raise NumericsError(
                f"sampler {self.plan.spec} left the plausible range at step {i + 1} of {self.plan.steps} "
                f"(t = {t:.4g}): {what}, the bound of {BOUND_FACTOR:g}x the prior's scale; its samples would be "
                f"garbage. Try --sampler {suggest_sampler(self.sde, self.plan)}, or more NFE")
        if self.inner is not None:
            self.inner(i, t, u)
