"""holdsgm: score-based generative modelling with phase-space SDEs (VP, CLD, HOLD).

Nothing here touches CUDA at import time; submodules are imported on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "make_sde": "holdsgm.sde",
    "Langevin": "holdsgm.sde",
    "VPSDE": "holdsgm.sde",
    "VESDE": "holdsgm.sde",
    "SubVPSDE": "holdsgm.sde",
    "MixtureOracle": "holdsgm.sde",
    "GaussianMixture": "holdsgm.mixture",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'holdsgm' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
