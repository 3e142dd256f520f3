"""Evaluating a trained run: sample metrics against held-out data and ODE likelihoods.

* 2-D / vector data: exact empirical W2 (POT) and MMD against the held-out split; for data with a known
  Gaussian-mixture density also the per-mode W2, mode-weight TV and cross-entropy excess
  (:func:`holdsgm.eval.metrics.mixture_metrics`).
* Images: FID and KID with the standard Inception features (:mod:`holdsgm.eval.fid`, the ``fid`` extra)
  against the held-out images; for the 8x8 digits FD-digits and the class accuracy of class-conditional
  samples instead.
* Likelihood: the probability-flow ODE (Song et al. 2021) with the auxiliary-variable bound for n >= 2
  (:func:`holdsgm.likelihood.ode_likelihood`): NLL in nats for continuous data, bits/dim after uniform
  dequantisation for quantised data (offset log2((K - 1) / range); :func:`holdsgm.likelihood.bits_per_dim`).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from ..data import Dataset
from ..errors import ConfigError
from ..progress import progress as progress_bar
from ..progress import ticking
from .build import load_split
from .inference import class_labels, generate
from .loading import LoadedRun


def heldout(run: LoadedRun, split: str = "test") -> Dataset:
    """The run's held-out data (the config's deterministic split or its ``data.test``; ``train``/``all`` on
    request); ConfigError when its items are not of the shape the model was trained on."""
    data = load_split(run.config.data, split)
    shape = getattr(data, "data_shape", None)
    if shape is not None and tuple(shape) != tuple(run.dataset_info.data_shape):
        source = f"data.test: {run.config.data.test}" if run.config.data.test else f"data.name: {run.config.data.name}"
        raise ConfigError(f"config key {source} holds items of shape {tuple(shape)} now, the model was trained "
                          f"on items of shape {tuple(run.dataset_info.data_shape)}")
    return data


def sample_metrics(samples, reference, mixture=None) -> dict:
    """W2 and MMD of ``samples`` vs ``reference`` (both (N, d)); mixture metrics when the density is known."""
    from ..eval.metrics import mixture_metrics, mmd, wasserstein2

    s = samples.reshape(len(samples), -1).double()
    r = reference.reshape(len(reference), -1).double()
    out = {"n_samples": len(s), "n_reference": len(r), "w2": wasserstein2(s, r), "mmd": mmd(s, r)}
    if mixture is not None:
        out.update(mixture_metrics(s, mixture))
        out["true_entropy"] = mixture.entropy()
    return out


def likelihood(
    run: LoadedRun,
    data: Dataset,
    *,
    n: int | None = None,
    divergence: str = "exact",
    method: str = "RK45",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    seed: int = 0,
    batch_size: int = 500,
    aux_draws: int = 4,
    aux_estimator: str = "iw",
    progress: bool = False,
) -> dict:
    """Negative log-likelihood of (the first ``n`` items of) ``data`` under ``run`` via the PF-ODE.

    Quantised data (``n_bins`` set) are dequantised uniformly and reported in bits/dim too. For
    class-conditional models the NLL is that of p(x | y) with the data's labels. For CLD/HOLD each point's
    bound combines ``aux_draws`` auxiliary draws (``aux_estimator``); the report has the mean, median and
    standard error over points and the median spread of the single-draw bounds within a point.
    """
    from ..likelihood import bits_per_dim, dequantize, ode_likelihood

    x = data.x if n is None else data.x[:n]
    y = None
    if run.dataset_info.n_classes and data.y is not None:
        y = data.y if n is None else data.y[:n]
    info = run.dataset_info
    g = torch.Generator().manual_seed(seed)
    n_bins, data_range = info.n_bins, info.data_range
    quantised = None if n_bins is None or data_range is None else (n_bins, data_range[1] - data_range[0])
    if quantised is not None:
        x = dequantize(x, quantised[0], quantised[1], generator=g)
    device = run.device
    nll, nfes, spreads = [], [], []
    t0 = time.perf_counter()
    batches = -(-len(x) // batch_size)
    bar = progress_bar(None, desc=f"likelihood of {len(x)} items ({divergence} divergence, {method})", unit="NFE",
                       enabled=progress)
    for i0 in range(0, len(x), batch_size):
        xb = x[i0 : i0 + batch_size].to(device)
        yb = None if y is None else y[i0 : i0 + batch_size].to(device)
        if yb is not None and run.sde.order > 1 and aux_draws > 1:
            yb = yb.repeat(aux_draws)  # ode_likelihood solves draw k of item i as row k * n_items + i
        if batches > 1:
            bar.set_postfix(batch=f"{i0 // batch_size + 1}/{batches}")
        out = ode_likelihood(
            ticking(run.eps_model.with_condition(yb), bar),
            run.sde,
            xb,
            divergence=divergence,
            method=method,
            rtol=rtol,
            atol=atol,
            noise=seed + i0,
            aux_draws=aux_draws,
            aux_estimator=aux_estimator,
        )
        nll.append(out.nll.cpu())
        nfes.append(out.nfe)
        spreads.append((out.draws.amax(0) - out.draws.amin(0)).cpu())
    bar.close()
    seconds = time.perf_counter() - t0
    v = torch.cat(nll).double()
    dim = int(np.prod(info.data_shape))
    k = aux_draws if run.sde.order > 1 else 1
    res: dict[str, Any] = {
        "n": len(v),
        "divergence": divergence,
        "method": method,
        "rtol": rtol,
        "atol": atol,
        "ode_start": run.sde.eps,
        "estimator": "exact for x (no auxiliaries)" if k == 1 and run.sde.order == 1 else (
            f"{'importance-weighted bound' if aux_estimator == 'iw' else 'mean of the bounds'} over {k} "
            f"auxiliary draw(s) per point (an upper bound on the NLL)"),
        "nll": float(v.mean()),
        "nll_sem": float(v.std() / math.sqrt(len(v))) if len(v) > 1 else 0.0,
        "nll_median": float(v.median()),
        "nll_per_dim": float(v.mean()) / dim,
        "nfe": round(float(np.mean(nfes))),
        "seconds": seconds,
        "conditional": y is not None,
    }
    if k > 1:  # how much one point's estimate depends on its auxiliary draw
        res["aux_draw_spread_median"] = float(torch.cat(spreads).double().median())
    if quantised is not None:
        bins, width = quantised
        bpd = bits_per_dim(v, dim, bins, width)
        res.update(
            bits_per_dim=float(bpd.mean()),
            bits_per_dim_sem=float(bpd.std() / math.sqrt(len(v))),
            dequantization=f"uniform, {bins} levels over {width:g}; "
            f"offset log2({bins - 1}/{width:g}) = {math.log2((bins - 1) / width):.4f} bits",
        )
    if info.mixture is not None:
        true = -info.mixture.log_prob(x.reshape(len(x), -1).double())
        res["true_nll"] = float(true.mean())  # -log p(x) of the same points under the true density
        res["true_entropy"] = info.mixture.entropy()
        res["nll_gap"] = res["nll"] - res["true_nll"]
    return res


def _fd_module():
    """:mod:`holdsgm.eval.fd_digits` if it is installed (it is optional here), else None."""
    import importlib

    try:
        return importlib.import_module("holdsgm.eval.fd_digits")
    except ImportError:
        return None


def fid_metrics(run: LoadedRun, gen, reference: Dataset, progress: bool = False) -> tuple[dict, list[str]]:
    """FID and KID (standard Inception features, :mod:`holdsgm.eval.fid`) of the samples against the held-out
    images (a built-in reference's features are cached); a note instead when the network is not installed."""
    from ..eval import fid

    if not fid.inception_available():
        return {}, ["FID/KID skipped: the standard Inception network is not installed (pip install "
                    "'holdsgm[fid]')"]
    if run.dataset_info.data_shape[0] not in (1, 3):
        return {}, [f"FID/KID skipped: images of {run.dataset_info.data_shape[0]} channels"]
    test, opts = run.config.data.test, run.config.data.options
    if test is not None and test.strip().lower() in fid.BUILTIN_REFERENCES:  # cached; the same subset as `reference`
        ref = fid.features_of(test, n=opts.get("n"), seed=opts.get("seed", 0), progress=progress).feats
    else:
        ref = fid.inception_features(reference.x, progress=progress, desc="inception (held out)")
    smp = fid.inception_features(gen.x, progress=progress, desc="inception (samples)")
    res: dict[str, Any] = fid.scores(smp, ref)
    notes = [f"FID at N = {res['n']} samples vs {res['n_ref']} held-out images: biased upwards at small N, "
             f"compare only at equal N"]
    if gen.labels is not None:
        res.update(_class_accuracy(run, gen, notes))
    return res, notes


def _class_accuracy(run: LoadedRun, gen, notes: list[str]) -> dict:
    """How often a classifier trained on the real data (:func:`holdsgm.eval.classifier.image_classifier`)
    names the class a conditional sample was drawn for, beside that classifier's accuracy on real test data."""
    from ..eval.classifier import DATASETS, image_classifier

    name = run.dataset_info.name
    if name not in DATASETS or tuple(DATASETS[name]["shape"]) != tuple(run.dataset_info.data_shape):
        notes.append(f"class accuracy skipped: no classifier for {name!r} (one of {', '.join(DATASETS)})")
        return {}
    clf = image_classifier(name)
    acc = float((clf.predict(gen.x) == gen.labels.cpu()).double().mean())
    return {"class_accuracy": acc, "classifier_test_accuracy": clf.test_accuracy}


def image_metrics(run: LoadedRun, gen, reference: Dataset, progress: bool = False) -> tuple[dict, list[str]]:
    """FID/KID for images of 1 or 3 channels; for the 8x8 digits FD-digits (+ its floor at the same n) and
    class accuracy, when :mod:`holdsgm.eval.fd_digits` exists."""
    notes: list[str] = []
    out: dict = {}
    if run.dataset_info.name != "digits" or tuple(run.dataset_info.data_shape) != (1, 8, 8):
        return fid_metrics(run, gen, reference, progress)
    fd = _fd_module()
    if fd is None:
        notes.append("holdsgm.eval.fd_digits is not available; FD-digits and class accuracy skipped")
        return out, notes
    out["fd_digits"] = float(fd.fd_digits(gen.x, reference.x))
    out["fd_digits_n"] = len(gen.x)
    floor = getattr(fd, "reference_floor", None)
    if floor is not None:
        try:
            fl = floor(n=min(len(gen.x), 1617), repeats=3, reference=reference.x)
            out["fd_digits_floor"] = {"mean": fl["mean"], "std": fl["std"], "n": fl["n"]}
        except Exception as e:  # noqa: BLE001 - the floor is a courtesy; never fail the evaluation for it
            notes.append(f"FD-digits floor skipped: {' '.join(str(e).split())[:100]}")
    if gen.labels is not None:
        if hasattr(fd, "class_accuracy"):
            out["class_accuracy"] = float(fd.class_accuracy(gen.x, gen.labels))
        elif hasattr(fd, "classify"):
            out["class_accuracy"] = float((fd.classify(gen.x).cpu() == gen.labels).double().mean())
    return out, notes


def evaluate_run(
    run: LoadedRun,
    *,
    n: int | None = None,
    sampler: str | None = None,
    nfe: int | None = None,
    grid: str | None = None,
    seed: int | None = None,
    nll_n: int | None = None,
    divergence: str | None = None,
    method: str | None = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> dict:
    """Sample metrics and likelihood of a run on its held-out split; arguments default to the run's
    ``sample``/``eval`` config sections. Returns a JSON-ready dict."""
    ec, sc = run.config.eval, run.config.sample
    n = ec.n if n is None else n
    sampler = sc.sampler if sampler is None else sampler
    nfe = sc.nfe if nfe is None else nfe
    grid = sc.grid if grid is None else grid
    seed = ec.seed if seed is None else seed
    nll_n = ec.nll_n if nll_n is None else nll_n
    divergence = ec.divergence if divergence is None else divergence
    method = ec.method if method is None else method
    batch_size = sc.batch_size if batch_size is None else batch_size
    test = heldout(run, "test")
    info = run.dataset_info
    labels = class_labels(run, n, "balanced") if info.n_classes else None
    gen = generate(
        run,
        n,
        sampler=sampler,
        nfe=nfe,
        grid=grid,
        seed=seed,
        labels=labels,
        batch_size=batch_size,
        progress=progress,
    )
    notes: list[str] = []
    result = {
        "run": str(run.path),
        "step": run.step,
        "weights": run.which,
        "dataset": info.name,
        "sde": run.sde.name,
        "sampler": gen.plan["spec"],  # what was run: the spec's own grid and stop win over the arguments
        "nfe": gen.nfe,
        "grid": gen.plan["grid"],
        "stop_time": gen.plan["stop_time"],
        "n": n,
        "seed": seed,
        "sample_seconds": gen.seconds,
    }
    if info.is_image:
        metrics, notes = image_metrics(run, gen, test, progress)
    else:
        metrics = sample_metrics(gen.x, test.x, info.mixture)
        if info.mixture is None:
            notes.append("no known density for this data set: per-mode metrics skipped")
    result["metrics"] = metrics
    if nll_n > 0:
        if divergence == "exact" and int(np.prod(info.data_shape)) > 16:
            divergence = "hutchinson"
            notes.append("exact divergence is impractical above 16 dimensions: used hutchinson")
        result["likelihood"] = likelihood(
            run,
            test,
            n=min(nll_n, len(test)),
            divergence=divergence,
            method=method,
            rtol=ec.rtol,
            atol=ec.atol,
            seed=seed,
            aux_draws=ec.aux_draws,
            aux_estimator=ec.aux_estimator,
            progress=progress,
        )
    result["notes"] = notes
    return result
