"""Linear phase-space SDEs (VP, VE, sub-VP, CLD, HOLD, any order n), their kernels and the mixture oracle.

This package is the ground floor of holdsgm: it imports nothing else of the project but
:mod:`holdsgm.mixture`.
"""

from .base import Kernel, LinearSDE, ReverseProcess, ScoreFn
from .kernels import JITTER, cholesky, kron_eye, van_loan
from .langevin import VESDE, VPSDE, Langevin, PhaseSpaceSDE, sde_dicts_equal, sde_from_dict
from .oracle import MixtureOracle
from .posterior import clipped_score, posterior_mean, reference_kernel
from .presets import PRESETS, make_sde, preset_parameters
from .schedules import ConstantSchedule, GeometricVarianceSchedule, LinearSchedule, Schedule
from .subvp import SubVPSDE

__all__ = [
    "ConstantSchedule", "GeometricVarianceSchedule", "JITTER", "Kernel", "Langevin", "LinearSDE", "clipped_score",
    "LinearSchedule", "MixtureOracle", "PRESETS", "PhaseSpaceSDE", "ReverseProcess", "Schedule", "ScoreFn",
    "SubVPSDE", "VESDE", "VPSDE", "cholesky", "kron_eye", "make_sde", "posterior_mean", "preset_parameters",
    "reference_kernel", "sde_dicts_equal", "sde_from_dict", "van_loan",
]
