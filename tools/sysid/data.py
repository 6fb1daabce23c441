"""From step records to fitting data: runs of consecutive steps, a time split, windows.

A run is a stretch of one session's episode with consecutive ``seq`` and a steady period. Runs are cut
into blocks of ``block_s`` seconds; every ``holdout_every``-th block is held out for
validation, so that training and validation never share a moment of driving (windows never
straddle two blocks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controller.translog import Steps
from sim.closed_loop import SPIN_SLIP_RAD
from vehicle_models.layout import State

STATE_DIM = 5  # the kinematic models use x, y, steer, v, yaw; dynamic-state ones add yaw_rate, slip
#: Most windows a fit or an evaluation uses (about 3 minutes of driving at stride 2 and 20 Hz,
#: more than a single session's refit usually has); beyond, they are spread evenly.
MAX_WINDOWS = 2000
#: Steps whose |slip| is above this are left out of every fit: the car has lost control (what the
#: simulator and the ladder count as a spin). They are the car's data, but far outside where the
#: controller drives, and their large errors dominated a squared loss: a residual trained with
#: two spins in its data predicted a car on a straight, wheel centred, sliding by 0.2 rad within
#: 1 s, and drove off the track.
LOST_CONTROL_SLIP_RAD = SPIN_SLIP_RAD


class DataError(ValueError):
    """Logs that cannot be fitted: empty, too short, or inconsistent."""


@dataclass
class Block:
    states: np.ndarray  #: (n + 1, state_dim)
    actions: np.ndarray  #: (n, 2) applied between states[k] and states[k + 1]
    period: float
    held_out: bool

    @property
    def steps(self) -> int:
        return len(self.actions)


@dataclass
class Windows:
    """Open-loop prediction windows: start states, the actions applied, the states measured."""

    start: np.ndarray  #: (W, state_dim)
    actions: np.ndarray  #: (W, M, 2)
    measured: np.ndarray  #: (W, M, state_dim) states after each action

    def __len__(self) -> int:
        return len(self.start)


def _same_session(steps: Steps) -> np.ndarray:
    """(N-1,) whether each row and the next are of one car (``load_steps`` groups sessions)."""
    if len(steps.session) != len(steps):
        return np.ones(max(len(steps) - 1, 0), dtype=bool)
    return steps.session[1:] == steps.session[:-1]


def control_period(steps: Steps) -> float:
    dt = np.diff(steps.stamp)
    good = (dt > 0) & (np.diff(steps.seq) == 1) & (np.diff(steps.episode) == 0) & _same_session(steps)
    if good.sum() < 10:
        raise DataError(f"only {int(good.sum())} consecutive steps in the logs; need a few seconds of driving")
    return float(np.median(dt[good]))


def in_control(steps: Steps) -> np.ndarray:
    """(N,) bool: the car was under control at the step (|slip| at most LOST_CONTROL_SLIP_RAD,
    or slip not reported)."""
    slip = steps.states[:, State.SLIP]  # Steps hold all seven fields, NaN where not reported
    return ~(np.abs(np.nan_to_num(slip, nan=0.0)) > LOST_CONTROL_SLIP_RAD)


def blocks(
    steps: Steps, block_s: float = 10.0, holdout_every: int = 4, state_dim: int = STATE_DIM
) -> tuple[list[Block], float]:
    """Blocks of ``state_dim`` state fields (5: kinematic; 7: with yaw_rate and slip, which
    the car must then have reported). Steps where the car had lost control (``in_control``) are
    left out; blocks break around them."""
    if len(steps) == 0:
        raise DataError("the logs hold no step records")
    period = control_period(steps)
    states = steps.states[:, :state_dim]
    if state_dim > STATE_DIM and not np.isfinite(states[:, STATE_DIM:]).all():
        missing = int((~np.isfinite(states[:, STATE_DIM:]).all(1)).sum())
        raise DataError(
            f"{missing} of {len(states)} steps lack yaw_rate or slip (the car did not send them): "
            "a dynamic-state model needs both; fit --nominal kinematic"
        )
    if not np.isfinite(states).all() or not np.isfinite(steps.actions).all():
        raise DataError("non-finite states or actions in the logs")
    kept = in_control(steps)
    breaks = (
        (np.diff(steps.episode) != 0)
        | ~_same_session(steps)
        | (np.diff(steps.seq) != 1)
        | (np.abs(np.diff(steps.stamp) - period) > 0.25 * period)
        | (kept[1:] != kept[:-1])
    )
    starts = np.concatenate([[0], np.flatnonzero(breaks) + 1])
    ends = np.concatenate([np.flatnonzero(breaks) + 1, [len(steps)]])
    per_block = max(2, int(round(block_s / period)))
    out: list[Block] = []
    count = 0
    for a, b in zip(starts, ends):
        if not kept[a]:
            continue
        for s in range(a, b - 1, per_block):
            e = min(s + per_block, b - 1)
            if e - s < 2:
                continue
            out.append(Block(states[s : e + 1], steps.actions[s:e], period, held_out=(count % holdout_every == holdout_every - 1)))
            count += 1
    if not any(b.held_out for b in out) or all(b.held_out for b in out):
        raise DataError(f"need at least {holdout_every} blocks of {block_s:.0f} s to hold some out; got {len(out)}")
    return out, period


def windows(
    chosen: list[Block], length: int, stride: int = 1, delay: int = 0, skip: int | None = None,
    max_windows: int | None = None,
) -> Windows:
    """Windows of ``length`` steps; with ``delay`` d the action acting over step k is the one
    sent d periods earlier (an input dead time of d periods), so each window starts at least
    ``skip`` (default d) steps into its block. The same ``skip`` makes windows of different
    delays start at the same moments (compare models with different dead times like with like).

    At most ``max_windows`` (default ``MAX_WINDOWS``), spread evenly over the data: a fleet's
    logs (millions of steps) fit in bounded time and memory; the same moments for every delay.
    """
    skip = delay if skip is None else skip
    if skip < delay:
        raise ValueError("skip must be at least the delay")
    cap = MAX_WINDOWS if max_windows is None else max_windows
    counts = np.array([len(range(skip, b.steps - length + 1, stride)) for b in chosen], dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        raise DataError(f"no window of {length} steps fits in the data")
    picked = np.arange(total) if total <= cap else np.unique(np.linspace(0, total - 1, cap).round().astype(np.int64))
    first = np.concatenate([[0], np.cumsum(counts)])
    block_of = np.searchsorted(first, picked, side="right") - 1
    starts, acts, meas = [], [], []
    for i, k in zip(block_of.tolist(), (picked - first[block_of]).tolist()):
        b, s = chosen[i], skip + k * stride
        starts.append(b.states[s])
        acts.append(b.actions[s - delay : s - delay + length])
        meas.append(b.states[s + 1 : s + length + 1])
    return Windows(np.array(starts), np.array(acts), np.array(meas))


def transitions_of(chosen: list[Block], delay: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(state, acting action, next state); with ``delay`` d the acting action was sent d periods earlier."""
    x = np.concatenate([b.states[delay:-1] for b in chosen])
    u = np.concatenate([b.actions[: b.steps - delay] for b in chosen])
    y = np.concatenate([b.states[delay + 1 :] for b in chosen])
    return x, u, y
