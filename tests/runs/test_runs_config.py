"""Config loading, overrides and validation: every user mistake is a ConfigError naming the key."""

import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from holdsgm.errors import ConfigError
from holdsgm.runs import Config, load_config, preset_names
from holdsgm.runs.config import SECTIONS, apply_overrides, parse_value
from run_helpers import CONFIGS

PRESETS = sorted(CONFIGS.glob("*.yaml"))


def test_presets_exist():
    names = {p.stem for p in PRESETS}
    assert {"toy-hold", "toy-cld", "toy-vp", "digits-hold", "digits-cld", "digits-vp", "demo"} <= names
    assert set(preset_names()) == names


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_every_preset_loads_and_round_trips(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    again = Config.from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg
    assert load_config(path.stem) == cfg  # by preset name


def test_toy_presets_share_everything_but_the_sde():
    cfgs = {n: load_config(n).to_dict() for n in ("toy-hold", "toy-cld", "toy-vp")}
    assert {c["sde"]["name"] for c in cfgs.values()} == {"hold", "cld", "vp"}
    for c in cfgs.values():
        c.pop("sde")
        c["sample"].pop("sampler")  # VP may use another default sampler
    first = cfgs["toy-hold"]
    assert all(c == first for c in cfgs.values())


def test_overrides_apply_with_yaml_types():
    cfg = load_config(
        "toy-hold",
        [
            "train.lr=1e-3",
            "sde.T=3",
            "model.hidden=64",
            "train.betas=[0.9, 0.99]",
            "train.ema_warmup=false",
            "data.n=1000",
            "sample.grid=quadratic",
        ],
    )
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)
    assert cfg.sde.overrides["T"] == 3 and cfg.sde.build().T == 3.0
    assert cfg.model.kwargs["hidden"] == 64
    assert cfg.train.betas == (0.9, 0.99)
    assert cfg.train.ema_warmup is False
    assert cfg.data.options["n"] == 1000
    assert cfg.sample.grid == "quadratic"
    # the nested spelling reaches the same field
    assert load_config("toy-hold", ["sde.overrides.T=4"]).sde.overrides == {"T": 4}


def test_defaults_without_file():
    cfg = load_config(None, ["train.steps=5"])
    assert cfg.train.steps == 5 and cfg.sde.name == "hold"


def test_yaml_12_floats():
    assert parse_value("1e-3") == 1e-3
    assert parse_value("2E5") == 2e5
    assert parse_value("hold") == "hold"
    assert parse_value("[1, 2]") == [1, 2]


def test_sampler_specs_with_options_are_accepted():
    cfg = load_config("toy-hold", ["sample.sampler=unipc3:ref_var=0.01,grid=quadratic,eps=0.1", "sample.nfe=10"])
    assert cfg.sample.sampler == "unipc3:ref_var=0.01,grid=quadratic,eps=0.1"
    assert Config.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg


@pytest.mark.parametrize(
    "overrides, needles",
    [
        (["train.lrr=1"], ["train.lrr", "lr", "batch_size"]),
        (["train.lr=abc"], ["train.lr", "abc", "number"]),
        (["train.lr=0"], ["train.lr"]),
        (["train.lr=-1e-3"], ["train.lr"]),
        (["train.steps=0"], ["train.steps"]),
        (["train.steps=2.5"], ["train.steps", "integer"]),
        (["train.steps=true"], ["train.steps", "integer"]),
        (["train.batch_size=0"], ["train.batch_size"]),
        (["train.ema_decay=1"], ["train.ema_decay"]),
        (["train.ema_decay=-0.5"], ["train.ema_decay"]),
        (["train.betas=[0.9]"], ["train.betas"]),
        (["train.betas=[0.9, 1.5]"], ["train.betas[1]"]),
        (["train.weighting=foo"], ["train.weighting", "unit", "likelihood"]),
        (["train.device=tpu"], ["train.device"]),
        (["train.amp=fp8"], ["train.amp"]),
        (["train.label_dropout=0.1"], ["train.label_dropout", "conditional"]),
        (["sample.sampler=foo"], ["sample.sampler", "sscs", "heun"]),
        (["sample.nfe=0"], ["sample.nfe"]),
        (["sample.nfe=1", "sample.sampler=heun"], ["sample.nfe", "too small"]),
        (["sample.grid=cosine"], ["sample.grid"]),
        (["sample.sampler=unipc3:ref_vra=0.01"], ["sample.sampler", "ref_vra", "ref_var"]),
        (["sample.sampler=unipc3:grid=cosine"], ["sample.sampler", "cosine", "logsnr"]),
        (["sample.sampler=exp2s:eps=-1"], ["sample.sampler", "eps", "positive"]),
        (["sample.sampler=exp3s", "sample.nfe=3"], ["sample.nfe", "too small"]),
        (["sample.sampler=3"], ["sample.sampler"]),
        (["eval.divergence=magic"], ["eval.divergence"]),
        (["sde.name=foo"], ["sde.name", "hold", "cld", "vp"]),
        (["sde.Tx=3"], ["sde.Tx", "T"]),
        (["sde.T=-1"], ["sde", "T"]),
        (["sde.name=ve", "sample.sampler=sscs"], ["sample.sampler", "stationary"]),
        (["model.kind=transformer"], ["model.kind", "mlp", "unet"]),
        (["model.hiden=3"], ["model.hiden", "hidden"]),
        (["model.in_features=3"], ["model.in_features", "derived"]),
        (["model.data_var=0"], ["model.data_var"]),
        (["data.bogus=1"], ["data.bogus", "test_fraction"]),
        (["data.test_fraction=1"], ["data.test_fraction"]),
        (["data.conditional=maybe"], ["data.conditional", "true or false"]),
        (["bogus.x=1"], ["bogus", "train", "sde"]),
        (["train=3"], ["train"]),
        (["nokeyvalue"], ["key=value"]),
        (["train.lr.x=1"], ["train.lr"]),
    ],
)
def test_bad_inputs_name_the_key(overrides, needles):
    with pytest.raises(ConfigError) as e:
        load_config("toy-hold", overrides)
    msg = str(e.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml.*invalid YAML"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml.*mapping"):
        load_config(lst)
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    with pytest.raises(ConfigError, match="folder.yaml"):
        load_config(folder)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ConfigError, match="bin.yaml"):
        load_config(binary)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("train:\n  lrr: 1\n")
    with pytest.raises(ConfigError, match=r"train\.lrr.*unknown\.yaml"):
        load_config(unknown)


# ---------------------------------------------------------------------- fuzzing
_KEYS = {name: sorted(SECTIONS[name].__dataclass_fields__) for name in SECTIONS}
_key = st.one_of(
    st.sampled_from(
        sorted({k for ks in _KEYS.values() for k in ks} | {"T", "hidden", "n", "seed", "depth", "L", "alpha"})
    ),
    st.text(max_size=8),
)
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["hold", "cld", "vp", "ve", "sscs", "em", "mlp", "unet", "8gaussians", "auto"]),
)
_value = st.recursive(
    _scalar, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(_key, c, max_size=3)), max_leaves=6
)
_section = st.one_of(st.dictionaries(_key, _value, max_size=4), _value)
_root = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(sorted(SECTIONS)), st.text(max_size=6)), _section, max_size=4),
    _value,
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_root)
def test_fuzz_from_dict_only_raises_config_error(d):
    try:
        cfg = Config.from_dict(d)
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)
        return
    # a config that passes validation round-trips
    assert Config.from_dict(cfg.to_dict()) == cfg
    assert math.isfinite(cfg.train.lr) and cfg.train.lr > 0


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([f"{s}.{k}" for s, ks in _KEYS.items() for k in ks] + ["sde.T", "x", ""]),
            st.text(max_size=10),
        ),
        max_size=3,
    )
)
def test_fuzz_overrides_only_raise_config_error(pairs):
    try:
        load_config("toy-hold", [f"{k}={v}" for k, v in pairs])
    except ConfigError:
        pass


def test_apply_overrides_does_not_mutate():
    d = {"train": {"lr": 1.0}}
    out = apply_overrides(d, ["train.lr=2"])
    assert d == {"train": {"lr": 1.0}} and out["train"]["lr"] == 2


def test_null_removes_an_option_a_preset_set(tmp_path):
    """--set data.n=null removes a passed-on option (so a toy preset can train on a user's file)."""
    import numpy as np

    d = apply_overrides(load_config("toy-hold").to_dict(), ["data.n=null", "sde.T=null", "model.hidden=null"])
    assert "n" not in d["data"] and "T" not in d["sde"] and "hidden" not in d["model"]
    cfg = Config.from_dict(d)
    assert "n" not in cfg.data.options and cfg.sde.build().T == 5.0  # the preset's own T
    pts = tmp_path / "points.npy"
    np.save(pts, np.random.default_rng(0).normal(size=(300, 2)).astype("float32"))
    from holdsgm.runs.build import load_split

    for extra in ([], ["data.n=null", "data.seed=null"]):  # the toy preset's n and seed apply to a file too
        cfg = load_config("toy-hold", [f"data.name={pts}", *extra])
        assert len(load_split(cfg.data, "train")) + len(load_split(cfg.data, "test")) == 300


def test_train_on_all_data_or_on_a_heldout_file(tmp_path, caplog):
    import logging

    import numpy as np

    from holdsgm.runs.build import load_split

    pts, held = tmp_path / "points.npy", tmp_path / "held.npy"
    np.save(pts, np.zeros((50, 2), dtype="float32"))
    np.save(held, np.ones((7, 2), dtype="float32"))
    cfg = load_config("toy-hold", [f"data.name={pts}", "data.test_fraction=0"])
    assert len(load_split(cfg.data, "train")) == 50
    with caplog.at_level(logging.WARNING, logger="holdsgm"):
        assert len(load_split(cfg.data, "test")) == 50
    assert "no held-out data" in caplog.text
    cfg = load_config("toy-hold", [f"data.name={pts}", f"data.test={held}"])
    assert len(load_split(cfg.data, "train")) == 50
    test = load_split(cfg.data, "test")
    assert len(test) == 7 and float(test.x.mean()) == 1.0
    for bad in ("data.test_fraction=1", "data.test_fraction=-0.1", "data.test=''"):
        with pytest.raises(ConfigError, match="data.test"):
            load_config("toy-hold", [bad])


def test_config_reference_is_complete_and_docs_are_current():
    """Every key has a meaning, and docs/config.md is what `holdsgm config --markdown` writes."""
    from holdsgm.runs.reference import markdown, reference, undocumented
    from run_helpers import REPO

    assert undocumented() == []
    keys = {e.key for e in reference()}
    assert {"train.lr_schedule", "train.grad_accum", "data.random_flip", "data.value_range", "data.key",
            "data.recursive", "data.labels", "sde.T", "model.hidden", "eval.aux_draws"} <= keys
    assert (REPO / "docs" / "config.md").read_text() == markdown(), \
        "docs/config.md is stale: run `holdsgm config --markdown > docs/config.md`"
    with pytest.raises(ConfigError, match="unknown config section"):
        reference("nope")
