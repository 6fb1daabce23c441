"""Model Predictive Path Integral control (Williams et al. 2017), vectorised over samples.

Each iteration: perturb the nominal plan with K noise sequences (sample 0 keeps the nominal
plan itself), clip to the action limits, roll all K out through the model, cost them, and
move the nominal plan to the softmin-weighted mean of the samples:

    w_k = exp(-(J_k - min J) / lambda) / sum_j exp(-(J_j - min J) / lambda)
    U  <- sum_k w_k U_k

Rollout, costing, the update and the rollout of the new plan form one function. On the CPU it
is the native kernel (``controller/native``: one fused C loop per block of samples); on CUDA, or
for a model or cost the kernel does not know, it is torch, compiled once per planner
(``compile: true``). Both compute the same thing (tests/controller/test_native.py).
"""

from __future__ import annotations

import time
from typing import Literal, NamedTuple

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from controller.costs import Cost
from controller.native.problem import LANES, Backend, native_problem_for
from controller.planners.base import PlanResult, resolve_device, time_left
from controller.planners.compile import maybe_compile
from controller.planners.noise import NoiseConfig, NoiseSampler
from vehicle_models.dynamics import Dynamics


class MPPIConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["mppi"] = "mppi"
    num_samples: int = Field(1024, ge=2, description="K, rollouts per iteration")
    horizon: int = Field(40, ge=2, description="H, steps per rollout")
    dt: float = Field(0.05, gt=0, description="planner step [s]")
    temperature: float = Field(0.5, gt=0, description="lambda of the softmin weights [cost]")
    iterations: int = Field(1, ge=1, description="sample-and-update rounds per call")
    noise: NoiseConfig = NoiseConfig()
    backend: Backend = Field(
        "auto",
        description="native: the C kernel (CPU); torch: tensor code (any device); "
        "auto: native where it can run this model and cost, else torch",
    )
    compile: bool = Field(True, description="torch backend: fuse the hot path with torch.compile")
    device: str = Field("cpu", description="cpu, cuda, or auto (CUDA when present)")
    seed: int = Field(0, description="seed of the planner's random generator")


class _Iteration(NamedTuple):
    actions: Tensor  #: (H, nu) updated nominal plan
    states: Tensor  #: (H + 1, nx) its predicted states
    cost: Tensor  #: () its cost
    terms: Tensor  #: (n_terms,) its cost terms
    sample_cost_min: Tensor  #: () best sampled cost
    effective_samples: Tensor  #: () 1 / sum w^2


class MPPI:
    """MPPI over any ``Dynamics`` (kinematic or semi-parametric) and a ``TrackCost``."""

    name = "mppi"

    def __init__(
        self,
        config: MPPIConfig,
        model: Dynamics,
        cost: Cost,
        action_low: tuple[float, ...],
        action_high: tuple[float, ...],
        dtype: torch.dtype = torch.float32,
    ):
        self.config = config
        self.model = model
        self.cost = cost
        self.horizon, self.dt = config.horizon, config.dt
        if abs(model.dt - config.dt) > 1e-12:
            raise ValueError(f"model steps by {model.dt} s but the planner by {config.dt} s")
        self.device = resolve_device(config.device)
        self.dtype = dtype
        self.low = torch.tensor(action_low, dtype=dtype, device=self.device)
        self.high = torch.tensor(action_high, dtype=dtype, device=self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self._zero_plan = torch.zeros(config.horizon, model.action_dim, dtype=dtype, device=self.device)
        self._zero_action = torch.zeros(model.action_dim, dtype=dtype, device=self.device)
        self._pending_noise: Tensor | None = None
        self._uses_disagreement = cost.uses_disagreement
        self.native = native_problem_for(
            "MPPI", config.backend, model, cost, self.low, self.high, torch.get_num_threads(),
            unsupported=None if self.device.type == "cpu" and dtype == torch.float32
            else f"it runs float32 on the CPU, not {dtype} on {self.device}",
        )
        self.backend = "native" if self.native is not None else "torch"
        self.sampler = NoiseSampler(
            config.noise, config.horizon, config.num_samples, self.generator, dtype, self.device,
            block_lanes=None if self.native is None else LANES,
        )
        if self.native is not None:
            self._iterate = self._native_iteration
            blocks = -(-config.num_samples // LANES)
            nu, H = model.action_dim, config.horizon
            self._samples = torch.empty(blocks, H, nu, LANES)
            self._costs = torch.empty(blocks * LANES)
            self._plan = torch.empty(H, nu)
            self._plan_states = torch.empty(H + 1, model.state_dim)
            self._plan_terms = torch.empty(len(cost.term_names))
            self._stats = torch.empty(3)
        else:
            self._iterate = maybe_compile(self._iteration, config.compile)

    # -- the hot path ---------------------------------------------------------------------
    def _rollout(self, x0: Tensor, actions: Tensor) -> tuple[Tensor, Tensor | None]:
        if not self._uses_disagreement and hasattr(self.model, "step_fields"):
            return self._rollout_fields(x0, actions), None
        states = [x0]
        spreads = []
        x = x0
        for t in range(actions.shape[0]):
            if self._uses_disagreement:
                x, spread = self.model.step_with_disagreement(x, actions[t])  # type: ignore[attr-defined]
                spreads.append(spread)
            else:
                x = self.model.step(x, actions[t])
            states.append(x)
        return torch.stack(states), (torch.stack(spreads) if spreads else None)

    def _rollout_fields(self, x0: Tensor, actions: Tensor) -> Tensor:
        """The rollout on per-field tensors (structure of arrays), stacked once at the end."""
        x = tuple(x0.unbind(-1))
        steer_rate, accel = actions.unbind(-1)
        trajectory = [x]
        for t in range(actions.shape[0]):
            x = self.model.step_fields(x, (steer_rate[t], accel[t]))  # type: ignore[attr-defined]
            trajectory.append(x)
        return torch.stack([torch.stack(field) for field in zip(*trajectory)], dim=-1)

    def _iteration(self, x0: Tensor, nominal: Tensor, noise: Tensor, last_action: Tensor) -> _Iteration:
        K = noise.shape[1]
        samples = torch.clamp(nominal.unsqueeze(1) + noise, self.low, self.high)
        states, spread = self._rollout(x0.expand(K, -1), samples)
        sample_costs = self.cost.evaluate(states, samples, last_action, spread).total
        best = sample_costs.min()
        weights = torch.softmax((best - sample_costs) / self.config.temperature, dim=0)
        plan = torch.einsum("k,hkn->hn", weights, samples)
        plan_states, plan_spread = self._rollout(x0.unsqueeze(0), plan.unsqueeze(1))
        plan_eval = self.cost.evaluate(plan_states, plan.unsqueeze(1), last_action, plan_spread)
        return _Iteration(
            plan,
            plan_states[:, 0],
            plan_eval.total[0],
            plan_eval.terms[:, 0],
            best,
            1.0 / weights.square().sum(),
        )

    def _native_iteration(self, x0: Tensor, nominal: Tensor, noise: Tensor, last_action: Tensor) -> _Iteration:
        assert self.native is not None
        self.native.mppi_iteration(
            x0.contiguous(), nominal.contiguous(), noise, self.config.num_samples,
            last_action.contiguous(), self.config.temperature, self._samples, self._costs,
            self._plan, self._plan_states, self._plan_terms, self._stats,
        )
        plan_cost, best, effective = self._stats.tolist()
        return _Iteration(
            self._plan.clone(),
            self._plan_states.clone(),
            torch.tensor(plan_cost),
            self._plan_terms.clone(),
            torch.tensor(best),
            torch.tensor(effective),
        )

    # -- the Planner protocol ----------------------------------------------------------------
    def prepare(self) -> None:
        """Draw the next call's first noise sample set while the car drives."""
        self._pending_noise = self.sampler.draw()

    def plan(
        self,
        state: Tensor,
        warm_start: Tensor | None = None,
        last_action: Tensor | None = None,
        deadline: float | None = None,
    ) -> PlanResult:
        started = time.perf_counter()
        x0 = state.to(device=self.device, dtype=self.dtype)
        nominal = self._zero_plan if warm_start is None else warm_start.to(self.device, self.dtype)
        nominal = torch.clamp(nominal, self.low, self.high)
        last = self._zero_action if last_action is None else last_action.to(self.device, self.dtype)
        deadline_hit = False
        out: _Iteration | None = None
        for i in range(self.config.iterations):
            if i > 0:
                per_iteration = (time.perf_counter() - started) / i
                if time_left(deadline) < 1.2 * per_iteration:
                    deadline_hit = True
                    break
            noise = self._pending_noise if self._pending_noise is not None else self.sampler.draw()
            self._pending_noise = None
            out = self._iterate(x0, nominal, noise, last)
            nominal = out.actions
        assert out is not None
        terms = out.terms.double().cpu().tolist()
        return PlanResult(
            actions=out.actions.detach().cpu(),
            states=out.states.detach().cpu(),
            cost=float(out.cost),
            cost_terms=dict(zip(self.cost.term_names, terms)),
            iterations=i + 1 if not deadline_hit else i,
            solve_time_s=time.perf_counter() - started,
            planner=self.name,
            deadline_hit=deadline_hit,
            diagnostics={
                "best_sample_cost": float(out.sample_cost_min),
                "effective_samples": float(out.effective_samples),
            },
        )
