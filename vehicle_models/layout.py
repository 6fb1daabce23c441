"""Named state and action layouts (CommonRoad vehicle-model order).

Kernels index tensors as ``x[..., State.V]``; the same names label log columns and plots.
"""

from __future__ import annotations

from enum import IntEnum


class State(IntEnum):
    """State fields. The kinematic model uses the first five, the dynamic model all seven."""

    X = 0  #: position of the reference point, x [m]
    Y = 1  #: position of the reference point, y [m]
    STEER = 2  #: front-wheel steering angle [rad]
    V = 3  #: speed of the reference point [m/s]
    YAW = 4  #: heading [rad]
    YAW_RATE = 5  #: yaw rate [rad/s] (dynamic models only)
    SLIP = 6  #: side-slip angle at the centre of gravity [rad] (dynamic models only)


class Action(IntEnum):
    """Action fields: what the controller commands, held until the next command."""

    STEER_RATE = 0  #: steering-angle rate [rad/s]
    ACCEL = 1  #: longitudinal acceleration [m/s^2]


KINEMATIC_STATE_DIM = 5
DYNAMIC_STATE_DIM = 7
ACTION_DIM = len(Action)
