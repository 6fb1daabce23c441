"""Learned residual: an ensemble of MLPs with input and output normalisation.

All members are evaluated in one batched call (weights stacked on a leading member axis E).
The normalisers live with the weights (saved and loaded together) and are folded into the
first and last layers for inference, so the hot path is three matmuls and two activations.
"""

from __future__ import annotations

import math
import functools
from typing import Any, Callable, Literal, NamedTuple, get_args

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from vehicle_models.mathops import TORCH

# SiLU is smooth (iLQR needs derivatives) and, on this CPU build, about 7x cheaper than tanh.
Activation = Literal["silu", "relu", "tanh"]
#: The activations, in the order the native kernel numbers them (ACT_<NAME>, generated).
ACTIVATIONS: tuple[str, ...] = get_args(Activation)


def activate(ops: Any, name: str, h: Any) -> Any:
    """The hidden layers' activation ``name``, a ``mathops`` primitive of that name: the torch
    path runs torch's, the kernel's C is generated from the CasADi one."""
    return getattr(ops, name)(h)


def _torch_activation(name: str) -> Callable[[Tensor], Tensor]:
    return functools.partial(activate, TORCH, name)


class ResidualConfig(BaseModel):
    """Architecture of the residual network (the fields it reads and corrects are the model's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden: tuple[int, ...] = Field((64, 64), description="hidden layer widths")
    activation: Activation = "silu"
    ensemble_size: int = Field(1, ge=1, description="number of members evaluated together")


class EnsembleOutput(NamedTuple):
    mean: Tensor  #: (..., out) mean prediction over members
    disagreement: Tensor  #: (...,) RMS over outputs of the member std, in normalised units


class FusedWeights(NamedTuple):
    """Inference weights with normalisation folded in; layer i: (E, in_i, out_i), (E, 1, out_i)."""

    weights: tuple[Tensor, ...]
    biases: tuple[Tensor, ...]
    output_scale: Tensor  #: (out,) the output normaliser's std, for disagreement in norm. units


class ResidualEnsemble(nn.Module):
    """E independent MLPs R^in -> R^out with shared input/output normalisers."""

    def __init__(self, in_dim: int, out_dim: int, config: ResidualConfig, seed: int = 0):
        super().__init__()
        self.config = config
        self.in_dim, self.out_dim = in_dim, out_dim
        self.activation = _torch_activation(config.activation)
        sizes = (in_dim, *config.hidden, out_dim)
        gen = torch.Generator().manual_seed(seed)
        E = config.ensemble_size
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            bound = 1.0 / math.sqrt(fan_in)
            w = (torch.rand(E, fan_in, fan_out, generator=gen) * 2 - 1) * bound
            if i == len(sizes) - 2:
                # A fresh residual should barely change the nominal model.
                w = w * 1e-2
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(E, 1, fan_out)))
        self.register_buffer("input_mean", torch.zeros(in_dim))
        self.register_buffer("input_std", torch.ones(in_dim))
        self.register_buffer("output_mean", torch.zeros(out_dim))
        self.register_buffer("output_std", torch.ones(out_dim))

    @property
    def ensemble_size(self) -> int:
        return self.config.ensemble_size

    def set_normalizers(self, features: Tensor, targets: Tensor, min_std: float = 1e-6) -> None:
        """Fit the normalisers to training data (rows = samples)."""
        with torch.no_grad():
            self.input_mean.copy_(features.mean(0))
            self.input_std.copy_(features.std(0).clamp_min(min_std))
            self.output_mean.copy_(targets.mean(0))
            self.output_std.copy_(targets.std(0).clamp_min(min_std))

    def forward_normalized(self, features: Tensor) -> Tensor:
        """Member predictions in normalised output units; features (E, N, in) -> (E, N, out)."""
        h = (features - self.input_mean) / self.input_std
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = self.activation(h)
        return h

    def members(self, features: Tensor) -> Tensor:
        """Every member's prediction in physical units; (..., in) -> (E, ..., out)."""
        batch = features.shape[:-1]
        flat = features.reshape(1, -1, self.in_dim).expand(self.ensemble_size, -1, -1)
        out = self.forward_normalized(flat) * self.output_std + self.output_mean
        return out.reshape(self.ensemble_size, *batch, self.out_dim)

    def fused(self) -> FusedWeights:
        """Weights with the normalisers folded in (detached; rebuild after training)."""
        with torch.no_grad():
            ws = [w.detach().clone() for w in self.weights]
            bs = [b.detach().clone() for b in self.biases]
            inv_std = 1.0 / self.input_std
            # (z - m) / s @ W + b  ==  z @ (W / s) + (b - (m / s) @ W)
            bs[0] = bs[0] - ((self.input_mean * inv_std) @ ws[0]).unsqueeze(1)
            ws[0] = ws[0] * inv_std[:, None]
            # (h @ W + b) * s_out + m_out  ==  h @ (W s_out) + (b s_out + m_out)
            ws[-1] = ws[-1] * self.output_std
            bs[-1] = bs[-1] * self.output_std + self.output_mean
            # A GEMM with 5 output columns is a slow case for MKL (2-3x slower here than 16
            # columns); pad with zero columns, sliced off after the product.
            pad = -self.out_dim % _OUTPUT_COLUMNS_MULTIPLE
            ws[-1] = torch.nn.functional.pad(ws[-1], (0, pad))
            bs[-1] = torch.nn.functional.pad(bs[-1], (0, pad))
        return FusedWeights(tuple(ws), tuple(bs), self.output_std.detach().clone())


_OUTPUT_COLUMNS_MULTIPLE = 16


def fused_forward(fw: FusedWeights, activation: Activation, features: Tensor) -> EnsembleOutput:
    """Ensemble mean and disagreement from fused weights; features (N, in) -> (N, out), (N,).

    The single-member case uses addmm (no member axis), which is what the hot path runs.
    """
    act = _torch_activation(activation)
    last = len(fw.weights) - 1
    if fw.weights[0].shape[0] == 1:
        h = features
        for i, (w, b) in enumerate(zip(fw.weights, fw.biases)):
            h = torch.addmm(b[0], h, w[0])
            if i < last:
                h = act(h)
        h = h[..., : fw.output_scale.shape[0]]
        return EnsembleOutput(h, torch.zeros_like(h[..., 0]))
    E = fw.weights[0].shape[0]
    h = features.unsqueeze(0).expand(E, -1, -1)
    for i, (w, b) in enumerate(zip(fw.weights, fw.biases)):
        h = torch.baddbmm(b, h, w)
        if i < last:
            h = act(h)
    h = h[..., : fw.output_scale.shape[0]]
    mean = h.mean(0)
    spread = (h.std(0, unbiased=False) / fw.output_scale).square().mean(-1).sqrt()
    return EnsembleOutput(mean, spread)


def fused_to(fw: FusedWeights, dtype: torch.dtype, device: torch.device | str) -> FusedWeights:
    """The same fused weights in another dtype or on another device."""
    return FusedWeights(
        tuple(w.to(device=device, dtype=dtype) for w in fw.weights),
        tuple(b.to(device=device, dtype=dtype) for b in fw.biases),
        fw.output_scale.to(device=device, dtype=dtype),
    )
