"""IGBv2: improvable gap balancing with a soft actor-critic (SAC) agent choosing the weights.

Dai, Fei, Lu, "Improvable Gap Balancing for Multi-Task Learning", UAI 2023 (arXiv 2307.15429),
and the official code (``IGB4MTL``: ``ImprovableGapBalancing_v2`` and ``SAC_Agent``), written
here from their description. Loss balancing of the log losses, ``Σ_t w_t log L_t``, where the
weights are the action of a SAC agent (Haarnoja et al. 2018) whose

* state is the vector of the step's raw task losses,
* action is ``w = T · softmax(u)``, ``u ~ N(μ(s), σ(s))`` from a Gaussian actor,
* reward for the transition ``(L_prev, w_prev) → L_now`` is ``min_t (L_prev,t − L_now,t) / L_t^base``
  times ``reward_scale`` (the improvable-gap reduction of the worst task; ``L^base`` is the mean
  loss of epoch ``base_epoch`` as in IGBv1),

with the official schedule (epochs from 0, counted by ``end_epoch()``): random weights
``T · softmax(N(0, I))`` during the first ``random_epochs`` (5) epochs while the replay buffer fills
(transitions are stored once the base is known); from epoch ``update_after_epochs`` (3) on, every
``update_every`` (50) steps the agent trains ``⌊50·k/2⌋`` times on batches of ``⌊256·k/2⌋``
transitions, ``k = 1 + size/capacity``; afterwards the actions come from the stochastic actor.

Agent (official values): actor and twin critics are MLPs with two hidden layers of 128 ReLU
units (the actor's last hidden layer also ReLU), ``log σ`` clamped to [−20, 2], Adam with
``lr = 3e-4`` for actor, critics and temperature, discount 0.99, Polyak ``τ = 0.005``, initial
temperature 0.2 tuned towards the entropy target ``−T``, replay capacity 10⁴. The log-probability
uses the official expression (Gaussian log-density minus the tanh correction term, although the
action is a softmax, not a tanh). The official trainer sets ``reward_scale`` to
``lr_initial / lr_current`` at every epoch; set ``method.reward_scale`` from your scheduler to do
the same (default 1).

Everything is state: networks, target critics and temperature (parameters and buffers), the
replay buffer (buffers), the three Adam states and counters (``get_extra_state``), so a resumed
run continues exactly. The agent trains itself inside ``weights()``; ``learnable`` is False and
its parameters must **not** be given to the model's optimizer (their ``.grad`` is cleared after
each training burst, so an optimizer that holds them anyway leaves them untouched).

Safety: a non-finite action (a diverged agent) is replaced by ``w = 1`` (log-loss equal
weighting) without a host sync and flagged in ``info["fallback"]``; a non-finite SAC loss during a
training burst (one host check per burst) is logged, the agent is frozen and equal weighting is
used from then on (``info["sac_diverged"]``).
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
from collections.abc import Sequence
from typing import Annotated

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from repmtl.hparams import Finite, NonNegativeInt, Positive, PositiveInt, Probability
from repmtl.methods.base import register
from repmtl.methods.igbv1 import IGBv1

log = logging.getLogger(__name__)


def _mlp(sizes: Sequence[int], last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if k < len(sizes) - 2 or last_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class GaussianSoftmaxActor(nn.Module):
    """``u ~ N(μ(s), σ(s))``, action ``T · softmax(u)``."""

    def __init__(self, tasks: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.body = _mlp([tasks, *hidden], last_activation=True)
        self.mu = nn.Linear(hidden[-1], tasks)
        self.log_std = nn.Linear(hidden[-1], tasks)
        self.tasks = tasks

    def forward(self, state: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(state)
        mu = self.mu(h)
        std = self.log_std(h).clamp(-20.0, 2.0).exp()
        u = mu if deterministic else mu + std * torch.randn_like(mu)
        action = self.tasks * torch.softmax(u, dim=-1)
        gaussian = (-0.5 * ((u - mu) / std).square() - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1, keepdim=True)
        correction = (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1, keepdim=True)
        return action, gaussian - correction


class TwinCritic(nn.Module):
    def __init__(self, tasks: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.q1 = _mlp([2 * tasks, *hidden, 1], last_activation=False)
        self.q2 = _mlp([2 * tasks, *hidden, 1], last_activation=False)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([state, action], dim=-1)
        return self.q1(x), self.q2(x)


@register
class IGBv2(IGBv1):
    name = "igbv2"
    description = "Improvable gap balancing v2: log-loss weights chosen by a SAC agent rewarded by gap reduction"
    reference = "Dai et al., UAI 2023 (IGBv2); official IGB4MTL code"

    def __init__(
        self,
        base_epoch: NonNegativeInt = 1,
        random_epochs: NonNegativeInt = 5,
        update_after_epochs: NonNegativeInt = 3,
        update_every: PositiveInt = 50,
        buffer_size: PositiveInt = 10_000,
        sac_lr: Positive = 3e-4,
        batch_size: PositiveInt = 256,
        hidden: Annotated[tuple[PositiveInt, ...], Field(min_length=1)] = (128, 128),
        discount: Probability = 0.99,
        tau: Annotated[float, Field(gt=0, le=1)] = 0.005,
        init_alpha: Positive = 0.2,
        reward_scale: Finite = 1.0,
    ) -> None:
        super().__init__(base_epoch)
        self.random_epochs = random_epochs
        self.update_after_epochs = update_after_epochs
        self.update_every = update_every
        self.buffer_size = int(buffer_size)
        self.sac_lr = sac_lr
        self.batch_size = batch_size
        self.hidden = tuple(int(h) for h in hidden)
        self.discount = discount
        self.tau = tau
        self.init_alpha = init_alpha
        self.reward_scale = reward_scale

    def setup(self, num_tasks: int) -> None:
        super().setup(num_tasks)
        self.actor = GaussianSoftmaxActor(num_tasks, self.hidden)
        self.critic = TwinCritic(num_tasks, self.hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(self.init_alpha)))
        self.target_entropy = -float(num_tasks)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=self.sac_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=self.sac_lr)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=self.sac_lr)
        n = self.buffer_size
        self.register_buffer("replay_state", torch.zeros(n, num_tasks))
        self.register_buffer("replay_action", torch.zeros(n, num_tasks))
        self.register_buffer("replay_reward", torch.zeros(n, 1))
        self.register_buffer("replay_next_state", torch.zeros(n, num_tasks))
        self.register_buffer("previous_state", torch.zeros(num_tasks))
        self.register_buffer("previous_action", torch.zeros(num_tasks))
        self.replay_pointer = 0
        self.replay_size = 0
        self.steps = 0
        self.has_previous = False
        self.sac_diverged = False
        self.sac_updates = 0

    # ---- state ---------------------------------------------------------------------------

    def get_extra_state(self) -> dict:
        return {
            **super().get_extra_state(),
            "replay_pointer": self.replay_pointer,
            "replay_size": self.replay_size,
            "steps": self.steps,
            "has_previous": self.has_previous,
            "sac_diverged": self.sac_diverged,
            "sac_updates": self.sac_updates,
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
        }

    def set_extra_state(self, state: dict) -> None:
        super().set_extra_state(state)
        for key in ("replay_pointer", "replay_size", "steps", "sac_updates"):
            setattr(self, key, int(state[key]))
        self.has_previous = bool(state["has_previous"])
        self.sac_diverged = bool(state["sac_diverged"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])

    def _to(self, device: torch.device) -> None:
        if self.replay_state.device == device:
            return
        self.to(device)
        for optimizer in (self.actor_optimizer, self.critic_optimizer, self.alpha_optimizer):
            for slot in optimizer.state.values():
                for key, value in slot.items():
                    if isinstance(value, torch.Tensor) and key != "step":
                        slot[key] = value.to(device)

    # ---- one step ------------------------------------------------------------------------

    def weights(self, gramian: torch.Tensor | None, losses: torch.Tensor | None = None) -> torch.Tensor:
        raw = torch.exp(losses.detach().to(torch.float64))
        self._record(raw)
        self._to(losses.device)
        state = raw.to(torch.float32)
        if self.has_base and self.has_previous:
            gap_reduction = (self.previous_state - state) / self.base_losses.to(state)
            self._store(self.previous_state, self.previous_action, gap_reduction.min() * self.reward_scale, state)
        if (
            not self.sac_diverged
            and self.epoch >= self.update_after_epochs
            and self.steps % self.update_every == 0
            and self.replay_size > 0
        ):
            self._train_burst()

        fallback = torch.zeros((), dtype=torch.bool, device=state.device)
        if self.epoch < self.random_epochs:
            draw = torch.randn(self.num_tasks)  # CPU generator, as RLW
            action = (self.num_tasks * torch.softmax(draw, dim=0)).to(state.device)
            phase = "random"
        elif self.sac_diverged:
            action = torch.ones_like(state)
            phase = "diverged"
        else:
            with torch.no_grad():
                action, _ = self.actor(state.unsqueeze(0))
            action = action.squeeze(0)
            fallback = ~torch.isfinite(action).all()
            action = torch.where(fallback, torch.ones_like(action), action)
            phase = "sac"
        self.previous_state = state.clone()
        self.previous_action = action.detach().clone()
        self.has_previous = True
        self.steps += 1
        self.info = {"phase": phase, "fallback": fallback, "sac_diverged": self.sac_diverged}
        return action.to(losses.dtype)

    def _store(self, state: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_state: torch.Tensor) -> None:
        i = self.replay_pointer
        self.replay_state[i] = state
        self.replay_action[i] = action
        self.replay_reward[i, 0] = reward
        self.replay_next_state[i] = next_state
        self.replay_pointer = (i + 1) % self.buffer_size
        self.replay_size = min(self.replay_size + 1, self.buffer_size)

    def _train_burst(self) -> None:
        k = 1.0 + self.replay_size / self.buffer_size
        losses = []
        with torch.enable_grad():
            for _ in range(int(self.update_every * k / 2)):
                losses.append(self._train_once(int(self.batch_size * k / 2)))
        for module in (self.actor, self.critic):
            module.zero_grad(set_to_none=True)
        self.log_alpha.grad = None
        if not bool(torch.isfinite(torch.stack(losses)).all()):  # one host check per burst
            self.sac_diverged = True
            log.warning("IGBv2: the SAC agent produced non-finite losses; falling back to equal log-loss weights")

    def _train_once(self, batch: int) -> torch.Tensor:
        index = torch.randint(0, self.replay_size, (batch,)).to(self.replay_state.device)
        s, a = self.replay_state[index], self.replay_action[index]
        r, s_next = self.replay_reward[index], self.replay_next_state[index]
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            a_next, logp_next = self.actor(s_next)
            q1_t, q2_t = self.critic_target(s_next, a_next)
            target = r + self.discount * (torch.min(q1_t, q2_t) - alpha * logp_next)
        q1, q2 = self.critic(s, a)
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()

        self.critic.requires_grad_(False)
        a_new, logp = self.actor(s)
        q1_new, q2_new = self.critic(s, a_new)
        actor_loss = (alpha * logp - torch.min(q1_new, q2_new)).mean()
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        self.actor_optimizer.step()
        self.critic.requires_grad_(True)

        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_optimizer.zero_grad()
        alpha_loss.backward()
        self.alpha_optimizer.step()

        with torch.no_grad():
            for p, p_target in zip(self.critic.parameters(), self.critic_target.parameters()):
                p_target.mul_(1.0 - self.tau).add_(self.tau * p)
        self.sac_updates += 1
        return (critic_loss.detach() + actor_loss.detach()).to(torch.float32)
