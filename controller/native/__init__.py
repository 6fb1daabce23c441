"""The planners' native (C) hot path: fused rollouts and costs, built per machine.

``build`` compiles and loads ``rollout.c``; ``problem`` describes a model, track and cost to it
and calls its entry points on torch tensors.
"""

from controller.native.build import NativeUnavailable
from controller.native.problem import NativeProblem, supports

__all__ = ["NativeProblem", "NativeUnavailable", "supports"]
