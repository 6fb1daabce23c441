"""What every planner shares: the typed result, the protocol, warm-start shifting."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass(frozen=True)
class PlanResult:
    """A plan and how it was found. Tensors are on the CPU."""

    actions: Tensor  #: (H, nu) the plan; actions[0] is the one to apply now
    states: Tensor  #: (H + 1, nx) predicted states under the plan, states[0] = start
    cost: float  #: total cost of the plan (minimised)
    cost_terms: dict[str, float]  #: each cost term's share of ``cost``
    iterations: int  #: optimiser iterations done in this call
    solve_time_s: float  #: wall time of ``plan``
    planner: str  #: "mppi", "ilqr" or "mppi+ilqr"
    feedback_gains: Tensor | None = None  #: (H, nu, nz) iLQR feedback on (x_t, u_{t-1})
    converged: bool = False  #: the optimiser met its tolerance (iLQR); MPPI never claims it
    deadline_hit: bool = False  #: stopped early to meet the caller's deadline
    diagnostics: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Planner(Protocol):
    """Receding-horizon planner: construct once (buffers allocated), then plan every period."""

    name: str
    horizon: int
    dt: float

    def plan(
        self,
        state: Tensor,
        warm_start: Tensor | None = None,
        last_action: Tensor | None = None,
        deadline: float | None = None,
    ) -> PlanResult:
        """Plan from ``state`` (nx,).

        ``warm_start`` (H, nu): initial guess, usually the previous plan shifted by the time
        since it was made (``shift_plan``); None starts from rest. ``last_action`` (nu,): the
        action being applied now (the rate cost measures changes from it). ``deadline``: a
        ``time.perf_counter()`` value; planners stop iterating when it is near and return
        their best plan so far (``deadline_hit``).
        """
        ...

    def prepare(self) -> None:
        """Work that needs no state (noise for the next call); call it after replying."""
        ...


def shift_plan(actions: Tensor, dt: float, elapsed: float) -> Tensor:
    """The plan as seen ``elapsed`` seconds later: sampled at t*dt + elapsed, last held.

    Linear interpolation between steps; a negative or zero ``elapsed`` returns a copy.
    """
    horizon = actions.shape[0]
    if elapsed <= 0:
        return actions.clone()
    t = torch.arange(horizon, dtype=torch.float64) + elapsed / dt
    lo = t.floor().clamp(max=horizon - 1).long()
    hi = (lo + 1).clamp(max=horizon - 1)
    frac = (t - t.floor()).clamp(0, 1).to(actions.dtype).unsqueeze(-1)
    frac = torch.where((lo == horizon - 1).unsqueeze(-1), torch.zeros_like(frac), frac)
    return actions[lo] * (1 - frac) + actions[hi] * frac


def time_left(deadline: float | None) -> float:
    """Seconds until ``deadline`` (a perf_counter value); +inf without one."""
    return math.inf if deadline is None else deadline - time.perf_counter()


def resolve_device(device: str) -> torch.device:
    """"auto" picks CUDA when present; asking for CUDA where there is none is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was configured but no CUDA device is available")
    return resolved
