"""The --guide string grammar and its one-line errors."""

import pytest

from holdsgm.errors import ConfigError
from holdsgm.guidance import GuidanceDirection, check_concepts, parse_guide


def test_parse_examples():
    d = parse_guide("+3:scale=5")
    assert d == GuidanceDirection(3, sign=1, scale=5.0)
    d = parse_guide("-8:scale=3,threshold=0.9,warmup=0.2,momentum=0.5")
    assert (d.concept, d.sign, d.scale, d.threshold, d.warmup, d.momentum, d.beta) == (8, -1, 3, 0.9, 0.2, 0.5, 0.5)
    assert parse_guide(" + 7 ").scale == 5.0  # defaults, whitespace tolerated
    assert parse_guide("-0:beta=0.3, momentum=1").beta == 0.3
    assert parse_guide(d.describe()) == d  # round trip


@pytest.mark.parametrize("spec, needle", [
    ("", "empty"),
    ("   ", "empty"),
    ("3:scale=5", "must start with '+'"),
    ("+", "class label"),
    ("+x:scale=1", "class label"),
    ("+3.5", "class label"),
    ("+3:", "nothing after ':'"),
    ("+3:scale", "not key=value"),
    ("+3:scale=", "must be a number"),
    ("+3:scale=abc", "must be a number"),
    ("+3:foo=1", "unknown key 'foo'"),
    ("+3:scale=1,scale=2", "given twice"),
    ("+3:scale=-1", "scale must be"),
    ("+3:threshold=1", "threshold must be in"),
    ("+3:warmup=2", "warmup must be in"),
    ("+3:beta=1", "beta must be in"),
    ("+3:scale=inf", "finite"),
    ("+3:scale=1;threshold=0.5", "must be a number"),
])
def test_malformed_strings_raise_one_line_config_errors(spec, needle):
    with pytest.raises(ConfigError) as e:
        parse_guide(spec)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and repr(spec) in msg


def test_concepts_are_checked_against_the_model():
    check_concepts([parse_guide("+9")], 10)
    with pytest.raises(ConfigError, match="out of range"):
        check_concepts([parse_guide("+10")], 10)
    with pytest.raises(ConfigError, match="not class-conditional"):
        check_concepts([parse_guide("+1")], 0)
