"""Probability-flow ODE likelihoods (exact or Hutchinson divergence), with the auxiliary-variable
correction for n >= 2, and bits/dim with uniform dequantisation."""

from .ode import LikelihoodOutput, bits_per_dim, dequantize, ode_likelihood

__all__ = ["LikelihoodOutput", "bits_per_dim", "dequantize", "ode_likelihood"]
