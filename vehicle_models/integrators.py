"""Integrators that turn continuous dynamics ``f(x, u) -> x_dot`` into a discrete step."""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")
Derivative = Callable[[T, T], T]


def euler(f: Derivative, x: T, u: T, dt: float) -> T:
    """Explicit Euler: first order, one evaluation of ``f``."""
    return x + dt * f(x, u)


def rk4(f: Derivative, x: T, u: T, dt: float) -> T:
    """Classic fourth-order Runge-Kutta with ``u`` held over the step."""
    k1 = f(x, u)
    k2 = f(x + (0.5 * dt) * k1, u)
    k3 = f(x + (0.5 * dt) * k2, u)
    k4 = f(x + dt * k3, u)
    return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
