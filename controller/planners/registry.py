"""Planner configs (one discriminated union on ``kind``) and the factory."""

from __future__ import annotations

from typing import Annotated, Callable, Union

import torch
from pydantic import Field

from controller.costs import Cost
from controller.planners.base import Planner
from controller.planners.combined import CombinedConfig, MPPIThenILQR
from controller.planners.ilqr import ILQR, ILQRConfig
from controller.planners.mppi import MPPI, MPPIConfig
from vehicle_models.dynamics import Dynamics
from vehicle_models.params import BicycleParams

PlannerConfig = Annotated[Union[MPPIConfig, ILQRConfig, CombinedConfig], Field(discriminator="kind")]


def _mppi(config: MPPIConfig, model: Dynamics, cost: Cost, p: BicycleParams, dtype: torch.dtype) -> MPPI:
    return MPPI(config, model, cost, p.action_low, p.action_high, dtype)


def _ilqr(config: ILQRConfig, model: Dynamics, cost: Cost, p: BicycleParams, dtype: torch.dtype) -> ILQR:
    return ILQR(config, model, cost, p.action_low, p.action_high, dtype)


def _combined(
    config: CombinedConfig, model: Dynamics, cost: Cost, p: BicycleParams, dtype: torch.dtype
) -> MPPIThenILQR:
    return MPPIThenILQR(_mppi(config.mppi, model, cost, p, dtype), _ilqr(config.ilqr, model, cost, p, dtype))


PLANNERS: dict[str, Callable[..., Planner]] = {"mppi": _mppi, "ilqr": _ilqr, "mppi+ilqr": _combined}


def build_planner(
    config: MPPIConfig | ILQRConfig | CombinedConfig,
    model: Dynamics,
    cost: Cost,
    params: BicycleParams,
    dtype: torch.dtype = torch.float32,
) -> Planner:
    """The planner ``config.kind`` names, over ``model`` and ``cost``, within ``params``' limits."""
    return PLANNERS[config.kind](config, model, cost, params, dtype)

