"""Open-loop prediction error on held-out data, per state field, at several horizons."""

from __future__ import annotations

import numpy as np
import torch

from tools.sysid.data import Windows
from vehicle_models.angles import wrap_angle
from vehicle_models.layout import State

HORIZONS_S = (0.1, 0.5, 1.0)
FIELDS = ("pos", "steer", "v", "yaw")


def rollout(model, w: Windows) -> np.ndarray:
    dtype = getattr(model, "dtype", torch.float64)
    x = torch.as_tensor(w.start, dtype=dtype)
    u = torch.as_tensor(w.actions, dtype=dtype)
    out = []
    with torch.no_grad():
        for t in range(u.shape[1]):
            x = model.step(x, u[:, t])
            out.append(x)
    return torch.stack(out, 1).double().numpy()


def prediction_rmse(model, w: Windows, period: float) -> dict[str, dict[str, float]]:
    """{"0.1s": {"pos": m, "steer": rad, "v": m/s, "yaw": rad}, ...} over the windows."""
    pred = rollout(model, w)
    err = pred - w.measured
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
    return out


def table(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    horizons = [f"{h:g}s" for h in HORIZONS_S]
    head = f"{'model':<22}" + "".join(f"{'pos@' + h:>11}{'yaw@' + h:>11}" for h in horizons)
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        cells = "".join(
            f"{r.get(h, {}).get('pos', float('nan')):>10.3f}m{r.get(h, {}).get('yaw', float('nan')):>9.4f}rad" for h in horizons
        )
        lines.append(f"{name:<22}{cells}")
    return "\n".join(lines)
