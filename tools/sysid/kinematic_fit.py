"""Kinematic parameters by nonlinear least squares on multi-step predictions.

Free parameters: steer_gain, steer_offset, wheelbase, ref_to_rear (bounded). Each residual is
the error of an open-loop prediction over a window of logged actions (0.5 s by default), in
position [m], heading (scaled: 1 rad counts as ``YAW_SCALE`` m) and speed [m/s]; multi-step
errors expose what one-step errors hide (a wrong wheelbase shows in the heading after a turn).
Solved with scipy's trust-region reflective method; confidence intervals from the Gauss-Newton
covariance sigma^2 (J'J)^-1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import least_squares

from tools.sysid.data import Windows
from vehicle_models.angles import wrap_angle
from vehicle_models.kinematic import KinematicBicycle
from vehicle_models.layout import State
from vehicle_models.params import BicycleParams

FREE = ("steer_gain", "steer_offset", "wheelbase", "ref_to_rear")
YAW_SCALE = 5.0


@dataclass
class KinematicFit:
    params: BicycleParams
    estimates: dict[str, float]
    ci95: dict[str, float]
    at_bound: list[str]
    weak_directions: list[str]
    cost_before: float
    cost_after: float
    warnings: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  #: parameters kept at the prior


def bounds_for(p: BicycleParams, free: tuple[str, ...] = FREE) -> tuple[np.ndarray, np.ndarray]:
    lo = {"steer_gain": 0.5, "steer_offset": -0.1, "wheelbase": 0.5 * p.wheelbase, "ref_to_rear": 0.0}
    hi = {"steer_gain": 1.5, "steer_offset": 0.1, "wheelbase": 1.5 * p.wheelbase, "ref_to_rear": 1.5 * p.wheelbase}
    return np.array([lo[n] for n in free]), np.array([hi[n] for n in free])


def with_values(p: BicycleParams, theta: np.ndarray, free: tuple[str, ...] = FREE) -> BicycleParams:
    values = dict(zip(free, map(float, theta)))
    wheelbase = values.get("wheelbase", p.wheelbase)
    values["ref_to_rear"] = min(values.get("ref_to_rear", p.ref_to_rear), wheelbase)
    return p.model_copy(update=values)


def predict(p: BicycleParams, w: Windows, period: float) -> np.ndarray:
    """(W, M, 5) open-loop predictions over the windows."""
    model = KinematicBicycle(p, period)
    x = torch.as_tensor(w.start, dtype=torch.float64)
    u = torch.as_tensor(w.actions, dtype=torch.float64)
    out = []
    for t in range(u.shape[1]):
        x = model.step(x, u[:, t])
        out.append(x)
    return torch.stack(out, 1).numpy()


def residuals(p: BicycleParams, w: Windows, period: float) -> np.ndarray:
    pred = predict(p, w, period)
    err = pred - w.measured
    yaw = np.asarray(wrap_angle(torch.as_tensor(err[..., State.YAW])))
    return np.concatenate([
        err[..., State.X].ravel(), err[..., State.Y].ravel(), YAW_SCALE * yaw.ravel(), err[..., State.V].ravel()
    ])


def _solve(prior: BicycleParams, w: Windows, period: float, free: tuple[str, ...]):
    lo, hi = bounds_for(prior, free)
    theta0 = np.clip(np.array([getattr(prior, n) for n in free]), lo, hi)
    fun = lambda th: residuals(with_values(prior, th, free), w, period)  # noqa: E731
    r0 = fun(theta0)
    sol = least_squares(fun, theta0, bounds=(lo, hi), x_scale="jac", method="trf", max_nfev=200)
    return sol, r0, lo, hi


def fit_kinematic(prior: BicycleParams, w: Windows, period: float) -> KinematicFit:
    """Fit ``FREE``; where the data cannot tell the wheelbase from the steering gain, hold the
    wheelbase at the prior and fit the rest (the prediction depends on their ratio only).

    For small wheel angles the path curvature is tan(g steer) / L ~ g steer / L: only g / L is
    identifiable unless the data holds large wheel angles (where tan bends). A free fit then
    wanders along the valley g / L = const (to a bound, with huge intervals) and a
    ``ref_to_rear`` fitted to match slip ratios at the wrong L; holding L keeps the estimate
    meaningful and the fit well-posed.
    """
    free = FREE
    sol, r0, lo, hi = _solve(prior, w, period, free)
    _, s, vt = np.linalg.svd(sol.jac, full_matrices=False)
    condition = s[0] / max(s[-1], 1e-300)
    weak = []
    held: list[str] = []
    span = hi - lo
    wheelbase_at_bound = min(sol.x[2] - lo[2], hi[2] - sol.x[2]) < 1e-4 * span[2]
    if condition > 1e3 or wheelbase_at_bound:
        valley = [FREE[i] for i in np.argsort(-np.abs(vt[-1] * span))[:2]]
        if wheelbase_at_bound:
            valley = ["wheelbase", "steer_gain"]
        weak.append(
            f"{' and '.join(valley)} trade off against each other (condition number {condition:.1e})"
        )
        if set(valley) == {"wheelbase", "steer_gain"}:
            free = tuple(n for n in FREE if n != "wheelbase")
            held = ["wheelbase"]
            weak[-1] += "; wheelbase held at the prior, steer_gain absorbs it (only their ratio is identifiable)"
            sol, r0, lo, hi = _solve(prior, w, period, free)
    J, r = sol.jac, sol.fun
    dof = max(1, len(r) - len(sol.x))
    sigma2 = float(r @ r) / dof
    _, s, vt = np.linalg.svd(J, full_matrices=False)
    try:
        cov = sigma2 * np.linalg.inv(J.T @ J)
        ci = 1.96 * np.sqrt(np.maximum(np.diag(cov), 0.0))
    except np.linalg.LinAlgError:
        ci = np.full(len(sol.x), np.inf)
    span = hi - lo
    at_bound = [n for n, v, a, b, d in zip(free, sol.x, lo, hi, span) if min(v - a, b - v) < 1e-4 * d]
    condition = s[0] / max(s[-1], 1e-300)
    uncertain = [n for n, c, d in zip(free, ci, span) if not np.isfinite(c) or c > 0.25 * d]
    if condition > 1e4 or uncertain:
        names = [free[i] for i in np.argsort(-np.abs(vt[-1] * span))[:2]]
        weak.append(
            f"{' and '.join(names)} trade off against each other (condition number {condition:.1e}; "
            f"wide intervals: {', '.join(uncertain) or 'none'})"
        )
    params = with_values(prior, sol.x, free)
    return KinematicFit(
        params=params,
        estimates={n: float(getattr(params, n)) for n in FREE},
        ci95={n: (float(ci[free.index(n)]) if n in free else 0.0) for n in FREE},
        at_bound=at_bound,
        weak_directions=weak,
        cost_before=float(0.5 * r0 @ r0),
        cost_after=float(sol.cost),
        held=held,
    )


def excitation_warnings(states: np.ndarray, actions: np.ndarray) -> list[str]:
    """Manoeuvres the data lacks, for the parameters they would pin down."""
    out = []
    steer, v, accel = states[:, State.STEER], states[:, State.V], actions[:, 1]
    if (steer > 0.02).mean() < 0.05 or (steer < -0.02).mean() < 0.05:
        out.append("turns one way only: steer_offset and steer_gain mix; drive left and right turns")
    if np.ptp(v) < 3.0:
        out.append("narrow speed range: drive at several speeds to separate wheelbase from tyre effects")
    if np.abs(steer).max() < 0.05:
        out.append("little steering: the wheelbase and steer_gain are barely excited; add tighter turns")
    if (np.abs(accel) > 0.5).mean() < 0.02:
        out.append("little acceleration or braking: actuator lag is not identifiable")
    return out
