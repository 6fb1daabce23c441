"""Open-loop prediction error on held-out data, per state field, at several horizons.

Windows of 7 fields (yaw_rate and slip measured) also score the yaw rate. A 5-field model
rolls out from the first five fields; its yaw rate is its kinematic one, v cos(beta)
tan(delta) / L at the predicted steer and speed, so every model is scored on the same fields.
"""

from __future__ import annotations

import numpy as np
import torch

from tools.sysid.data import Windows
from vehicle_models.angles import wrap_angle
from vehicle_models.layout import KINEMATIC_STATE_DIM, State

HORIZONS_S = (0.1, 0.5, 1.0)
FIELDS = ("pos", "steer", "v", "yaw", "yaw_rate")


def rollout(model, w: Windows) -> np.ndarray:
    dtype = getattr(model, "dtype", torch.float64)
    state_dim = int(getattr(model, "state_dim", KINEMATIC_STATE_DIM))
    x = torch.as_tensor(w.start[:, :state_dim], dtype=dtype)
    u = torch.as_tensor(w.actions, dtype=dtype)
    out = []
    with torch.no_grad():
        for t in range(u.shape[1]):
            x = model.step(x, u[:, t])
            out.append(x)
    return torch.stack(out, 1).double().numpy()


def _kinematic_params(model):
    nominal = getattr(model, "nominal", model)
    return getattr(nominal, "params", None)


def kinematic_yaw_rate(pred: np.ndarray, params) -> np.ndarray:
    delta = params.steer_gain * pred[..., State.STEER] + params.steer_offset
    beta = np.arctan(params.ref_to_rear / params.wheelbase * np.tan(delta))
    return pred[..., State.V] * np.cos(beta) * np.tan(delta) / params.wheelbase


def prediction_rmse(model, w: Windows, period: float) -> dict[str, dict[str, float]]:
    """{"0.1s": {"pos": m, "steer": rad, "v": m/s, "yaw": rad[, "yaw_rate": rad/s]}, ...}."""
    pred = rollout(model, w)
    measured_dim = w.measured.shape[-1]
    yaw_rate = None
    if measured_dim > State.YAW_RATE:
        if pred.shape[-1] > State.YAW_RATE:
            yaw_rate = pred[..., State.YAW_RATE] - w.measured[..., State.YAW_RATE]
        elif (params := _kinematic_params(model)) is not None and hasattr(params, "steer_gain"):
            yaw_rate = kinematic_yaw_rate(pred, params) - w.measured[..., State.YAW_RATE]
    err = pred[..., :KINEMATIC_STATE_DIM] - w.measured[..., :KINEMATIC_STATE_DIM]
    out = {}
    for h in HORIZONS_S:
        k = int(round(h / period)) - 1
        if k >= err.shape[1]:
            continue
        e = err[:, k]
        yaw = np.asarray(wrap_angle(torch.as_tensor(e[:, State.YAW])))
        out[f"{h:g}s"] = {
            "pos": float(np.sqrt(np.mean(e[:, State.X] ** 2 + e[:, State.Y] ** 2))),
            "steer": float(np.sqrt(np.mean(e[:, State.STEER] ** 2))),
            "v": float(np.sqrt(np.mean(e[:, State.V] ** 2))),
            "yaw": float(np.sqrt(np.mean(yaw**2))),
        }
        if yaw_rate is not None:
            out[f"{h:g}s"]["yaw_rate"] = float(np.sqrt(np.mean(yaw_rate[:, k] ** 2)))
    return out


def table(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    horizons = [f"{h:g}s" for h in HORIZONS_S]
    with_rate = any("yaw_rate" in r.get(h, {}) for r in rows.values() for h in horizons)
    width = 36
    head = f"{'model':<{width}}" + "".join(f"{'pos@' + h:>11}{'yaw@' + h:>11}" for h in horizons)
    if with_rate:
        head += f"{'v@1s':>10}{'yaw_rate@1s':>13}"
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        cells = "".join(
            f"{r.get(h, {}).get('pos', float('nan')):>10.3f}m{r.get(h, {}).get('yaw', float('nan')):>8.4f}rad" for h in horizons
        )
        if with_rate:
            one = r.get("1s", {})
            cells += f"{one.get('v', float('nan')):>8.3f}/s{one.get('yaw_rate', float('nan')):>10.4f}r/s"
        lines.append(f"{name:<{width}}{cells}")
    return "\n".join(lines)
