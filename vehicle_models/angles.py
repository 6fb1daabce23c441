"""Angle helpers shared by models, costs and tools."""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T", torch.Tensor, np.ndarray, float)


def wrap_angle(angle: T) -> T:
    """Wrap to [-pi, pi) (works on tensors, arrays and floats)."""
    if isinstance(angle, torch.Tensor):
        return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi
    return np.mod(np.asarray(angle) + math.pi, 2 * math.pi) - math.pi
