"""The kernel's view of one planning problem: model, track, cost and limits in one C struct.

``NativeProblem`` is built once per planner (and again when the model is reloaded): it copies
the tables and weights into contiguous float32 tensors it owns, fills the ``Problem`` struct of
``rollout.c`` with their addresses, and offers the kernel's entry points on torch tensors.
``supports`` says whether a model and cost can run natively at all.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any, Literal

import torch
from torch import Tensor

from controller.costs import TrackCost
from controller.native.codegen import (
    ACTION_TERMS,
    COST_CONSTANTS,
    LINEAR_TERMS,
    MAX_VEHICLE_PARAMS,
    NOMINAL_STATE_DIMS,
    STATE_TERMS,
    default_nominal,
    nominal_params,
    vehicle_terms,
)
from vehicle_models.dynamic_nominal import KinematicDynamicState, SingleTrackNominal
from vehicle_models.kinematic import KinematicBicycle
from vehicle_models.semi_parametric import SemiParametricModel

log = logging.getLogger(__name__)

#: A planner's ``backend`` setting: the kernel, torch, or the kernel where it can run.
Backend = Literal["auto", "native", "torch"]

MAX_LAYERS, MAX_WIDTH, MAX_FEATURES, MAX_OUTPUTS, MAX_MEMBERS = 6, 256, 16, 8, 16
NU = 2
#: The nominal models the kernel runs (exact types), by the name codegen generates them under:
#: the kinematic bicycle, the same bicycle on the 7-field dynamic state (yaw_rate and slip
#: carried), and the single-track model with friction-limited linear tyres.
NATIVE_NOMINALS = {KinematicBicycle: "kinematic", KinematicDynamicState: "kinematic_dynamic_state",
                   SingleTrackNominal: "single_track"}
#: Output units the kernel's dense layers compute together (COLUMN_BLOCK in rollout.c).
COLUMN_BLOCK = 8
#: Samples per block of the kernel's blocked layouts (LANES in rollout.c).
LANES = 16
#: Order of the kernel's term kinds by TrackCost term name: the generated state, action and linear
#: terms (codegen.STATE_TERMS, ACTION_TERMS, LINEAR_TERMS, from costs.STATE_RESIDUALS,
#: ACTION_RESIDUALS, LINEAR_RESIDUALS), then the enum that follows them in rollout.c.
TERM_KINDS = (*STATE_TERMS, *ACTION_TERMS, *LINEAR_TERMS, "disagreement")
ACTIVATIONS = {"silu": 0, "relu": 1, "tanh": 2}

_f = ctypes.c_float
_i = ctypes.c_int32
_fp = ctypes.POINTER(ctypes.c_float)
_ip = ctypes.POINTER(ctypes.c_int32)


class Problem(ctypes.Structure):
    _fields_ = [
        ("dt", _f), ("vehicle", _f * MAX_VEHICLE_PARAMS),
        ("low", _f * NU), ("high", _f * NU),
        ("num_layers", _i), ("members", _i), ("activation", _i),
        ("widths", _i * (MAX_LAYERS + 1)), ("num_outputs", _i),
        ("input_source", _i * MAX_FEATURES),
        ("output_field", _i * MAX_OUTPUTS),
        ("inv_output_scale", _f * MAX_OUTPUTS),
        ("weights", _fp * MAX_LAYERS), ("biases", _fp * MAX_LAYERS),
        ("cell_segments", _ip), ("segments", _fp), ("speed_table", _fp),
        ("width_left_table", _fp), ("width_right_table", _fp),
        ("num_points", _i), ("grid_nx", _i), ("grid_ny", _i),
        ("origin_x", _f), ("origin_y", _f), ("inv_cell", _f), ("length", _f), ("inv_length", _f),
        ("inv_spacing", _f),
        ("branch_penalty", _f),
        ("term_slot", _i * len(TERM_KINDS)), ("num_terms", _i),
        ("state_w", _f * len(STATE_TERMS)), ("cost_const", _f * len(COST_CONSTANTS)),
        ("needs_vehicle_features", _i), ("linear_w", _f * len(LINEAR_TERMS)), ("w_disagreement", _f),
        ("action_w", _f * (len(ACTION_TERMS) * NU)), ("inv_action_scale", _f * NU),
        ("half_width", _f), ("terminal_weight", _f),
        ("num_threads", _i),
    ]


def declare(lib: ctypes.CDLL, nx: int, nominal: str | None = None) -> None:
    """Argument types of the kernel's entry points; checks the struct layout matches and the
    kernel was built for ``nx`` state fields and the nominal model (default the kinematic one
    of that size): ``Problem.vehicle`` holds that nominal's parameters."""
    P = ctypes.POINTER(Problem)
    lib.vmpc_problem_size.restype = ctypes.c_int
    lib.vmpc_lanes.restype = ctypes.c_int
    lib.vmpc_nx.restype = ctypes.c_int
    lib.vmpc_nominal.restype = ctypes.c_char_p
    lib.vmpc_rollout.argtypes = [P, ctypes.c_int, ctypes.c_int] + [ctypes.c_void_p] * 8
    lib.vmpc_rollout.restype = ctypes.c_int
    lib.vmpc_mppi_iteration.argtypes = (
        [P, ctypes.c_int, ctypes.c_int] + [ctypes.c_void_p] * 4 + [ctypes.c_float] + [ctypes.c_void_p] * 6
    )
    lib.vmpc_mppi_iteration.restype = ctypes.c_int
    lib.vmpc_policy_rollout.argtypes = [P, ctypes.c_int, ctypes.c_int] + [ctypes.c_void_p] * 11
    lib.vmpc_policy_rollout.restype = ctypes.c_int
    lib.vmpc_linearize.argtypes = [P, ctypes.c_int] + [ctypes.c_void_p] * 4
    lib.vmpc_linearize.restype = ctypes.c_int
    lib.vmpc_quadratize.argtypes = [P, ctypes.c_int] + [ctypes.c_void_p] * 8
    lib.vmpc_quadratize.restype = ctypes.c_int
    lib.vmpc_residual.argtypes = [P, ctypes.c_int] + [ctypes.c_void_p] * 3
    lib.vmpc_residual.restype = ctypes.c_int
    lib.vmpc_num_fields.restype = ctypes.c_int
    lib.vmpc_field.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)] + [ctypes.POINTER(_i)] * 2 + [
        ctypes.POINTER(ctypes.c_char)
    ]
    lib.vmpc_field.restype = ctypes.c_int
    from controller.native.build import NativeUnavailable

    if lib.vmpc_lanes() != LANES:
        raise NativeUnavailable(f"kernel blocks {lib.vmpc_lanes()} samples, Python {LANES}")
    if lib.vmpc_nx() != nx:
        raise NativeUnavailable(f"kernel built for {lib.vmpc_nx()} state fields, asked for {nx}")
    built_for, wanted = lib.vmpc_nominal().decode(), nominal or default_nominal(nx)
    if built_for != wanted:
        raise NativeUnavailable(f"kernel built for the nominal {built_for!r}, asked for {wanted!r}")
    mismatch = layout_mismatch(kernel_layout(lib), python_layout(Problem))
    if mismatch:
        raise NativeUnavailable(f"the kernel's Problem struct differs from problem.py's: {mismatch}")


#: One struct field: name, byte offset, byte size, element kind ("f" float, "i" int32, "p" pointer).
FieldLayout = tuple[str, int, int, str]


def kernel_layout(lib: ctypes.CDLL) -> list[FieldLayout]:
    """The C struct's fields as the kernel describes them (``vmpc_field``: offsetof, sizeof)."""
    name, offset, size, kind = ctypes.c_char_p(), _i(), _i(), ctypes.c_char()
    fields = []
    for i in range(lib.vmpc_num_fields()):
        lib.vmpc_field(i, ctypes.byref(name), ctypes.byref(offset), ctypes.byref(size), ctypes.byref(kind))
        fields.append((name.value.decode(), offset.value, size.value, kind.value.decode()))
    fields.append(("<sizeof>", 0, lib.vmpc_problem_size(), ""))
    return fields


def _kind(ctype: Any) -> str:
    element = getattr(ctype, "_type_", ctype) if issubclass(ctype, ctypes.Array) else ctype
    if issubclass(element, ctypes._Pointer):
        return "p"
    return {ctypes.c_float: "f", ctypes.c_int32: "i"}.get(element, "?")


def python_layout(struct: type[ctypes.Structure]) -> list[FieldLayout]:
    """The ctypes mirror's fields, in the form of ``kernel_layout``."""
    fields = [
        (name, getattr(struct, name).offset, getattr(struct, name).size, _kind(ctype))
        for name, ctype in struct._fields_
    ]
    fields.append(("<sizeof>", 0, ctypes.sizeof(struct), ""))
    return fields


def layout_mismatch(kernel: list[FieldLayout], python: list[FieldLayout]) -> str | None:
    """The first difference between two layouts (name, offset, size, kind), or None."""
    for k, p in zip(kernel, python):
        if k != p:
            return f"kernel field {k} against Python's {p}"
    if len(kernel) != len(python):
        return f"the kernel lists {len(kernel) - 1} fields, Python {len(python) - 1}"
    return None


def kernel_variant(model: Any) -> tuple[int, str, int]:
    """The kernel a model ``supports`` accepts runs on: (state size, nominal's name, RK4
    sub-steps per step -- 1 but for the single-track nominal)."""
    nominal = model.nominal if type(model) is SemiParametricModel else model
    name = NATIVE_NOMINALS[type(nominal)]
    return NOMINAL_STATE_DIMS[name], name, getattr(nominal, "substeps", 1)


def state_dim(model: Any) -> int:
    """The state size of a model ``supports`` accepts."""
    return kernel_variant(model)[0]


def supports(model: Any, cost: Any) -> str | None:
    """None if the kernel can run ``model`` with ``cost``, else the reason it cannot.

    Exact types, not isinstance: a subclass may change an equation the kernel does not know.
    Every cost term must be one the kernel computes; one it lacks would drop out of the total.
    """
    nominal = model.nominal if type(model) is SemiParametricModel else model
    if type(nominal) not in NATIVE_NOMINALS:
        return (
            f"model {type(model).__name__} with nominal {type(nominal).__name__} is not a nominal the "
            f"kernel runs ({', '.join(NATIVE_NOMINALS.values())}) or a semi-parametric model on one"
        )
    nx = NOMINAL_STATE_DIMS[NATIVE_NOMINALS[type(nominal)]]
    if nominal.state_dim != nx:
        return f"{nominal.state_dim} state fields (the kernel runs this nominal on {nx})"
    if getattr(nominal, "integrator", "exact") != "exact":
        return f"kinematic integrator {nominal.integrator!r} (the kernel has the exact scheme)"
    if type(cost) is not TrackCost:
        return f"cost {type(cost).__name__} is not a TrackCost"
    unknown = [name for name in cost.term_names if name not in TERM_KINDS]
    if unknown:
        return f"cost terms {unknown} (the kernel computes {list(TERM_KINDS)})"
    if cost.dtype != torch.float32 or cost.device.type != "cpu":
        return "cost tables are not float32 on the CPU"
    if type(model) is SemiParametricModel:
        fw = model.fused
        if len(fw.weights) > MAX_LAYERS:
            return f"residual has {len(fw.weights)} layers (kernel: at most {MAX_LAYERS})"
        if max(-(-w.shape[-1] // COLUMN_BLOCK) * COLUMN_BLOCK for w in fw.weights[:-1]) > MAX_WIDTH:
            return f"residual layers wider than {MAX_WIDTH}"
        if fw.weights[0].shape[0] > MAX_MEMBERS:
            return f"ensemble of more than {MAX_MEMBERS} members"
        if len(model.output_fields) > MAX_OUTPUTS or fw.weights[0].shape[1] > MAX_FEATURES:
            return "too many residual inputs or outputs"
        if model.residual.config.activation not in ACTIVATIONS:
            return f"activation {model.residual.config.activation!r}"
        if any(int(f) >= nx for f in (*model.input_fields, *model.output_fields)):
            return f"residual reads or corrects a state field the {nx}-field kernel does not have"
    return None


def native_problem_for(
    planner: str,
    backend: Backend,
    model: Any,
    cost: Any,
    low: Tensor,
    high: Tensor,
    num_threads: int,
    unsupported: str | None = None,
) -> "NativeProblem | None":
    """The kernel's problem for a planner configured with ``backend`` ("auto", "native" or
    "torch"), or None where the torch path runs. ``unsupported`` is the planner's own reason
    the kernel cannot serve it (device, dtype), if any. "native" that cannot run is an error;
    "auto" falls back with a log line saying why."""
    if backend == "torch":
        return None
    reason = unsupported or supports(model, cost)
    if reason is None:
        from controller.native.build import NativeUnavailable

        try:
            return NativeProblem(model, cost, low, high, num_threads)
        except NativeUnavailable as e:
            reason = str(e)
    if backend == "native":
        raise ValueError(f"{planner} backend 'native' cannot run here: {reason}")
    # A warning: with no logging configured (a library user, the benchmark) it still reaches
    # stderr, and the demo echoes it from daemon.log to its console.
    log.warning("%s on the torch backend: the native kernel cannot run here (%s)", planner, reason)
    return None


def num_blocks(num_samples: int) -> int:
    return -(-num_samples // LANES)


def to_blocked(per_sample: Tensor) -> Tensor:
    """(H, K, nu) -> the kernel's blocked (ceil(K / LANES), H, nu, LANES), zero-padded."""
    H, K, nu = per_sample.shape
    B = num_blocks(K)
    padded = per_sample.new_zeros(H, B * LANES, nu)
    padded[:, :K] = per_sample
    return padded.reshape(H, B, LANES, nu).permute(1, 0, 3, 2).contiguous()


def from_blocked(blocked: Tensor, num_samples: int) -> Tensor:
    """The kernel's blocked (B, H, nu, LANES) -> (H, K, nu)."""
    B, H, nu, _ = blocked.shape
    return blocked.permute(1, 0, 3, 2).reshape(H, B * LANES, nu)[:, :num_samples]


def _f32(t: Tensor) -> Tensor:
    return t.detach().to(device="cpu", dtype=torch.float32).contiguous()


def _arg(name: str, t: Tensor | None, *shape: int, optional: bool = False) -> int | None:
    """The address of ``t`` for the kernel, after checking it is what the kernel reads or
    writes there: a float32, C-contiguous CPU tensor of exactly ``shape``. A float64 or
    strided tensor would otherwise be read as garbage, and a short one overrun."""
    if t is None:
        if optional:
            return None
        raise ValueError(f"native kernel: {name} is required")
    if not isinstance(t, Tensor):
        raise TypeError(f"native kernel: {name} must be a torch tensor, not {type(t).__name__}")
    if t.dtype != torch.float32 or t.device.type != "cpu":
        raise ValueError(f"native kernel: {name} must be float32 on the CPU, got {t.dtype} on {t.device}")
    if not t.is_contiguous():
        raise ValueError(f"native kernel: {name} must be contiguous")
    if tuple(t.shape) != shape:
        raise ValueError(f"native kernel: {name} has shape {tuple(t.shape)}, expected {shape}")
    return t.data_ptr()


class NativeProblem:
    """One model + cost + action box, ready for the kernel; owns every array it points to."""

    def __init__(self, model: Any, cost: TrackCost, low: Tensor, high: Tensor, num_threads: int):
        reason = supports(model, cost)
        if reason:
            raise ValueError(f"the native kernel cannot run this problem: {reason}")
        from controller.native.build import load

        self.nx, nominal, substeps = kernel_variant(model)
        self.lib = load(nx=self.nx, nominal=nominal, substeps=substeps)
        self.term_names = cost.term_names
        self.num_terms = len(cost.term_names)
        p = Problem()
        self._keep: list[Tensor] = []
        self._fill_model(p, model)
        self._fill_track_and_cost(p, cost)
        p.low[:] = [float(v) for v in low]
        p.high[:] = [float(v) for v in high]
        p.num_threads = max(1, int(num_threads))
        self.struct = p
        self._ref = ctypes.byref(p)

    def _own(self, t: Tensor) -> Tensor:
        t = _f32(t)
        self._keep.append(t)
        return t

    def _fill_model(self, p: Problem, model: Any) -> None:
        nominal = model.nominal if type(model) is SemiParametricModel else model
        p.dt = nominal.dt
        # The order the generated equations read them in (codegen.VEHICLE_PARAMS, SINGLE_TRACK_PARAMS).
        names = nominal_params(NATIVE_NOMINALS[type(nominal)])
        p.vehicle[: len(names)] = [
            float(getattr(nominal, name) if name == "kinematic_below" else getattr(nominal.params, name))
            for name in names
        ]
        p.num_layers = 0
        if type(model) is not SemiParametricModel:
            return
        fw = model.fused
        n_out = len(model.output_fields)
        layers = len(fw.weights)
        p.num_layers, p.members = layers, fw.weights[0].shape[0]
        p.activation = ACTIVATIONS[model.residual.config.activation]
        p.num_outputs = n_out
        sources = [int(f) for f in model.input_fields] + [self.nx + a for a in range(NU)]
        p.input_source[: len(sources)] = sources
        p.output_field[:n_out] = [int(f) for f in model.output_fields]
        p.inv_output_scale[:n_out] = (1.0 / fw.output_scale.double()).tolist()
        # Every layer's width padded with zero units to the kernel's column block: a padded
        # unit has zero input weights, and zero outgoing weights in the next layer.
        fan_in = fw.weights[0].shape[1]
        p.widths[0] = fan_in
        for i, (w, b) in enumerate(zip(fw.weights, fw.biases)):
            real_out = n_out if i == layers - 1 else w.shape[-1]  # drop the torch path's padding
            width = -(-real_out // COLUMN_BLOCK) * COLUMN_BLOCK
            padded_w = w.new_zeros(w.shape[0], fan_in, width)
            padded_w[:, : w.shape[1], :real_out] = w[..., :real_out]
            padded_b = b.new_zeros(b.shape[0], width)
            padded_b[:, :real_out] = b.reshape(b.shape[0], -1)[:, :real_out]
            wt, bt = self._own(padded_w), self._own(padded_b)
            p.weights[i] = ctypes.cast(wt.data_ptr(), _fp)
            p.biases[i] = ctypes.cast(bt.data_ptr(), _fp)
            p.widths[i + 1] = width
            fan_in = width

    def _fill_track_and_cost(self, p: Problem, cost: TrackCost) -> None:
        lookup = cost.lookup
        cells = lookup.cell_segments.to(torch.int32).contiguous()
        self._keep.append(cells)
        segments = self._own(lookup.table)
        p.cell_segments = ctypes.cast(cells.data_ptr(), _ip)
        p.segments = ctypes.cast(segments.data_ptr(), _fp)
        p.speed_table = ctypes.cast(self._own(cost.speed_table).data_ptr(), _fp)
        p.width_left_table = ctypes.cast(self._own(cost.width_left_table).data_ptr(), _fp)
        p.width_right_table = ctypes.cast(self._own(cost.width_right_table).data_ptr(), _fp)
        p.num_points, p.grid_nx, p.grid_ny = lookup.num_points, lookup.nx, lookup.ny
        p.origin_x, p.origin_y, p.inv_cell = lookup.origin_x, lookup.origin_y, lookup.inv_cell
        p.length, p.inv_length, p.inv_spacing = lookup.length, 1.0 / lookup.length, 1.0 / lookup.spacing
        p.branch_penalty = lookup.branch_penalty
        slots = {name: i for i, name in enumerate(cost.term_names)}
        p.term_slot[:] = [slots.get(name, -1) for name in TERM_KINDS]
        p.num_terms = len(cost.term_names)
        w = cost.config.weights
        p.state_w[:] = [float(getattr(w, name)) for name in STATE_TERMS]
        p.cost_const[:] = [float(getattr(cost.constants, name)) for name in COST_CONSTANTS]
        p.needs_vehicle_features = int(any(name in cost.term_names for name in vehicle_terms()))
        p.linear_w[:] = [float(getattr(w, name)) for name in LINEAR_TERMS]
        p.w_disagreement = w.disagreement
        p.action_w[:] = [float(v) for name in ACTION_TERMS for v in getattr(w, name)]
        p.inv_action_scale[:] = (1.0 / cost.action_scale.double()).tolist()
        p.half_width, p.terminal_weight = cost.half_width, cost.config.terminal_weight

    # -- entry points on tensors (all float32, contiguous, CPU) ---------------------------------
    def rollout(
        self,
        x0: Tensor,
        base: Tensor,
        perturb: Tensor | None,
        last_action: Tensor,
        num_samples: int,
        samples: Tensor | None = None,
        states: Tensor | None = None,
        costs: Tensor | None = None,
        terms: Tensor | None = None,
    ) -> None:
        """Rollouts of clamp(base (H, nu) + perturb) into the given outputs.

        ``perturb`` and ``samples`` are blocked (``to_blocked``); states (H + 1, K, nx),
        costs (K,), terms (n_terms, K).
        """
        nx = self.nx
        H, K, B, T = base.shape[0], num_samples, num_blocks(num_samples), self.num_terms
        rc = self.lib.vmpc_rollout(
            self._ref, H, K, _arg("x0", x0, nx), _arg("base", base, H, NU),
            _arg("perturb", perturb, B, H, NU, LANES, optional=True), _arg("last_action", last_action, NU),
            _arg("samples", samples, B, H, NU, LANES, optional=True),
            _arg("states", states, H + 1, K, nx, optional=True), _arg("costs", costs, K),
            _arg("terms", terms, T, K, optional=True),
        )
        if rc != 0:
            raise ValueError(f"native rollout refused H={H}, K={K}")

    def mppi_iteration(
        self,
        x0: Tensor,
        nominal: Tensor,
        noise: Tensor,
        num_samples: int,
        last_action: Tensor,
        temperature: float,
        samples: Tensor,
        costs: Tensor,
        plan: Tensor,
        plan_states: Tensor,
        plan_terms: Tensor,
        stats: Tensor,
    ) -> bool:
        """One MPPI iteration into the given buffers; False when no sample had a finite cost.

        ``noise`` and ``samples`` blocked (B, H, nu, LANES); ``costs`` (B * LANES,).
        """
        nx = self.nx
        H, K, B = noise.shape[1], num_samples, num_blocks(num_samples)
        rc = self.lib.vmpc_mppi_iteration(
            self._ref, H, K, _arg("x0", x0, nx), _arg("nominal", nominal, H, NU),
            _arg("noise", noise, B, H, NU, LANES), _arg("last_action", last_action, NU),
            float(temperature), _arg("samples", samples, B, H, NU, LANES), _arg("costs", costs, B * LANES),
            _arg("plan", plan, H, NU), _arg("plan_states", plan_states, H + 1, nx),
            _arg("plan_terms", plan_terms, self.num_terms), _arg("stats", stats, 3),
        )
        if rc < 0:
            raise ValueError(f"native MPPI iteration refused H={H}, K={K}")
        return rc == 0

    def policy_rollout(
        self,
        x0: Tensor,
        states_bar: Tensor,
        actions_bar: Tensor,
        k: Tensor,
        K: Tensor,
        alphas: Tensor,
        last_action: Tensor,
        states: Tensor,
        actions: Tensor,
        costs: Tensor,
        terms: Tensor,
    ) -> None:
        """iLQR's closed-loop rollouts, one per step length: states (H + 1, A, nx), actions
        blocked (1, H, nu, LANES), costs (A,), terms (n_terms, A)."""
        nx = self.nx
        H, A = actions_bar.shape[0], alphas.shape[0]
        rc = self.lib.vmpc_policy_rollout(
            self._ref, H, A, _arg("x0", x0, nx), _arg("states_bar", states_bar, H + 1, nx),
            _arg("actions_bar", actions_bar, H, NU), _arg("k", k, H, NU), _arg("K", K, H, NU, nx + NU),
            _arg("alphas", alphas, A), _arg("last_action", last_action, NU),
            _arg("states", states, H + 1, A, nx), _arg("actions", actions, 1, H, NU, LANES),
            _arg("costs", costs, A), _arg("terms", terms, self.num_terms, A),
        )
        if rc != 0:
            raise ValueError(f"native policy rollout refused H={H} with {A} step lengths")

    def linearize(self, states: Tensor, actions: Tensor, A: Tensor, B: Tensor) -> None:
        """Jacobians of the model's step at states (H, nx), actions (H, nu) into A, B."""
        nx = self.nx
        H = actions.shape[0]
        if self.lib.vmpc_linearize(
            self._ref, H, _arg("states", states, H, nx), _arg("actions", actions, H, NU),
            _arg("A", A, H, nx, nx), _arg("B", B, H, nx, NU),
        ):
            raise ValueError("native linearize refused the trajectory")

    def residual(self, features: Tensor, rates: Tensor, disagreement: Tensor | None = None) -> None:
        """The residual network alone: features (N, n_in) -> mean rates (N, n_out) and the
        ensemble's disagreement (N,) if given."""
        N, n_in, n_out = features.shape[0], self.struct.widths[0], self.struct.num_outputs
        if self.lib.vmpc_residual(
            self._ref, N, _arg("features", features, N, n_in), _arg("rates", rates, N, n_out),
            _arg("disagreement", disagreement, N, optional=True),
        ):
            raise ValueError("native residual refused: no residual network, or no points")

    def quadratize(self, states: Tensor, actions: Tensor, last_action: Tensor, out: tuple[Tensor, ...]) -> None:
        """The cost's Gauss-Newton derivatives (``TrackCost.quadratize``) into ``out``
        = (l_z, l_u, l_zz, l_uu, l_uz)."""
        nx = self.nx
        H, NZ = actions.shape[0], nx + NU
        if len(out) != 5:
            raise ValueError("native quadratize: out is (l_z, l_u, l_zz, l_uu, l_uz)")
        shapes = {"l_z": (H + 1, NZ), "l_u": (H, NU), "l_zz": (H + 1, NZ, NZ), "l_uu": (H, NU, NU),
                  "l_uz": (H, NU, NZ)}
        rc = self.lib.vmpc_quadratize(
            self._ref, H, _arg("states", states, H + 1, nx), _arg("actions", actions, H, NU),
            _arg("last_action", last_action, NU),
            *(_arg(name, t, *shape) for (name, shape), t in zip(shapes.items(), out)),
        )
        if rc != 0:
            raise ValueError("native quadratize refused the trajectory")
