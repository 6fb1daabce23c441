"""Exploration noise for sampling planners: standard normals through a fixed linear filter.

Every sampler draws z ~ N(0, I) of shape (M, K, nu) and returns sigma * (F @ z), shape
(H, K, nu), with a filter F (H, M) fixed at construction:
- ``white``: F = I (M = H), independent steps;
- ``ar1``: F lower-triangular with F[t, s] = sqrt(1 - rho^2) rho^(t - s) (rho^t in column 0,
  so every step has unit variance): time-correlated noise, smooth for rho near 1;
- ``knots``: M knots spread over the horizon, linearly interpolated: smooth noise from a
  quarter or less of the random numbers (drawing them is a visible share of MPPI's time).

``start_scale`` < 1 shrinks the noise of the first steps: its standard deviation grows linearly
from start_scale sigma at t = 0 to sigma at t = ``ramp_steps``. The first action is the one the
car receives, and full noise there makes it the noisiest part of the plan: each call's weighted
mean of a few good samples moves it by about sigma / sqrt(effective samples), a different
way each call (measured on the STD car at 18 m/s, docs/racing.md: 3 acceleration sign flips
per second and 18 % of the steps at the steering-rate limit).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

NoiseKind = Literal["white", "ar1", "knots"]


class NoiseConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: NoiseKind = "knots"
    sigma: tuple[float, float] = Field(
        (0.25, 1.5), description="standard deviation per action: steer_rate [rad/s], accel [m/s^2]"
    )
    correlation: float = Field(0.8, ge=0, lt=1, description="ar1: correlation between steps")
    knots: int = Field(8, ge=2, description="knots: number of knots over the horizon")
    start_scale: float = Field(
        1.0, ge=0, le=1, description="noise at t = 0 as a fraction of sigma (ramps up to sigma)"
    )
    ramp_steps: int = Field(6, ge=1, description="steps over which the noise ramps up to sigma")


def start_ramp(config: NoiseConfig, horizon: int) -> Tensor:
    """(H,) multipliers of the noise's standard deviation per step (float64)."""
    t = torch.arange(horizon, dtype=torch.float64)
    return config.start_scale + (1.0 - config.start_scale) * (t / config.ramp_steps).clamp(max=1.0)


def noise_filter(config: NoiseConfig, horizon: int) -> Tensor:
    """The (H, M) filter matrix of the configured noise (float64)."""
    if config.kind == "white":
        return torch.eye(horizon, dtype=torch.float64)
    if config.kind == "ar1":
        rho = config.correlation
        t = torch.arange(horizon, dtype=torch.float64)
        lag = t[:, None] - t[None, :]
        F = torch.where(lag >= 0, (1 - rho**2) ** 0.5 * rho ** lag.clamp(min=0), 0.0)
        F[:, 0] = rho ** t  # the first innovation carries the stationary variance
        return F
    knots = min(config.knots, horizon)
    position = torch.linspace(0, knots - 1, horizon, dtype=torch.float64)
    lo = position.floor().long().clamp(max=knots - 2)
    frac = position - lo
    F = torch.zeros(horizon, knots, dtype=torch.float64)
    F[torch.arange(horizon), lo] = 1 - frac
    F[torch.arange(horizon), lo + 1] = frac
    return F


class NoiseSampler:
    """Draws noise into a buffer allocated once; sample 0 is always zero noise.

    ``block_lanes=None`` gives the (H, K, nu) layout of the torch path; ``block_lanes=L`` the
    native kernel's blocked layout (ceil(K / L), H, nu, L), sample k = b * L + l, where the
    padding samples past K are drawn too (and never used).
    """

    def __init__(
        self,
        config: NoiseConfig,
        horizon: int,
        num_samples: int,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        block_lanes: int | None = None,
    ):
        self.config = config
        ramp = start_ramp(config, horizon).unsqueeze(-1)
        self.filter = (ramp * noise_filter(config, horizon)).to(device=device, dtype=dtype)
        self.generator = generator
        nu = len(config.sigma)
        sigma = torch.tensor(config.sigma, dtype=dtype, device=device)
        M = self.filter.shape[1]
        self.block_lanes = block_lanes
        if block_lanes is None:
            self._normals = torch.empty(M, num_samples * nu, dtype=dtype, device=device)
            self._noise = torch.empty(horizon, num_samples * nu, dtype=dtype, device=device)
            self.shape: tuple[int, ...] = (horizon, num_samples, nu)
            self.sigma = sigma
        else:
            blocks = -(-num_samples // block_lanes)
            self._normals = torch.empty(blocks, M, nu * block_lanes, dtype=dtype, device=device)
            self._noise = torch.empty(blocks, horizon, nu * block_lanes, dtype=dtype, device=device)
            self.shape = (blocks, horizon, nu, block_lanes)
            self.sigma = sigma.view(nu, 1)

    def draw(self) -> Tensor:
        """Fresh noise in this sampler's layout. The returned tensor is reused by the next ``draw``."""
        torch.randn(self._normals.shape, generator=self.generator, out=self._normals)
        torch.matmul(self.filter, self._normals, out=self._noise)
        noise = self._noise.view(self.shape)
        noise.mul_(self.sigma)
        if self.block_lanes is None:
            noise[:, 0] = 0.0  # sample 0 replays the nominal plan
        else:
            noise[0, :, :, 0] = 0.0
        return noise
