"""torch.compile for the planners' hot functions, with the same code as the eager fallback."""

from __future__ import annotations

from typing import Callable, TypeVar

import torch

F = TypeVar("F", bound=Callable)


def maybe_compile(fn: F, enabled: bool) -> F:
    """``fn`` compiled into fused kernels (whole horizon unrolled) if ``enabled``.

    Shapes are fixed per planner, so ``dynamic=False``; ``fullgraph=True`` turns any
    accidental graph break into an error at warm-up rather than a silent slowdown.
    """
    if not enabled:
        return fn
    return torch.compile(fn, fullgraph=True, dynamic=False)  # type: ignore[return-value]
