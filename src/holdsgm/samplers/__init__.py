"""Reverse-time samplers (pure functions) for any :class:`holdsgm.sde.LinearSDE` and any score function.

Samplers know no network: they take ``score_fn(u, t)``, the score of the last phase-space component.
"""

from .api import SAMPLERS, SamplerSpec, check_sampler, evals_per_step, parse_sampler, sample, steps_for_nfe
from .core import SamplerOutput, adaptive_ode, euler_maruyama, predictor_corrector, probability_flow, splitting
from .grids import GRIDS, time_grid
from .noise import BatchNoise, PerSampleNoise, as_noise

__all__ = [
    "BatchNoise", "GRIDS", "PerSampleNoise", "SAMPLERS", "SamplerOutput", "SamplerSpec", "adaptive_ode",
    "as_noise", "check_sampler", "euler_maruyama", "evals_per_step", "parse_sampler", "predictor_corrector",
    "probability_flow", "sample", "splitting", "steps_for_nfe", "time_grid",
]
