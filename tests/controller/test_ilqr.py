"""iLQR against closed-form oracles on linear-quadratic problems."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch
from torch import Tensor

from controller.costs import CostEvaluation, Quadratization
from controller.planners.ilqr import ILQR, ILQRConfig
from controller.planners.riccati import box_qp

NX, NU, H, DT = 4, 2, 25, 0.1


class LinearModel:
    """x_next = A x + B u (a discretised double integrator in two axes)."""

    state_dim, action_dim, dt = NX, NU, DT

    def __init__(self) -> None:
        A = np.eye(NX)
        A[0, 2] = A[1, 3] = DT
        B = np.zeros((NX, NU))
        B[0, 0] = B[1, 1] = 0.5 * DT**2
        B[2, 0] = B[3, 1] = DT
        self.A_np, self.B_np = A, B
        self.A, self.B = torch.tensor(A), torch.tensor(B)

    def step(self, state: Tensor, action: Tensor) -> Tensor:
        return state @ self.A.to(state.dtype).T + action @ self.B.to(state.dtype).T

    def linearize(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        batch = state.shape[:-1]
        return (
            self.A.to(state.dtype).expand(*batch, NX, NX),
            self.B.to(state.dtype).expand(*batch, NX, NU),
        )


class QuadraticCost:
    """sum_t x_t' Q x_t (Qf at t = H) + u_t' R u_t: the LQ problem behind the oracles."""

    term_names = ("state", "effort")
    uses_disagreement = False

    def __init__(self, Q: np.ndarray, Qf: np.ndarray, R: np.ndarray):
        self.Q_np, self.Qf_np, self.R_np = Q, Qf, R
        self.Q, self.Qf, self.R = map(torch.tensor, (Q, Qf, R))

    def evaluate(self, states, actions, last_action, disagreement=None) -> CostEvaluation:
        x = states[1:]
        Qs = torch.stack([self.Q] * (x.shape[0] - 1) + [self.Qf]).to(x.dtype)
        state = torch.einsum("tki,tij,tkj->k", x, Qs, x)
        effort = torch.einsum("tki,ij,tkj->k", actions, self.R.to(x.dtype), actions)
        terms = torch.stack([state, effort])
        return CostEvaluation(terms.sum(0), terms)

    def quadratize(self, states, actions, last_action) -> Quadratization:
        nz = NX + NU
        dtype = states.dtype
        l_z = torch.zeros(H + 1, nz, dtype=dtype)
        l_zz = torch.zeros(H + 1, nz, nz, dtype=dtype)
        for t in range(1, H + 1):
            Q = (self.Qf if t == H else self.Q).to(dtype)
            l_z[t, :NX] = 2 * Q @ states[t]
            l_zz[t, :NX, :NX] = 2 * Q
        R = self.R.to(dtype)
        return Quadratization(
            l_z, 2 * actions @ R, l_zz, (2 * R).expand(H, NU, NU).clone(), torch.zeros(H, NU, nz, dtype=dtype)
        )


def _problem(bound: float = 1e3):
    Q = np.diag([1.0, 2.0, 0.1, 0.1])
    Qf = 10 * Q
    R = np.diag([0.05, 0.02])
    model, cost = LinearModel(), QuadraticCost(Q, Qf, R)
    config = ILQRConfig(horizon=H, dt=DT, max_iterations=20, tolerance=1e-12, compile=False, mu_init=0.0)
    planner = ILQR(config, model, cost, (-bound, -bound), (bound, bound), dtype=torch.float64)
    return model, cost, planner


def _riccati_gains(model: LinearModel, cost: QuadraticCost) -> list[np.ndarray]:
    """Finite-horizon discrete LQR: u_t = K_t x_t, with the state cost on x_1..x_H."""
    A, B, R = model.A_np, model.B_np, cost.R_np
    V = cost.Qf_np
    gains = [None] * H
    for t in range(H - 1, -1, -1):
        K = -np.linalg.solve(R + B.T @ V @ B, B.T @ V @ A)
        gains[t] = K
        Q_t = cost.Q_np if t > 0 else np.zeros((NX, NX))  # x_0 is given, not optimised
        V = Q_t + A.T @ V @ (A + B @ K)
    return gains


def test_ilqr_equals_discrete_lqr_on_a_linear_quadratic_problem() -> None:
    model, cost, planner = _problem()
    x0 = torch.tensor([3.0, -2.0, 0.5, 1.0], dtype=torch.float64)
    result = planner.plan(x0)
    gains = _riccati_gains(model, cost)
    x = x0.numpy()
    expected = []
    for t in range(H):
        u = gains[t] @ x
        expected.append(u)
        x = model.A_np @ x + model.B_np @ u
    assert np.abs(result.actions.numpy() - np.array(expected)).max() < 1e-8
    assert result.converged
    # Feedback on the state part equals the Riccati gains (no term involves u_{t-1}).
    K = result.feedback_gains.numpy()
    assert np.abs(K[:, :, :NX] - np.array(gains)).max() < 1e-8
    assert np.abs(K[:, :, NX:]).max() < 1e-12


def test_ilqr_with_box_limits_matches_the_constrained_qp() -> None:
    bound = 1.5
    model, cost, planner = _problem(bound)
    x0 = torch.tensor([4.0, -3.0, 0.0, 2.0], dtype=torch.float64)
    result = planner.plan(x0)
    assert result.actions.abs().max().item() <= bound + 1e-12

    def total(u_flat: np.ndarray) -> float:
        U = torch.tensor(u_flat.reshape(H, NU))
        X = [x0]
        for t in range(H):
            X.append(model.step(X[-1], U[t]))
        return float(cost.evaluate(torch.stack(X).unsqueeze(1), U.unsqueeze(1), None).total[0])

    reference = scipy.optimize.minimize(
        total, np.zeros(H * NU), method="L-BFGS-B", bounds=[(-bound, bound)] * (H * NU),
        options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 5000},
    )
    assert result.cost <= reference.fun + 1e-6
    assert np.abs(result.actions.numpy().ravel() - reference.x).max() < 1e-3
    assert np.isclose(np.abs(result.actions.numpy()), bound).any(), "the limits should bind"


def test_warm_start_from_the_optimum_needs_no_further_decrease() -> None:
    _, _, planner = _problem()
    x0 = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    first = planner.plan(x0)
    again = planner.plan(x0, warm_start=first.actions)
    assert again.converged and again.iterations == 1
    assert torch.allclose(again.actions, first.actions, atol=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_box_qp_matches_enumeration_of_active_sets(seed: int) -> None:
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(2, 2))
    Hm = M @ M.T + 0.1 * np.eye(2)
    g = rng.normal(size=2) * 3
    lo, hi = -np.ones(2) * 0.5, np.ones(2) * 0.7
    x, free, ok = box_qp(Hm, g, lo, hi, np.zeros(2))
    assert ok
    # Brute force over a fine grid refined by exact 1-D minimisation on each face.
    candidates = [np.clip(np.linalg.solve(Hm, -g), lo, hi)]
    for i in range(2):
        for b in (lo[i], hi[i]):
            j = 1 - i
            xj = np.clip(-(g[j] + Hm[j, i] * b) / Hm[j, j], lo[j], hi[j])
            c = np.zeros(2)
            c[i], c[j] = b, xj
            candidates.append(c)
    values = [0.5 * c @ Hm @ c + g @ c for c in candidates]
    assert 0.5 * x @ Hm @ x + g @ x <= min(values) + 1e-10


def test_rejects_disagreement_costs_and_mismatched_steps() -> None:
    model, cost, _ = _problem()
    with pytest.raises(ValueError, match="steps by"):
        ILQR(ILQRConfig(horizon=H, dt=0.05, compile=False), model, cost, (-1, -1), (1, 1))
    cost.uses_disagreement = True
    with pytest.raises(ValueError, match="disagreement"):
        ILQR(ILQRConfig(horizon=H, dt=DT, compile=False), model, cost, (-1, -1), (1, 1))


def test_a_solve_that_gave_up_does_not_disable_the_next_one() -> None:
    """A regulariser left beyond mu_max by a failed solve is reset: the next call takes a full
    Newton step (one iteration solves an LQ problem) instead of a step shrunk to nothing."""
    model, cost, planner = _problem()
    config = planner.config.model_copy(update={"max_iterations": 1})
    one_step = ILQR(config, model, cost, (-1e3, -1e3), (1e3, 1e3), dtype=torch.float64)
    x0 = torch.tensor([3.0, -2.0, 0.5, 1.0], dtype=torch.float64)
    optimum = planner.plan(x0).cost
    one_step.set_solver_state((1e3 * config.mu_max, 1e3))
    assert one_step.plan(x0).cost == pytest.approx(optimum, rel=1e-9)
