"""A soft actor-critic agent (Haarnoja et al., ICML 2018, "Soft Actor-Critic", Alg. 1 with
learned temperature) for IGBv2's weight choice (``methods/igbv2.py``).

The agent is one module that serialises itself: actor, twin critics, target critics and the
temperature (parameters), the replay buffer (buffers), and the three Adam states and counters
(extra state). The method holds it in its state, not among its parameters: the model's optimizer
never sees the agent, which trains itself in :meth:`SACAgent.train_burst`.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


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


class SACAgent(nn.Module):
    """Actor, twin critics with Polyak targets, temperature tuned to the entropy target ``−T``,
    and a circular replay buffer of ``(state, action, reward, next_state)``."""

    def __init__(
        self, tasks: int, hidden: Sequence[int], lr: float, capacity: int, discount: float, tau: float, init_alpha: float
    ) -> None:
        super().__init__()
        self.discount, self.tau, self.capacity = discount, tau, capacity
        self.actor = GaussianSoftmaxActor(tasks, hidden)
        self.critic = TwinCritic(tasks, hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(init_alpha)))
        self.target_entropy = -float(tasks)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=lr)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=lr)
        self.register_buffer("replay_state", torch.zeros(capacity, tasks))
        self.register_buffer("replay_action", torch.zeros(capacity, tasks))
        self.register_buffer("replay_reward", torch.zeros(capacity, 1))
        self.register_buffer("replay_next_state", torch.zeros(capacity, tasks))
        self.replay_pointer = 0
        self.replay_size = 0
        self.updates = 0

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer, "alpha": self.alpha_optimizer}

    def get_extra_state(self) -> dict:
        return {
            "replay_pointer": self.replay_pointer,
            "replay_size": self.replay_size,
            "updates": self.updates,
            "optimizers": {name: opt.state_dict() for name, opt in self._optimizers().items()},
        }

    def set_extra_state(self, state: dict) -> None:
        self.replay_pointer = int(state["replay_pointer"])
        self.replay_size = int(state["replay_size"])
        self.updates = int(state["updates"])
        for name, optimizer in self._optimizers().items():
            optimizer.load_state_dict(state["optimizers"][name])

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        # the Adam moments follow the parameters they belong to (their step counters stay)
        for optimizer in self._optimizers().values():
            for slot in optimizer.state.values():
                for key, value in slot.items():
                    if isinstance(value, torch.Tensor) and key != "step":
                        slot[key] = fn(value)
        return self

    def act(self, state: torch.Tensor) -> torch.Tensor:
        """A stochastic action for one state (no gradient)."""
        with torch.no_grad():
            action, _ = self.actor(state.unsqueeze(0))
        return action.squeeze(0)

    def store(self, state: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_state: torch.Tensor) -> None:
        i = self.replay_pointer
        self.replay_state[i] = state
        self.replay_action[i] = action
        self.replay_reward[i, 0] = reward
        self.replay_next_state[i] = next_state
        self.replay_pointer = (i + 1) % self.capacity
        self.replay_size = min(self.replay_size + 1, self.capacity)

    def train_burst(self, steps: int, batch_size: int) -> bool:
        """``⌊steps·k/2⌋`` updates on batches of ``⌊batch_size·k/2⌋``, ``k = 1 + size/capacity``
        (the IGB4MTL schedule). Returns whether every loss was finite (one host check)."""
        k = 1.0 + self.replay_size / self.capacity
        losses = []
        with torch.enable_grad():
            for _ in range(int(steps * k / 2)):
                losses.append(self._train_once(int(batch_size * k / 2)))
        for module in (self.actor, self.critic):
            module.zero_grad(set_to_none=True)
        self.log_alpha.grad = None
        return bool(torch.isfinite(torch.stack(losses)).all()) if losses else True

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
        self.updates += 1
        return (critic_loss.detach() + actor_loss.detach()).to(torch.float32)
