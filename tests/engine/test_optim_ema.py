"""Optimiser wrapper (late clipping, non-finite skip, lr multipliers), its checkpointed state and
the EMA schedule."""

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MessageHub
from torch import nn

from arcflow.engine import ArcFlowOptimWrapperConstructor, ema_beta
from arcflow.engine.checkpoint import _load_optimizer_state, _optimizer_state


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(3, 3)
        self.log_rates = nn.Linear(3, 2)
        self.frozen = nn.Linear(3, 3).requires_grad_(False)


def build(clip_from=2, max_norm=1.0):
    cfg = dict(
        optimizer=dict(type="AdamW", lr=1e-2, betas=(0.9, 0.95), weight_decay=0.0),
        clip_grad=dict(max_norm=max_norm),
        clip_grad_from_iter=clip_from,
    )
    net = Net()
    wrapper = ArcFlowOptimWrapperConstructor(cfg, dict(lr_mult=dict(log_rates=0.1)))(net)
    return net, wrapper


def set_iter(i):
    MessageHub.get_current_instance().update_info("iter", i)


def test_only_trainable_parameters_with_lr_multipliers():
    net, wrapper = build()
    groups = {
        round(g["lr"], 8): {id(p) for p in g["params"]} for g in wrapper.optimizer.param_groups
    }
    assert groups == {
        1e-2: {id(net.body.weight), id(net.body.bias)},
        1e-3: {id(net.log_rates.weight), id(net.log_rates.bias)},
    }


def test_unknown_lr_mult_key_is_named():
    cfg = dict(optimizer=dict(type="AdamW", lr=1e-2))
    with pytest.raises(ValueError, match="log_rate_head"):
        ArcFlowOptimWrapperConstructor(cfg, dict(lr_mult=dict(log_rate_head=0.1)))(Net())


def test_clipping_starts_at_its_iteration():
    net, wrapper = build(clip_from=2, max_norm=1.0)
    hub = MessageHub.get_current_instance()
    for it, clipped in ((0, False), (2, True)):
        set_iter(it)
        net.body.weight.grad = torch.full((3, 3), 10.0)
        before = net.body.weight.grad.clone()
        wrapper.step()
        assert hub.get_scalar("train/grad_norm").current() == pytest.approx(30.0)
        # the step clipped the gradient in place, or left it as it was
        norm_after = net.body.weight.grad.norm().item()
        assert (
            (norm_after == pytest.approx(1.0, rel=1e-4))
            if clipped
            else torch.equal(net.body.weight.grad, before)
        )
        wrapper.zero_grad()


def test_non_finite_norm_skips_the_step():
    net, wrapper = build()
    set_iter(5)
    weight = net.body.weight.detach().clone()
    net.body.weight.grad = torch.full((3, 3), math.nan)
    wrapper.step()
    assert torch.equal(net.body.weight, weight)
    assert net.body.weight.grad is None
    assert wrapper.skipped_steps == 1
    net.body.weight.grad = torch.ones(3, 3)
    wrapper.step()
    assert not torch.equal(net.body.weight, weight)


def test_optimizer_state_is_keyed_by_name_and_index_keyed_states_still_load():
    net, wrapper = build()
    set_iter(0)
    for param in net.parameters():
        if param.requires_grad:
            param.grad = torch.ones_like(param)
    wrapper.step()
    saved = _optimizer_state(net, wrapper.optimizer)
    assert [g["params"] for g in saved["param_groups"]] == [
        ["body.weight", "body.bias"],
        ["log_rates.weight", "log_rates.bias"],
    ]
    # by name, and by index as checkpoints written before held it
    for state in (saved, wrapper.optimizer.state_dict()):
        fresh_net, fresh = build()
        fresh_net.load_state_dict(net.state_dict())
        runner = SimpleNamespace(model=fresh_net, optim_wrapper=fresh)
        _load_optimizer_state(runner, copy.deepcopy(state))
        torch.testing.assert_close(
            fresh.optimizer.state_dict()["state"], wrapper.optimizer.state_dict()["state"]
        )


def test_optimizer_state_of_a_tensor_without_gradients_resumes():
    """A trainable tensor the forward never used has no optimiser state; resuming still works
    and keeps it stateless, as in an uninterrupted run."""
    net, wrapper = build()
    set_iter(0)
    net.body.weight.grad = torch.ones_like(net.body.weight)  # the others get no gradient
    wrapper.step()
    saved = _optimizer_state(net, wrapper.optimizer)
    assert list(saved["state"]) == ["body.weight"]
    fresh_net, fresh = build()
    _load_optimizer_state(SimpleNamespace(model=fresh_net, optim_wrapper=fresh), saved)
    torch.testing.assert_close(
        fresh.optimizer.state_dict()["state"], wrapper.optimizer.state_dict()["state"]
    )
    assert len(fresh.optimizer.state) == 1


def test_ema_beta_schedule():
    assert ema_beta(1, 100, 7.0) == 0.0
    assert ema_beta(100, 100, 7.0) == 0.0
    assert ema_beta(101, 100, 7.0) == 0.0  # t = 1: (1 - 1)^8
    assert ema_beta(102, 100, 7.0) == pytest.approx(0.5**8)
    assert ema_beta(1100, 100, 7.0) == pytest.approx((1 - 1 / 1000) ** 8)


def test_8bit_adamw_trains_and_resumes_on_the_cpu_backend(monkeypatch):
    """``prefer_8bit`` with bitsandbytes' 8-bit AdamW (its CPU backend here; CUDA in real runs):
    the optimiser the constructor builds, its moments in 8 bits, steps close to 32-bit AdamW, and
    a checkpointed state that resumes with the very next step of an uninterrupted run."""
    bnb = pytest.importorskip(
        "bitsandbytes", reason="bitsandbytes is not installed (pip install bitsandbytes)"
    )
    from arcflow.engine import optim

    try:
        probe = nn.Parameter(torch.zeros(256))
        probe.grad = torch.ones(256)
        bnb.optim.AdamW8bit([probe], min_8bit_size=1).step()
    except Exception as error:  # the CPU backend depends on the installed build
        pytest.skip(f"bitsandbytes {bnb.__version__} cannot run 8-bit AdamW on this CPU: {error}")
    monkeypatch.setattr(optim, "EIGHT_BIT_DEVICES", {"cuda", "cpu"})

    def build_8bit(prefer: bool):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64))
        cfg = dict(optimizer=dict(type="AdamW", lr=1e-2, betas=(0.9, 0.95), weight_decay=0.0))
        return net, ArcFlowOptimWrapperConstructor(cfg, dict(prefer_8bit=prefer))(net)

    def train(net, wrapper, steps, start=0):
        for step in range(start, start + steps):
            set_iter(step)
            gen = torch.Generator().manual_seed(step)
            for param in net.parameters():
                param.grad = torch.randn(param.shape, generator=gen)
            wrapper.step()
            wrapper.zero_grad()

    net, wrapper = build_8bit(True)
    assert isinstance(wrapper.optimizer, bnb.optim.AdamW8bit)
    reference_net, reference = build_8bit(False)
    assert isinstance(reference.optimizer, torch.optim.AdamW)
    start = [p.detach().clone() for p in net.parameters()]
    train(net, wrapper, 3)
    train(reference_net, reference, 3)
    state = wrapper.optimizer.state[net[0].weight]
    assert state["state1"].dtype == state["state2"].dtype == torch.uint8
    # The 8-bit moments move the weights as the 32-bit ones do, to a few percent (measured: 0.9 %).
    pairs = zip(net.parameters(), reference_net.parameters(), start, strict=True)
    for param, expected, before in pairs:
        moved, expected_move = param - before, expected - before
        assert (moved - expected_move).norm() < 0.05 * expected_move.norm()

    saved = copy.deepcopy(_optimizer_state(net, wrapper.optimizer))
    resumed_net, resumed = build_8bit(True)
    resumed_net.load_state_dict(net.state_dict())
    _load_optimizer_state(SimpleNamespace(model=resumed_net, optim_wrapper=resumed), saved)
    train(net, wrapper, 2, start=3)
    train(resumed_net, resumed, 2, start=3)
    for param, expected in zip(resumed_net.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(param, expected, rtol=0, atol=0)
