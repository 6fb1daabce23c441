"""Progress bars draw only on a terminal: piped into a file, tqdm wrote one endless line of
carriage returns."""

from __future__ import annotations

import numpy as np

from tools.sysid.residual_fit import train_residual
from vehicle_models.kinematic import KinematicBicycle
from vehicle_models.params import load_params


def test_no_progress_bar_when_stderr_is_not_a_terminal(capsys) -> None:
    rng = np.random.default_rng(0)
    nominal = KinematicBicycle(load_params("passenger_car"), 0.05)

    def data(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.column_stack([rng.normal(0, 1, (n, 2)), rng.normal(0, 0.05, n), rng.uniform(3, 10, n),
                             rng.normal(0, 0.3, n)])
        u = rng.normal(0, 0.2, (n, 2))
        return x, u, x + rng.normal(0, 0.01, x.shape)

    train_residual(nominal, data(64), data(32), epochs=3, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err and "residual" not in err, repr(err[:200])
