"""MPPI then iLQR in the same control step: MPPI's plan warm-starts iLQR.

MPPI explores (it escapes poor local minima and needs no derivatives); iLQR then polishes
the plan and adds feedback gains. The lower-cost plan of the two is returned.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator
from torch import Tensor

from controller.planners.base import PlanResult
from controller.planners.ilqr import ILQR, ILQRConfig
from controller.planners.mppi import MPPI, MPPIConfig


class CombinedConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["mppi+ilqr"] = "mppi+ilqr"
    mppi: MPPIConfig = MPPIConfig()
    ilqr: ILQRConfig = ILQRConfig(max_iterations=2)

    @model_validator(mode="after")
    def _same_grid(self) -> "CombinedConfig":
        if (self.mppi.horizon, self.mppi.dt) != (self.ilqr.horizon, self.ilqr.dt):
            raise ValueError("mppi and ilqr must share horizon and dt")
        return self

    @property
    def horizon(self) -> int:
        return self.mppi.horizon

    @property
    def dt(self) -> float:
        return self.mppi.dt


class MPPIThenILQR:
    name = "mppi+ilqr"

    def __init__(self, mppi: MPPI, ilqr: ILQR):
        self.mppi, self.ilqr = mppi, ilqr
        self.horizon, self.dt = mppi.horizon, mppi.dt

    @property
    def backend(self) -> str:
        """Where the two stages run: "native", "torch", or "native+torch" when they differ."""
        stages = (self.mppi.backend, self.ilqr.backend)
        return stages[0] if stages[0] == stages[1] else "+".join(stages)

    def solver_state(self) -> tuple[float, float]:
        return self.ilqr.solver_state()

    def set_solver_state(self, state: tuple[float, float] | None) -> None:
        self.ilqr.set_solver_state(state)

    def prepare(self) -> None:
        self.mppi.prepare()
        self.ilqr.prepare()

    def plan(
        self,
        state: Tensor,
        warm_start: Tensor | None = None,
        last_action: Tensor | None = None,
        deadline: float | None = None,
    ) -> PlanResult:
        started = time.perf_counter()
        sampled = self.mppi.plan(state, warm_start, last_action, deadline)
        refined = self.ilqr.plan(state, sampled.actions, last_action, deadline)
        best = refined if refined.cost <= sampled.cost else sampled
        return replace(
            best,
            planner=self.name,
            iterations=sampled.iterations + refined.iterations,
            solve_time_s=time.perf_counter() - started,
            feedback_gains=refined.feedback_gains if best is refined else None,
            deadline_hit=sampled.deadline_hit or refined.deadline_hit,
            diagnostics={
                **sampled.diagnostics,
                **refined.diagnostics,
                "mppi_cost": sampled.cost,
                "ilqr_cost": refined.cost,
            },
        )
