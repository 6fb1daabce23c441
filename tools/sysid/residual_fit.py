"""Training the residual ensemble on what the (refitted) nominal model still misses.

Targets are body-frame correction rates (``SemiParametricModel.training_pairs``). Each member
trains on a bootstrap resample of the training transitions with its own seed; early stopping
keeps the weights of the best validation loss (on the held-out blocks).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from vehicle_models.dynamic_nominal import KinematicDynamicState, SingleTrackNominal
from vehicle_models.kinematic import KinematicBicycle
from vehicle_models.residual import ResidualConfig, ResidualEnsemble
from vehicle_models.semi_parametric import SemiParametricModel, default_fields


@dataclass
class TrainResult:
    residual: ResidualEnsemble
    epochs: int
    best_epoch: int
    train_loss: float
    validation_loss: float


def train_residual(
    nominal: KinematicBicycle | KinematicDynamicState | SingleTrackNominal,
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray, np.ndarray],
    config: ResidualConfig = ResidualConfig(),
    epochs: int = 300,
    patience: int = 25,
    batch_size: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
) -> TrainResult:
    torch.manual_seed(seed)
    inputs, outputs = default_fields(nominal.state_dim)
    residual = ResidualEnsemble(len(inputs) + nominal.action_dim, len(outputs), config, seed=seed)
    model = SemiParametricModel(nominal, residual, inputs, outputs, dtype=torch.float64)
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    dim = nominal.state_dim
    f_train, y_train = model.training_pairs(*(as_t(a[..., :dim] if i != 1 else a) for i, a in enumerate(train)), nominal.dt)
    f_val, y_val = model.training_pairs(*(as_t(a[..., :dim] if i != 1 else a) for i, a in enumerate(validation)), nominal.dt)
    residual.set_normalizers(f_train.float(), y_train.float())
    residual.float()
    y_mean, y_std = residual.output_mean, residual.output_std
    norm = lambda y: ((y.float() - y_mean) / y_std)  # noqa: E731
    x_tr, t_tr = f_train.float(), norm(y_train)
    x_va, t_va = f_val.float(), norm(y_val)
    gen = torch.Generator().manual_seed(seed)
    E, n = config.ensemble_size, len(x_tr)
    boot = torch.randint(0, n, (E, n), generator=gen) if E > 1 else torch.arange(n).unsqueeze(0)
    opt = torch.optim.Adam(residual.parameters(), lr=lr, weight_decay=1e-5)
    best, best_epoch, best_state, train_loss = float("inf"), 0, copy.deepcopy(residual.state_dict()), float("nan")
    # disable=None: tqdm draws only on a terminal (piped output got one endless \r line)
    bar = tqdm(range(epochs), desc="residual", disable=None if progress else True, leave=False)
    epoch = 0
    for epoch in bar:
        perm = torch.randperm(n, generator=gen)
        residual.train()
        losses = []
        for i in range(0, n, batch_size):
            idx = boot[:, perm[i : i + batch_size]]  # (E, B)
            pred = residual.forward_normalized(x_tr[idx])  # (E, B, out)
            loss = (pred - t_tr[idx]).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        residual.eval()
        with torch.no_grad():
            val = float((residual.forward_normalized(x_va.expand(E, -1, -1)) - t_va).square().mean())
        train_loss = float(np.mean(losses))
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val:.4f}")
        if val < best - 1e-6:
            best, best_epoch, best_state = val, epoch, copy.deepcopy(residual.state_dict())
        elif epoch - best_epoch >= patience:
            break
    residual.load_state_dict(best_state)
    return TrainResult(residual, epoch + 1, best_epoch + 1, train_loss, best)
