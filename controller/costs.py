"""Tracking and racing costs: declared terms (name, residual, norm, weight) over a track.

One convention everywhere: planners minimise cost. A rollout's cost is

    J = sum_{t=1..H} sum_i w_i rho_i(r_i(x_t, u_{t-1}))  +  (terminal_weight - 1) * state terms at t=H

Terms with weight 0 are dropped at construction, so the hot path holds no decisions.

Residuals (SI units; track quantities from the projection of the reference point):
    lateral       e_y                        signed offset from the centre line [m]
    heading       wrap(yaw - theta(s))       heading error [rad]
    speed         v - v_ref(s)               speed error [m/s]
    overspeed     max(0, v - v_ref(s))       speed above the reference: a soft cap (racing) [m/s]
    boundary      max(0, |e_y| - room)       intrusion past the usable half width [m], where
                                             room = width_side(s) - vehicle width / 2 - margin
    friction      max(0, |a| - m mu g)/(mu g) combined acceleration a = (a_lon, a_lat) past the
                                             friction budget m mu g (m = friction_margin), in
                                             units of mu g; a_lon the commanded acceleration
                                             u_{t-1}, a_lat = v yaw_rate(x_t) (``lateral_accel``)
    effort        u / u_max                  normalised action (ACTION_RESIDUALS)
    rate          (u_t - u_{t-1}) / u_max    normalised action change per step (ACTION_RESIDUALS)
    progress      -(s_H - s_0)               arc length gained over the horizon [m] (racing;
                                             LINEAR_RESIDUALS)
    disagreement  ensemble disagreement      model uncertainty (uncertainty-aware planning)

Norms: squared for all but progress and disagreement, which are linear.

The squared state terms are declared once, as residuals of the features (``STATE_RESIDUALS``):
MPPI's costs, iLQR's Gauss-Newton derivatives (the residuals' Jacobian w.r.t. the features,
times the features' Jacobian w.r.t. the state) and the native kernel's C (codegen.py) all
derive from those functions.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Literal, NamedTuple, Protocol

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from controller.track import Track, speed_profile
from controller.track.lookup import Projection
from controller.track.racing_line import min_curvature_line
from controller.track.reference_lap import reference_lap
from controller.traction import GRAVITY
from vehicle_models.angles import wrap_angle_with
from vehicle_models.kinematic import kinematic_derivative
from vehicle_models.layout import Action, State
from vehicle_models.mathops import TORCH
from vehicle_models.params import BicycleParams


class CostWeights(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lateral: float = Field(2.0, ge=0, description="per m^2 of lateral offset, per step")
    heading: float = Field(5.0, ge=0, description="per rad^2 of heading error, per step")
    speed: float = Field(1.0, ge=0, description="per (m/s)^2 of speed error, per step")
    overspeed: float = Field(
        0.0, ge=0, description="per (m/s)^2 above the speed reference, per step (a soft cap)"
    )
    progress: float = Field(0.0, ge=0, description="per m of arc length gained (racing mode)")
    boundary: float = Field(500.0, ge=0, description="per m^2 of intrusion past the edge")
    friction: float = Field(
        0.0, ge=0, description="per squared excess of the combined acceleration, in units of mu g"
    )
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
    drive_max: float | None = Field(
        None, gt=0, description="reference_lap: driving capped at this [m/s^2] (null: pace mu g and a_max)"
    )
    brake_max: float | None = Field(
        None, gt=0, description="reference_lap: braking capped at this [m/s^2] (null: pace mu g and a_max)"
    )
    line: Literal["centre", "min_curvature"] = Field(
        "centre",
        description="the line the planner tracks and the speed reference follows: the track's "
        "centre line, or its minimum-curvature racing line (controller/track/racing_line.py)",
    )
    line_clearance: float = Field(
        0.5, ge=0, description="min_curvature: room kept between the car's side and each edge [m]"
    )
    boundary_margin: float = Field(0.3, ge=0, description="clearance kept to the edge [m]")
    terminal_weight: float = Field(5.0, ge=1, description="multiplier of state terms at t=H")
    friction_margin: float = Field(
        0.8, gt=0, le=1.5,
        description="fraction of mu g the predicted combined acceleration may use before the "
        "friction term counts [-] (mu: the vehicle's)",
    )
    weights: CostWeights = CostWeights()


class CostEvaluation(NamedTuple):
    total: Tensor  #: (K,) cost of each rollout
    terms: Tensor  #: (n_terms, K) each term's share, in ``TrackCost.term_names`` order


class Features(NamedTuple):
    """What the state terms' residuals read, at state x_t reached by action u_{t-1}.

    Track features (the projection of x_t onto the track) first, then the vehicle features
    (``vehicle_features``: functions of x_t and u_{t-1} alone, generated into the kernel's C).
    """

    s: Tensor
    lateral: Tensor
    heading_error: Tensor
    speed_error: Tensor
    room_left: Tensor
    room_right: Tensor
    a_lon: Tensor  #: commanded longitudinal acceleration u_{t-1} [m/s^2]
    a_lat: Tensor  #: lateral acceleration at x_t [m/s^2] (``lateral_accel``)


#: The features ``vehicle_features`` computes, in Features' order (they close the tuple).
VEHICLE_FEATURES: tuple[str, ...] = ("a_lon", "a_lat")


class CostConstants(NamedTuple):
    """Constants the residuals read (floats for torch; CasADi symbols, read from the kernel's
    ``Problem.cost_const`` in this order, for the generated C)."""

    grip: Any  #: mu g [m/s^2]
    friction_budget: Any  #: friction_margin mu g [m/s^2]


def lateral_accel(ops: Any, p: Any, x: Any, u: Any, state_dim: int) -> Any:
    """Lateral acceleration v * yaw_rate [m/s^2] of state x (``ops`` layout, fields last).

    A dynamic state (``state_dim`` 7) carries its yaw rate (State.YAW_RATE); the kinematic
    state's is the kinematic bicycle's, v cos(beta) tan(delta) / L (``kinematic_derivative``,
    the model's own equation): v^2 tan(steer) / L for a reference point on the rear axle.
    """
    v = ops.field(x, State.V)
    if state_dim > State.YAW_RATE:
        return v * ops.field(x, State.YAW_RATE)
    return v * ops.field(kinematic_derivative(ops, p, x, u), State.YAW)


def vehicle_features(ops: Any, p: Any, x: Any, u: Any, state_dim: int) -> tuple[Any, Any]:
    """(a_lon, a_lat) at state x reached by action u: the predicted combined acceleration."""
    return ops.field(u, Action.ACCEL), lateral_accel(ops, p, x, u, state_dim)


#: The features read off the track (``track_features``), in Features' order (they open it).
TRACK_FEATURES: tuple[str, ...] = ("s", "lateral", "heading_error", "speed_error", "room_left", "room_right")
#: The state fields the track features depend on, the columns of ``track_feature_jacobian``.
TRACK_FEATURE_FIELDS: tuple[int, ...] = (State.X, State.Y, State.YAW, State.V)
if Features._fields != TRACK_FEATURES + VEHICLE_FEATURES:
    raise RuntimeError("Features must list the track features, then the vehicle features")


def track_features(ops: Any, yaw: Any, speed: Any, proj: Projection, speed_ref: Any, half_width: Any) -> tuple:
    """The track rows of Features (``TRACK_FEATURES``) of a state with this yaw and speed,
    from its projection and the speed reference there."""
    return (
        proj.s,
        proj.lateral,
        wrap_angle_with(ops, yaw - proj.heading),
        speed - speed_ref,
        proj.width_left - half_width,
        proj.width_right - half_width,
    )


def track_feature_jacobian(
    ops: Any, proj: Projection, speed_slope: Any, width_left_slope: Any, width_right_slope: Any
) -> tuple[tuple[Any, ...], ...]:
    """d(track features)/d(state fields ``TRACK_FEATURE_FIELDS``): one row per track feature.

    The projection's derivative on a curve: ds/dp = t / (1 - kappa e_y) (t the centre line's
    tangent), de_y/dp = n, d heading/ds = kappa, and the slopes of the speed and width tables
    along s (piecewise-linear tables: piecewise-constant slopes).
    """
    cos_h, sin_h = ops.cos(proj.heading), ops.sin(proj.heading)
    shrink = 1.0 - proj.curvature * proj.lateral
    stretch = 1.0 / ops.where(shrink > 0.1, shrink, 0.1 + ops.zeros_like(shrink))
    ds_x, ds_y = cos_h * stretch, sin_h * stretch
    zero = ops.zeros_like(ds_x)
    one = 1.0 + zero
    along = lambda slope: (slope * ds_x, slope * ds_y, zero, zero)  # noqa: E731
    return (
        (ds_x, ds_y, zero, zero),
        (-sin_h, cos_h, zero, zero),
        (-proj.curvature * ds_x, -proj.curvature * ds_y, one, zero),
        (-speed_slope * ds_x, -speed_slope * ds_y, zero, one),
        along(width_left_slope),
        along(width_right_slope),
    )


def _boundary_residual(ops: Any, f: Features, c: CostConstants) -> Any:
    return ops.relu(f.lateral - f.room_left) + ops.relu(-f.lateral - f.room_right)


#: Keeps the magnitude's derivative finite at zero acceleration (a 1e-3 m/s^2 floor).
_MAGNITUDE_FLOOR = 1e-6


def _friction_residual(ops: Any, f: Features, c: CostConstants) -> Any:
    magnitude = ops.sqrt(f.a_lon * f.a_lon + f.a_lat * f.a_lat + _MAGNITUDE_FLOOR)
    return ops.relu(magnitude - c.friction_budget) / c.grip


#: The squared state terms, each as its residual of the features, written once: TrackCost
#: evaluates them on tensors (``ops`` = mathops.TORCH) and differentiates them for iLQR
#: (``quadratize``), and the native kernel runs C generated from the same functions, with
#: their Jacobians (controller/native/codegen.py: its term list, weight array, per-lane
#: residuals and per-point derivatives). A term's weight is the CostWeights field of its
#: name. Adding a state term is one entry here and its weight field (plus a feature, if it
#: reads a new one).
STATE_RESIDUALS: dict[str, Callable[[Any, Features, CostConstants], Any]] = {
    "lateral": lambda ops, f, c: f.lateral,
    "heading": lambda ops, f, c: f.heading_error,
    "speed": lambda ops, f, c: f.speed_error,
    "overspeed": lambda ops, f, c: ops.relu(f.speed_error),
    "boundary": _boundary_residual,
    "friction": _friction_residual,
}


#: The squared action terms, each as its residual (one entry per action field) of the action
#: u_t, the action before it (u_{t-1}; the last action sent at t = 0) and 1 / the action scale,
#: written once like STATE_RESIDUALS: TrackCost evaluates them on tensors and differentiates them
#: for iLQR (``action_residual_jacobian``), and the native kernel runs C generated from them
#: (codegen.py). A term's weights are the CostWeights field of its name, one per action field;
#: its cost is sum_t sum_n w_n r_n^2 (no terminal multiplier).
ACTION_RESIDUALS: dict[str, Callable[[Any, Any, Any, Any], Any]] = {
    "effort": lambda ops, u, prev, inv_scale: u * inv_scale,
    "rate": lambda ops, u, prev, inv_scale: (u - prev) * inv_scale,
}


def arc_gained(ops: Any, s_start: Any, s_end: Any, length: Any) -> Any:
    """Arc length from s_start to s_end across the start line, in [-length/2, length/2)."""
    shifted = s_end - s_start + 0.5 * length
    return shifted - length * ops.floor(shifted / length) - 0.5 * length


#: The linear terms, each as its residual of the arc length s_end of the horizon's last state,
#: s_start of the start state's and the track length, written once like the squared terms
#: (TrackCost; the kernel's generated C). The term's cost is its weight (the CostWeights field of
#: its name) times the residual.
LINEAR_RESIDUALS: dict[str, Callable[[Any, Any, Any, Any], Any]] = {
    "progress": lambda ops, s_end, s_start, length: -arc_gained(ops, s_start, s_end, length),
}


def action_residuals(ops: Any, names: tuple[str, ...], u: Any, prev: Any, inv_scale: Any) -> Any:
    """The named action terms' residuals, term after term (``ops.cat`` on the last axis)."""
    return ops.cat([ACTION_RESIDUALS[name](ops, u, prev, inv_scale) for name in names])


_FEATURE_INDEX = {name: i for i, name in enumerate(Features._fields)}


def _derivative_function(cost: "TrackCost", kind: str, points: int, state_dim: int) -> Any:
    """The CasADi function, mapped over ``points``, of iLQR's derivatives from the one
    definition, with the cost's constants and vehicle parameters folded in:

    - ``vehicle``: z (nx + nu, points) -> the Jacobian (n_vehicle_features, nx + nu) of
      ``vehicle_features`` at each point, stacked (points * n_vehicle_features, nx + nu);
    - ``residuals``: f (n_features, points) -> [r | dr/df] (points * n_terms, 1 + n_features)
      of the cost's active state terms;
    - ``linear``: (s_end, s_start) (2, points) -> [r | dr/ds_end] (points * n_terms, 2) of the
      cost's active linear terms;
    - ``actions``: (u_t, u_{t-1}) (2 nu, points) -> [r | dr/du_t | dr/du_{t-1}]
      (points * n_rows, 1 + 2 nu) of the cost's active action terms (nu rows each).

    The same expressions the kernel's generated C evaluates (codegen.py), evaluated by CasADi's
    virtual machine on all points at once. Measured, the whole torch ``quadratize`` at H = 40
    (shared 2-core VM, fastest of 100): 1.9-2.6 ms, against 1.6-2.4 ms for the hand-written
    derivatives it replaced; torch autograd (a backward pass per row) took 3.1 ms, and
    torch.func's vmap(jacrev) 7.2 ms.
    """
    import casadi as ca

    from vehicle_models.mathops import CASADI

    if kind == "vehicle":
        nz = state_dim + 2
        z = ca.SX.sym("z", nz)
        values = ca.vertcat(*vehicle_features(CASADI, cost.params, z[:state_dim], z[state_dim:], state_dim))
        fn = ca.Function("vehicle_jacobian", [z], [ca.jacobian(values, z)])
    elif kind == "linear":
        s = ca.SX.sym("s", 2)
        r = ca.vertcat(*(LINEAR_RESIDUALS[n](CASADI, s[0], s[1], cost.length) for n in cost.linear_terms))
        fn = ca.Function("linear_jacobian", [s], [ca.horzcat(r, ca.jacobian(r, s[0]))])
    elif kind == "actions":
        u, prev = ca.SX.sym("u", 2), ca.SX.sym("prev", 2)
        inv_scale = ca.DM((1.0 / cost.action_scale.double()).tolist())
        r = action_residuals(CASADI, cost.action_terms, u, prev, inv_scale)
        fn = ca.Function("action_jacobian", [ca.vertcat(u, prev)],
                         [ca.horzcat(r, ca.jacobian(r, u), ca.jacobian(r, prev))])
    else:
        f = ca.SX.sym("f", len(Features._fields))
        features = Features(*(f[i] for i in range(f.shape[0])))
        r = state_residuals(CASADI, cost.state_terms, features, cost.constants)
        fn = ca.Function("residual_jacobian", [f], [ca.horzcat(r, ca.jacobian(r, f))])
    return fn.map(points)


def _derivatives(cost: "TrackCost", kind: str, points: int, state_dim: int, rows: Tensor) -> Tensor:
    """``_derivative_function`` on rows (points, n_in): (points, n_out_rows, n_out_cols)."""
    key = (kind, points, state_dim)
    fn = cost._derivative_cache.get(key)
    if fn is None:
        fn = cost._derivative_cache[key] = _derivative_function(cost, kind, points, state_dim)
    out = fn(rows.detach().cpu().double().numpy().T)
    per_point = fn.size1_out(0)
    array = out.full().reshape(per_point, points, fn.size2_out(0) // points)
    return torch.from_numpy(array.transpose(1, 0, 2).copy()).to(dtype=rows.dtype, device=rows.device)


def state_residuals(ops: Any, names: tuple[str, ...], f: Features, c: CostConstants) -> Any:
    """The named terms' residuals stacked on the last axis (``ops.stack``)."""
    return ops.stack([STATE_RESIDUALS[name](ops, f, c) for name in names])


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


def planning_line(config: CostConfig, track: Track, params: BicycleParams) -> Track:
    """The line the cost measures from (``line``): the track itself, or its minimum-curvature
    line keeping ``line_clearance`` between the car's side and each edge."""
    if config.line == "min_curvature":
        return min_curvature_line(track, 0.5 * params.width + config.line_clearance)
    return track


def speed_reference(config: CostConfig, line: Track, params: BicycleParams) -> np.ndarray:
    """The speed reference [m/s] at each point of ``line`` (``speed_reference``: the reference
    lap at ``pace`` mu g, or the heuristic profile), capped at ``target_speed``."""
    top_speed = min(config.target_speed, params.speed_max)
    if config.speed_reference == "reference_lap":
        return reference_lap(line, config.pace * params.mu, params.accel_max, params.v_switch,
                             top_speed, drive_max=config.drive_max, brake_max=config.brake_max).speed
    return speed_profile(line, top_speed, config.max_lateral_accel, config.profile_accel, config.profile_decel)


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
        # The cost measures everything from the line; its widths reach the same edges.
        track = planning_line(config, track, params)
        self.track = track
        self.length = float(track.length)
        self.lookup = track.lookup(dtype=dtype, device=device)
        self.speed_table = torch.as_tensor(speed_reference(config, track, params), dtype=dtype, device=device)
        self.half_width = 0.5 * params.width + config.boundary_margin
        self.action_scale = torch.tensor(
            [max(abs(params.steer_rate_min), params.steer_rate_max),
             max(abs(params.accel_min), params.accel_max)],
            dtype=dtype,
            device=device,
        )
        self.inv_action_scale = 1.0 / self.action_scale
        w = config.weights
        #: Each action term's weights, one per action field.
        self.action_w = {name: torch.tensor(getattr(w, name), dtype=dtype, device=device) for name in ACTION_RESIDUALS}
        weights = {
            **{name: getattr(w, name) for name in STATE_RESIDUALS},
            **{name: max(getattr(w, name)) for name in ACTION_RESIDUALS},
            **{name: getattr(w, name) for name in LINEAR_RESIDUALS},
            "disagreement": w.disagreement,
        }
        self.term_names: tuple[str, ...] = tuple(n for n, weight in weights.items() if weight > 0)
        self._terms = [
            functools.partial(self._state_term, name) if name in STATE_RESIDUALS
            else functools.partial(self._action_term, name) if name in ACTION_RESIDUALS
            else functools.partial(self._linear_term, name) if name in LINEAR_RESIDUALS
            else getattr(self, f"_term_{name}")
            for name in self.term_names
        ]
        self.uses_disagreement = "disagreement" in self.term_names
        self.params = params
        grip = params.mu * GRAVITY
        self.constants = CostConstants(grip=grip, friction_budget=config.friction_margin * grip)
        self.state_terms = tuple(n for n in self.term_names if n in STATE_RESIDUALS)
        self.action_terms = tuple(n for n in self.term_names if n in ACTION_RESIDUALS)
        self.linear_terms = tuple(n for n in self.term_names if n in LINEAR_RESIDUALS)
        self._derivative_cache: dict[tuple[str, int, int], Any] = {}
        self.dtype, self.device = dtype, torch.device(device)
        self.width_left_table = torch.tensor(np.array(track.width_left), dtype=dtype, device=device)
        self.width_right_table = torch.tensor(np.array(track.width_right), dtype=dtype, device=device)

    # -- features ------------------------------------------------------------------------
    def features(self, states: Tensor, actions: Tensor) -> Features:
        """Features of states (..., nx), each reached by the action (..., nu) beside it."""
        return self._features(states, actions, self._project(states))

    def _project(self, states: Tensor) -> Any:
        return self.lookup.project(states[..., State.X], states[..., State.Y], states[..., State.YAW])

    def _features(self, states: Tensor, actions: Tensor, proj: Projection) -> Features:
        v_ref = self.lookup.interpolate(self.speed_table, proj.s)
        track = track_features(TORCH, states[..., State.YAW], states[..., State.V], proj, v_ref, self.half_width)
        return Features(*track, *vehicle_features(TORCH, self.params, states, actions, states.shape[-1]))

    def step_weights(self, horizon: int) -> Tensor:
        """Per-step multipliers: 1 for steps 1..H-1, terminal_weight for step H."""
        w = torch.ones(horizon, dtype=self.dtype, device=self.device)
        w[-1] = self.config.terminal_weight
        return w

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
            features=self.features(states[1:], actions),
            states=states,
            actions=actions,
            last_action=last_action,
            disagreement=disagreement,
            step_w=self.step_weights(actions.shape[0]).unsqueeze(-1),
        )
        stacked = torch.stack([term(ctx) for term in self._terms])
        return CostEvaluation(stacked.sum(0), stacked)

    def _state_term(self, name: str, c: "_Rollout") -> Tensor:
        residual = STATE_RESIDUALS[name](TORCH, c.features, self.constants)
        return getattr(self.config.weights, name) * (residual.square() * c.step_w).sum(0)

    def _action_term(self, name: str, c: "_Rollout") -> Tensor:
        a = c.actions
        prev = torch.cat([c.last_action.expand(1, *a.shape[1:]), a[:-1]], 0)
        residual = ACTION_RESIDUALS[name](TORCH, a, prev, self.inv_action_scale)
        return (residual.square() * self.action_w[name]).sum((0, -1))

    def _linear_term(self, name: str, c: "_Rollout") -> Tensor:
        s0 = self._project(c.states[0]).s
        residual = LINEAR_RESIDUALS[name](TORCH, c.features.s[-1], s0, self.length)
        return getattr(self.config.weights, name) * residual

    def _term_disagreement(self, c: "_Rollout") -> Tensor:
        if c.disagreement is None:
            raise ValueError("the disagreement term needs the ensemble's disagreement")
        return self.config.weights.disagreement * c.disagreement.sum(0)

    def feature_jacobian(self, states: Tensor, actions: Tensor, proj: Any = None) -> tuple[Tensor, Tensor]:
        """Jacobian (H, n_features, nx + nu) of the features of states (H, nx) w.r.t. the
        augmented state (x_t, u_{t-1}), and ds/dp (H, 2).

        The track features' rows are ``track_feature_jacobian`` (the kernel's C is generated
        from it), the vehicle features' the autodiff of ``vehicle_features``.
        """
        H, nx = states.shape
        nu = actions.shape[-1]
        proj = self._project(states) if proj is None else proj
        slopes = (self.lookup.slope(t, proj.s) for t in (self.speed_table, self.width_left_table, self.width_right_table))
        track = track_feature_jacobian(TORCH, proj, *slopes)
        F = _FEATURE_INDEX
        J = torch.zeros(H, len(F), nx + nu, dtype=states.dtype, device=states.device)
        J[:, : len(TRACK_FEATURES), list(TRACK_FEATURE_FIELDS)] = torch.stack([torch.stack(r, -1) for r in track], -2)
        ds_dp = J[:, F["s"], State.X : State.Y + 1].clone()

        rows = slice(F[VEHICLE_FEATURES[0]], F[VEHICLE_FEATURES[-1]] + 1)
        J[:, rows] = _derivatives(self, "vehicle", H, nx, torch.cat([states, actions], -1))
        return J, ds_dp

    def action_residual_jacobian(self, actions: Tensor, prev: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The active action terms' residuals (H, n_rows) at (u_t, u_{t-1}) = (actions, prev),
        each (H, nu), and their Jacobians (H, n_rows, nu) w.r.t. u_t and u_{t-1}: autodiff of
        ``ACTION_RESIDUALS`` (n_rows: nu per term, in ``action_terms`` order)."""
        nu = actions.shape[-1]
        out = _derivatives(self, "actions", actions.shape[0], 0, torch.cat([actions, prev], -1))
        return out[:, :, 0], out[:, :, 1 : 1 + nu], out[:, :, 1 + nu :]

    def residual_jacobian(self, features: Features) -> tuple[Tensor, Tensor]:
        """The active state terms' residuals (H, n_terms) and their Jacobian
        (H, n_terms, n_features) w.r.t. the features: autodiff of ``STATE_RESIDUALS``."""
        f = torch.stack(features, -1)
        out = _derivatives(self, "residuals", f.shape[0], 0, f)
        return out[:, :, 0], out[:, :, 1:]

    # -- derivatives along one trajectory (iLQR) ------------------------------------------------
    def quadratize(self, states: Tensor, actions: Tensor, last_action: Tensor) -> Quadratization:
        """Gauss-Newton derivatives along states (H+1, nx), actions (H, nu).

        Each squared state term w rho(r) contributes 2 w r J and 2 w J^T J, with
        J = dr/df df/dz (``residual_jacobian`` times ``feature_jacobian``).
        The disagreement term has no derivative here (it is a sampling-planner term).
        """
        w = self.config.weights
        H, nu = actions.shape
        nx = states.shape[-1]
        nz = nx + nu
        x = states[1:]
        l_z = torch.zeros(H + 1, nz, dtype=x.dtype, device=x.device)
        l_zz = torch.zeros(H + 1, nz, nz, dtype=x.dtype, device=x.device)
        l_u = torch.zeros(H, nu, dtype=x.dtype, device=x.device)
        l_uu = torch.zeros(H, nu, nu, dtype=x.dtype, device=x.device)
        l_uz = torch.zeros(H, nu, nz, dtype=x.dtype, device=x.device)
        P = slice(State.X, State.Y + 1)
        proj = self._project(x)
        J_features, ds_dp = self.feature_jacobian(x, actions, proj)
        if self.state_terms:
            r, J_residuals = self.residual_jacobian(self._features(x, actions, proj))
            J = J_residuals @ J_features  # (H, n_terms, nz)
            weights = torch.tensor([getattr(w, n) for n in self.state_terms], dtype=x.dtype, device=x.device)
            c = 2.0 * weights * self.step_weights(H).unsqueeze(-1)  # (H, n_terms)
            l_z[1:] += torch.einsum("ht,htz->hz", c * r, J)
            l_zz[1:] += torch.einsum("ht,hty,htz->hyz", c, J, J)
        if self.linear_terms:  # terms of s at t = H: w dr/ds ds/dp
            s_end_start = torch.stack([proj.s[-1], self._project(states[0]).s]).unsqueeze(0)
            dr_ds = _derivatives(self, "linear", 1, 0, s_end_start)[0, :, 1]
            weights = torch.tensor([getattr(w, n) for n in self.linear_terms], dtype=x.dtype, device=x.device)
            l_z[H, P] += (weights * dr_ds).sum() * ds_dp[-1]
        if self.action_terms:
            # u_{t-1} is part of z_t: the rate term couples (z_t, u_t) like any stage cost.
            prev = torch.cat([last_action.unsqueeze(0), actions[:-1]], 0)
            r, J_u, J_prev = self.action_residual_jacobian(actions, prev)
            c = 2.0 * torch.cat([self.action_w[n] for n in self.action_terms]).to(x.dtype)  # (n_rows,)
            l_u += torch.einsum("r,hr,hri->hi", c, r, J_u)
            l_uu += torch.einsum("r,hri,hrj->hij", c, J_u, J_u)
            l_z[:H, nx:] += torch.einsum("r,hr,hri->hi", c, r, J_prev)
            l_zz[:H, nx:, nx:] += torch.einsum("r,hri,hrj->hij", c, J_prev, J_prev)
            l_uz[:, :, nx:] += torch.einsum("r,hri,hrj->hij", c, J_u, J_prev)
        return Quadratization(l_z, l_u, l_zz, l_uu, l_uz)
