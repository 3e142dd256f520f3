"""Skip-Tuning: spec parsing, the identity at scale 1, and that other scales do change the model."""

import pytest
import torch
from guidance_helpers import tiny_model

from holdsgm.errors import ConfigError
from holdsgm.guidance import SkipTuned, parse_skip_scale, skip_scale_kwargs
from holdsgm.losses import EpsModel
from holdsgm.nets import MLP
from holdsgm.samplers import PerSampleNoise, sample
from holdsgm.sde import make_sde


@pytest.mark.parametrize("spec", [1, 1.0, "1", "1,1,1,1", "1:1", [1, 1, 1, 1], None])
def test_scale_one_is_the_identity(model, spec):
    tuned = SkipTuned(model, spec)
    assert skip_scale_kwargs(spec, model.net) == {}
    shape = (4, 1, 8, 8)
    a = sample(tuned.with_condition(torch.arange(4)), model.sde, shape, sampler="heun", nfe=5,
               noise=PerSampleNoise([0, 1, 2, 3]), bound=None).x  # an identity of the arithmetic: no range guard
    b = sample(model.with_condition(torch.arange(4)), model.sde, shape, sampler="heun", nfe=5,
               noise=PerSampleNoise([0, 1, 2, 3]), bound=None).x
    assert torch.equal(a, b)


def test_other_scales_change_the_prediction_and_reach_the_network():
    model = tiny_model("hold")
    u = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.full((3,), 1.0, dtype=torch.float64)
    base = model.eps(u, t, None)
    for spec in ("0.8", "1,1,0.9,0.8", "0.6:1.0"):
        assert not torch.allclose(SkipTuned(model, spec).eps(u, t, None), base)
    # a ramp BOTTOM:TOP is the explicit list with the lowest resolution last
    torch.testing.assert_close(SkipTuned(model, "0.7:1.0").eps(u, t), SkipTuned(model, "1,0.9,0.8,0.7").eps(u, t))


def test_ramp_and_list_factors():
    assert parse_skip_scale("0.8:1.0").factors(5) == pytest.approx([1.0, 0.95, 0.9, 0.85, 0.8])
    assert parse_skip_scale("0.9").factors(4) == 0.9
    assert parse_skip_scale("1,0.5").factors(2) == [1.0, 0.5]
    assert parse_skip_scale("0.8:1.0").describe() == "0.8:1"


@pytest.mark.parametrize("spec, needle", [
    ("", "empty"), ("abc", "not a number"), ("1,,1", "not a number"), ("0.8:0.9:1", "exactly one"),
    ("-0.5", ">= 0"), ("nan", "finite"), ("1,1", "4 skip connections"),
])
def test_bad_specs(model, spec, needle):
    with pytest.raises(ConfigError, match=needle):
        skip_scale_kwargs(spec, model.net)


def test_networks_without_skips_refuse():
    sde = make_sde("vp")
    m = EpsModel(MLP(2, 2), sde)
    with pytest.raises(ConfigError, match="no skip connections"):
        skip_scale_kwargs("0.9", m.net)
    assert skip_scale_kwargs("1", m.net) == {}
