"""FD-digits: holdsgm's own Fréchet distance for scikit-learn's 8x8 digits.

FD-digits is the Fréchet distance of Heusel et al. (2017), "GANs Trained by a Two Time-Scale Update
Rule Converge to a Local Nash Equilibrium" (NeurIPS), computed in the 64-dimensional penultimate
feature space of a small CNN that holdsgm trains itself on the digits train split
(:func:`holdsgm.eval.classifier.digit_classifier`). It is NOT FID: there is no Inception network,
the images are 8x8, and its values are on their own scale, comparable only with other FD-digits
values (same classifier recipe, same reference, same number of samples).

Like FID it reports the *squared* Fréchet (2-Wasserstein) distance between Gaussians fitted to the
two feature sets::

    FD = |mu_1 - mu_2|^2 + tr(C_1 + C_2 - 2 (C_1 C_2)^{1/2})

Sample size. FD estimated from N samples is biased upward, by roughly tr-terms of order
``F / N`` (F = 64 features) from each side, so it depends on N and on the reference size. The
default reference is the digits TEST split (``load_dataset('digits', split='test')``:
:data:`REFERENCE_N` = 180 images, disjoint from the classifier's and, normally, the generative
model's training data); with it even perfect samples score well above 0. Always state N next to an
FD-digits value and report :func:`reference_floor` at the same N (real, held-out digits scored the
same way) beside it; compare models only at equal N. :data:`RECOMMENDED_N` (1000) generated samples
is the project's suggested N.

Inputs are tensors (or arrays) of shape (N, 1, 8, 8) with values in [-1, 1] (also (N, 8, 8) or
(N, 64)); values are clamped to [-1, 1] before the features are computed; NaN or inf values raise
:class:`~holdsgm.errors.DataError`.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg

from ..errors import DataError
from .classifier import DigitClassifier, check_images, digit_classifier

REFERENCE_N = 180  # images in the default reference (the digits test split)
RECOMMENDED_N = 1000  # generated samples per FD-digits evaluation suggested for reports


def _as_np(a, what: str, ndim: int) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().numpy()
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{what}: not a real array ({' '.join(str(e).split())[:80]})") from None
    if arr.ndim != ndim:
        raise DataError(f"{what}: expected {ndim} dimension(s), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError(f"{what} contains NaN or infinite values")
    return arr


def _trace_sqrt_product_eigh(c1: np.ndarray, c2: np.ndarray) -> float:
    """tr((C1 C2)^{1/2}) for symmetric PSD C1, C2 as sum_i sqrt(lambda_i(C1^{1/2} C2 C1^{1/2}))."""
    w, v = np.linalg.eigh(c1)
    s1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = s1 @ c2 @ s1
    lam = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(lam, 0.0, None)).sum())


def _trace_sqrt_product(c1: np.ndarray, c2: np.ndarray, eps: float) -> float:
    """tr((C1 C2)^{1/2}) by ``scipy.linalg.sqrtm`` as pytorch-fid does, made robust.

    ``sqrtm(C1 @ C2)`` is accepted when it is finite, its trace's imaginary part is round-off (at most
    1e-3 of the real part; it is then dropped) and it is an accurate root (relative residual
    ``|X X - A|_F / |A|_F`` at most 1e-6). Near-singular covariances (fewer samples than features,
    dead ReLU features) can break any of these; then the trace is computed exactly from the symmetric
    form, ``sum_i sqrt(lambda_i(C1^{1/2} C2 C1^{1/2}))`` (the eigenvalues of C1 C2 are those of
    C1^{1/2} C2 C1^{1/2}), by ``eigh``. Only if that fails too is ``sqrtm`` retried with ``eps * I``
    added to both covariances (pytorch-fid's remedy).
    """

    def by_sqrtm(a1, a2):
        prod = a1 @ a2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                root = np.asarray(linalg.sqrtm(prod))
            except (ValueError, np.linalg.LinAlgError):
                return None
        if not np.isfinite(root).all():
            return None
        tr = np.trace(root)
        if abs(np.imag(tr)) > 1e-3 * max(abs(np.real(tr)), 1e-12):
            return None
        if float(np.linalg.norm(root @ root - prod)) > 1e-6 * max(float(np.linalg.norm(prod)), 1e-300):
            return None
        return float(np.real(tr))

    tr = by_sqrtm(c1, c2)
    if tr is not None:
        return tr
    try:
        return _trace_sqrt_product_eigh(c1, c2)
    except np.linalg.LinAlgError:
        off = eps * np.eye(c1.shape[0])
        tr = by_sqrtm(c1 + off, c2 + off)
    if tr is None:
        raise DataError("frechet_distance: cannot compute the matrix square root of cov1 @ cov2")
    return tr


def frechet_distance(mu1, cov1, mu2, cov2, eps: float = 1e-6) -> float:
    """Squared Fréchet distance between N(mu1, cov1) and N(mu2, cov2) (Heusel et al. 2017; the
    closed form is Dowson & Landau 1982)::

        |mu1 - mu2|^2 + tr(cov1 + cov2 - 2 (cov1 cov2)^{1/2})

    The matrix root is taken with ``scipy.linalg.sqrtm``; a tiny imaginary part from round-off is
    dropped, and for near-singular covariances (where ``sqrtm`` fails or is inaccurate, see
    ``eps``) an exact eigen-decomposition of the symmetric form is used instead. Covariances are
    symmetrised; the result is clipped at 0 (round-off can make it slightly negative for equal
    inputs). Means (d,) and covariances (d, d) may be numpy arrays or tensors; non-finite values or
    mismatched shapes raise :class:`~holdsgm.errors.DataError`.
    """
    m1, m2 = _as_np(mu1, "mu1", 1), _as_np(mu2, "mu2", 1)
    c1, c2 = _as_np(cov1, "cov1", 2), _as_np(cov2, "cov2", 2)
    d = m1.shape[0]
    if m2.shape != (d,) or c1.shape != (d, d) or c2.shape != (d, d):
        raise DataError(f"frechet_distance: shapes do not match: mu1 {m1.shape}, cov1 {c1.shape}, "
                        f"mu2 {m2.shape}, cov2 {c2.shape}")
    if d == 0:
        raise DataError("frechet_distance: zero-dimensional Gaussians")
    c1, c2 = (c1 + c1.T) / 2, (c2 + c2.T) / 2
    diff = m1 - m2
    tr = _trace_sqrt_product(c1, c2, eps)
    return max(float(diff @ diff + np.trace(c1) + np.trace(c2) - 2.0 * tr), 0.0)


def _classifier(classifier, variant: str = "main") -> DigitClassifier:
    if classifier is None:
        return digit_classifier(variant=variant)
    if not isinstance(classifier, DigitClassifier):
        raise DataError(f"classifier must be a DigitClassifier (see holdsgm.eval.classifier."
                        f"digit_classifier), got {type(classifier).__name__}")
    return classifier


def feature_stats(x, classifier: DigitClassifier | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mean (F,), covariance (F, F)) of the classifier features of images ``x`` (N >= 2), float64.

    ``classifier`` defaults to ``digit_classifier()`` (the main variant, default cache). The
    covariance is the unbiased sample covariance (divides by N - 1), as in pytorch-fid.
    """
    clf = _classifier(classifier)
    t = check_images(x, "feature_stats input")
    if t.shape[0] < 2:
        raise DataError(f"feature statistics need at least 2 images, got {t.shape[0]}")
    f = clf.features(t).double().numpy()
    return f.mean(0), np.cov(f, rowvar=False)


def _reference_images(reference):
    from ..data import Dataset

    if reference is None:
        from ..data import load_dataset

        return load_dataset("digits", split="test").x
    if isinstance(reference, Dataset):
        return reference.x
    return reference


def _stats(x, clf, what: str):
    if isinstance(x, tuple) and len(x) == 2:
        mu, cov = _as_np(x[0], f"{what} mean", 1), _as_np(x[1], f"{what} covariance", 2)
        if mu.shape != (clf.feature_dim,) or cov.shape != (clf.feature_dim,) * 2:
            raise DataError(f"{what} statistics have shapes {mu.shape}, {cov.shape}; the classifier has "
                            f"{clf.feature_dim} features")
        return mu, cov
    t = check_images(x, what)
    if t.shape[0] < 2:
        raise DataError(f"FD-digits needs at least 2 {what} images, got {t.shape[0]}")
    return feature_stats(t, clf)


def fd_digits(samples, reference=None, classifier: DigitClassifier | None = None) -> float:
    """FD-digits of ``samples`` (N, 1, 8, 8) in [-1, 1] against ``reference`` (see the module doc).

    Args:
        samples: generated images, a tensor/array (N, 1, 8, 8) (or (N, 8, 8), (N, 64)); N >= 2,
            :data:`RECOMMENDED_N` suggested. Clamped to [-1, 1]; NaN/inf raises DataError.
        reference: real images (tensor/array or a :class:`~holdsgm.data.Dataset`), or precomputed
            ``(mu, cov)`` from :func:`feature_stats`; default the digits test split (180 images).
        classifier: a :class:`~holdsgm.eval.classifier.DigitClassifier`; default
            ``digit_classifier()`` (main variant, trained on first use, then cached).

    Returns the squared Fréchet distance (Heusel et al. 2017) between Gaussians fitted to the two
    feature sets. It is biased upward for small N (and by the 180-image reference): report N and
    :func:`reference_floor` at the same N beside it.
    """
    clf = _classifier(classifier)
    mu1, c1 = _stats(samples, clf, "sample")
    mu2, c2 = _stats(_reference_images(reference), clf, "reference")
    return frechet_distance(mu1, c1, mu2, c2)


def reference_floor(n: int = RECOMMENDED_N, repeats: int = 5, reference=None, pool=None,
                    classifier: DigitClassifier | None = None, seed: int = 0) -> dict:
    """The finite-sample floor of FD-digits: FD of ``n`` real digits against the reference.

    Each repeat draws ``n`` images without replacement from ``pool`` (default: the digits TRAIN
    split, 1617 images, disjoint from the default reference, the test split) and computes
    :func:`fd_digits` against ``reference`` exactly as for model samples. This is what a perfect
    generative model (one that samples the data distribution) would score with ``n`` samples; report
    it beside model numbers at the same ``n``. ``pool`` should not overlap ``reference``.

    ``reference`` and ``pool`` take what :func:`fd_digits` takes (``reference`` may also be
    precomputed ``(mu, cov)``). Returns ``{"n", "n_reference", "repeats", "mean", "std", "min",
    "max", "values"}`` (``n_reference`` is None for precomputed statistics; std over repeats,
    ddof=1, 0 for one repeat or when ``n`` is the whole pool). ``n`` may not exceed the pool size.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise DataError(f"n must be an integer, got {n!r:.40}")
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise DataError(f"repeats must be a positive integer, got {repeats!r:.40}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r:.40}")
    clf = _classifier(classifier)
    if pool is None:
        from ..data import load_dataset

        pool = load_dataset("digits", split="train").x
    pool = check_images(_reference_images(pool), "pool")
    if not 2 <= n <= pool.shape[0]:
        raise DataError(f"n must be in [2, {pool.shape[0]}] (the pool size), got {n}")
    ref = _reference_images(reference)
    n_ref = None if isinstance(ref, tuple) else int(check_images(ref, "reference").shape[0])
    mu_r, c_r = _stats(ref, clf, "reference")
    feats = clf.features(pool).double().numpy()
    g = torch.Generator().manual_seed(int(seed))
    values = []
    for _ in range(int(repeats)):
        idx = torch.randperm(pool.shape[0], generator=g)[:n].numpy()
        f = feats[idx]
        values.append(frechet_distance(f.mean(0), np.cov(f, rowvar=False), mu_r, c_r))
    v = np.asarray(values)
    return {"n": int(n), "n_reference": n_ref, "repeats": int(repeats),
            "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "values": [float(a) for a in v]}


def class_accuracy(samples, labels, classifier: DigitClassifier | None = None) -> float:
    """Fraction of ``samples`` (N, 1, 8, 8) whose predicted class equals ``labels`` (N,) in 0..9.

    Meant for class-conditional samples; ``classifier`` defaults to the independently trained
    ``digit_classifier(variant='heldout')`` so that a sampler guided by (something like) the main
    classifier is not judged by the same network. Samples are clamped to [-1, 1]; NaN/inf raises
    DataError.
    """
    clf = _classifier(classifier, variant="heldout")
    t = check_images(samples, "class_accuracy samples")
    if isinstance(labels, torch.Tensor):
        lab = labels.detach().cpu()
    else:
        try:
            lab = torch.as_tensor(np.asarray(labels))
        except Exception as e:
            raise DataError(f"labels: not an integer array ({' '.join(str(e).split())[:80]})") from None
    if lab.is_floating_point():
        if not torch.isfinite(lab).all() or not torch.equal(lab, lab.round()):
            raise DataError("labels must be whole numbers")
    elif lab.dtype == torch.bool or lab.is_complex():
        raise DataError(f"labels must be integers, got dtype {lab.dtype}")
    lab = lab.to(torch.int64)
    if lab.shape != (t.shape[0],):
        raise DataError(f"labels must have shape ({t.shape[0]},), got {tuple(lab.shape)}")
    if t.shape[0] == 0:
        raise DataError("class_accuracy needs at least one sample")
    if lab.min() < 0 or lab.max() > 9:
        raise DataError(f"labels must be in 0..9, found [{int(lab.min())}, {int(lab.max())}]")
    return float((clf.predict(t) == lab).double().mean())


__all__ = ["RECOMMENDED_N", "REFERENCE_N", "class_accuracy", "fd_digits", "feature_stats",
           "frechet_distance", "reference_floor"]
