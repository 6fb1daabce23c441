"""Tracking and racing costs: declared terms (name, residual, norm, weight) over a track.

One convention everywhere: planners minimise cost. A rollout's cost is

    J = sum_{t=1..H} sum_i w_i rho_i(r_i(x_t, u_{t-1}))  +  (terminal_weight - 1) * state terms at t=H

Terms with weight 0 are dropped at construction, so the hot path holds no decisions.

Residuals (SI units; track quantities from the projection of the reference point):
    lateral       e_y                        signed offset from the centre line [m]
    heading       wrap(yaw - theta(s))       heading error [rad]
    speed         v - v_ref(s)               speed error [m/s]
    boundary      max(0, |e_y| - room)       intrusion past the usable half width [m], where
                                             room = width_side(s) - vehicle width / 2 - margin
    effort        u / u_max                  normalised action
    rate          (u_t - u_{t-1}) / u_max    normalised action change per step
    progress      -(s_H - s_0)               arc length gained over the horizon [m] (racing)
    disagreement  ensemble disagreement      model uncertainty (uncertainty-aware planning)

Norms: squared for all but progress and disagreement, which are linear.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Literal, NamedTuple, Protocol

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from controller.track import Track, speed_profile
from controller.track.reference_lap import reference_lap
from vehicle_models.angles import wrap_angle
from vehicle_models.layout import State
from vehicle_models.mathops import TORCH
from vehicle_models.params import BicycleParams


class CostWeights(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lateral: float = Field(2.0, ge=0, description="per m^2 of lateral offset, per step")
    heading: float = Field(5.0, ge=0, description="per rad^2 of heading error, per step")
    speed: float = Field(1.0, ge=0, description="per (m/s)^2 of speed error, per step")
    progress: float = Field(0.0, ge=0, description="per m of arc length gained (racing mode)")
    boundary: float = Field(500.0, ge=0, description="per m^2 of intrusion past the edge")
    effort: tuple[float, float] = Field(
        (0.1, 0.05), description="per squared normalised (steer_rate, accel), per step"
    )
    rate: tuple[float, float] = Field(
        (0.5, 0.1), description="per squared normalised change of (steer_rate, accel)"
    )
    disagreement: float = Field(0.0, ge=0, description="per unit of ensemble disagreement")


class CostConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    target_speed: float = Field(10.0, gt=0, description="speed on straights [m/s]")
    max_lateral_accel: float = Field(
        4.0, gt=0, description="caps the speed reference at sqrt(a / |curvature|) [m/s^2]"
    )
    profile_accel: float = Field(2.0, gt=0, description="speed-reference acceleration [m/s^2]")
    profile_decel: float = Field(4.0, gt=0, description="speed-reference braking [m/s^2]")
    speed_reference: Literal["profile", "reference_lap"] = Field(
        "profile",
        description="profile: the keys above; reference_lap: the friction-limited lap "
        "(controller/track/reference_lap.py) at pace x mu g, capped at target_speed",
    )
    pace: float = Field(0.5, gt=0, le=1.0, description="share of mu g the reference_lap speed uses")
    boundary_margin: float = Field(0.3, ge=0, description="clearance kept to the edge [m]")
    terminal_weight: float = Field(5.0, ge=1, description="multiplier of state terms at t=H")
    weights: CostWeights = CostWeights()


class CostEvaluation(NamedTuple):
    total: Tensor  #: (K,) cost of each rollout
    terms: Tensor  #: (n_terms, K) each term's share, in ``TrackCost.term_names`` order


class Features(NamedTuple):
    """Track features of states (..., nx) and their gradients w.r.t. the state."""

    s: Tensor
    lateral: Tensor
    heading_error: Tensor
    speed_error: Tensor
    room_left: Tensor
    room_right: Tensor


def _boundary_residual(ops: Any, f: Features) -> Any:
    return ops.relu(f.lateral - f.room_left) + ops.relu(-f.lateral - f.room_right)


#: The squared state terms, each as its residual of the track features, written once: TrackCost
#: evaluates them on tensors (``ops`` = mathops.TORCH), and the native kernel runs C generated
#: from the same functions (controller/native/codegen.py: its term list, weight array and
#: per-lane residuals). A term's weight is the CostWeights field of its name. Adding a state
#: term is one entry here and its weight field; iLQR's Gauss-Newton derivatives
#: (``quadratize``, here and in rollout.c) are still written per term.
STATE_RESIDUALS: dict[str, Callable[[Any, Features], Any]] = {
    "lateral": lambda ops, f: f.lateral,
    "heading": lambda ops, f: f.heading_error,
    "speed": lambda ops, f: f.speed_error,
    "boundary": _boundary_residual,
}


class Quadratization(NamedTuple):
    """Second-order model of J along one trajectory (Gauss-Newton on the residuals).

    Derivatives are taken w.r.t. the augmented state z_t = (x_t, u_{t-1}), which turns the
    rate term (coupling u_t and u_{t-1}) into an ordinary stage cost l(z_t, u_t).
    """

    l_z: Tensor  #: (H + 1, nz)   gradient w.r.t. z_t, t = 0..H (z_0 is fixed)
    l_u: Tensor  #: (H, nu)
    l_zz: Tensor  #: (H + 1, nz, nz)
    l_uu: Tensor  #: (H, nu, nu)
    l_uz: Tensor  #: (H, nu, nz)


class Cost(Protocol):
    """What planners need of a cost (``TrackCost`` is the product's; tests add an LQ one)."""

    term_names: tuple[str, ...]
    uses_disagreement: bool

    def evaluate(
        self, states: Tensor, actions: Tensor, last_action: Tensor, disagreement: Tensor | None = None
    ) -> CostEvaluation: ...

    def quadratize(self, states: Tensor, actions: Tensor, last_action: Tensor) -> Quadratization: ...


class _Rollout(NamedTuple):
    features: Features
    states: Tensor
    actions: Tensor
    last_action: Tensor
    disagreement: Tensor | None
    step_w: Tensor


class TrackCost:
    """Cost of following ``track`` at the configured speed profile; batched over rollouts."""

    def __init__(
        self,
        config: CostConfig,
        track: Track,
        params: BicycleParams,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        self.config = config
        self.track = track
        self.length = float(track.length)
        self.lookup = track.lookup(dtype=dtype, device=device)
        top_speed = min(config.target_speed, params.speed_max)
        if config.speed_reference == "reference_lap":
            profile = reference_lap(track, config.pace * params.mu, params.accel_max, params.v_switch,
                                    top_speed).speed
        else:
            profile = speed_profile(
                track, top_speed, config.max_lateral_accel, config.profile_accel, config.profile_decel
            )
        self.speed_table = torch.as_tensor(profile, dtype=dtype, device=device)
        self.half_width = 0.5 * params.width + config.boundary_margin
        self.action_scale = torch.tensor(
            [max(abs(params.steer_rate_min), params.steer_rate_max),
             max(abs(params.accel_min), params.accel_max)],
            dtype=dtype,
            device=device,
        )
        w = config.weights
        self.effort_w = torch.tensor(w.effort, dtype=dtype, device=device)
        self.rate_w = torch.tensor(w.rate, dtype=dtype, device=device)
        weights = {
            **{name: getattr(w, name) for name in STATE_RESIDUALS},
            "effort": max(w.effort),
            "rate": max(w.rate),
            "progress": w.progress,
            "disagreement": w.disagreement,
        }
        self.term_names: tuple[str, ...] = tuple(n for n, weight in weights.items() if weight > 0)
        self._terms = [
            functools.partial(self._state_term, name) if name in STATE_RESIDUALS else getattr(self, f"_term_{name}")
            for name in self.term_names
        ]
        self.uses_disagreement = "disagreement" in self.term_names
        self.dtype, self.device = dtype, torch.device(device)
        self.width_left_table = torch.tensor(np.array(track.width_left), dtype=dtype, device=device)
        self.width_right_table = torch.tensor(np.array(track.width_right), dtype=dtype, device=device)

    # -- features ------------------------------------------------------------------------
    def features(self, states: Tensor) -> Features:
        proj = self.lookup.project(
            states[..., State.X], states[..., State.Y], states[..., State.YAW]
        )
        v_ref = self.lookup.interpolate(self.speed_table, proj.s)
        return Features(
            s=proj.s,
            lateral=proj.lateral,
            heading_error=wrap_angle(states[..., State.YAW] - proj.heading),
            speed_error=states[..., State.V] - v_ref,
            room_left=proj.width_left - self.half_width,
            room_right=proj.width_right - self.half_width,
        )

    def step_weights(self, horizon: int) -> Tensor:
        """Per-step multipliers: 1 for steps 1..H-1, terminal_weight for step H."""
        w = torch.ones(horizon, dtype=self.dtype, device=self.device)
        w[-1] = self.config.terminal_weight
        return w

    def progress(self, s_start: Tensor, s_end: Tensor) -> Tensor:
        """Arc length from s_start to s_end, across the start line, in [-L/2, L/2)."""
        half = 0.5 * self.length
        return torch.remainder(s_end - s_start + half, self.length) - half

    # -- batched evaluation (MPPI, line searches) ---------------------------------------------
    def evaluate(
        self,
        states: Tensor,
        actions: Tensor,
        last_action: Tensor,
        disagreement: Tensor | None = None,
    ) -> CostEvaluation:
        """Costs of K rollouts: states (H+1, K, nx), actions (H, K, nu), last_action (nu,).

        ``disagreement`` (H, K) is required when the disagreement term is on.
        """
        ctx = _Rollout(
            features=self.features(states[1:]),
            states=states,
            actions=actions,
            last_action=last_action,
            disagreement=disagreement,
            step_w=self.step_weights(actions.shape[0]).unsqueeze(-1),
        )
        stacked = torch.stack([term(ctx) for term in self._terms])
        return CostEvaluation(stacked.sum(0), stacked)

    def _state_term(self, name: str, c: "_Rollout") -> Tensor:
        residual = STATE_RESIDUALS[name](TORCH, c.features)
        return getattr(self.config.weights, name) * (residual.square() * c.step_w).sum(0)

    def _term_effort(self, c: "_Rollout") -> Tensor:
        return ((c.actions / self.action_scale).square() * self.effort_w).sum((0, -1))

    def _term_rate(self, c: "_Rollout") -> Tensor:
        a = c.actions
        prev = torch.cat([c.last_action.expand(1, *a.shape[1:]), a[:-1]], 0)
        return (((a - prev) / self.action_scale).square() * self.rate_w).sum((0, -1))

    def _term_progress(self, c: "_Rollout") -> Tensor:
        x0 = c.states[0]
        s0 = self.lookup.project(x0[..., State.X], x0[..., State.Y], x0[..., State.YAW]).s
        return -self.config.weights.progress * self.progress(s0, c.features.s[-1])

    def _term_disagreement(self, c: "_Rollout") -> Tensor:
        if c.disagreement is None:
            raise ValueError("the disagreement term needs the ensemble's disagreement")
        return self.config.weights.disagreement * c.disagreement.sum(0)

    # -- derivatives along one trajectory (iLQR) ------------------------------------------------
    def quadratize(self, states: Tensor, actions: Tensor, last_action: Tensor) -> Quadratization:
        """Gauss-Newton derivatives along states (H+1, nx), actions (H, nu).

        Track geometry enters through ds/dp = t / (1 - kappa e_y), de_y/dp = n,
        d theta/ds = kappa, and the slopes of the speed and width tables.
        The disagreement term has no derivative here (it is a sampling-planner term).
        """
        w = self.config.weights
        H, nu = actions.shape
        nx = states.shape[-1]
        nz = nx + nu
        x = states[1:]
        proj = self.lookup.project(x[:, State.X], x[:, State.Y], x[:, State.YAW])
        cos_h, sin_h = torch.cos(proj.heading), torch.sin(proj.heading)
        stretch = 1.0 / (1.0 - proj.curvature * proj.lateral).clamp_min(0.1)
        ds_dp = torch.stack([cos_h, sin_h], -1) * stretch.unsqueeze(-1)
        normal = torch.stack([-sin_h, cos_h], -1)
        step_w = self.step_weights(H)

        l_z = torch.zeros(H + 1, nz, dtype=x.dtype, device=x.device)
        l_zz = torch.zeros(H + 1, nz, nz, dtype=x.dtype, device=x.device)
        l_u = torch.zeros(H, nu, dtype=x.dtype, device=x.device)
        l_uu = torch.zeros(H, nu, nu, dtype=x.dtype, device=x.device)
        l_uz = torch.zeros(H, nu, nz, dtype=x.dtype, device=x.device)
        P = slice(State.X, State.Y + 1)

        def add_squared(weight: float, r: Tensor, J: Tensor) -> None:
            c = 2.0 * weight * step_w
            l_z[1:, :nx] += (c * r).unsqueeze(-1) * J
            l_zz[1:, :nx, :nx] += c[:, None, None] * J.unsqueeze(-1) * J.unsqueeze(-2)

        def state_jacobian() -> Tensor:
            return torch.zeros(H, nx, dtype=x.dtype, device=x.device)

        f = self.features(x)
        if w.lateral > 0:
            J = state_jacobian()
            J[:, P] = normal
            add_squared(w.lateral, f.lateral, J)
        if w.heading > 0:
            J = state_jacobian()
            J[:, P] = -proj.curvature.unsqueeze(-1) * ds_dp
            J[:, State.YAW] = 1.0
            add_squared(w.heading, f.heading_error, J)
        if w.speed > 0:
            J = state_jacobian()
            J[:, P] = -self.lookup.slope(self.speed_table, proj.s).unsqueeze(-1) * ds_dp
            J[:, State.V] = 1.0
            add_squared(w.speed, f.speed_error, J)
        if w.boundary > 0:
            left = f.lateral - f.room_left
            right = -f.lateral - f.room_right
            J_left = state_jacobian()
            J_left[:, P] = normal - self.lookup.slope(self.width_left_table, proj.s).unsqueeze(
                -1
            ) * ds_dp
            J_right = state_jacobian()
            J_right[:, P] = -normal - self.lookup.slope(self.width_right_table, proj.s).unsqueeze(
                -1
            ) * ds_dp
            on_left, on_right = (left > 0).to(x.dtype), (right > 0).to(x.dtype)
            r = torch.relu(left) + torch.relu(right)
            J = on_left.unsqueeze(-1) * J_left + on_right.unsqueeze(-1) * J_right
            add_squared(w.boundary, r, J)
        if w.progress > 0:
            l_z[H, P] -= w.progress * ds_dp[-1]
        scale2 = self.action_scale.square()
        if max(w.effort) > 0:
            l_u += 2.0 * self.effort_w * actions / scale2
            l_uu += torch.diag(2.0 * self.effort_w / scale2)
        if max(w.rate) > 0:
            prev = torch.cat([last_action.unsqueeze(0), actions[:-1]], 0)
            g = 2.0 * self.rate_w * (actions - prev) / scale2
            h = torch.diag(2.0 * self.rate_w / scale2)
            l_u += g
            l_uu += h
            l_z[:H, nx:] -= g
            l_zz[:H, nx:, nx:] += h
            l_uz[:, :, nx:] -= h
        return Quadratization(l_z, l_u, l_zz, l_uu, l_uz)
