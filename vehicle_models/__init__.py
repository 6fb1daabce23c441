"""Vehicle models: kinematic bicycle, dynamic single-track, learned residual, semi-parametric.

Notation (used by every module of this package; public APIs use the words on the right):

    x   state       [..., nx]   layout ``State``: x [m], y [m], steer [rad], v [m/s], yaw [rad],
                                then yaw_rate [rad/s] and slip [rad] for dynamic models
    u   action      [..., nu]   layout ``Action``: steer_rate [rad/s], accel [m/s^2]
    dt  time step   [s]         an action is held constant over one step (zero-order hold)
    L   wheelbase   [m];  l_r: reference point to rear axle [m]
    f   continuous dynamics  x_dot = f(x, u);   step: x_next = F(x, u) over dt

Every model is a ``Dynamics``: ``step(state, action)`` over any leading batch shape
(MPPI passes (K, nx), iLQR (H, nx) or (nx,)), pure, float32 or float64 as given.
"""

from vehicle_models.bundle import BundleError, ModelBundle, load_bundle, save_bundle
from vehicle_models.dynamics import Dynamics, linearize_autodiff, rollout
from vehicle_models.kinematic import KinematicBicycle
from vehicle_models.layout import ACTION_DIM, Action, State
from vehicle_models.params import BicycleParams, load_params
from vehicle_models.residual import ResidualConfig, ResidualEnsemble
from vehicle_models.semi_parametric import SemiParametricModel

__all__ = [
    "ACTION_DIM",
    "Action",
    "BicycleParams",
    "BundleError",
    "Dynamics",
    "KinematicBicycle",
    "ModelBundle",
    "ResidualConfig",
    "ResidualEnsemble",
    "SemiParametricModel",
    "State",
    "linearize_autodiff",
    "load_bundle",
    "load_params",
    "rollout",
    "save_bundle",
]
