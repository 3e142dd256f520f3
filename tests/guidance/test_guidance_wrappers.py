"""Classifier-free and semantic guidance as model-function wrappers, for VP, CLD and HOLD and several samplers."""

import pytest
import torch
from guidance_helpers import SDES, tiny_model

from holdsgm.errors import ConfigError
from holdsgm.guidance import (
    ClassifierFreeGuidance,
    GuidanceDirection,
    GuidedModel,
    SemanticGuidance,
    threshold_direction,
)
from holdsgm.samplers import PerSampleNoise, sample

SHAPE = (6, 1, 8, 8)
SAMPLERS = ["em", "heun", "exp2m", "sscs"]
SEEDS = list(range(100, 106))


def _run(score_fn, model, sampler, nfe=7, seeds=SEEDS):
    """The sampler's output, however far an untrained model's few steps take it: these tests compare two
    paths through the same arithmetic, so the range guard (sample's ``bound``) is off."""
    shape = (len(seeds), *SHAPE[1:])
    return sample(score_fn, model.sde, shape, sampler=sampler, nfe=nfe, noise=PerSampleNoise(seeds), bound=None).x


def _state(model, t=0.3, b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn((b, model.sde.order, 8, 8), generator=g)
    return u, torch.full((b,), t * model.sde.T, dtype=torch.float64)


@pytest.mark.parametrize("name", SDES)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_cfg_scale_zero_is_the_unconditional_sampler(name, sampler):
    model = tiny_model(name)
    y = torch.arange(6) % 10
    guided = _run(ClassifierFreeGuidance(model, y, 0.0), model, sampler)
    plain = _run(model.with_condition(None), model, sampler)
    assert torch.equal(guided, plain)
    # and scale 1 is the conditional sampler
    assert torch.equal(_run(ClassifierFreeGuidance(model, y, 1.0), model, sampler),
                       _run(model.with_condition(y), model, sampler))


def test_cfg_is_the_linear_combination_in_one_batched_forward(model):
    u, t = _state(model)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    cfg = ClassifierFreeGuidance(model, y, 3.0)
    calls = model.net.calls
    s = cfg(u, t)
    assert model.net.calls == calls + 1 and model.net.rows >= 12  # one call on the doubled batch
    e_u, e_c = model.eps(u, t, None), model.eps(u, t, y)
    expect = -model.sde.marginal(t).ell.float()[:, None, None, None] * (e_u + 3.0 * (e_c - e_u))
    torch.testing.assert_close(s, expect, rtol=1e-5, atol=1e-5)
    # eps space and score space agree (the map eps -> score is linear at fixed t)
    s_u, s_c = model.score(u, t, None), model.score(u, t, y)
    torch.testing.assert_close(s, s_u + 3.0 * (s_c - s_u), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", SDES)
@pytest.mark.parametrize("sampler", ["heun", "exp2m", "em"])
def test_single_sega_direction_without_threshold_or_momentum_is_cfg(name, sampler):
    model = tiny_model(name)
    sega = SemanticGuidance(model, [GuidanceDirection(3, sign=1, scale=2.5)])
    cfg = ClassifierFreeGuidance(model, 3, 2.5)
    torch.testing.assert_close(_run(sega, model, sampler), _run(cfg, model, sampler), rtol=0, atol=1e-6)


def test_sega_with_base_class_and_several_directions_matches_the_formula(model):
    u, t = _state(model, t=0.5)
    d1 = GuidanceDirection(3, sign=1, scale=2.0)
    d2 = GuidanceDirection(8, sign=-1, scale=1.5, threshold=0.75)
    sega = SemanticGuidance(model, [d1, d2], base=torch.arange(6), base_scale=2.0)
    calls = model.net.calls
    out = sega.eps(u, t)
    assert model.net.calls == calls + 1  # null, base, 3 and 8 in one forward
    e_u, e_b = model.eps(u, t, None), model.eps(u, t, torch.arange(6))
    e3, e8 = model.eps(u, t, torch.full((6,), 3)), model.eps(u, t, torch.full((6,), 8))
    g2 = threshold_direction(-1.5 * (e8 - e_u), 0.75)
    expect = e_u + 2.0 * (e_b - e_u) + 2.0 * (e3 - e_u) + g2
    torch.testing.assert_close(out, expect, rtol=1e-4, atol=1e-5)


def test_threshold_keeps_the_top_quantile_per_sample():
    g = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    kept = threshold_direction(g, 0.9)
    frac = (kept != 0).flatten(1).float().mean(1)
    assert torch.all((frac > 0.08) & (frac < 0.13))
    big = g.abs().flatten(1).max(1).values
    assert torch.equal(kept.abs().flatten(1).max(1).values, big)  # the largest entries survive
    assert torch.equal(threshold_direction(g, 0.0), g)


def test_warmup_is_defined_in_time(model):
    sde = model.sde
    d = GuidanceDirection(3, scale=4.0, warmup=0.5)
    sega = SemanticGuidance(model, [d])
    t_on = sde.T - 0.5 * (sde.T - sde.eps)
    u, _ = _state(model)
    early = torch.full((6,), t_on * 1.2, dtype=torch.float64)
    late = torch.full((6,), t_on * 0.8, dtype=torch.float64)
    calls = model.net.calls
    out = sega.eps(u, early)
    assert model.net.calls == calls + 1  # the concept is not even evaluated while warming up (no momentum)
    torch.testing.assert_close(out, model.eps(u, early, None))
    assert not torch.allclose(sega.eps(u, late), model.eps(u, late, None))


def test_momentum_advances_once_per_time_level_and_resets():
    model = tiny_model("cld")
    d = GuidanceDirection(3, scale=2.0, momentum=0.5, beta=0.6)
    sega = SemanticGuidance(model, [d])
    out = sample(sega, model.sde, SHAPE, sampler="heun", steps=4, noise=PerSampleNoise(SEEDS), bound=None)
    # heun: 2 calls per step, at t_i and t_{i+1}, + the final denoising call at t_4 = eps: 9 calls on the
    # grid's 5 times (one momentum update per grid time)
    assert sega.calls == out.nfe == 9 and sega.levels == 5
    # momentum changes the result compared with none
    plain = sample(SemanticGuidance(model, [d.with_(momentum=0.0)]), model.sde, SHAPE, sampler="heun", steps=4,
                   noise=PerSampleNoise(SEEDS), bound=None)
    assert not torch.allclose(out.x, plain.x)
    # reusing the wrapper for a new run starts from a clean state (automatic reset at t = T)
    again = sample(sega, model.sde, SHAPE, sampler="heun", steps=4, noise=PerSampleNoise(SEEDS), bound=None)
    assert torch.equal(again.x, out.x) and sega.levels == 5
    sega.reset()
    assert sega.calls == 0 and sega.levels == 0


def test_momentum_is_applied_and_built_during_warmup():
    model = tiny_model("vp")
    u, _ = _state(model)
    sde = model.sde
    d = GuidanceDirection(3, scale=2.0, warmup=0.5, momentum=1.0, beta=0.5)
    sega = SemanticGuidance(model, [d])
    times = [0.9, 0.7, 0.3]  # two warm-up levels, then active
    outs = [sega.eps(u, torch.full((6,), f * sde.T, dtype=torch.float64)) for f in times]
    torch.testing.assert_close(outs[0], model.eps(u, torch.full((6,), 0.9 * sde.T, dtype=torch.float64), None))
    # manual recursion: m0 = 0; g' = g + s m; m <- beta m + (1 - beta) g'
    m = None
    for f in times:
        tt = torch.full((6,), f * sde.T, dtype=torch.float64)
        g = 2.0 * (model.eps(u, tt, torch.full((6,), 3)) - model.eps(u, tt, None))
        gp = g if m is None else g + m
        m = 0.5 * gp if m is None else 0.5 * m + 0.5 * gp
    torch.testing.assert_close(outs[2], model.eps(u, tt, None) + gp, rtol=1e-4, atol=1e-5)


def test_per_sample_results_do_not_depend_on_the_batch():
    model = tiny_model("hold")
    dirs = [GuidanceDirection(3, scale=3.0, threshold=0.8, momentum=0.5, warmup=0.2),
            GuidanceDirection(8, sign=-1, scale=2.0)]
    full = sample(SemanticGuidance(model, dirs), model.sde, SHAPE, sampler="exp2m", nfe=6,
                  noise=PerSampleNoise(SEEDS)).x
    part = sample(SemanticGuidance(model, dirs), model.sde, (3, 1, 8, 8), sampler="exp2m", nfe=6,
                  noise=PerSampleNoise(SEEDS[3:])).x
    # equal up to float32 round-off (a batch of 6 and one of 3 take different matmul paths; this random
    # network amplifies differences, and a threshold can flip on an entry at the quantile)
    torch.testing.assert_close(full[3:], part, rtol=2e-3, atol=2e-3)


def test_guided_model_hands_out_fresh_wrappers():
    model = tiny_model("vp")
    gm = GuidedModel(model, cfg_scale=2.0, directions=[GuidanceDirection(1, momentum=0.3)])
    a, b = gm.with_condition(torch.arange(4)), gm.with_condition(torch.arange(4))
    assert isinstance(a, SemanticGuidance) and a is not b
    assert isinstance(GuidedModel(model, cfg_scale=2.0).with_condition(torch.arange(4)), ClassifierFreeGuidance)
    u, t = _state(model, b=4)
    torch.testing.assert_close(GuidedModel(model).with_condition(None)(u, t), model.score(u, t, None))


@pytest.mark.parametrize("kwargs, needle", [
    (dict(sign=0), "sign"), (dict(scale=-1.0), "scale"), (dict(threshold=1.0), "threshold"),
    (dict(warmup=1.5), "warmup"), (dict(beta=1.0), "beta"), (dict(momentum=float("nan")), "momentum"),
])
def test_direction_validation(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        GuidanceDirection(3, **kwargs)
