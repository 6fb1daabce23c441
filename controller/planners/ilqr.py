"""Iterative LQR with control limits (box-DDP), Levenberg-Marquardt regularisation and a
parallel backtracking line search.

One iteration: linearise the model along the current trajectory (exact kinematic Jacobians,
autodiff for a residual), take Gauss-Newton cost derivatives, run the backward pass
(``riccati.backward_pass``), then roll the closed-loop update

    u_t = clip(u_bar_t + alpha k_t + K_t (z_t - z_bar_t))

for every candidate step length alpha at once (one batched rollout) and accept the longest
step whose actual cost decrease is at least ``armijo`` times the predicted one. The
regulariser mu follows Tassa's schedule and carries over between calls.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from controller.costs import Cost, Quadratization
from controller.native.problem import LANES, Backend, from_blocked, native_problem_for
from controller.planners.base import PlanResult, time_left
from controller.planners.compile import maybe_compile
from controller.planners.riccati import backward_pass
from vehicle_models.dynamics import Dynamics


class ILQRConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["ilqr"] = "ilqr"
    horizon: int = Field(40, ge=2, description="H, steps")
    dt: float = Field(0.05, gt=0, description="planner step [s]")
    # One iteration per control step from the shifted previous plan (real-time iteration):
    # measured on random:0 at 10 m/s, H=40, as good a track (mean |lat| 0.001 m) as three
    # iterations at 3.5 ms instead of 5.4 ms a step. Raise it for offline solves.
    max_iterations: int = Field(1, ge=1, description="iterations per call (warm-started)")
    tolerance: float = Field(1e-4, gt=0, description="stop below this relative cost decrease")
    # Near a perfect track the cost is ~1e-8: a predicted decrease below float32's resolution
    # of the cost cannot be confirmed by a rollout, every step would be refused, and the
    # regulariser would climb (measured: mu 1e7 on a straight, then no response to the bend).
    absolute_tolerance: float = Field(
        1e-6, ge=0, description="stop below this predicted cost decrease [cost units]"
    )
    line_search: tuple[float, ...] = Field(
        (1.0, 0.5, 0.25, 0.1, 0.03, 0.01), description="step lengths tried, all at once"
    )
    armijo: float = Field(0.1, gt=0, lt=1, description="accepted fraction of predicted decrease")
    mu_init: float = Field(1e-3, ge=0, description="initial regularisation")
    mu_min: float = Field(1e-6, gt=0)
    mu_max: float = Field(1e8, gt=0)
    mu_factor: float = Field(2.0, gt=1, description="Tassa's Delta_0")
    backend: Backend = Field(
        "auto", description="native (C kernel, CPU), torch, or auto: native where it can run"
    )
    compile: bool = Field(True, description="torch backend: fuse the rollouts with torch.compile")


class ILQR:
    """iLQR over any ``Dynamics`` with ``linearize`` and a ``TrackCost``; runs on the CPU."""

    name = "ilqr"

    def __init__(
        self,
        config: ILQRConfig,
        model: Dynamics,
        cost: Cost,
        action_low: tuple[float, ...],
        action_high: tuple[float, ...],
        dtype: torch.dtype = torch.float32,
    ):
        if cost.uses_disagreement:
            raise ValueError("iLQR has no derivative of the disagreement term; use MPPI for it")
        if abs(model.dt - config.dt) > 1e-12:
            raise ValueError(f"model steps by {model.dt} s but the planner by {config.dt} s")
        self.config = config
        self.model = model
        self.cost = cost
        self.horizon, self.dt = config.horizon, config.dt
        self.dtype = dtype
        self.nx, self.nu = model.state_dim, model.action_dim
        self.low = torch.tensor(action_low, dtype=dtype)
        self.high = torch.tensor(action_high, dtype=dtype)
        self._low64 = np.asarray(action_low, dtype=np.float64)
        self._high64 = np.asarray(action_high, dtype=np.float64)
        # The model is linearised at actions a hair inside the box. At a bound exactly, the
        # derivative of the model's own action clip is a tie: CasADi's rule gives 1/2, and in
        # float64 a float32 bound (0.4f > 0.4) reads as past the bound and gives 0 -- so the
        # native and torch paths had different B wherever box-DDP had clamped an action (the
        # 0.037 m/s^2 gap of test_native_ilqr_plans_like_the_torch_ilqr). Box-DDP needs the
        # one-sided derivative from inside (it decides itself whether a clamped action moves).
        inset = 1e-4 * (self.high - self.low)
        self._linearize_low, self._linearize_high = self.low + inset, self.high - inset
        self.alphas = torch.tensor(config.line_search, dtype=dtype)
        self._no_alpha = torch.zeros_like(self.alphas)
        self._no_k = torch.zeros(config.horizon, self.nu, dtype=dtype)
        self._no_K = torch.zeros(config.horizon, self.nu, self.nx + self.nu, dtype=dtype)
        self.mu = config.mu_init
        self._delta = 1.0
        if len(config.line_search) > LANES:
            raise ValueError(f"at most {LANES} line-search step lengths")
        self.native = native_problem_for(
            "iLQR", config.backend, model, cost, self.low, self.high, 1,
            unsupported=None if dtype == torch.float32 else f"it runs float32, not {dtype}",
        )
        self.backend = "native" if self.native is not None else "torch"
        if self.native is None:
            self._forward = maybe_compile(self._closed_loop, config.compile)
        else:
            self._forward = self._native_closed_loop
            # Filled by every iteration and copied to float64 for the backward pass right away.
            H, nx, nu, nz = config.horizon, self.nx, self.nu, self.nx + self.nu
            self._A, self._B = torch.empty(H, nx, nx), torch.empty(H, nx, nu)
            self._q = Quadratization(
                torch.empty(H + 1, nz), torch.empty(H, nu), torch.empty(H + 1, nz, nz),
                torch.empty(H, nu, nu), torch.empty(H, nu, nz),
            )

    # -- rollouts ----------------------------------------------------------------------------
    def _closed_loop(
        self,
        x0: Tensor,
        states_bar: Tensor,
        actions_bar: Tensor,
        k: Tensor,
        K: Tensor,
        alphas: Tensor,
        last_action: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Roll u = clip(u_bar + alpha k + K dz) for each alpha: states (H+1, B, nx), ..."""
        batch = alphas.shape[0]
        x = x0.expand(batch, -1)
        prev = last_action.expand(batch, -1)
        prev_bar = torch.cat([last_action.unsqueeze(0), actions_bar[:-1]], 0)
        states, actions = [x], []
        for t in range(actions_bar.shape[0]):
            dz = torch.cat([x - states_bar[t], prev - prev_bar[t]], -1)
            u = actions_bar[t] + alphas.unsqueeze(-1) * k[t] + dz @ K[t].T
            u = torch.clamp(u, self.low, self.high)
            x = self.model.step(x, u)
            states.append(x)
            actions.append(u)
            prev = u
        X, U = torch.stack(states), torch.stack(actions)
        ev = self.cost.evaluate(X, U, last_action)
        return X, U, ev.total, ev.terms

    def _native_closed_loop(
        self,
        x0: Tensor,
        states_bar: Tensor,
        actions_bar: Tensor,
        k: Tensor,
        K: Tensor,
        alphas: Tensor,
        last_action: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``_closed_loop`` in the kernel (fresh outputs: callers keep trajectories)."""
        assert self.native is not None
        H, n = self.horizon, alphas.shape[0]
        states = torch.empty(H + 1, n, self.nx)
        actions = torch.empty(1, H, self.nu, LANES)
        totals, terms = torch.empty(n), torch.empty(len(self.cost.term_names), n)
        self.native.policy_rollout(
            x0.contiguous(), states_bar.contiguous(), actions_bar.contiguous(), k.contiguous(),
            K.contiguous(), alphas.contiguous(), last_action.contiguous(), states, actions, totals, terms,
        )
        return states, from_blocked(actions, n), totals, terms

    def _derivatives(self, X: Tensor, U: Tensor, last: Tensor) -> tuple[Tensor, Tensor, Quadratization]:
        """Model Jacobians A (H, nx, nx), B (H, nx, nu) and the cost's quadratization."""
        inside = torch.clamp(U, self._linearize_low, self._linearize_high)
        if self.native is None:
            A, B = self.model.linearize(X[:-1], inside)
            return A, B, self.cost.quadratize(X, U, last)
        X, U = X.contiguous(), U.contiguous()
        self.native.linearize(X[:-1], inside.contiguous(), self._A, self._B)
        self.native.quadratize(X, U, last.contiguous(), self._q)
        return self._A, self._B, self._q

    def _adjust_mu(self, increase: bool) -> None:
        c = self.config
        if increase:
            self._delta = max(c.mu_factor, self._delta * c.mu_factor)
            self.mu = max(c.mu_min, self.mu * self._delta)
        else:
            self._delta = min(1.0 / c.mu_factor, self._delta / c.mu_factor)
            self.mu = self.mu * self._delta if self.mu * self._delta > c.mu_min else 0.0

    # -- the Planner protocol ----------------------------------------------------------------
    def solver_state(self) -> tuple[float, float]:
        """What one plan leaves for the next (the regularisation): one car's, kept per car by
        ``ControlCore`` so that a planner serving several cars never mixes theirs."""
        return self.mu, self._delta

    def set_solver_state(self, state: tuple[float, float] | None) -> None:
        """Restore a car's ``solver_state()``; None: a fresh car's."""
        self.mu, self._delta = (self.config.mu_init, 1.0) if state is None else state

    def prepare(self) -> None:
        """Nothing to precompute: every iLQR step depends on the state."""

    def plan(
        self,
        state: Tensor,
        warm_start: Tensor | None = None,
        last_action: Tensor | None = None,
        deadline: float | None = None,
    ) -> PlanResult:
        started = time.perf_counter()
        cfg = self.config
        x0 = state.to(self.dtype)
        last = torch.zeros(self.nu, dtype=self.dtype) if last_action is None else last_action
        last = last.to(self.dtype)
        U = torch.zeros(self.horizon, self.nu, dtype=self.dtype) if warm_start is None else warm_start
        U = torch.clamp(U.to(self.dtype), self.low, self.high)
        if self.mu > cfg.mu_max:
            # The last solve gave up with the regulariser beyond mu_max. Carried over, it would
            # make every later solve give up too: a backward pass at mu of 1e6 or more loses
            # positive definiteness to rounding, the loop raises mu again, and the car keeps
            # the plan it had (measured: frozen at (-0.005, -3.28) for 4 s, off the track).
            self.mu, self._delta = cfg.mu_init, 1.0
        # With zero gains and step lengths the closed-loop rollout is the open-loop one.
        unused_bar = x0.expand(self.horizon + 1, -1)
        X, _, totals, terms = self._forward(
            x0, unused_bar, U, self._no_k, self._no_K, self._no_alpha, last
        )
        X, J, J_terms = X[:, 0], float(totals[0]), terms[:, 0]
        gains: Tensor | None = None
        converged = deadline_hit = False
        iterations = 0
        while iterations < cfg.max_iterations:
            if iterations > 0:
                per_iteration = (time.perf_counter() - started) / iterations
                if time_left(deadline) < 1.2 * per_iteration:
                    deadline_hit = True
                    break
            iterations += 1
            A, B, q = self._derivatives(X, U, last)
            A64, B64 = A.double().numpy(), B.double().numpy()
            l = [t.double().numpy() for t in q]
            U64 = U.double().numpy()
            while True:
                k, K, dV, ok = backward_pass(A64, B64, *l, U64, self._low64, self._high64, self.mu)
                if ok:
                    break
                self._adjust_mu(increase=True)
                if self.mu > cfg.mu_max:
                    break
            if not ok:
                break
            expected = -(self.alphas.double() * dV[0] + self.alphas.double() ** 2 * dV[1])
            if float(expected[0]) < max(cfg.tolerance * abs(J), cfg.absolute_tolerance):
                converged = True
                break
            k_t = torch.from_numpy(k).to(self.dtype)
            K_t = torch.from_numpy(K).to(self.dtype)
            Xs, Us, totals, terms = self._forward(x0, X, U, k_t, K_t, self.alphas, last)
            decrease = J - totals.double()
            accepted = (decrease > cfg.armijo * expected) & torch.isfinite(totals)
            if not bool(accepted.any()):
                self._adjust_mu(increase=True)
                if self.mu > cfg.mu_max:
                    break
                continue
            i = int(torch.nonzero(accepted)[0])
            self._adjust_mu(increase=False)
            J_new = float(totals[i])
            relative = (J - J_new) / max(abs(J), 1e-9)
            X, U, J, J_terms = Xs[:, i], Us[:, i], J_new, terms[:, i]
            gains = K_t
            if relative < cfg.tolerance:
                converged = True
                break
        return PlanResult(
            actions=U.detach().clone(),
            states=X.detach().clone(),
            cost=J,
            cost_terms=dict(zip(self.cost.term_names, J_terms.double().tolist())),
            iterations=iterations,
            solve_time_s=time.perf_counter() - started,
            planner=self.name,
            feedback_gains=gains,
            converged=converged,
            deadline_hit=deadline_hit,
            diagnostics={"mu": self.mu},
        )
