"""Training objectives (DSM / HSM) and the eps -> score parameterisation."""

from .hsm import WEIGHTINGS, hsm_loss, sample_times
from .parameterization import EpsModel, gaussian_precision_row

__all__ = ["EpsModel", "WEIGHTINGS", "gaussian_precision_row", "hsm_loss", "sample_times"]
