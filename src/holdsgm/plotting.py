"""The one place figures are made and written: matplotlib on the Agg backend, PNG files.

matplotlib is imported lazily, so importing holdsgm never pulls it in (nor picks a backend for the user).
"""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi: int = 110, tight: bool = True) -> Path:
    """Write ``fig`` to ``path`` (parent folders created), close it, and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight" if tight else None)
    pyplot().close(fig)
    return path
