"""The control step as a plain object: state in, guarded action out. No I/O.

``ControlCore.step`` is what the daemon calls once per request: predict through the input
dead time, warm-start from the previous plan shifted by the time that passed, plan within the
solve budget, fall back to the previous plan when planning fails, stop the car after too many
fallbacks in a row, and pass every action through the output guard (limits, steering end
stops, never NaN).

What belongs to one car lives in a ``CarState``: the last plan (the warm start), the last
action, the fallback count and the actions in flight. The planner and its buffers are shared:
several cars (the daemon's sessions) step through one ``ControlCore``, each with its own
``CarState``, and one car's plan never warm-starts another's. ``step`` without a car uses
the core's own (a single car: tests, benchmarks, the simulator's in-process mode).

The planner's state has the model's fields (``state_dim``): 5 for the kinematic models, 7
for a dynamic-state model, which reads the yaw rate and slip the car reports. Those two are
optional on the wire; a car that does not send them gets, for a dynamic-state model, the
kinematic bicycle's steady-state values (``fill_unmeasured``), with a warning once per car.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from controller.delay import DelayCompensator
from controller.planners.base import Planner, PlanResult
from controller.recovery import RecoveryMonitor, SafetyConfig, recovery_action
from controller.traction import TractionConfig, traction_accel_bounds, traction_steer_rate_bounds
from vehicle_models.layout import Action, State
from vehicle_models.params import BicycleParams

log = logging.getLogger(__name__)

OK, FALLBACK, STOP = "ok", "fallback", "stop"


@dataclass(frozen=True, slots=True)
class StepOutcome:
    action: tuple[float, float]  #: steer_rate [rad/s], accel [m/s^2], guarded
    status: str  #: "ok", "fallback" or "stop"
    solve_ms: float  #: time spent in the planner (0 when it was not called)
    deadline_missed: bool  #: the step took longer than the solve budget
    plan: np.ndarray | None  #: (H, 2) the plan the action came from, if any
    cost: float | None
    cost_terms: dict[str, float] = field(default_factory=dict)
    reason: str = ""  #: why a fallback or stop happened
    recovery_started: bool = False  #: this step detected a loss of control (controller.recovery)


def guard_action(
    action: Sequence[float],
    state: Sequence[float],
    params: BicycleParams,
    traction: TractionConfig | None = None,
) -> tuple[float, float]:
    """Clamp to the actuator limits and, with ``traction``, to what the tyres transmit
    (``controller.traction``); no steering past the end stops; NaN becomes zero."""
    rate, accel = float(action[Action.STEER_RATE]), float(action[Action.ACCEL])
    steer, speed = float(state[State.STEER]), float(state[State.V])
    if traction is not None and traction.enabled and math.isfinite(steer) and math.isfinite(speed):
        yaw_rate = float(state[State.YAW_RATE]) if len(state) > State.YAW_RATE else math.nan
        lowest, highest = traction_accel_bounds(speed, steer, params, traction, yaw_rate)
        accel = min(max(accel, lowest), highest)
        lowest, highest = traction_steer_rate_bounds(speed, steer, params, traction)
        rate = min(max(rate, lowest), highest)
    rate = min(max(rate, params.steer_rate_min), params.steer_rate_max) if math.isfinite(rate) else 0.0
    accel = min(max(accel, params.accel_min), params.accel_max) if math.isfinite(accel) else 0.0
    if (steer >= params.steer_max and rate > 0) or (steer <= params.steer_min and rate < 0):
        rate = 0.0
    if (speed <= params.speed_min and accel < 0) or (speed >= params.speed_max and accel > 0):
        accel = 0.0
    return rate, accel


def kinematic_yaw_rate_and_slip(steer: float, speed: float, params: BicycleParams) -> tuple[float, float]:
    """The kinematic bicycle's yaw rate [rad/s] and slip [rad] at its reference point: what a
    dynamic-state model assumes for a car that does not report them."""
    delta = params.steer_gain * steer + params.steer_offset
    tan_delta = math.tan(delta)
    slip = math.atan(params.ref_to_rear / params.wheelbase * tan_delta)
    return speed * math.cos(slip) * tan_delta / params.wheelbase, slip


def fill_unmeasured(x: np.ndarray, params: BicycleParams) -> bool:
    """Put the kinematic estimate into a dynamic state's unmeasured (NaN) yaw_rate and slip,
    in place; True if one was missing. A 5-field state is left alone."""
    if len(x) <= State.SLIP:
        return False
    rate, slip = x[State.YAW_RATE], x[State.SLIP]
    if math.isfinite(rate) and math.isfinite(slip):
        return False
    estimate = kinematic_yaw_rate_and_slip(float(x[State.STEER]), float(x[State.V]), params)
    if not math.isfinite(rate):
        x[State.YAW_RATE] = estimate[0]
    if not math.isfinite(slip):
        x[State.SLIP] = estimate[1]
    return True


def planner_state_dim(planner: Any, default: int) -> int:
    """The number of state fields ``planner``'s model has (a combined planner: its sampler's)."""
    for owner in (planner, getattr(planner, "mppi", None)):
        dim = getattr(getattr(owner, "model", None), "state_dim", None)
        if isinstance(dim, int):
            return dim
    return default


def shift_actions(actions: np.ndarray, dt: float, elapsed: float, out: np.ndarray | None = None) -> np.ndarray:
    """``planners.base.shift_plan`` in numpy: the plan sampled at t*dt + elapsed, last held.

    Linear interpolation between steps; a zero or negative ``elapsed`` returns a copy. Writes
    into ``out`` (same shape) when given.
    """
    horizon = actions.shape[0]
    if out is None:
        out = np.empty_like(actions)
    if elapsed <= 0:
        out[:] = actions
        return out
    # Row i samples at i + s: between rows i + k and i + k + 1 at fraction f, the same k and f
    # for every row; rows at or past the end hold the last action. Slices, no index arrays.
    s = elapsed / dt
    k = math.floor(s)
    f = s - k
    if f > 1.0 - 1e-9:  # a whole number of steps, up to rounding: a plain copy
        k, f = k + 1, 0.0
    inside = max(horizon - 1 - k, 0)
    if inside:
        if f < 1e-9:
            out[:inside] = actions[k : k + inside]
        else:
            np.multiply(actions[k : k + inside], 1.0 - f, out=out[:inside])
            out[:inside] += f * actions[k + 1 : k + 1 + inside]
    out[inside:] = actions[-1]
    return out


@dataclass(eq=False)
class CarState:
    """One car's control state: what ``ControlCore.step`` carries from one request to the next."""

    last: torch.Tensor  #: (nu,) float64, the last action sent (shares memory with last_np)
    last_np: np.ndarray
    delay: DelayCompensator | None  #: this car's actions in flight (its own queue)
    recovery: RecoveryMonitor  #: whether this car is in a loss-of-control recovery
    plan: np.ndarray | None = None  #: (H, nu) float64, the last fresh plan
    plan_stamp: float | None = None
    consecutive_fallbacks: int = 0
    generation: int = 0  #: the core's planner generation this state was brought up to
    solver: Any = None  #: the planner's own carry-over (iLQR's regularisation); None: fresh
    estimated_dynamic_state: bool = False  #: warned that its yaw_rate/slip were estimated

    @classmethod
    def fresh(
        cls, delay: DelayCompensator | None, recovery: RecoveryMonitor, generation: int = 0
    ) -> CarState:
        last = torch.zeros(len(Action), dtype=torch.float64)
        return cls(last, last.numpy(), _own_delay(delay), recovery, generation=generation)

    def reset(self) -> None:
        """New episode: no warm start, no actions in flight, fallback count cleared."""
        self.plan, self.plan_stamp = None, None
        self.last_np[:] = 0.0
        self.consecutive_fallbacks = 0
        self.solver = None
        self.recovery.reset()
        if self.delay is not None:
            self.delay.reset()


def _own_delay(template: DelayCompensator | None) -> DelayCompensator | None:
    """A compensator like ``template`` (same model and dead time) with an empty queue."""
    if template is None:
        return None
    return DelayCompensator(template.model, template.steps * template.control_period, template.control_period)


class ControlCore:
    def __init__(
        self,
        planner: Planner,
        params: BicycleParams,
        control_period: float,
        solve_budget_s: float,
        max_consecutive_fallbacks: int = 5,
        stop_decel: float = 4.0,
        delay: DelayCompensator | None = None,
        state_dim: int = 5,
        safety: SafetyConfig | None = None,
    ):
        self.planner = planner
        self.params = params
        self.control_period = control_period
        self.solve_budget_s = solve_budget_s
        self.max_consecutive_fallbacks = max_consecutive_fallbacks
        self.stop_decel = stop_decel
        self.delay = delay
        self.state_dim = state_dim
        self.safety = safety if safety is not None else SafetyConfig()
        self._carries_state = hasattr(planner, "solver_state")  #: e.g. iLQR's regularisation
        self._generation = 0  #: counts planner swaps; a car older than this is adopted first
        self._allocate()
        self.car = self.new_car()  #: the car ``step`` drives when it is given none

    def new_car(self) -> CarState:
        """A car's state for a new session: no warm start, nothing in flight."""
        recovery = RecoveryMonitor(self.safety.recovery, self.params)
        return CarState.fresh(self.delay, recovery, self._generation)

    def reset(self, car: CarState | None = None) -> None:
        """New episode of ``car`` (default: the core's own); other cars are untouched."""
        (car or self.car).reset()

    @property
    def consecutive_fallbacks(self) -> int:
        """Of the core's own car."""
        return self.car.consecutive_fallbacks

    def _allocate(self) -> None:
        """The planner's inputs, as tensors sharing memory with numpy arrays (written in place)."""
        self._x = torch.zeros(self.state_dim, dtype=torch.float64)
        self._x_np = self._x.numpy()
        self._allocate_warm_start(self.planner.horizon)

    def _allocate_warm_start(self, horizon: int) -> None:
        self._warm = torch.zeros(horizon, len(Action), dtype=torch.float64)
        self._warm_np = self._warm.numpy()

    def replace_planner(self, planner: Planner, delay: DelayCompensator | None = None) -> None:
        """Swap the planner and the delay compensator (a reloaded model) between steps; each
        car's warm start and actions in flight carry over (``_adopt``, at its next step). A
        model with other state fields (5 <-> 7) brings its own state buffer."""
        state_dim = planner_state_dim(planner, self.state_dim)
        if state_dim != self.state_dim:
            self.state_dim = state_dim
            self._x = torch.zeros(self.state_dim, dtype=torch.float64)
            self._x_np = self._x.numpy()
        self.planner = planner
        self.delay = delay
        self._carries_state = hasattr(planner, "solver_state")
        self._generation += 1
        if planner.horizon != self._warm_np.shape[0]:
            self._allocate_warm_start(planner.horizon)
        self._adopt(self.car)

    def _adopt(self, car: CarState) -> None:
        """Bring ``car`` up to the current model: its actions in flight move to a compensator
        of the new model, and a plan of another length is no warm start for this planner."""
        own = _own_delay(self.delay)
        if own is not None and car.delay is not None:
            own.take_in_flight(car.delay)
        car.delay = own
        if car.plan is not None and car.plan.shape[0] != self._warm_np.shape[0]:
            car.plan = None
        car.solver = None  # another planner's carry-over means nothing to this one
        car.generation = self._generation

    def _shifted_plan(self, car: CarState, stamp: float) -> torch.Tensor | None:
        """The car's last plan shifted to ``stamp``, in the warm-start buffer (None: no plan)."""
        if car.plan is None or car.plan_stamp is None:
            return None
        elapsed = min(max(stamp - car.plan_stamp, 0.0), car.plan.shape[0] * self.planner.dt)
        shift_actions(car.plan, self.planner.dt, elapsed, out=self._warm_np)
        return self._warm

    def step(
        self, state: Sequence[float], stamp: float, car: CarState | None = None, budget_s: float | None = None
    ) -> StepOutcome:
        """One control step of ``car`` (default: the core's own) from ``state`` (7 floats,
        CommonRoad order; NaN where unmeasured), planned within ``budget_s`` (default: the
        whole solve budget; the daemon passes a share when several cars are served).

        Around ``planner.plan`` there are only plain floats and a handful of numpy calls on
        buffers allocated once: on a VM a library call made once per control period costs
        10-30 times what it costs in a tight loop (cold caches), so each one counts. The
        planner gets tensors that share memory with those buffers (planners copy their
        inputs; none keeps them).
        """
        started = time.perf_counter()
        car = self.car if car is None else car
        budget_s = self.solve_budget_s if budget_s is None else budget_s
        if car.generation != self._generation:
            self._adopt(car)
        recoveries_before = car.recovery.entries
        lost = car.recovery.update(state)
        if lost is not None:
            return self._recover(car, state, lost, started, budget_s, car.recovery.entries != recoveries_before)
        self._x_np[:] = state[: self.state_dim]
        if self.state_dim > State.YAW_RATE and fill_unmeasured(self._x_np, self.params):
            if not car.estimated_dynamic_state:
                car.estimated_dynamic_state = True
                log.warning("the car sends no yaw_rate/slip: the dynamic-state model gets the "
                            "kinematic estimate (docs/vehicle_models.md)")
        x = self._x
        if car.delay is not None and car.delay.active:
            x = torch.from_numpy(car.delay.predict_array(self._x_np))
        warm = self._shifted_plan(car, stamp)
        result: PlanResult | None = None
        plan: np.ndarray | None = None
        reason = ""
        try:
            if self._carries_state:  # the planner's carry-over is this car's, not the last car's
                self.planner.set_solver_state(car.solver)
            result = self.planner.plan(x, warm, car.last, deadline=started + budget_s)
            if self._carries_state:
                car.solver = self.planner.solver_state()
            # A copy: a planner may reuse the buffer behind result.actions on its next call.
            plan = result.actions.numpy().astype(np.float64)
        except Exception as e:  # a failing planner must not take the daemon down
            log.exception("planner failed")
            reason, result = f"planner failed: {type(e).__name__}: {e}", None
        solve_ms = (time.perf_counter() - started) * 1e3
        # One sum tells finite from not (a sum of actions within any sane limit cannot overflow).
        if plan is not None and not math.isfinite(plan.sum()):
            reason, result, plan = "planner returned non-finite actions", None, None
        if plan is not None:
            status = OK
            car.consecutive_fallbacks = 0
            car.plan, car.plan_stamp = plan, stamp
            first = plan.item(0), plan.item(1)
        else:
            car.consecutive_fallbacks += 1
            if warm is not None and car.consecutive_fallbacks <= self.max_consecutive_fallbacks:
                status, plan = FALLBACK, self._warm_np.copy()
                first = plan.item(0), plan.item(1)
            else:
                status, plan = STOP, None
                reason = reason or "no plan to fall back on"
                first = self._stop_action(state)
        action = guard_action(first, state, self.params, self.safety.traction)
        car.last_np[:] = action
        if car.delay is not None:
            car.delay.record(action)
        total_ms = (time.perf_counter() - started) * 1e3
        return StepOutcome(
            action=action,
            status=status,
            solve_ms=solve_ms,
            deadline_missed=total_ms > budget_s * 1e3,
            plan=plan,
            cost=None if result is None else result.cost,
            cost_terms={} if result is None else result.cost_terms,
            reason=reason,
        )

    def _recover(
        self, car: CarState, state: Sequence[float], reason: str, started: float, budget_s: float, entered: bool
    ) -> StepOutcome:
        """A step of the loss-of-control recovery (controller.recovery): no planning."""
        action = guard_action(recovery_action(state, self.safety.recovery), state, self.params)
        car.last_np[:] = action
        if car.delay is not None:
            car.delay.record(action)
        total_ms = (time.perf_counter() - started) * 1e3
        return StepOutcome(
            action=action, status=STOP, solve_ms=0.0,
            deadline_missed=total_ms > budget_s * 1e3, plan=None, cost=None,
            reason=reason, recovery_started=entered,
        )

    def _stop_action(self, state: Sequence[float]) -> tuple[float, float]:
        """Controlled stop: hold the steering, brake at ``stop_decel`` until standstill."""
        moving = float(state[State.V]) > 0.0
        return 0.0, -self.stop_decel if moving else 0.0

    def after_reply(self) -> None:
        """Work between requests (noise for the next MPPI call)."""
        self.planner.prepare()
