"""Monotonic alignment search (MAS; Glow-TTS, Kim et al. 2020; used by Grad-TTS) and duration -> path.

Given the log-likelihood ``log_p[i, j]`` of mel frame j under text token i, MAS finds the monotonic,
surjective alignment (every frame goes to one token, the tokens in order, every token gets at least one
frame, the first frame to the first token and the last to the last) of largest total log-likelihood, by
dynamic programming over frames: ``Q[i, j] = log_p[i, j] + max(Q[i, j-1], Q[i-1, j-1])``. Vectorised with
NumPy over the batch and the tokens (a Python loop over frames), then backtracked.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import HoldsgmError


def maximum_path(log_p, x_len, y_len) -> np.ndarray:
    """The MAS alignment of each batch item: ``log_p`` (B, Tx, Ty) (NumPy or tensor; padded entries are
    ignored), ``x_len``/``y_len`` (B,) the tokens and frames of each item. Returns a 0/1 array (B, Tx, Ty)
    with exactly one 1 per frame ``j < y_len`` (none in the padding). HoldsgmError when an item has more
    tokens than frames (no alignment exists)."""
    lp = log_p.detach().cpu().double().numpy() if isinstance(log_p, Tensor) else np.asarray(log_p, np.float64)
    x_len = np.asarray(x_len.cpu() if isinstance(x_len, Tensor) else x_len, dtype=np.int64)
    y_len = np.asarray(y_len.cpu() if isinstance(y_len, Tensor) else y_len, dtype=np.int64)
    b, tx, ty = lp.shape
    if np.any(x_len < 1) or np.any(y_len < x_len) or np.any(x_len > tx) or np.any(y_len > ty):
        bad = int(np.argmax((x_len < 1) | (y_len < x_len) | (x_len > tx) | (y_len > ty)))
        raise HoldsgmError(f"no monotonic alignment of {x_len[bad]} token(s) to {y_len[bad]} frame(s) (batch item "
                           f"{bad}): every token needs at least one frame")
    neg = -np.inf
    q = np.full((b, tx), neg)
    q[:, 0] = lp[:, 0, 0]
    moved = np.zeros((b, ty, tx), dtype=bool)  # frame j's best predecessor was token i-1 (else token i)
    for j in range(1, ty):
        prev = np.concatenate([np.full((b, 1), neg), q[:, :-1]], axis=1)
        moved[:, j] = prev > q
        q = np.where(moved[:, j], prev, q) + lp[:, :, j]
    path = np.zeros((b, tx, ty), dtype=np.float32)
    rows = np.arange(b)
    i = x_len - 1
    for j in range(ty - 1, -1, -1):
        active = j < y_len
        path[rows[active], i[active], j] = 1.0
        step = active & (j > 0) & (i > 0) & ((i == j) | moved[rows, j, i])
        i = i - step
    return path


def gaussian_log_likelihood(mu: Tensor, y: Tensor) -> Tensor:
    """``log N(y_j; mu_i, I)`` for every token i and frame j: ``mu`` (B, C, Tx), ``y`` (B, C, Ty) ->
    (B, Tx, Ty), without the constant (it does not change the alignment)."""
    mu, y = mu.float(), y.float()
    return (-0.5 * (mu * mu).sum(1)[:, :, None] + torch.einsum("bci,bcj->bij", mu, y)
            - 0.5 * (y * y).sum(1)[:, None, :])


def durations_to_path(durations: Tensor, max_frames: int | None = None) -> Tensor:
    """The hard alignment (B, Tx, Ty) of integer ``durations`` (B, Tx) (frames per token; 0 for padding):
    token i covers frames ``cumsum[i-1] <= j < cumsum[i]``."""
    d = durations.long()
    ends = torch.cumsum(d, dim=1)
    ty = int(ends[:, -1].max()) if max_frames is None else max_frames
    j = torch.arange(ty, device=d.device)
    return ((j[None, None, :] < ends[:, :, None]) & (j[None, None, :] >= (ends - d)[:, :, None])).float()
