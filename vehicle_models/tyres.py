"""Tyre lateral force from slip angle and normal load: linear, or Pacejka's magic formula.

Both return the lateral force F_y [N] of one axle given its slip angle alpha [rad] and normal
load F_z [N]; the friction coefficient mu [-] and the axle's cornering stiffness C_S [1/rad]
come from the vehicle (``SingleTrackParams``), so one tyre model serves both axles.

- ``linear``:  F_y = mu C_S alpha F_z. CommonRoad's single-track tyre (its C_S is a stiffness
  per unit load and per unit friction, C_S = -p_ky1 / p_dy1). Never saturates.
- ``linear_limited``: the linear tyre up to the friction limit, F_y = clip(mu C_S alpha F_z,
  -mu F_z, mu F_z): linear below the limit, flat at its peak (the controller's dynamic
  nominal; identifiable: C_S from the linear range, mu from where the logs reach the limit).
- ``pacejka``: F_y = D sin(C atan(B alpha - E (B alpha - atan(B alpha)))) F_z with D = mu.
  Slope at zero: B C mu, equal to the linear tyre's mu C_S when B = C_S / C. Peaks at mu F_z.

Each takes an ``ops`` adapter (``vehicle_models.mathops``), torch by default, so the same
formula serves the batched torch model and its CasADi twin.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vehicle_models.mathops import TORCH


class LinearTyre(BaseModel):
    """CommonRoad's linear tyre: force proportional to slip angle, load and friction."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["linear"] = "linear"

    def lateral_force(
        self, slip_angle: Any, normal_load: Any, mu: Any, stiffness: Any, ops: Any = TORCH
    ) -> Any:
        """F_y [N] from slip angle [rad], normal load [N], mu [-] and C_S [1/rad]."""
        return mu * stiffness * normal_load * slip_angle


LINEAR = LinearTyre()


class LimitedLinearTyre(BaseModel):
    """The linear tyre capped at the friction limit |F_y| <= mu F_z."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["linear_limited"] = "linear_limited"

    def lateral_force(
        self, slip_angle: Any, normal_load: Any, mu: Any, stiffness: Any, ops: Any = TORCH
    ) -> Any:
        """F_y [N] from slip angle [rad], normal load [N], mu [-] and C_S [1/rad]."""
        peak = mu * normal_load
        return ops.clip(LINEAR.lateral_force(slip_angle, normal_load, mu, stiffness, ops), -peak, peak)


class PacejkaTyre(BaseModel):
    """Pacejka's magic formula with peak factor D = mu (the vehicle's friction coefficient).

    Defaults: C and E are p_cy1 and p_ey1 of CommonRoad's tyre set for vehicle 2, and
    B = C_S / C = 20.898 / 1.3507, so that at small slip it matches the linear tyre.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["pacejka"] = "pacejka"
    B: float = Field(15.472, gt=0, description="stiffness factor [1/rad]")
    C: float = Field(1.3507, gt=0, lt=2, description="shape factor [-]")
    E: float = Field(-0.0074722, le=1, description="curvature factor [-]")

    def lateral_force(
        self, slip_angle: Any, normal_load: Any, mu: Any, stiffness: Any = None, ops: Any = TORCH
    ) -> Any:
        """F_y [N] from slip angle [rad], normal load [N] and mu [-]; ``stiffness`` is unused
        (the shape comes from B, C, E) and accepted so both tyres are called alike."""
        b_alpha = self.B * slip_angle
        shaped = self.C * ops.atan(b_alpha - self.E * (b_alpha - ops.atan(b_alpha)))
        return mu * normal_load * ops.sin(shaped)

    def cornering_stiffness(self) -> float:
        """The linear tyre's C_S [1/rad] with the same slope at zero slip: B C."""
        return self.B * self.C


TyreModel = Annotated[LinearTyre | LimitedLinearTyre | PacejkaTyre, Field(discriminator="kind")]
