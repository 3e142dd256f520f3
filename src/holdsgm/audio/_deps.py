"""Optional audio dependencies (the ``audio`` extra), imported on first use with a one-line error."""

from __future__ import annotations

import importlib

from ..errors import HoldsgmError

_PIP = {"soundfile": "soundfile", "librosa": "librosa", "soxr": "soxr", "pesq": "pesq", "pystoi": "pystoi"}


def require(module: str):
    """Import ``module`` or raise HoldsgmError saying how to install the audio extras."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pkg = _PIP.get(module.split(".")[0], module)
        raise HoldsgmError(f"audio support needs the package {pkg!r} ({e}); install the audio extras: "
                           f"pip install 'holdsgm[audio]'") from None
