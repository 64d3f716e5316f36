"""IGBv2 (Dai et al., UAI 2023): random phase, gap-reduction rewards, SAC schedule, state, safety."""

import copy
import logging

import pytest
import torch

import repmtl
from repmtl.methods.igbv2 import IGBv2
from tests.conftest import tiny_losses, tiny_model

SMALL = {"hidden": (8,), "batch_size": 4, "update_every": 2, "buffer_size": 8}


def _log(values):
    return torch.log(torch.tensor(values, dtype=torch.float64))


def _step(method, values, seed):
    torch.manual_seed(seed)
    return method.weights(_log(values))


def test_random_phase_draws_rlw_weights():
    method = IGBv2().bind(["a", "b", "c"])
    w = _step(method, [1.0, 2.0, 3.0], seed=4)
    torch.manual_seed(4)
    torch.testing.assert_close(w, (3 * torch.softmax(torch.randn(3), 0)).double())
    assert method.info["phase"] == "random"


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_transitions_and_gap_reduction_reward(scale):
    method = IGBv2(base_epoch=0, random_epochs=100, update_after_epochs=100, reward_scale=scale, **SMALL).bind(["a", "b"])
    w0 = _step(method, [2.0, 4.0], seed=0)  # epoch 0: base epoch, no transition yet
    assert method.state.agent.replay_size == 0
    method.end_epoch()
    torch.testing.assert_close(method.state.base_losses, torch.tensor([2.0, 4.0], dtype=torch.float64))
    _step(method, [1.0, 3.0], seed=1)
    assert method.state.agent.replay_size == 1
    torch.testing.assert_close(method.state.agent.replay_state[0], torch.tensor([2.0, 4.0]))
    torch.testing.assert_close(method.state.agent.replay_action[0], w0.float())
    torch.testing.assert_close(method.state.agent.replay_next_state[0], torch.tensor([1.0, 3.0]))
    # reward = min_t (L_prev − L_now)/L_base = min(½, ¼)
    assert method.state.agent.replay_reward[0, 0].item() == pytest.approx(0.25 * scale)


def test_training_schedule_and_actor_phase():
    method = IGBv2(base_epoch=0, random_epochs=1, update_after_epochs=1, **SMALL).bind(["a", "b"])
    for seed in range(3):  # epoch 0, global steps 0-2: base epoch, random weights
        _step(method, [2.0 - 0.1 * seed, 1.0], seed)
    method.end_epoch()
    _step(method, [1.5, 0.9], 3)  # step 3: transition stored, 3 % 2 ≠ 0: no training
    assert method.state.agent.updates == 0 and method.state.agent.replay_size == 1
    w = _step(method, [1.4, 0.8], 4)  # step 4: k = 1 + 2/8, ⌊2k/2⌋ = 1 update
    assert method.state.agent.updates == 1 and method.state.agent.replay_size == 2
    assert method.info["phase"] == "sac"
    assert torch.isfinite(w).all() and (w > 0).all() and abs(w.sum().item() - 2) < 1e-5
    for p in [*method.agent.actor.parameters(), *method.agent.critic.parameters(), method.agent.log_alpha]:
        assert p.grad is None  # nothing left for an outside optimizer
    assert method.agent.log_alpha.item() != pytest.approx(torch.log(torch.tensor(0.2)).item())  # the temperature trained


def _run(method, start, stop):
    outs = []
    for step in range(start, stop):
        outs.append(_step(method, [1.0 + 0.5 * torch.sin(torch.tensor(step * 0.7)).item(), 2.0 / (1 + step)], seed=step))
        if step % 3 == 2:
            method.end_epoch()
    return outs


def test_state_round_trip_after_training(one_thread):
    config = dict(base_epoch=0, random_epochs=1, update_after_epochs=1, **SMALL)
    first = IGBv2(**config).bind(["a", "b"])
    _run(first, 0, 9)
    assert first.state.agent.updates > 0
    saved = copy.deepcopy(first.state_dict())
    resumed = IGBv2(**config).bind(["a", "b"])
    resumed.load_state_dict(saved)
    broken = IGBv2(**config).bind(["a", "b"])
    broken.load_state_dict(saved)
    broken.agent.critic_optimizer = torch.optim.Adam(broken.agent.critic.parameters(), lr=broken.sac_lr)  # lose its moments
    expected = _run(first, 9, 15)
    for a, b in zip(_run(resumed, 9, 15), expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(first.state_dict().items(), resumed.state_dict().items()):
        if isinstance(a[1], torch.Tensor):
            torch.testing.assert_close(a[1], b[1], rtol=0, atol=0, msg=a[0])
    assert any(not torch.equal(a, b) for a, b in zip(_run(broken, 9, 15), expected))  # optimizer state matters


def test_unbound_instance_binds_from_the_checkpoint():
    first = IGBv2(**SMALL).bind(["a", "b"])
    _step(first, [1.0, 1.0], 0)
    fresh = IGBv2(**SMALL)
    fresh.load_state_dict(copy.deepcopy(first.state_dict()))
    assert fresh.task_names == ("a", "b") and fresh.state.steps == 1


def test_non_finite_actor_falls_back_to_equal_weights(caplog):
    method = IGBv2(base_epoch=0, random_epochs=1, update_after_epochs=1, **SMALL).bind(["a", "b"])
    _step(method, [2.0, 1.0], 0)
    method.end_epoch()
    with torch.no_grad():
        method.agent.actor.mu.weight.fill_(float("nan"))
    w = _step(method, [1.9, 0.9], 1)  # step 1: no training (odd step), actor output is NaN
    torch.testing.assert_close(w, torch.ones(2, dtype=torch.float64))
    assert bool(method.info["fallback"])
    with caplog.at_level(logging.WARNING, logger="repmtl.methods.igbv2"):
        w = _step(method, [1.8, 0.8], 2)  # even step: training sees NaN losses
    assert method.state.sac_diverged and "non-finite" in caplog.text
    torch.testing.assert_close(w, torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(_step(method, [1.7, 0.7], 3), torch.ones(2, dtype=torch.float64))


@pytest.fixture
def one_thread():
    """Tiny networks: intra-op threads only add contention (10x slower on a loaded 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_agent_learns_to_favour_a_rewarded_action(one_thread):
    """A bandit fed straight into the replay buffer (reward = weight of task 0, no discount): the
    actor's deterministic action must move weight to task 0 — checks the signs of the SAC updates."""
    torch.manual_seed(0)
    method = IGBv2(hidden=(16, 16), batch_size=32, discount=0.0, buffer_size=256, sac_lr=1e-2).bind(["a", "b"])
    state = torch.tensor([1.0, 1.0])
    for _ in range(256):
        action = 2 * torch.softmax(torch.randn(2), 0)
        method.agent.store(state, action, action[0] / 2, state)
    with torch.no_grad():
        before = method.agent.actor(state.unsqueeze(0), deterministic=True)[0][0, 0].item()
    with torch.enable_grad():
        for _ in range(60):
            method.agent.train_burst(steps=1, batch_size=32)  # full buffer, k = 2: one update of 32 samples
    with torch.no_grad():
        after = method.agent.actor(state.unsqueeze(0), deterministic=True)[0][0, 0].item()
    assert after > before + 0.3 and after > 1.4


@pytest.mark.parametrize("level", ["parameters", "representation"])
def test_backward_updates_every_parameter(level):
    torch.manual_seed(1)
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    model = tiny_model()
    method = IGBv2(base_epoch=0, random_epochs=1, update_after_epochs=1, **SMALL)
    sgd = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(5):
        model.zero_grad()
        out, losses = tiny_losses(model, x)
        record = repmtl.backward(losses, representation=out.representation, method=method, level=level)
        sgd.step()
        if step == 1:
            method.end_epoch()
    assert method.state.agent.updates > 0 and method.info["phase"] == "sac"
    torch.testing.assert_close(record.head_weights, record.weights)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
