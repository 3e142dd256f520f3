"""Reverse-time samplers (pure functions) for any :class:`holdsgm.sde.LinearSDE` and any score function.

Samplers know no network: they take ``score_fn(u, t)``, the score of the last phase-space component.
"""

from .api import (
    AUTO,
    DEFAULT_SIGMA_MIN,
    SAMPLERS,
    SamplerSpec,
    SamplingPlan,
    check_sampler,
    default_sampler,
    evals_per_step,
    parse_sampler,
    plan_sampling,
    sample,
    steps_for_nfe,
)
from .core import SamplerOutput, adaptive_ode, euler_maruyama, predictor_corrector, probability_flow, splitting
from .grids import GRIDS, noise_level, time_at_noise_level, time_grid
from .noise import BatchNoise, PerSampleNoise, as_noise

__all__ = [
    "AUTO", "BatchNoise", "DEFAULT_SIGMA_MIN", "GRIDS", "PerSampleNoise", "SAMPLERS", "SamplerOutput", "SamplerSpec",
    "SamplingPlan", "adaptive_ode", "as_noise", "check_sampler", "default_sampler", "euler_maruyama",
    "evals_per_step", "noise_level", "parse_sampler", "plan_sampling", "predictor_corrector", "probability_flow",
    "sample", "splitting", "steps_for_nfe", "time_at_noise_level", "time_grid",
]
