"""Flat parameter and gradient buffers: the same updates as per-tensor AdamW / EMA bit for bit, gradients that
stay views, per-parameter checkpoints, and runs that resume across the two layouts."""

import copy

import pytest
import torch
from torch import nn

from holdsgm.engine import EMA, load_checkpoint
from holdsgm.engine import loop as trainer_module
from holdsgm.engine.flat import FlatParameters, join_optimizer_state, split_optimizer_state
from holdsgm.runs import make_engine
from run_helpers import tiny_config


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.SiLU(), nn.Linear(16, 16), nn.SiLU(), nn.Linear(16, 3))


def _adamw(params):
    return torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1, fused=True)


def test_flat_adamw_clipping_and_ema_equal_the_per_tensor_updates_bit_for_bit():
    net, ref = _net(), _net()
    flat = FlatParameters(list(net.parameters()))
    ema, ema_ref = EMA(net, 0.9), EMA(ref, 0.9)
    assert ema.use_flat(flat)
    opt, opt_ref = _adamw([flat.param]), _adamw(ref.parameters())
    x = torch.randn(64, 5, generator=torch.Generator().manual_seed(1))
    for step in range(6):
        flat.zero_grad()
        opt_ref.zero_grad(set_to_none=True)
        net(x).pow(3).mean().backward()
        ref(x).pow(3).mean().backward()
        g = flat.gather()
        # the gradient views are the per-parameter gradients, and the flat buffer is their concatenation
        assert torch.equal(g, torch.cat([p.grad.reshape(-1) for p in ref.parameters()]))
        coef = 0.5 if step % 2 else 1.0  # clipping is one multiply either way
        g.mul_(coef)
        for p in ref.parameters():
            p.grad.mul_(coef)
        opt.step()
        opt_ref.step()
        ema.update(step)
        ema_ref.update(step)
    for a, b in zip(net.parameters(), ref.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(ema.model.parameters(), ema_ref.model.parameters()):
        assert torch.equal(a, b)
    assert flat.bound()
    state, state_ref = split_optimizer_state(opt.state_dict(), flat), opt_ref.state_dict()
    assert state["param_groups"] == state_ref["param_groups"]
    for i, per in state_ref["state"].items():
        assert state["state"][i].keys() == per.keys()
        for k, v in per.items():
            assert torch.equal(state["state"][i][k], v), (i, k)


def test_gradients_that_something_replaced_or_dropped_are_gathered_back():
    net = _net()
    flat = FlatParameters(list(net.parameters()))
    x = torch.randn(8, 5)
    net.zero_grad(set_to_none=True)  # what a caller outside the trainer might do
    net(x).sum().backward()
    expected = torch.cat([p.grad.reshape(-1) for p in net.parameters()]).clone()
    assert torch.equal(flat.gather(), expected)
    assert all(p.grad.data_ptr() == flat.param.grad[o:].data_ptr()
               for p, o in zip(net.parameters(), [0, 80, 96, 352, 368]))
    net[0].weight.grad = None  # a dropped gradient counts as zero
    g = flat.gather()
    assert float(g[:80].abs().sum()) == 0 and torch.equal(g[80:], expected[80:])
    flat.zero_grad()
    net(x).sum().backward()
    assert torch.equal(flat.gather(), expected)  # backward accumulated into the zeroed views


def test_flat_backward_equals_zero_grad_and_backward_bit_for_bit():
    """FlatParameters.backward (autograd.grad, then one copy into the flat buffer) gives exactly what
    zero_grad + loss.backward() + gather give; a parameter the loss does not reach gets zero, and a gradient
    something replaced is re-bound to the buffer first."""
    net, extra = _net(), torch.nn.Parameter(torch.ones(3))  # extra: never used by the loss
    flat = FlatParameters([*net.parameters(), extra])
    x = torch.randn(8, 5)
    for _ in range(2):
        flat.zero_grad()
        net(x).square().sum().backward()
        expected = flat.gather().clone()
        flat.param.grad.normal_()  # stale values: backward replaces, does not accumulate
        got = flat.backward(net(x).square().sum())
        assert got is flat.param.grad and torch.equal(got, expected)
        assert float(got[-3:].abs().sum()) == 0 and torch.equal(extra.grad, torch.zeros(3))
        assert flat.bound() and all(p.grad.data_ptr() == v.data_ptr() for p, v in zip(flat.params, flat._views))
        assert torch.equal(torch.cat([p.grad.reshape(-1) for p in flat.params]), got)
        net.zero_grad(set_to_none=True)  # dropped by something else: the next round re-binds the views
    got = flat.backward(net(x).square().sum())  # straight after the drop
    assert torch.equal(got, expected) and flat.bound()
    assert all(p.grad is not None and p.grad.data_ptr() == v.data_ptr() for p, v in zip(flat.params, flat._views))


def test_optimizer_state_round_trips_and_bad_states_are_refused():
    net = _net()
    flat = FlatParameters(list(net.parameters()))
    opt = _adamw([flat.param])
    net(torch.randn(4, 5)).sum().backward()
    flat.gather()
    opt.step()
    per = split_optimizer_state(opt.state_dict(), flat)
    joined = join_optimizer_state(per, flat)
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(joined["state"][0][k], v)
    fresh = _adamw([FlatParameters(list(_net().parameters())).param])
    # before the first step there is no state, in either layout
    per_tensor_fresh = _adamw(_net().parameters()).state_dict()["state"]
    assert split_optimizer_state(fresh.state_dict(), flat)["state"] == per_tensor_fresh == {}
    assert join_optimizer_state(fresh.state_dict() | {"param_groups": per["param_groups"]}, flat)["state"] == {}
    short = copy.deepcopy(per)
    short["param_groups"][0]["params"] = short["param_groups"][0]["params"][:-1]
    with pytest.raises(ValueError, match="parameter"):
        join_optimizer_state(short, flat)
    steps = copy.deepcopy(per)
    steps["state"][1]["step"] = steps["state"][1]["step"] + 1
    with pytest.raises(ValueError, match="step"):
        join_optimizer_state(steps, flat)
    missing = copy.deepcopy(per)
    del missing["state"][2]
    with pytest.raises(ValueError, match="missing"):
        join_optimizer_state(missing, flat)


def test_parameters_of_different_dtypes_are_not_flattened():
    net = _net()
    net[2].double()
    with pytest.raises(ValueError, match="dtype"):
        FlatParameters(list(net.parameters()))


def _per_tensor(monkeypatch):
    def refuse(*args, **kwargs):
        raise ValueError("per-tensor layout for this test")

    monkeypatch.setattr(trainer_module, "FlatParameters", refuse)


def test_checkpoints_hold_per_parameter_optimizer_state_and_resume_across_layouts(tmp_path, monkeypatch):
    """A run written with flat buffers resumes without them (and the reverse) exactly as an uninterrupted
    run continues: AdamW and the EMA are elementwise, so the layout does not change a single weight."""
    cfg = tiny_config("train.grad_clip=0", "train.ckpt_every=3", steps=6)
    full = make_engine(cfg, tmp_path / "full", verbose=False)
    assert full.flat is not None
    shapes = [tuple(p.shape) for p in full._params]
    full.fit()
    full.close()
    ck = load_checkpoint(tmp_path / "full")
    state = ck.state["optimizer"]["state"]
    assert sorted(state) == list(range(len(shapes)))
    assert [tuple(state[i]["exp_avg"].shape) for i in range(len(shapes))] == shapes

    for first_flat in (True, False):
        run = tmp_path / f"mixed-{first_flat}"
        with monkeypatch.context() as m:
            if not first_flat:
                _per_tensor(m)
            t = make_engine(tiny_config("train.grad_clip=0", "train.ckpt_every=3", steps=3), run, verbose=False)
            assert (t.flat is not None) == first_flat
            t.fit()
            t.close()
        with monkeypatch.context() as m:
            if first_flat:
                _per_tensor(m)
            t = make_engine(cfg, run, verbose=False)
            assert t.resumed_from == 3 and (t.flat is None) == first_flat
            t.fit()
            t.close()
        other = load_checkpoint(run)
        assert other.step == 6
        for k in ck.model:
            assert torch.equal(other.model[k], ck.model[k]) and torch.equal(other.ema[k], ck.ema[k]), k
