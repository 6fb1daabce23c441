"""Angle helpers shared by models, costs and tools."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, TypeVar

import numpy as np
import torch

from vehicle_models.mathops import TORCH

T = TypeVar("T", torch.Tensor, np.ndarray, float)

_NUMPY = SimpleNamespace(floor=np.floor)


def wrap_angle_with(ops: Any, angle: Any) -> Any:
    """Wrap to [-pi, pi) with any ``mathops`` adapter (the kernel's C is generated from this)."""
    return angle - 2.0 * math.pi * ops.floor((angle + math.pi) * (0.5 / math.pi))


def wrap_angle(angle: T) -> T:
    """Wrap to [-pi, pi) (works on tensors, arrays and floats)."""
    if isinstance(angle, torch.Tensor):
        return wrap_angle_with(TORCH, angle)
    return wrap_angle_with(_NUMPY, np.asarray(angle))
