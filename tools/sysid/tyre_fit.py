"""Tyre parameters of the single-track nominal from logs: cornering stiffness, and mu where
the logs reach the friction limit.

Free parameters: stiffness_front, stiffness_rear (C_Sf, C_Sr) and, only when the logs come
near the limit (``MU_EXCITATION``), mu. Each residual is the error of the nominal's one-step
prediction (one control period, from the measured state, under the acting action) in yaw
rate and slip, the two fields the tyres drive; the steer and speed they pass through are
measured, so actuator lag on those does not leak into the tyre parameters. With the linear
tyre only mu C_S is seen below the limit: a held mu leaves C_S to carry the product.

Excitation is reported from the logs themselves: the largest |a_lat| / g (a_lat = v yaw_rate
at the CoG) and the axle slip angles, from the measured states.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import least_squares

from vehicle_models.dynamic_nominal import SingleTrackNominal, limited
from vehicle_models.layout import State
from vehicle_models.single_track import GRAVITY, SingleTrackParams

#: mu is fitted only when the logs reach this share of the prior's friction limit, mu g.
MU_EXCITATION = 0.8
#: Transitions slower than this [m/s] say little about the tyres (kinematic regime); left out.
MIN_SPEED_MPS = 4.0
#: Scale of the slip residual relative to the yaw rate's (slip moves about 1/5 as much).
SLIP_WEIGHT = 5.0
MAX_TRANSITIONS = 6000


@dataclass
class Excitation:
    """What the logs show of the tyres' range."""

    max_lateral_g: float  #: largest |v yaw_rate| / g
    p99_lateral_g: float
    max_slip_angle_front: float  #: [rad] |alpha_f|
    max_slip_angle_rear: float  #: [rad] |alpha_r|
    transitions: int  #: moving transitions used

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass
class TyreFit:
    params: SingleTrackParams
    estimates: dict[str, float]
    ci95: dict[str, float]
    held: list[str]  #: parameters kept at the prior
    excitation: Excitation
    cost_before: float
    cost_after: float
    notes: list[str] = field(default_factory=list)


def slip_angles(x: np.ndarray, p: SingleTrackParams) -> tuple[np.ndarray, np.ndarray]:
    """Front and rear slip angles [rad] of states (N, 7) (moving states only make sense)."""
    v = np.maximum(np.abs(x[:, State.V]), 1e-3)
    rate, slip = x[:, State.YAW_RATE], x[:, State.SLIP]
    return x[:, State.STEER] - slip - p.l_f * rate / v, -slip + p.l_r * rate / v


def excitation_of(x: np.ndarray, p: SingleTrackParams) -> Excitation:
    moving = x[np.abs(x[:, State.V]) >= MIN_SPEED_MPS]
    if len(moving) == 0:
        return Excitation(0.0, 0.0, 0.0, 0.0, 0)
    lateral = np.abs(moving[:, State.V] * moving[:, State.YAW_RATE]) / GRAVITY
    front, rear = slip_angles(moving, p)
    return Excitation(
        float(lateral.max()), float(np.percentile(lateral, 99)),
        float(np.abs(front).max()), float(np.abs(rear).max()), len(moving),
    )


def _one_step(p: SingleTrackParams, x: torch.Tensor, u: torch.Tensor, period: float) -> np.ndarray:
    with torch.no_grad():
        return SingleTrackNominal(p, period).step(x, u).numpy()


def fit_tyres(
    prior: SingleTrackParams,
    transitions: tuple[np.ndarray, np.ndarray, np.ndarray],
    period: float,
) -> TyreFit:
    """Fit C_Sf, C_Sr (and mu where excited) to (state, action, next state) transitions (N, 7)."""
    prior = limited(prior)
    xs, us, ys = transitions
    keep = np.abs(xs[:, State.V]) >= MIN_SPEED_MPS
    xs, us, ys = xs[keep], us[keep], ys[keep]
    if len(xs) > MAX_TRANSITIONS:
        pick = np.unique(np.linspace(0, len(xs) - 1, MAX_TRANSITIONS).round().astype(np.int64))
        xs, us, ys = xs[pick], us[pick], ys[pick]
    excitation = excitation_of(xs, prior)
    notes: list[str] = []
    if len(xs) < 50:
        notes.append(f"only {len(xs)} transitions above {MIN_SPEED_MPS:g} m/s: tyre parameters held at the prior")
        return TyreFit(prior, _estimates(prior), {}, ["stiffness_front", "stiffness_rear", "mu"],
                       excitation, float("nan"), float("nan"), notes)
    limit_g = MU_EXCITATION * prior.mu
    free = ["stiffness_front", "stiffness_rear"]
    held = []
    if excitation.max_lateral_g >= limit_g:
        free.append("mu")
    else:
        held.append("mu")
        notes.append(
            f"mu held at the prior {prior.mu:.3f}: the logs reach |a_lat| = {excitation.max_lateral_g:.2f} g, "
            f"under {MU_EXCITATION:g} x mu g = {limit_g:.2f} g, so they never approach the friction limit "
            "(below it only mu x C_S is seen; the fitted C_S carries it)"
        )
    x = torch.as_tensor(xs, dtype=torch.float64)
    u = torch.as_tensor(us, dtype=torch.float64)
    scale = np.array([1.0, SLIP_WEIGHT])
    fields = [int(State.YAW_RATE), int(State.SLIP)]

    def params_of(theta: np.ndarray) -> SingleTrackParams:
        return prior.model_copy(update=dict(zip(free, map(float, theta))))

    def residuals(theta: np.ndarray) -> np.ndarray:
        pred = _one_step(params_of(theta), x, u, period)
        return ((pred[:, fields] - ys[:, fields]) * scale).ravel()

    theta0 = np.array([getattr(prior, n) for n in free])
    lo = np.array([0.2 * getattr(prior, n) if n != "mu" else 0.3 for n in free])
    hi = np.array([5.0 * getattr(prior, n) if n != "mu" else 2.0 for n in free])
    r0 = residuals(theta0)
    sol = least_squares(residuals, theta0, bounds=(lo, hi), x_scale=theta0, diff_step=1e-4)
    fitted = params_of(sol.x)
    ci95 = _ci95(sol, free)
    return TyreFit(
        fitted, _estimates(fitted), ci95, held, excitation,
        float(np.mean(r0**2)), float(np.mean(sol.fun**2)), notes,
    )


def _estimates(p: SingleTrackParams) -> dict[str, float]:
    return {"stiffness_front": p.stiffness_front, "stiffness_rear": p.stiffness_rear, "mu": p.mu}


def _ci95(sol, free: list[str]) -> dict[str, float]:
    J = sol.jac
    dof = max(len(sol.fun) - len(free), 1)
    sigma2 = float(sol.fun @ sol.fun) / dof
    try:
        cov = np.linalg.inv(J.T @ J) * sigma2
        return {n: float(1.96 * np.sqrt(max(cov[i, i], 0.0))) for i, n in enumerate(free)}
    except np.linalg.LinAlgError:
        return {n: float("inf") for n in free}
