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

The agent (``methods/_sac.py``: networks, temperature, replay buffer, its three Adam states) is
one entry of the method's state, next to the counters, so a resumed run continues exactly. It is
held, not a submodule: ``method.parameters()`` is empty and the model's optimizer never sees it;
the agent trains itself inside ``weights()``.

Safety: a non-finite action (a diverged agent) is replaced by ``w = 1`` (log-loss equal
weighting) without a host sync and flagged in ``info["fallback"]``; a non-finite SAC loss during a
training burst (one host check per burst) is logged, the agent is frozen and equal weighting is
used from then on (``info["sac_diverged"]``).
"""

from __future__ import annotations

import logging
from typing import Annotated

import torch
from pydantic import Field

from repmtl.hparams import Finite, NonNegativeInt, Positive, PositiveInt, Probability
from repmtl.methods._sac import SACAgent
from repmtl.methods.base import register
from repmtl.methods.igbv1 import IGBv1

log = logging.getLogger(__name__)


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
        self.state.agent = SACAgent(
            num_tasks, self.hidden, self.sac_lr, self.buffer_size, self.discount, self.tau, self.init_alpha
        )
        self.state.previous_state = torch.zeros(num_tasks)
        self.state.previous_action = torch.zeros(num_tasks)
        self.state.steps = 0
        self.state.has_previous = False
        self.state.sac_diverged = False

    @property
    def agent(self) -> SACAgent:
        return self.state.agent

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        st, agent = self.state, self.state.agent
        raw = torch.exp(losses.detach().to(torch.float64))
        self._record(raw)
        if agent.replay_state.device != losses.device:
            self.to(losses.device)
        now = raw.to(torch.float32)
        if st.has_base and st.has_previous:
            gap_reduction = (st.previous_state - now) / st.base_losses.to(now)
            agent.store(st.previous_state, st.previous_action, gap_reduction.min() * self.reward_scale, now)
        if (
            not st.sac_diverged
            and st.epoch >= self.update_after_epochs
            and st.steps % self.update_every == 0
            and agent.replay_size > 0
            and not agent.train_burst(self.update_every, self.batch_size)
        ):
            st.sac_diverged = True
            log.warning("IGBv2: the SAC agent produced non-finite losses; falling back to equal log-loss weights")

        fallback = torch.zeros((), dtype=torch.bool, device=now.device)
        if st.epoch < self.random_epochs:
            draw = torch.randn(self.num_tasks)  # CPU generator, as RLW
            action = (self.num_tasks * torch.softmax(draw, dim=0)).to(now.device)
            phase = "random"
        elif st.sac_diverged:
            action = torch.ones_like(now)
            phase = "diverged"
        else:
            action = agent.act(now)
            fallback = ~torch.isfinite(action).all()
            action = torch.where(fallback, torch.ones_like(action), action)
            phase = "sac"
        st.previous_state = now.clone()
        st.previous_action = action.detach().clone()
        st.has_previous = True
        st.steps += 1
        self.info = {"phase": phase, "fallback": fallback, "sac_diverged": st.sac_diverged}
        return action.to(losses.dtype)
