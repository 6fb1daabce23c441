"""Loss of control: detect it from the reported state, and command a documented recovery.

A sliding or spinning car is a physical state, not bad input: the daemon answers it, with an
action meant to get the car back, instead of asking the planner (whose kinematic model
knows nothing of a car travelling sideways).

**Detection** (``loss_of_control``), from what the car reports, at speeds above ``min_speed``:

- side slip: |slip| > ``slip_enter`` (the car is travelling at an angle to its heading);
- yaw rate against the prediction: |yaw_rate - v tan(steer) / L| > ``yaw_rate_enter``
  (the car rotates faster or slower than its steering asks: oversteer or understeer).

Either field may be absent (NaN: not measured); that test is then skipped.

**Recovery** (``recovery_action``): brake straight and hold the wheel: steering rate 0 and
accel = -``brake`` (the controlled stop with its own deceleration). Braking takes the drive
torque off the rear axle, which is what stepped out; holding the wheel stops the planner from
steering into the slide with a model that cannot predict it.

**Exit**: planning resumes once |slip| < ``slip_exit`` and the yaw-rate error is below
``yaw_rate_exit`` for ``exit_steps`` consecutive steps, or once the car has slowed below
``min_speed``. Each step in recovery is reported with status ``stop`` and a reason starting
with ``recovery:``; the daemon counts recoveries (entries) in ``stats`` as ``recoveries``
and logs each entry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from controller.traction import TractionConfig
from vehicle_models.layout import State
from vehicle_models.params import BicycleParams

REASON_PREFIX = "recovery:"


class RecoveryConfig(BaseModel):
    """``safety.recovery``: when the car counts as lost, how to get it back."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="detect loss of control and command the recovery")
    slip_enter: float = Field(0.3, gt=0, description="|slip| beyond this is lost [rad]")
    slip_exit: float = Field(0.1, gt=0, description="|slip| below this is back [rad]")
    yaw_rate_enter: float = Field(
        0.6, gt=0, description="|yaw_rate - v tan(steer) / L| beyond this is lost [rad/s]"
    )
    yaw_rate_exit: float = Field(0.2, gt=0, description="and below this is back [rad/s]")
    exit_steps: int = Field(3, ge=1, description="steps back in control before planning resumes")
    min_speed: float = Field(2.0, ge=0, description="below this speed nothing counts as lost [m/s]")
    brake: float = Field(6.0, gt=0, description="deceleration of the recovery [m/s^2]")


class SafetyConfig(BaseModel):
    """``safety``: the traction-aware guard and the loss-of-control recovery."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    traction: TractionConfig = TractionConfig()
    recovery: RecoveryConfig = RecoveryConfig()


def _field(state: Sequence[float], i: int) -> float:
    return float(state[i]) if len(state) > i else math.nan


def yaw_rate_error(state: Sequence[float], params: BicycleParams) -> float:
    """Measured yaw rate minus the kinematic one, v tan(steer) / L [rad/s]; NaN if unmeasured."""
    predicted = _field(state, State.V) * math.tan(_field(state, State.STEER)) / params.wheelbase
    return _field(state, State.YAW_RATE) - predicted


def loss_of_control(
    state: Sequence[float], params: BicycleParams, config: RecoveryConfig
) -> str | None:
    """Why the car counts as lost (a reason for the log), or None when it does not."""
    if not abs(_field(state, State.V)) > config.min_speed:
        return None
    slip = _field(state, State.SLIP)
    if abs(slip) > config.slip_enter:  # False for NaN
        return f"{REASON_PREFIX} |slip| {abs(slip):.2f} rad > {config.slip_enter:.2f}"
    error = yaw_rate_error(state, params)
    if abs(error) > config.yaw_rate_enter:
        return (
            f"{REASON_PREFIX} yaw rate {_field(state, State.YAW_RATE):+.2f} rad/s, "
            f"{error:+.2f} from the steering's"
        )
    return None


def back_in_control(state: Sequence[float], params: BicycleParams, config: RecoveryConfig) -> bool:
    """Slip and yaw-rate error small (an unmeasured one counts as small), or the car slow."""
    if not abs(_field(state, State.V)) > config.min_speed:
        return True
    slip, error = abs(_field(state, State.SLIP)), abs(yaw_rate_error(state, params))
    return not (slip >= config.slip_exit) and not (error >= config.yaw_rate_exit)


def recovery_action(state: Sequence[float], config: RecoveryConfig) -> tuple[float, float]:
    """Hold the wheel, brake at ``config.brake`` (nothing once stopped)."""
    return 0.0, -config.brake if _field(state, State.V) > 0.0 else 0.0


@dataclass
class RecoveryMonitor:
    """Whether the car is in recovery, step to step. ``update`` once per control step."""

    config: RecoveryConfig
    params: BicycleParams
    active: bool = False
    reason: str = ""
    calm_steps: int = 0
    entries: int = 0  #: recoveries started since construction

    def reset(self) -> None:
        self.active, self.reason, self.calm_steps = False, "", 0

    def update(self, state: Sequence[float]) -> str | None:
        """The recovery's reason while the car is (still) lost, None when planning may run."""
        if not self.config.enabled:
            return None
        if not self.active:
            reason = loss_of_control(state, self.params, self.config)
            if reason is None:
                return None
            self.active, self.reason, self.calm_steps = True, reason, 0
            self.entries += 1
            return reason
        self.calm_steps = self.calm_steps + 1 if back_in_control(state, self.params, self.config) else 0
        if self.calm_steps >= self.config.exit_steps:
            self.reset()
            return None
        return self.reason
