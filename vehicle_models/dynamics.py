"""The batched ``Dynamics`` protocol shared by every model and planner."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.func import jacrev, vmap


@runtime_checkable
class Dynamics(Protocol):
    """A discrete-time model ``x_next = step(x, u)`` over any leading batch shape."""

    state_dim: int
    action_dim: int
    dt: float

    def step(self, state: Tensor, action: Tensor) -> Tensor:
        """Next state after holding ``action`` for ``dt``; shapes (..., nx), (..., nu) -> (..., nx)."""
        ...

    def linearize(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Jacobians (A, B) of ``step`` at each point; shapes (..., nx, nx), (..., nx, nu)."""
        ...


def linearize_autodiff(model: Dynamics, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
    """Jacobians of ``model.step`` by reverse-mode autodiff, vectorised over the batch."""
    batch_shape = state.shape[:-1]
    flat_x = state.reshape(-1, state.shape[-1])
    flat_u = action.reshape(-1, action.shape[-1])
    jac = vmap(jacrev(model.step, argnums=(0, 1)))(flat_x, flat_u)
    A, B = jac
    return (
        A.reshape(*batch_shape, model.state_dim, model.state_dim),
        B.reshape(*batch_shape, model.state_dim, model.action_dim),
    )


def rollout(model: Dynamics, initial_state: Tensor, actions: Tensor) -> Tensor:
    """States visited from ``initial_state`` (..., nx) under ``actions`` (H, ..., nu).

    Returns (H + 1, ..., nx), the initial state first. Written as a plain loop over time so that
    ``torch.compile`` can fuse the whole horizon into a few kernels.
    """
    states = [initial_state]
    x = initial_state
    for t in range(actions.shape[0]):
        x = model.step(x, actions[t])
        states.append(x)
    return torch.stack(states)
