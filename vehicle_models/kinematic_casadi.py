"""CasADi twin of the kinematic bicycle: exact symbolic derivatives and a model for fitting.

Built from the same equation source as the torch model (``vehicle_models.kinematic``).
"""

from __future__ import annotations

from typing import Any

import casadi as ca
import numpy as np

from vehicle_models.kinematic import Integrator, kinematic_step
from vehicle_models.layout import ACTION_DIM, KINEMATIC_STATE_DIM
from vehicle_models.mathops import CASADI
from vehicle_models.params import BicycleParams


def step_expression(params: Any, x: ca.SX, u: ca.SX, dt: Any, integrator: Integrator) -> ca.SX:
    """Symbolic next state. ``params`` may hold numbers or CasADi symbols (for fitting)."""
    return kinematic_step(CASADI, params, x, u, dt, integrator)


def step_function(params: BicycleParams, dt: float, integrator: Integrator = "exact") -> ca.Function:
    """``F(x[nx], u[nu]) -> x_next[nx]`` as a CasADi Function."""
    x = ca.SX.sym("x", KINEMATIC_STATE_DIM)
    u = ca.SX.sym("u", ACTION_DIM)
    return ca.Function("kinematic_step", [x, u], [step_expression(params, x, u, dt, integrator)])


class BatchedJacobian:
    """Exact Jacobians (A, B) of the step, evaluated for a batch of points in one call."""

    def __init__(self, params: BicycleParams, dt: float, integrator: Integrator = "exact"):
        x = ca.SX.sym("x", KINEMATIC_STATE_DIM)
        u = ca.SX.sym("u", ACTION_DIM)
        x_next = step_expression(params, x, u, dt, integrator)
        self._single = ca.Function(
            "kinematic_jacobian", [x, u], [ca.jacobian(x_next, x), ca.jacobian(x_next, u)]
        )
        self._mapped: dict[int, ca.Function] = {}

    def __call__(self, state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch_shape = state.shape[:-1]
        n = int(np.prod(batch_shape, dtype=np.int64))
        fn = self._mapped.get(n)
        if fn is None:
            fn = self._mapped[n] = self._single.map(n)
        A, B = fn(state.reshape(n, -1).T, action.reshape(n, -1).T)
        nx, nu = KINEMATIC_STATE_DIM, ACTION_DIM
        # Mapped outputs are blocks concatenated horizontally: (nx, n * nx).
        A = np.asarray(A).reshape(nx, n, nx).transpose(1, 0, 2)
        B = np.asarray(B).reshape(nx, n, nu).transpose(1, 0, 2)
        return A.reshape(*batch_shape, nx, nx), B.reshape(*batch_shape, nx, nu)
