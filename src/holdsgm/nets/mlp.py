"""A time-conditioned MLP for vector data (2-D toys, low-dimensional mixtures)."""

from __future__ import annotations

from torch import Tensor, nn

from ..errors import ConfigError
from .common import ScoreNetwork, check_choice, check_int, check_num, zero_init
from .embeddings import TIME_EMBEDDINGS, ClassEmbedding, TimeEmbedding, prepare_time


class MLP(ScoreNetwork):
    """``out = W_out h_depth``, ``h_0 = u``, ``h_{i+1} = SiLU(W_i h_i + E_i e)`` (``depth`` hidden layers of
    width ``hidden``) where ``e`` is the
    time embedding (plus the class embedding when ``n_classes > 0``), injected additively in every
    hidden layer. The output layer is zero-initialised (the network starts at 0).

    ``forward(u, t, y=None)``: u (B, in_features), t (B,) in [0, 1], y (B,) int64 or None; returns
    (B, out_features). With ``n_classes > 0``, label ``n_classes`` or ``y=None`` means unconditional;
    with ``n_classes == 0`` y is ignored.
    """

    kind = "mlp"
    num_skips = 0

    def __init__(self, in_features: int, out_features: int, hidden: int = 256, depth: int = 3,
                 time_embedding: str = "fourier", emb_dim: int = 128, n_classes: int = 0,
                 fourier_scale: float = 16.0):
        super().__init__()
        check_int(in_features, "in_features", 1)
        check_int(out_features, "out_features", 1)
        check_int(hidden, "hidden", 1)
        check_int(depth, "depth", 1)
        check_choice(time_embedding, "time_embedding", TIME_EMBEDDINGS)
        check_int(emb_dim, "emb_dim", 2)
        check_int(n_classes, "n_classes", 0)
        check_num(fourier_scale, "fourier_scale", positive=True)
        self.config = dict(in_features=in_features, out_features=out_features, hidden=hidden, depth=depth,
                           time_embedding=time_embedding, emb_dim=emb_dim, n_classes=n_classes,
                           fourier_scale=float(fourier_scale))
        self.in_features, self.out_features, self.n_classes = in_features, out_features, n_classes
        self.time_emb = TimeEmbedding(time_embedding, emb_dim, emb_dim, fourier_scale=fourier_scale)
        self.class_emb = ClassEmbedding(n_classes, emb_dim) if n_classes > 0 else None
        self.layers = nn.ModuleList(nn.Linear(in_features if i == 0 else hidden, hidden)
                                    for i in range(depth))
        self.emb_proj = nn.ModuleList(nn.Linear(emb_dim, hidden) for _ in range(depth))
        self.act = nn.SiLU()
        self.out = nn.Linear(hidden, out_features)
        zero_init(self.out)

    def forward(self, u: Tensor, t: Tensor, y: Tensor | None = None, skip_scale=None) -> Tensor:
        """Accepts ``skip_scale`` only as None (the MLP has no skip connections)."""
        if u.dim() != 2 or u.shape[1] != self.in_features:
            raise ConfigError(f"MLP expects input (B, {self.in_features}), got {tuple(u.shape)}")
        if skip_scale is not None:
            raise ConfigError("skip_scale is only supported by the U-Net (the MLP has no skip connections)")
        b = u.shape[0]
        e = self.time_emb(prepare_time(t, b, u.device))
        if self.class_emb is not None:
            e = e + self.class_emb(y, b, u.device)
        e = self.act(e)
        h = u
        for lin, proj in zip(self.layers, self.emb_proj):
            h = self.act(lin(h) + proj(e))
        return self.out(h)
