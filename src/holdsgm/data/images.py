"""The user's own data: a folder of PNG/JPEG images, an ``.npz``/``.npy`` file, or in-memory arrays.

Value rules (all loaders):

* integer arrays/8-bit images (values 0..255): ``x = k / 255 * 2 - 1`` in [-1, 1], ``n_bins=256``;
* float image arrays: if all values lie in [0, 1] they are mapped by ``x * 2 - 1``; otherwise, if they
  lie in [-1, 1], they are kept as they are; anything else is a DataError unless ``value_range=(lo, hi)``
  is given, which maps [lo, hi] linearly onto [-1, 1] for any dtype. Float data get ``n_bins=None``
  (continuous; no dequantisation) and ``data_range=(-1, 1)``;
* 2-D arrays (N, D) are vectors: cast to float32 and kept as they are (``value_range`` still applies),
  ``n_bins=None``, ``data_range=None`` (or (-1, 1) with ``value_range``).

Shape rules: (N, H, W) gets a channel axis (MNIST-like); (N, A, B, C) is NCHW or NHWC: with
``layout=None`` the smaller of axes 1 and 3 is the channel axis (ties: NCHW), ``layout='NCHW'`` or
``'NHWC'`` forces it. Images come out as (N, C, H, W) float32.

Every problem raises :class:`~holdsgm.errors.DataError` with a one-line message naming the file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .dataset import Dataset

log = logging.getLogger("holdsgm.data")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
DEFAULT_KEYS = ("x", "images", "arr_0")
DEFAULT_LABEL_KEYS = ("y", "labels")
MAX_CLASSES = 100_000
_GRAY_PREFIXES = ("1", "L", "I", "F")  # '1', 'L', 'LA', 'La', 'I', 'I;16*', 'F'


def _one_line(e: BaseException) -> str:
    s = str(e) or type(e).__name__
    return " ".join(s.split())


# ---------------------------------------------------------------------- arrays
def _check_value_range(value_range) -> tuple[float, float] | None:
    if value_range is None:
        return None
    try:
        lo, hi = (float(v) for v in value_range)
        ok = np.isfinite(lo) and np.isfinite(hi) and lo < hi
        ok = ok and not any(isinstance(v, (bool, str, bytes)) for v in value_range)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"option value_range must be two finite numbers lo < hi, got {value_range!r:.60}")
    return lo, hi


def _labels_from_array(y, n: int, src: str) -> tuple[torch.Tensor, int]:
    y = np.asarray(y)
    if y.dtype.kind not in "iuf" or y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{src}: labels must be a 1-D integer array of length {n}, "
                        f"got dtype {y.dtype} shape {tuple(y.shape)}")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise DataError(f"{src}: labels must be whole numbers")
    if n and (y.min() < 0 or y.max() >= MAX_CLASSES):
        raise DataError(f"{src}: labels must be in [0, {MAX_CLASSES}), found [{y.min()}, {y.max()}]")
    yt = torch.as_tensor(y.astype(np.int64))
    return yt, int(yt.max()) + 1 if n else 0


def dataset_from_arrays(x, y=None, name: str = "array", layout: str | None = None,
                        value_range=None, source: str | None = None) -> Dataset:
    """A :class:`Dataset` from an array-like ``x`` (and optional labels ``y``) following the module's
    shape and value rules. ``source`` names the origin in error messages (default: ``name``)."""
    src = source or name
    if layout is not None and layout not in ("NCHW", "NHWC"):
        raise DataError(f"option layout must be 'NCHW', 'NHWC' or None, got {layout!r:.60}")
    vr = _check_value_range(value_range)
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x)
    except Exception as e:  # ragged lists and the like
        raise DataError(f"{src}: data is not a rectangular numeric array ({_one_line(e)})") from None
    if a.dtype.kind not in "iuf":
        raise DataError(f"{src}: data must be an integer or float array, got dtype {a.dtype}")
    if a.ndim not in (2, 3, 4):
        raise DataError(f"{src}: expected an array (N, D) of vectors, (N, H, W) or (N, C, H, W)/(N, H, W, C) "
                        f"of images, got shape {tuple(a.shape)} (ndim {a.ndim})")
    if a.size == 0:
        raise DataError(f"{src}: data array is empty (shape {tuple(a.shape)})")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise DataError(f"{src}: data contain NaN or infinite values")
    integer = a.dtype.kind in "iu"
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4:
        nhwc = (a.shape[3] < a.shape[1]) if layout is None else layout == "NHWC"
        if nhwc:
            a = a.transpose(0, 3, 1, 2)
    vectors = a.ndim == 2
    lo_v, hi_v = float(a.min()), float(a.max())
    n_bins: int | None = None
    data_range: tuple[float, float] | None = (-1.0, 1.0)
    if vr is not None:
        lo, hi = vr
        if lo_v < lo or hi_v > hi:
            raise DataError(f"{src}: values span [{lo_v:.6g}, {hi_v:.6g}], outside value_range "
                            f"[{lo:g}, {hi:g}]")
        xf = (a.astype(np.float64) - lo) / (hi - lo) * 2 - 1
        if integer and lo == round(lo) and hi == round(hi):
            n_bins = int(hi - lo) + 1
    elif vectors:
        xf, data_range = a.astype(np.float64), None
    elif integer:
        if lo_v < 0 or hi_v > 255:
            raise DataError(f"{src}: integer images must have values in 0..255, found [{lo_v:g}, {hi_v:g}] "
                            f"(give their range: value_range=(lo, hi), in a config data.value_range: [lo, hi], e.g. "
                            f"--set data.value_range=[0,16])")
        xf, n_bins = a / 255.0 * 2 - 1, 256
    elif lo_v >= 0 and hi_v <= 1:
        xf = a.astype(np.float64) * 2 - 1
    elif lo_v >= -1 and hi_v <= 1:
        xf = a.astype(np.float64)
    else:
        raise DataError(f"{src}: float images must lie in [0, 1] or [-1, 1], found [{lo_v:.6g}, {hi_v:.6g}] "
                        f"(give their range to rescale: value_range=(lo, hi), in a config data.value_range: "
                        f"[lo, hi], e.g. --set data.value_range=[0,1000])")
    xt = torch.from_numpy(np.ascontiguousarray(xf, dtype=np.float32))
    if not torch.isfinite(xt).all():
        raise DataError(f"{src}: data overflow float32")
    n = xt.shape[0]
    yt, n_classes = (None, 0) if y is None else _labels_from_array(y, n, src)
    return Dataset(x=xt, y=yt, name=name, n_classes=n_classes, n_bins=n_bins, data_range=data_range)


def load_npz(path, key: str | None = None, label_key: str | None = None, labels: bool | None = None,
             layout: str | None = None, value_range=None) -> Dataset:
    """Load an ``.npz`` archive (or a single-array ``.npy`` file).

    The data array is ``key`` or else the first of ``x``, ``images``, ``arr_0`` present (or the only
    array of the file). Labels: ``label_key`` or else the first of ``y``, ``labels`` present;
    ``labels=None`` loads them when found, ``True`` requires them, ``False`` ignores them.
    """
    p = Path(path)
    for opt, v in (("key", key), ("label_key", label_key)):
        if v is not None and not isinstance(v, str):
            raise DataError(f"option {opt} must be a string, got {type(v).__name__}")
    if labels is not None and not isinstance(labels, bool):
        raise DataError(f"option labels must be true, false or null, got {labels!r:.60}")
    try:
        if not p.is_file():
            raise DataError(f"data file {p} does not exist" if not p.exists() else f"{p} is not a file")
    except DataError:
        raise
    except (OSError, ValueError) as e:
        raise DataError(f"cannot access data file {p}: {_one_line(e)}") from None
    try:
        z = np.load(p, allow_pickle=False)
    except Exception as e:  # not a zip/npy, truncated, pickled objects, ...
        raise DataError(f"cannot read {p} as .npz/.npy: {_one_line(e)}") from None
    try:
        if isinstance(z, np.ndarray):  # a single-array .npy file
            arrays = {k: z for k in _wanted_keys(["arr_0"], key, label_key, labels, p)}
        else:
            with z:
                arrays = {k: z[k] for k in _wanted_keys(z.files, key, label_key, labels, p)}
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"cannot read {p}: {_one_line(e)}") from None
    keys = list(arrays)
    xk, yk = keys[0], (keys[1] if len(keys) > 1 else None)
    if key is None or (yk is not None and label_key is None):
        log.info("data: %s: using array %r as the data%s (of: %s; choose with data.key / data.label_key)",
                 p.name, xk, f" and {yk!r} as the labels" if yk is not None else "",
                 ", ".join(have_keys(z if not isinstance(z, np.ndarray) else None)))
    src = f"{p} [{xk}]"
    return dataset_from_arrays(arrays[xk], arrays[yk] if yk is not None else None, name=p.stem,
                               layout=layout, value_range=value_range, source=src)


def have_keys(z) -> list[str]:
    """The array names of an opened ``.npz`` (``arr_0`` for a ``.npy`` file, passed as None)."""
    return ["arr_0"] if z is None else list(z.files)


def _wanted_keys(files, key, label_key, labels, p) -> list[str]:
    have = list(files)
    listing = ", ".join(have) or "(no arrays)"
    if key is not None:
        if key not in have:
            raise DataError(f"{p} has no array {key!r}; it has: {listing}")
        xk = key
    else:
        xk = next((k for k in DEFAULT_KEYS if k in have), None)
        if xk is None and len(have) == 1:
            xk = have[0]
        if xk is None:
            raise DataError(f"{p} has none of the arrays {', '.join(DEFAULT_KEYS)}; it has: {listing} "
                            f"(name it: key=NAME, in a config data.key: NAME, e.g. --set data.key={have[0]})")
    want = [xk]
    if labels is not False:
        if label_key is not None:
            if label_key == xk:
                raise DataError(f"{p}: label_key and key both name the array {xk!r}")
            if label_key not in have:
                raise DataError(f"{p} has no label array {label_key!r}; it has: {listing}")
            want.append(label_key)
        else:
            yk = next((k for k in DEFAULT_LABEL_KEYS if k in have and k != xk), None)
            if yk is None and labels:
                raise DataError(f"{p} has no label array ({', '.join(DEFAULT_LABEL_KEYS)}); "
                                f"it has: {listing}")
            if yk is not None:
                want.append(yk)
    return want


# ---------------------------------------------------------------------- image folders
def _is_image(f: Path) -> bool:
    return f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".") and f.is_file()


def _list_images(folder: Path, recursive: bool) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    files = [f for f in it if _is_image(f)]
    if recursive:  # skip hidden folders (.ipynb_checkpoints, .git, ...)
        files = [f for f in files if not any(part.startswith(".") for part in f.relative_to(folder).parts)]
    return sorted(files, key=lambda f: f.relative_to(folder).as_posix())


def _decode(f: Path, root: Path, ref: list) -> tuple[np.ndarray, bool]:
    """Decode one file to uint8 (H, W) gray or (H, W, 3) RGB; enforce the size of the first image."""
    from PIL import Image

    try:
        with Image.open(f) as im:
            size = im.size
            if ref:
                if size != ref[1]:
                    r0, r1 = ref[0].relative_to(root), f.relative_to(root)
                    raise DataError(f"{root}: images differ in size: {r0} is {ref[1][0]}x{ref[1][1]} "
                                    f"but {r1} is {size[0]}x{size[1]} (width x height); all must be the "
                                    f"same size")
            else:
                ref.extend([f, size])
            im.load()
            gray = im.mode.startswith(_GRAY_PREFIXES)
            arr = np.asarray(im.convert("L" if gray else "RGB"), dtype=np.uint8)
    except DataError:
        raise
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ValueError, ...
        raise DataError(f"cannot decode image {f}: {_one_line(e)}") from None
    return arr, gray


def load_image_folder(path, recursive: bool = False, labels: bool | None = None,
                      channels: int | None = None) -> Dataset:
    """Load every ``.png``/``.jpg``/``.jpeg`` image of a folder (same size required) as (N, C, H, W)
    float32 ``uint8 / 255 * 2 - 1`` in [-1, 1], ``n_bins=256``. Files are ordered by relative path;
    hidden files/folders are skipped.

    * ``labels=None`` (default) detects the layout: a folder with no images directly in it but with
      sub-folders that hold images is the ImageFolder layout (one sub-folder per class, labelled);
      otherwise the folder's images are read without labels.
    * ``labels=True``: ImageFolder layout, one subfolder per class (classes = sorted subfolder names that
      contain images; each subfolder is searched recursively; ``recursive`` is then ignored); images
      directly in the folder are an error. ``labels=False``: never labelled.
    * ``recursive=False`` reads only the folder itself, ``True`` also all subfolders (unlabelled).
    * ``channels=None``: 1 if every image is grayscale, else 3 (grayscale images are repeated into
      RGB); ``1`` or ``3`` forces it (RGB -> luminance via Pillow). Alpha channels are dropped.
    """
    root = Path(path)
    if not isinstance(recursive, bool) or not (labels is None or isinstance(labels, bool)):
        raise DataError("options recursive and labels must be true or false (labels: or null, to detect)")
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise DataError(f"option channels must be 1, 3 or null, got {channels!r:.60}")
    try:
        if not root.exists():
            raise DataError(f"image folder {root} does not exist")
        if not root.is_dir():
            raise DataError(f"{root} is not a folder (expected a folder of .png/.jpg images)")
        direct = _list_images(root, recursive=False)
        asked = labels
        classes: list[str] = []
        files, ys = [], []
        if labels is not False and not (labels is None and (direct or recursive)):
            if direct:
                raise DataError(f"{root}: image {direct[0].name} is not in a class subfolder "
                                f"(labels=true expects one subfolder per class)")
            for d in sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
                            key=lambda d: d.name):
                fs = _list_images(d, recursive=True)
                if fs:
                    ys += [len(classes)] * len(fs)
                    classes.append(d.name)
                    files += fs
            labels = bool(files)
        if not labels:
            files = _list_images(root, recursive) if recursive else direct
    except DataError:
        raise
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read image folder {root}: {_one_line(e)}") from None
    if not files:
        where = "in it or its subfolders" if recursive or asked is None else (
            "in its class subfolders" if asked else "directly in it (recursive=false)")
        raise DataError(f"image folder {root} has no images {where} "
                        f"(extensions {', '.join(IMAGE_EXTENSIONS)})")
    if labels:
        log.info("data: %s has one sub-folder per class: %d classes (%s); the labels are loaded (train a "
                 "class-conditional model with data.conditional=true)", root, len(classes),
                 ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else ""))
    ref: list = []
    decoded = [_decode(f, root, ref) for f in files]
    c = channels if channels is not None else (1 if all(g for _, g in decoded) else 3)
    out = np.empty((len(files), c, *decoded[0][0].shape[:2]), dtype=np.uint8)
    for i, (arr, gray) in enumerate(decoded):
        if c == 1:
            out[i, 0] = arr if gray else _luminance(arr)
        else:
            out[i] = arr[None] if gray else arr.transpose(2, 0, 1)
    x = torch.from_numpy((out / 255.0 * 2 - 1).astype(np.float32))  # same rounding as dataset_from_arrays
    y = torch.tensor(ys, dtype=torch.int64) if labels else None
    ds = Dataset(x=x, y=y, name=root.resolve().name or str(root), n_classes=len(classes) if labels else 0,
                 n_bins=256, data_range=(-1.0, 1.0))
    if labels:
        ds.classes = classes
    return ds


def _luminance(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(rgb, "RGB").convert("L"), dtype=np.uint8)
