"""Small CNN classifiers for scikit-learn's 8x8 digits and for Fashion-MNIST, trained by holdsgm itself and
cached on disk.

The digit classifiers supply the feature space of the FD-digits metric (:mod:`holdsgm.eval.fd_digits`) and a
judge of class-conditional samples; the Fashion-MNIST one (:func:`image_classifier`, trained on the official
60 000 training images, scored on the 10 000 test images) judges class-conditional Fashion-MNIST samples.
Nothing is downloaded: the first call trains the network on the digits TRAIN split
(``load_dataset('digits', split='train')``, 1617 images; seeded, CPU, ~10-30 s on one thread) and writes it
to the cache; later calls load it.

Two variants, trained independently (different seed, widths and feature size):

* ``'main'``: the FD-digits feature extractor (penultimate layer, :data:`FEATURE_DIMS` ``['main']``
  = 64 features).
* ``'heldout'``: 96 features, other conv widths and seed; a second opinion for judging
  class-conditional samples (e.g. a guidance benchmark where the main classifier, or something
  trained like it, may have steered the sampler).

Architecture: three 3x3 conv layers (8x8 -> 4x4 -> 2x2 with ReLU and max-pooling), a linear feature
layer with ReLU (the features), dropout and a linear head (10 logits). Training: AdamW with a
one-cycle learning rate, light augmentation (random one-pixel shifts with background padding,
dequantisation noise within a pixel level, Gaussian noise of random std up to ``noise_max``, values
clamped to [-1, 1]) so that continuous, slightly noisy generated samples are not out of distribution.

Cache: ``<cache_dir>/fd_digits/digit_classifier_<variant>.safetensors`` (weights, never a pickle)
and ``.json`` (recipe settings, train/test accuracy, SHA-256 of the training and test data and of
the weights file, torch version, creation time). ``cache_dir`` defaults to ``$HOLDSGM_CACHE`` or else
``~/.cache/holdsgm``. Both files are written atomically (temporary file + ``os.replace``; the JSON,
written last, commits the pair). A cache entry is used only if the JSON parses, its recipe and data
hashes match the current ones and the weights file matches its recorded hash and loads into the
network; otherwise the classifier is retrained (with a warning saying why) and the entry rewritten.
If the cache cannot be written the trained classifier is still returned (with a warning).

Reproducibility: training is a pure function of the recipe on a given machine and thread count;
float summation order (thread count, CPU instruction set) can change the weights in the last bits,
so FD-digits values from different machines agree to a few significant digits, not bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DataError
from ..files import atomic_write

RECIPE_VERSION = 1
CACHE_SUBDIR = "fd_digits"
N_CLASSES = 10
IMAGE_SHAPE = (1, 8, 8)

# The training recipes. Changing any value invalidates cached classifiers (they are retrained).
VARIANTS: dict[str, dict] = {
    "main": dict(seed=20240611, widths=[16, 32, 64], feature_dim=64, dropout=0.25, epochs=25,
                 batch_size=128, lr=5e-3, weight_decay=5e-4, shift_prob=0.5, dequantize=True,
                 noise_max=0.1, label_smoothing=0.05, split_seed=0, test_fraction=0.1),
    "heldout": dict(seed=971, widths=[24, 48, 48], feature_dim=96, dropout=0.25, epochs=20,
                    batch_size=128, lr=5e-3, weight_decay=5e-4, shift_prob=0.5, dequantize=True,
                    noise_max=0.1, label_smoothing=0.05, split_seed=0, test_fraction=0.1),
}
FEATURE_DIMS = {k: v["feature_dim"] for k, v in VARIANTS.items()}
#: Fashion-MNIST's recipe (28x28, 256 levels): wider, fewer epochs (60 000 images); ~91 % test accuracy
FASHION_VARIANTS: dict[str, dict] = {
    "main": dict(seed=20261203, widths=[32, 64, 128], feature_dim=128, dropout=0.25, epochs=4,
                 batch_size=128, lr=3e-3, weight_decay=5e-4, shift_prob=0.5, dequantize=True,
                 noise_max=0.1, label_smoothing=0.05),
}
#: the data sets with a classifier: image shape, quantisation levels, recipes, cache file stem
DATASETS: dict[str, dict] = {
    "digits": dict(shape=IMAGE_SHAPE, levels=17, variants=VARIANTS, stem="fd_digits/digit_classifier"),
    "fashion-mnist": dict(shape=(1, 28, 28), levels=256, variants=FASHION_VARIANTS,
                          stem="classifiers/fashion-mnist_classifier"),
}
_FORMAT = "holdsgm.digit_classifier"


# ---------------------------------------------------------------------- network
class DigitCNN(nn.Module):
    """conv(1->w1) -> conv(w1->w2) -> pool -> conv(w2->w3) -> pool -> fc((S/4)^2 w3 -> F) -> ReLU -> fc(F -> 10)
    for S x S images (S = 8: the digits, 28: Fashion-MNIST)."""

    def __init__(self, widths=(16, 32, 64), feature_dim: int = 64, dropout: float = 0.25, image_size: int = 8):
        super().__init__()
        w1, w2, w3 = (int(w) for w in widths)
        self.conv1 = nn.Conv2d(1, w1, 3, padding=1)
        self.conv2 = nn.Conv2d(w1, w2, 3, padding=1)
        self.conv3 = nn.Conv2d(w2, w3, 3, padding=1)
        self.fc = nn.Linear((image_size // 4) ** 2 * w3, int(feature_dim))
        self.drop = nn.Dropout(float(dropout))
        self.head = nn.Linear(int(feature_dim), N_CLASSES)

    def features(self, x: Tensor) -> Tensor:
        h = F.relu(self.conv1(x))
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.max_pool2d(F.relu(self.conv3(h)), 2)
        return F.relu(self.fc(h.flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.drop(self.features(x)))


def check_images(x, what: str = "images", shape: tuple[int, int, int] = IMAGE_SHAPE) -> Tensor:
    """``x`` as a float32 CPU tensor (N, *shape) clamped to [-1, 1] (default shape: the 8x8 digits).

    Accepts a float tensor or array of shape (N, 1, H, W), (N, H, W) or (N, H * W). Raises
    :class:`~holdsgm.errors.DataError` for another shape, a non-float dtype (integer images would
    be clamped to garbage), or NaN/inf values (a diverged sampler should fail loudly, not be clamped
    into a plausible score).
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except Exception as e:  # ragged lists, objects
            raise DataError(f"{what}: not a numeric array ({' '.join(str(e).split())})") from None
    if not t.is_floating_point():
        raise DataError(f"{what}: expected floating-point images with values in [-1, 1], got dtype {t.dtype} "
                        f"(8-bit images: x / 127.5 - 1; digit levels 0..16: k / 8 - 1)")
    want, (_, hh, ww) = tuple(shape), shape
    got = tuple(t.shape)
    if t.dim() == 4 and got[1:] == want:
        pass
    elif t.dim() == 3 and got[1:] == (hh, ww):
        t = t[:, None]
    elif t.dim() == 2 and got[1] == hh * ww:
        t = t.reshape(-1, *want)
    else:
        kind = "digit images" if want == IMAGE_SHAPE else "images"
        raise DataError(f"{what}: expected {hh}x{ww} {kind} of shape (N, 1, {hh}, {ww}), (N, {hh}, {ww}) or "
                        f"(N, {hh * ww}), got {got}")
    t = t.to(device="cpu", dtype=torch.float32)
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).flatten(1).any(1).sum())
        raise DataError(f"{what}: {bad} of {got[0]} image(s) contain NaN or infinite values")
    return t.clamp(-1.0, 1.0)


class DigitClassifier(nn.Module):
    """A trained digit CNN plus its record.

    ``features``/``logits``/``predict`` take images in [-1, 1] of shape (N, 1, 8, 8) (also (N, 8, 8)
    or (N, 64)), clamp them to [-1, 1], run in eval mode without gradients, in batches, and return
    CPU tensors; NaN/inf inputs raise :class:`~holdsgm.errors.DataError`. ``forward`` is the raw
    network (logits, no checks or clamping; usable with autograd, e.g. for guidance experiments).

    Attributes: ``variant``, ``feature_dim``, ``test_accuracy`` and ``train_accuracy`` (clean images
    of the digits test/train split), ``meta`` (the cache JSON record), ``from_cache`` (True when it
    was loaded rather than trained by this call), ``cache_files`` (weights and JSON paths, or None).
    """

    def __init__(self, net: DigitCNN, meta: dict, from_cache: bool, cache_files=None):
        super().__init__()
        self.net = net
        self.meta = meta
        self.dataset = str(meta.get("dataset", "digits"))
        self.image_shape = tuple(DATASETS[self.dataset]["shape"])
        self.variant = meta["variant"]
        self.feature_dim = int(meta["settings"]["feature_dim"])
        self.test_accuracy = float(meta["test_accuracy"])
        self.train_accuracy = float(meta["train_accuracy"])
        self.from_cache = bool(from_cache)
        self.cache_files = cache_files
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    @torch.no_grad()
    def _batched(self, fn, out_dim: int, x, batch_size: int) -> Tensor:
        t = check_images(x, shape=self.image_shape)
        was_training = self.training
        self.eval()
        try:
            p = next(self.parameters())
            outs = [fn(t[i:i + batch_size].to(p.device, p.dtype)).float().cpu()
                    for i in range(0, t.shape[0], batch_size)]
        finally:
            self.train(was_training)
        if not outs:
            return torch.empty(0, out_dim)
        return torch.cat(outs)

    def features(self, x, batch_size: int = 2048) -> Tensor:
        """Penultimate-layer features (N, feature_dim), float32 on the CPU."""
        return self._batched(self.net.features, self.feature_dim, x, batch_size)

    def logits(self, x, batch_size: int = 2048) -> Tensor:
        """Class logits (N, 10), float32 on the CPU."""
        return self._batched(self.net, N_CLASSES, x, batch_size)

    def predict(self, x, batch_size: int = 2048) -> Tensor:
        """Predicted labels (N,) int64 on the CPU."""
        return self.logits(x, batch_size).argmax(1)

    def extra_repr(self) -> str:
        return (f"variant={self.variant!r}, feature_dim={self.feature_dim}, "
                f"test_accuracy={self.test_accuracy:.4f}, from_cache={self.from_cache}")


# ---------------------------------------------------------------------- data and training
def _digits_splits(settings: dict):
    from ..data import load_dataset

    kw = dict(test_fraction=settings["test_fraction"], split_seed=settings["split_seed"])
    return load_dataset("digits", split="train", **kw), load_dataset("digits", split="test", **kw)


def _fashion_splits(settings: dict):
    from ..data import load_dataset

    return load_dataset("fashion-mnist"), load_dataset("fashion-mnist-test")


def _data_hash(ds) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(ds.x.numpy(), dtype="<f4").tobytes())
    h.update(np.ascontiguousarray(ds.y.numpy(), dtype="<i8").tobytes())
    return h.hexdigest()


def _augment(x: Tensor, s: dict, g: torch.Generator, levels: int = 17) -> Tensor:
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    if s["shift_prob"] > 0:
        padded = F.pad(x, (1, 1, 1, 1), value=-1.0)  # background is -1
        shift = torch.randint(-1, 2, (n, 2), generator=g)
        shift[torch.rand(n, generator=g) >= s["shift_prob"]] = 0
        out = torch.empty_like(x)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                m = (shift[:, 0] == dy) & (shift[:, 1] == dx)
                if m.any():
                    out[m] = padded[m, :, 1 + dy:1 + h + dy, 1 + dx:1 + w + dx]
        x = out
    if s["dequantize"]:
        x = x + (torch.rand(x.shape, generator=g) - 0.5) * (2.0 / (levels - 1))  # within one level
    if s["noise_max"] > 0:
        sigma = torch.rand(n, 1, 1, 1, generator=g) * s["noise_max"]
        x = x + sigma * torch.randn(x.shape, generator=g)
    return x.clamp(-1.0, 1.0)


@torch.no_grad()
def _accuracy(net: nn.Module, x: Tensor, y: Tensor) -> float:
    net.eval()
    return float((net(x).argmax(1) == y).float().mean())


def _accuracy_batched(net: nn.Module, x: Tensor, y: Tensor, batch: int = 4096) -> float:
    if len(x) <= batch:
        return _accuracy(net, x, y)  # the digits' path, as before (same float sums)
    hits = sum(_accuracy(net, x[i:i + batch], y[i:i + batch]) * len(x[i:i + batch]) for i in range(0, len(x), batch))
    return hits / len(x)


def _train(variant: str, settings: dict, train, test, dataset: str = "digits") -> tuple[DigitCNN, dict]:
    s, spec = settings, DATASETS[dataset]
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(s["seed"])
        net = DigitCNN(s["widths"], s["feature_dim"], s["dropout"], spec["shape"][-1])
        g = torch.Generator().manual_seed(s["seed"] + 1)
        x, y = train.x, train.y
        n = x.shape[0]
        steps_per_epoch = math.ceil(n / s["batch_size"])
        opt = torch.optim.AdamW(net.parameters(), lr=s["lr"], weight_decay=s["weight_decay"])
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s["lr"], epochs=s["epochs"],
                                                    steps_per_epoch=steps_per_epoch)
        net.train()
        for _ in range(s["epochs"]):
            perm = torch.randperm(n, generator=g)
            for i in range(0, n, s["batch_size"]):
                idx = perm[i:i + s["batch_size"]]
                xb = _augment(x[idx], s, g, spec["levels"])
                loss = F.cross_entropy(net(xb), y[idx], label_smoothing=s["label_smoothing"])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        net.eval()
    meta = {
        "format": _FORMAT,
        "recipe_version": RECIPE_VERSION,
        **({} if dataset == "digits" else {"dataset": dataset}),
        "variant": variant,
        "settings": s,
        "train_data_sha256": _data_hash(train),
        "test_data_sha256": _data_hash(test),
        "n_train": int(train.x.shape[0]),
        "n_test": int(test.x.shape[0]),
        "train_accuracy": _accuracy_batched(net, train.x, train.y),
        "test_accuracy": _accuracy_batched(net, test.x, test.y),
        "train_seconds": round(time.perf_counter() - t0, 3),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return net, meta


# ---------------------------------------------------------------------- cache
def default_cache_dir() -> Path:
    """``$HOLDSGM_CACHE`` if set (and non-empty), else ``~/.cache/holdsgm``."""
    env = os.environ.get("HOLDSGM_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "holdsgm"


def cache_paths(variant: str = "main", cache_dir=None, dataset: str = "digits") -> tuple[Path, Path]:
    """(weights .safetensors, record .json) paths of a variant's cache entry."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    stem = root / f"{DATASETS[dataset]['stem']}_{variant}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


class _InvalidCache(Exception):
    pass


def _normalised(obj):
    return json.loads(json.dumps(obj))


def _load_cached(variant: str, settings: dict, train, test, wpath: Path,
                 jpath: Path, dataset: str = "digits") -> tuple[DigitCNN, dict]:
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    try:
        meta = json.loads(jpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise _InvalidCache(f"cannot read {jpath.name}: {' '.join(str(e).split())[:120]}") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise _InvalidCache(f"{jpath.name} is not a digit-classifier record")
    if meta.get("recipe_version") != RECIPE_VERSION or meta.get("settings") != _normalised(settings):
        raise _InvalidCache("the training recipe changed")
    if meta.get("variant") != variant or meta.get("dataset", "digits") != dataset:
        raise _InvalidCache(f"{jpath.name} records variant {meta.get('variant')!r} of "
                            f"{meta.get('dataset', 'digits')!r}")
    if meta.get("train_data_sha256") != _data_hash(train) or meta.get("test_data_sha256") != _data_hash(test):
        raise _InvalidCache(f"the {dataset} train/test data changed")
    for k in ("test_accuracy", "train_accuracy"):
        v = meta.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise _InvalidCache(f"{jpath.name} has an invalid {k}")
    try:
        blob = wpath.read_bytes()
    except OSError as e:
        raise _InvalidCache(f"cannot read {wpath.name}: {' '.join(str(e).split())[:120]}") from None
    if hashlib.sha256(blob).hexdigest() != meta.get("weights_sha256"):
        raise _InvalidCache(f"{wpath.name} does not match its recorded SHA-256 (corrupt or replaced)")
    net = DigitCNN(settings["widths"], settings["feature_dim"], settings["dropout"], DATASETS[dataset]["shape"][-1])
    try:
        state = st_load(blob)
        net.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, ValueError, KeyError, TypeError) as e:
        raise _InvalidCache(f"cannot load {wpath.name}: {' '.join(str(e).split())[:120]}") from None
    if not all(torch.isfinite(p).all() for p in net.parameters()):
        raise _InvalidCache(f"{wpath.name} holds non-finite weights")
    net.eval()
    return net, meta


def _save(net: DigitCNN, meta: dict, wpath: Path, jpath: Path) -> dict:
    from safetensors.torch import save as st_save

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    # one metadata key only: safetensors writes metadata from a hash map, so with several keys their
    # order (hence the file's bytes and SHA-256) would vary from run to run
    blob = st_save(state, metadata={"format": f"{_FORMAT}/{meta['variant']}"})
    meta = dict(meta, weights_sha256=hashlib.sha256(blob).hexdigest(), weights_file=wpath.name)
    wpath.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(wpath, blob)
    atomic_write(jpath, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return meta


def digit_classifier(device="cpu", cache_dir=None, retrain: bool = False,
                     variant: str = "main") -> DigitClassifier:
    """The project's digit classifier (``variant='main'``: FD-digits features; ``'heldout'``: an
    independently trained judge), loaded from the cache or trained (and cached) on first use.

    Args:
        device: where the returned network lives (training always runs on the CPU).
        cache_dir: cache root (default ``$HOLDSGM_CACHE`` or ``~/.cache/holdsgm``); the files go to
            ``<cache_dir>/fd_digits/``.
        retrain: train afresh even if a valid cache entry exists (and overwrite it).
        variant: ``'main'`` or ``'heldout'``.

    Returns a :class:`DigitClassifier` in eval mode with frozen parameters; ``from_cache`` tells
    whether it was loaded. An invalid cache entry (corrupt/truncated files, another recipe or data)
    is retrained with a warning; an unwritable cache only warns.
    """
    return image_classifier("digits", device, cache_dir, retrain, variant)


def image_classifier(dataset: str = "digits", device="cpu", cache_dir=None, retrain: bool = False,
                     variant: str = "main") -> DigitClassifier:
    """The classifier of ``dataset`` (``digits``: see :func:`digit_classifier`; ``fashion-mnist``: trained on
    the 60 000 training images, ~4 minutes on 2 cores the first time, then cached under
    ``<cache_dir>/classifiers/``), loaded from the cache or trained on first use."""
    if dataset not in DATASETS:
        raise DataError(f"no classifier for data set {dataset!r:.40}; one of {', '.join(DATASETS)}")
    variants = DATASETS[dataset]["variants"]
    if not isinstance(variant, str) or variant not in variants:
        raise DataError(f"unknown {dataset} classifier variant {variant!r:.40}; expected one of "
                        f"{', '.join(variants)}")
    if not isinstance(retrain, bool):
        raise DataError(f"retrain must be true or false, got {retrain!r:.40}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise DataError(f"invalid device {device!r:.40}: {e}") from None
    settings = _normalised(variants[variant])
    wpath, jpath = cache_paths(variant, cache_dir, dataset)
    train, test = _digits_splits(settings) if dataset == "digits" else _fashion_splits(settings)
    if not retrain and (wpath.exists() or jpath.exists()):
        try:
            net, meta = _load_cached(variant, settings, train, test, wpath, jpath, dataset)
            return DigitClassifier(net, meta, from_cache=True, cache_files=(wpath, jpath)).to(dev)
        except _InvalidCache as e:
            warnings.warn(f"{dataset} classifier cache {jpath.parent} ({variant}): {e}; retraining",
                          RuntimeWarning, stacklevel=2)
    net, meta = _train(variant, settings, train, test, dataset)
    files: tuple[Path, Path] | None = (wpath, jpath)
    try:
        meta = _save(net, meta, wpath, jpath)
    except OSError as e:
        warnings.warn(f"cannot write the {dataset} classifier cache to {jpath.parent}: "
                      f"{' '.join(str(e).split())[:160]}; using the trained network uncached",
                      RuntimeWarning, stacklevel=2)
        files = None
    return DigitClassifier(net, meta, from_cache=False, cache_files=files).to(dev)


__all__ = ["DATASETS", "DigitCNN", "DigitClassifier", "FASHION_VARIANTS", "FEATURE_DIMS", "VARIANTS", "cache_paths",
           "check_images", "default_cache_dir", "digit_classifier", "image_classifier"]
