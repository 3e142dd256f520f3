"""Guidance and other sampling-time changes of the model function, for every SDE (VP, CLD, HOLD) and
every sampler: each is a wrapper around the model (DPM-Solver's "guidance is just another model_fn").

* :class:`ClassifierFreeGuidance` (Ho & Salimans 2022): ``eps_u + w (eps_c - eps_u)``, one batched forward.
* :class:`SemanticGuidance` with :class:`GuidanceDirection` s (SEGA, Brack et al. 2023): several concepts at
  once, each with sign, scale, warm-up (in time), element-wise threshold and momentum; stateful, ``reset()``.
* Skip-Tuning (Ma et al. 2024): :func:`parse_skip_scale` / :class:`SkipTuned` scale the U-Net's skip
  connections at sampling time.
* :class:`GuidedModel`: an EpsModel-like model with all of the above (sampling a run with it:
  :mod:`holdsgm.runs.guided`).
* CLI strings: :func:`parse_guide` (``+3:scale=5``, ``-8:scale=3,threshold=0.9,warmup=0.2,momentum=0.5``).

Guidance works in eps space (the network's prediction of the last component's noise); the score is
``-ell_t eps`` (:func:`eps_to_score`), and at a fixed time both spaces give the same result.
"""

from .cfg import ClassifierFreeGuidance, classifier_free_guidance
from .conditions import eps_for_conditions, eps_to_score, null_label_of
from .guided_model import GuidedModel
from .parsing import check_concepts, parse_guide, parse_guides
from .semantic import GuidanceDirection, SemanticGuidance, threshold_direction
from .skip_tuning import SkipScale, SkipTuned, num_skips_of, parse_skip_scale, ramp, skip_scale_kwargs, skip_scaled

__all__ = [
    "ClassifierFreeGuidance", "GuidanceDirection", "GuidedModel", "SemanticGuidance", "SkipScale", "SkipTuned",
    "check_concepts", "classifier_free_guidance", "eps_for_conditions", "eps_to_score",
    "null_label_of", "num_skips_of", "parse_guide", "parse_guides", "parse_skip_scale", "ramp",
    "skip_scale_kwargs", "skip_scaled", "threshold_direction",
]
