"""Tyre lateral force: linear in slip angle, or Pacejka's magic formula.

Both give the force per unit of normal load, F_y / F_z, as a function of the slip angle alpha
[rad]; the single-track model multiplies by the axle's load.

- linear: F_y / F_z = mu * C_S * alpha (CommonRoad's single-track tyre, C_S [1/rad]).
- Pacejka: F_y / F_z = D sin(C atan(B alpha - E (B alpha - atan(B alpha)))), D = mu; its
  slope at zero, B C D, plays the role of mu * C_S. It saturates, which the linear one does not.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class LinearTyre(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["linear"] = "linear"

    def force_per_load(self, alpha: float, mu: float, stiffness: float) -> float:
        return mu * stiffness * alpha


class PacejkaTyre(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["pacejka"] = "pacejka"
    B: float = Field(15.0, gt=0, description="stiffness factor [1/rad]")
    C: float = Field(1.35, gt=0, description="shape factor [-]")
    E: float = Field(-0.0075, le=1, description="curvature factor [-]")

    def force_per_load(self, alpha: float, mu: float, stiffness: float) -> float:
        b = self.B * alpha
        return mu * math.sin(self.C * math.atan(b - self.E * (b - math.atan(b))))


TyreModel = Annotated[Union[LinearTyre, PacejkaTyre], Field(discriminator="kind")]
