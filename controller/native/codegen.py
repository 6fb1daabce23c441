"""The kernel's model equations, generated from their one Python definition.

As acados does with CasADi: the nominal model's step -- the kinematic bicycle's
``kinematic_exact_step`` (``vehicle_models/kinematic.py``) or the single-track model's
``single_track_step`` (``vehicle_models/dynamic_nominal.py``), the functions the torch models
and the CasADi twin evaluate -- is evaluated once more on CasADi symbols, with the vehicle
parameters and dt as symbols too, and the resulting expression graph -- and its exact
Jacobians -- are translated instruction by instruction into C (``float`` arithmetic, one
assignment per instruction). So are the residual network's activations and its world-frame
increment (``vehicle_models/residual.py``, ``semi_parametric.py``), the track projection
(``controller/track/lookup.py``) and the track features with their Jacobian. ``build.py`` writes
the result as ``vmpc_generated.h`` beside ``rollout.c``, which includes it; nothing in the C
source restates the equations. Change the Python function and the next build carries it.

The cost's squared state terms go the same way (``controller/costs.py``): their residuals
(``STATE_RESIDUALS``, constants read from ``Problem.cost_const`` in ``COST_CONSTANTS`` order)
and the vehicle features they read (``vehicle_features``: a_lon, a_lat) on LANES samples for
the rollouts, and at one point their Jacobians -- dr/df w.r.t. the features and the vehicle
features' w.r.t. (x, u) -- for iLQR's Gauss-Newton derivatives, which ``vmpc_quadratize``
multiplies by the track features' Jacobian (the projection's derivative, by hand). The torch
path takes the same Jacobians from CasADi functions of the same definitions
(``TrackCost.residual_jacobian``, ``feature_jacobian``). The squared action terms too
(``ACTION_RESIDUALS``: effort, rate): residuals of (u_t, u_{t-1}) on LANES samples, and their
Jacobians w.r.t. both at one point (``TrackCost.action_residual_jacobian`` on the torch path),
and the linear ones (``LINEAR_RESIDUALS``: progress) of the arc length at the horizon's end.

The step works on LANES samples in a ``#pragma omp simd`` loop of its own (vectorised like the
hand-written lane code it replaced: the same vector libm calls, checked with objdump); the
Jacobian, which iLQR needs at H points, on one point.

The parameter vector's order is ``VEHICLE_PARAMS`` (``BicycleParams``' fields): the generator
reads ``p->vehicle[i]`` and ``problem.py`` fills ``Problem.vehicle`` in the same order, so the
two cannot disagree.
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import casadi as ca

from controller.costs import (
    ACTION_RESIDUALS,
    LINEAR_RESIDUALS,
    STATE_RESIDUALS,
    VEHICLE_FEATURES,
    TRACK_FEATURE_FIELDS,
    TRACK_FEATURES,
    CostConstants,
    Features,
    action_residuals,
    state_residuals,
    track_feature_jacobian,
    track_features,
    vehicle_features,
)
from controller.track.lookup import Projection, Segment, project_on_branches
from vehicle_models.kinematic import kinematic_exact_step
from vehicle_models.layout import ACTION_DIM, DYNAMIC_STATE_DIM, KINEMATIC_STATE_DIM, State
from vehicle_models.mathops import CASADI
from vehicle_models.residual import ACTIVATIONS, activate
from vehicle_models.semi_parametric import residual_increment
from vehicle_models.dynamic_nominal import single_track_step
from vehicle_models.params import BicycleParams
from vehicle_models.single_track import SingleTrackParams

#: Entries of ``Problem.vehicle`` for the kinematic nominals: BicycleParams' fields, in
#: declaration order.
VEHICLE_PARAMS: tuple[str, ...] = tuple(BicycleParams.model_fields)
#: ... for the single-track nominal: SingleTrackParams' numeric fields (its tyre is the
#: friction-limited linear one, written into ``single_track_step``), then the speed below which
#: its step ends kinematic (``SingleTrackNominal.kinematic_below``).
SINGLE_TRACK_PARAMS: tuple[str, ...] = (*(f for f in SingleTrackParams.model_fields if f != "tyre"), "kinematic_below")
#: The nominal models the kernel is generated for (``dynamic_nominal.NOMINALS``), by name: their
#: state size. One shared object per nominal (and, for the single-track one, per number of RK4
#: sub-steps in a step).
NOMINAL_STATE_DIMS: dict[str, int] = {
    "kinematic": KINEMATIC_STATE_DIM, "kinematic_dynamic_state": DYNAMIC_STATE_DIM, "single_track": DYNAMIC_STATE_DIM,
}
#: State sizes the kernel is built for (``-DNX=``): the kinematic bicycle's five fields, and
#: the dynamic state's seven (x, y, steer, v, yaw, yaw_rate, slip).
STATE_DIMS: tuple[int, ...] = tuple(sorted(set(NOMINAL_STATE_DIMS.values())))
#: Room in ``Problem.vehicle`` (a fixed array keeps the struct's layout independent of it).
MAX_VEHICLE_PARAMS = 24
HEADER_NAME = "vmpc_generated.h"
#: Constants the C source needs before its struct (term and feature indices).
TERMS_HEADER_NAME = "vmpc_terms.h"
#: The kernel's squared state terms, in TrackCost's order: the enum T_<NAME>, the weights
#: Problem.state_w and the rows of the terms output all follow it.
STATE_TERMS: tuple[str, ...] = tuple(STATE_RESIDUALS)
#: The kernel's squared action terms, after the state terms (T_<NAME> continues the enum); their
#: weights are Problem.action_w, ACTION_DIM per term in this order.
ACTION_TERMS: tuple[str, ...] = tuple(ACTION_RESIDUALS)
#: The kernel's linear terms (of the arc length at the horizon's end), after the action terms;
#: their weights are Problem.linear_w in this order.
LINEAR_TERMS: tuple[str, ...] = tuple(LINEAR_RESIDUALS)
#: Features the residuals read, in the order of the kernel's feature rows F_<NAME>.
FEATURES: tuple[str, ...] = Features._fields
#: Constants the residuals read, in the order of ``Problem.cost_const`` (C_<NAME>).
COST_CONSTANTS: tuple[str, ...] = CostConstants._fields


class CodegenError(RuntimeError):
    """An equation uses an operation the C translation does not have."""


def _ops() -> dict[int, str]:
    return {getattr(ca, name): name[3:] for name in dir(ca) if name.startswith("OP_")}


# C for each CasADi operation on work variables a, b (floats; comparisons give 1.0f or 0.0f).
# sin goes through cos: a sin and a cos of one argument would fuse into a scalar sincosf,
# which does not vectorise (see sin_via_cos in rollout.c).
_UNARY = {
    "ASSIGN": "{a}", "NEG": "-{a}", "SQ": "{a} * {a}", "TWICE": "2.0f * {a}", "INV": "1.0f / {a}",
    "SIN": "sin_via_cos({a})", "COS": "cosf({a})", "TAN": "tanf({a})", "ATAN": "atanf({a})",
    "SQRT": "sqrtf({a})", "EXP": "expf({a})", "LOG": "logf({a})", "FABS": "fabsf({a})",
    "FLOOR": "floorf({a})", "CEIL": "ceilf({a})", "TANH": "tanhf({a})", "NOT": "({a} == 0.0f ? 1.0f : 0.0f)",
    "SIGN": "({a} > 0.0f ? 1.0f : ({a} < 0.0f ? -1.0f : 0.0f))",
}
_BINARY = {
    "ADD": "{a} + {b}", "SUB": "{a} - {b}", "MUL": "{a} * {b}", "DIV": "{a} / {b}",
    "LT": "({a} < {b} ? 1.0f : 0.0f)", "LE": "({a} <= {b} ? 1.0f : 0.0f)",
    "EQ": "({a} == {b} ? 1.0f : 0.0f)", "NE": "({a} != {b} ? 1.0f : 0.0f)",
    "AND": "({a} != 0.0f && {b} != 0.0f ? 1.0f : 0.0f)", "OR": "({a} != 0.0f || {b} != 0.0f ? 1.0f : 0.0f)",
    "FMIN": "({a} < {b} ? {a} : {b})", "FMAX": "({a} > {b} ? {a} : {b})",
    "IF_ELSE_ZERO": "({a} != 0.0f ? {b} : 0.0f)", "ATAN2": "atan2f({a}, {b})", "POW": "powf({a}, {b})",
    "CONSTPOW": "powf({a}, {b})", "FMOD": "fmodf({a}, {b})", "COPYSIGN": "copysignf({a}, {b})",
}


def _float(value: float) -> str:
    if not math.isfinite(value):
        raise CodegenError(f"non-finite constant {value} in an equation")
    return f"{value!r}f"


def c_function(
    name: str,
    fn: ca.Function,
    inputs: list[str],
    outputs: list[str],
    lanes: bool = False,
    arrays: tuple[tuple[str, str], ...] = (("x", "NX"), ("u", "NU")),
    extra_params: tuple[str, ...] = (),
    problem: bool = True,
    unary: dict[str, str] | None = None,
) -> str:
    """``fn`` as a static inline C function ``void name(const Problem *p, x, u, outputs...)``.

    ``inputs[i]`` is C for entry ``{}`` of input i (e.g. ``"x[{}]"``, ``"p->vehicle[{}]"``);
    ``outputs[i]`` the name of a float array argument receiving output i densely, row-major.
    With ``lanes`` the function works on LANES points at once -- x (NX, LANES), u (NU, LANES),
    outputs (n, LANES) -- in a ``#pragma omp simd`` loop of its own: called point by point
    from inside such a loop, the point's arrays went through memory and GCC did not vectorise.
    ``extra_params`` are further C parameters the inputs' C reads (e.g. per-lane indices);
    without ``problem`` the function takes no ``Problem``; ``unary`` replaces the C of some
    unary operations (e.g. ``EXP`` by an inlined exp that vectorises without a libm call).
    """
    ops = _ops()
    unary_c = {**_UNARY, **(unary or {})}
    lane = "[l]" if lanes else ""
    inputs = [i + lane if any(i.startswith(f"{a}[") for a, _ in arrays) else i for i in inputs]
    lines = []
    for i, out in enumerate(outputs):
        sp = fn.sparsity_out(i)
        if sp.nnz() < sp.numel():  # structural zeros are not written by the instructions
            if lanes:
                raise CodegenError(f"{name}: sparse outputs need the point-wise form")
            lines.append(f"    for (int i = 0; i < {sp.numel()}; i++) {out}[i] = 0.0f;")
    rows = [fn.sparsity_out(i).row() for i in range(len(outputs))]
    cols = [fn.sparsity_out(i).get_col() for i in range(len(outputs))]
    for k in range(fn.n_instructions()):
        op = ops.get(fn.instruction_id(k), str(fn.instruction_id(k)))
        args, res = fn.instruction_input(k), fn.instruction_output(k)
        if op == "INPUT":
            lines.append(f"    w{res[0]} = {inputs[args[0]].format(args[1])};")
        elif op == "OUTPUT":
            o, nz = res
            index = rows[o][nz] * fn.size2_out(o) + cols[o][nz]
            lines.append(f"    {outputs[o]}[{index}]{lane} = w{args[0]};")
        elif op == "CONST":
            lines.append(f"    w{res[0]} = {_float(fn.instruction_constant(k))};")
        elif op in unary_c:
            lines.append(f"    w{res[0]} = {unary_c[op].format(a=f'w{args[0]}')};")
        elif op in _BINARY:
            lines.append(f"    w{res[0]} = {_BINARY[op].format(a=f'w{args[0]}', b=f'w{args[1]}')};")
        else:
            raise CodegenError(f"{name}: CasADi operation {op} has no C translation")
    work = ", ".join(f"w{i}" for i in range(fn.sz_w()))
    first = ["const Problem *restrict p"] if problem else []
    if lanes:
        params = ", ".join(
            [*first, *(f"const float {a}[{n}][LANES]" for a, n in arrays), *extra_params]
            + [f"float {out}[][LANES]" for out in outputs]
        )
        body = ["#pragma omp simd", "    for (int l = 0; l < LANES; l++) {", f"    float {work};",
                *lines, "    }"]
        return "\n".join([f"static inline void {name}({params}) {{", *body, "}"])
    params = ", ".join(
        [*first, *(f"const float *restrict {a}" for a, _ in arrays), *extra_params]
        + [f"float *restrict {out}" for out in outputs]
    )
    return "\n".join([f"static inline void {name}({params}) {{", f"    float {work};", *lines, "}"])


def _check_nx(nx: int) -> None:
    if nx not in STATE_DIMS:
        raise CodegenError(f"no kernel for {nx} state fields (built for {STATE_DIMS})")


def nominal_params(nominal: str) -> tuple[str, ...]:
    """The entries of ``Problem.vehicle`` the nominal's generated step reads, in order."""
    return SINGLE_TRACK_PARAMS if nominal == "single_track" else VEHICLE_PARAMS


def default_nominal(nx: int) -> str:
    """The kinematic nominal of a state size (5: the bicycle; 7: the bicycle, yaw_rate and slip
    carried)."""
    _check_nx(nx)
    return "kinematic" if nx == KINEMATIC_STATE_DIM else "kinematic_dynamic_state"


def _model_symbols(
    nx: int, names: tuple[str, ...] = VEHICLE_PARAMS
) -> tuple[ca.SX, ca.SX, ca.SX, ca.SX, SimpleNamespace]:
    _check_nx(nx)
    x = ca.SX.sym("x", nx)
    u = ca.SX.sym("u", ACTION_DIM)
    theta = ca.SX.sym("vehicle", len(names))
    dt = ca.SX.sym("dt")
    return x, u, theta, dt, SimpleNamespace(**{n: theta[i] for i, n in enumerate(names)})


#: C for each input of the generated functions: state, action, vehicle parameters, dt.
_INPUTS = ["x[{}]", "u[{}]", "p->vehicle[{}]", "p->dt"]
#: ... and of the action terms: the action, the one before it, 1 / the action scale.
_ACTION_INPUTS = ["u[{}]", "prev[{}]", "p->inv_action_scale[{}]"]


def _enum_from(first: str, names: tuple[str, ...]) -> str:
    """Enumerators T_<NAME> of ``names``, numbered on from the constant ``first``."""
    return ", ".join(f"T_{n.upper()}" + (f" = {first}" if i == 0 else "") for i, n in enumerate(names))


def terms_header() -> str:
    """The enums of the state terms and track features (included before the struct)."""
    terms = ", ".join(f"T_{n.upper()}" for n in STATE_TERMS)
    action_terms = _enum_from("N_STATE_TERMS", ACTION_TERMS)
    linear_terms = _enum_from("END_ACTION_TERMS", LINEAR_TERMS)
    features = ", ".join(f"F_{n.upper()}" for n in FEATURES)
    constants = ", ".join(f"C_{n.upper()}" for n in COST_CONSTANTS)
    first = FEATURES.index(VEHICLE_FEATURES[0])
    if FEATURES[first : first + len(VEHICLE_FEATURES)] != VEHICLE_FEATURES:
        raise CodegenError("the vehicle features must be consecutive rows of Features")
    return "\n".join(
        [
            "/* Generated by controller/native/codegen.py from controller/costs.py (STATE_RESIDUALS,"
            " ACTION_RESIDUALS, LINEAR_RESIDUALS). */",
            f"enum {{ {terms}, N_STATE_TERMS }};",
            f"enum {{ {action_terms}, END_ACTION_TERMS }};",
            "#define N_ACTION_TERMS (END_ACTION_TERMS - N_STATE_TERMS)",
            f"enum {{ {linear_terms}, END_LINEAR_TERMS }};",
            "#define N_LINEAR_TERMS (END_LINEAR_TERMS - END_ACTION_TERMS)",
            f"enum {{ {features}, N_FEATURES }};",
            f"enum {{ {constants}, N_COST_CONSTANTS }};",
            f"#define F_VEHICLE F_{VEHICLE_FEATURES[0].upper()} /* first of the N_VEHICLE_FEATURES rows"
            " vehicle_features writes */",
            f"#define N_VEHICLE_FEATURES {len(VEHICLE_FEATURES)}",
            f"#define N_TRACK_FEATURES {len(TRACK_FEATURES)} /* the first rows, F_S .. */",
            "/* The state fields the track features depend on: the columns of track_feature_jacobian. */",
            f"#define N_TRACK_FEATURE_FIELDS {len(TRACK_FEATURE_FIELDS)}",
            "static const int TRACK_FEATURE_FIELD[N_TRACK_FEATURE_FIELDS] = {"
            + ", ".join(str(int(f)) for f in TRACK_FEATURE_FIELDS) + "};",
            "/* Columns of the per-segment table (controller/track/lookup.py, Segment) and the rows of a"
            " projection (Projection). */",
            f"enum {{ {', '.join(f'COL_{n.upper()}' for n in Segment._fields)}, NCOL }};",
            f"enum {{ {', '.join(f'P_{n.upper()}' for n in Projection._fields)}, N_PROJECTION }};",
            "/* The residual network's activations (vehicle_models/residual.py, ACTIVATIONS). */",
            f"enum {{ {', '.join(f'ACT_{n.upper()}' for n in ACTIVATIONS)} }};",
            "",
        ]
    )


def _residual_symbols() -> tuple[ca.SX, ca.SX, ca.SX]:
    f = ca.SX.sym("f", len(FEATURES))
    c = ca.SX.sym("c", len(COST_CONSTANTS))
    features = Features(*(f[i] for i in range(len(FEATURES))))
    constants = CostConstants(*(c[i] for i in range(len(COST_CONSTANTS))))
    return f, c, state_residuals(CASADI, STATE_TERMS, features, constants)


def _action_residuals() -> tuple[ca.Function, ca.Function]:
    """The action terms' residuals of (u, prev) and, at one point, with their Jacobians."""
    u, prev = ca.SX.sym("u", ACTION_DIM), ca.SX.sym("prev", ACTION_DIM)
    inv_scale = ca.SX.sym("inv_scale", ACTION_DIM)
    r = action_residuals(CASADI, ACTION_TERMS, u, prev, inv_scale)
    return (ca.Function("action_residuals", [u, prev, inv_scale], [r]),
            ca.Function("action_residual_jacobian", [u, prev, inv_scale],
                        [r, ca.jacobian(r, u), ca.jacobian(r, prev)]))


def _linear_residuals() -> tuple[ca.Function, ca.Function]:
    """The linear terms' residuals of s = (s_end, s_start) and, at one point, with dr/ds_end."""
    s, length = ca.SX.sym("s", 2), ca.SX.sym("length")
    r = ca.vertcat(*(LINEAR_RESIDUALS[name](CASADI, s[0], s[1], length) for name in LINEAR_TERMS))
    return (ca.Function("linear_residuals", [s, length], [r]),
            ca.Function("linear_residual_jacobian", [s, length], [r, ca.jacobian(r, s[0])]))


def _state_residuals() -> ca.Function:
    f, c, r = _residual_symbols()
    return ca.Function("state_residuals", [f, c], [r])


def _state_residual_jacobian() -> ca.Function:
    f, c, r = _residual_symbols()
    return ca.Function("state_residual_jacobian", [f, c], [r, ca.jacobian(r, f)])


def _projection(nx: int) -> ca.Function:
    """The projection of a state onto the better of two segments (``project_on_branches``)."""
    x = ca.SX.sym("x", nx)
    a, b = (ca.SX.sym(name, len(Segment._fields)) for name in ("a", "b"))
    penalty, length = ca.SX.sym("branch_penalty"), ca.SX.sym("length")
    proj = project_on_branches(CASADI, x[State.X], x[State.Y], x[State.YAW], Segment(*ca.vertsplit(a)),
                               Segment(*ca.vertsplit(b)), penalty, length)
    return ca.Function("project_on_branches", [x, a, b, penalty, length], [ca.vertcat(*proj)])


def _residual_increment(nx: int) -> tuple[ca.Function, ca.Function]:
    """The residual's increment of a state from its correction rates per field, and (at one
    point) its Jacobians w.r.t. the state and the rates."""
    x, rates, dt = ca.SX.sym("x", nx), ca.SX.sym("r", nx), ca.SX.sym("dt")
    increment = ca.vertcat(*residual_increment(CASADI, x[State.YAW], ca.vertsplit(rates), dt))
    return (ca.Function("residual_increment", [x, rates, dt], [increment]),
            ca.Function("residual_increment_jacobian", [x, rates, dt],
                        [ca.jacobian(increment, x), ca.jacobian(increment, rates)]))


def _track_features(nx: int) -> tuple[ca.Function, ca.Function]:
    """The track features of a state from its projection, and (at one point, from the
    projection and the slopes of the speed and width tables) their Jacobian w.r.t. the
    state fields ``TRACK_FEATURE_FIELDS``."""
    x, pr = ca.SX.sym("x", nx), ca.SX.sym("pr", len(Projection._fields))
    speed_ref, half_width, slopes = ca.SX.sym("speed_ref"), ca.SX.sym("half_width"), ca.SX.sym("slope", 3)
    proj = Projection(*ca.vertsplit(pr))
    f = track_features(CASADI, x[State.YAW], x[State.V], proj, speed_ref, half_width)
    rows = track_feature_jacobian(CASADI, proj, *ca.vertsplit(slopes))
    return (ca.Function("track_features", [x, pr, speed_ref, half_width], [ca.vertcat(*f)]),
            ca.Function("track_feature_jacobian", [pr, slopes], [ca.vertcat(*(ca.horzcat(*r) for r in rows))]))


#: C of the primitives inside the activations: exp inlined (exp_inline in rollout.c: a call to
#: the vector libm in the dense layers' loop spilled every live register), tanh through it.
_ACTIVATION_UNARY = {"EXP": "exp_inline({a})", "TANH": "(1.0f - 2.0f / (exp_inline(2.0f * {a}) + 1.0f))"}


def activations_c() -> str:
    """Each activation of ``vehicle_models/residual.py`` (``ACTIVATIONS``, the ``mathops``
    primitives the torch path runs) and its slope, on LANES values in place, generated from
    the CasADi primitive; ``activate_lanes`` and ``activation_slope_lanes`` dispatch on the
    kind (ACT_<NAME>, in ``ACTIVATIONS`` order)."""
    h = ca.SX.sym("h")
    parts, act_cases, slope_cases = [], [], []
    for name in ACTIVATIONS:
        y = activate(CASADI, name, h)
        for kind, expr in (("activate", y), ("activation_slope", ca.gradient(y, h))):
            fn = ca.Function(f"{kind}_{name}", [h], [expr])
            parts.append(c_function(f"{kind}_{name}", fn, ["h[{}]"], ["out"], lanes=True, arrays=(("h", "1"),),
                                    problem=False, unary=_ACTIVATION_UNARY))
        act_cases.append(f"    case ACT_{name.upper()}: activate_{name}(row, row); break;")
        slope_cases.append(f"    case ACT_{name.upper()}: activation_slope_{name}(in, out); break;")
    return "\n\n".join([
        *parts,
        "/* v (LANES) <- act(v) for activation kind. */",
        "static inline void activate_lanes(float *v, int kind) {\n    float(*row)[LANES] = (float(*)[LANES])v;\n"
        "    switch (kind) {\n" + "\n".join(act_cases) + "\n    }\n}",
        "/* slope (LANES) <- act'(h) for activation kind. */",
        "static inline void activation_slope_lanes(const float *h, float *slope, int kind) {\n"
        "    const float(*in)[LANES] = (const float(*)[LANES])h;\n    float(*out)[LANES] = (float(*)[LANES])slope;\n"
        "    switch (kind) {\n" + "\n".join(slope_cases) + "\n    }\n}",
    ])


@functools.lru_cache(maxsize=1)
def vehicle_terms() -> tuple[str, ...]:
    """The state terms whose residual reads a vehicle feature (the kernel computes those
    features only when one of them is on)."""
    f, _, r = _residual_symbols()
    rows = [FEATURES.index(n) for n in VEHICLE_FEATURES]
    return tuple(
        name for i, name in enumerate(STATE_TERMS) if any(ca.depends_on(r[i], f[j]) for j in rows)
    )


def _vehicle_features(nx: int) -> tuple[ca.SX, ca.SX, ca.SX, ca.SX]:
    x, u, theta, _, p = _model_symbols(nx)
    return x, u, theta, ca.vertcat(*vehicle_features(CASADI, p, x, u, nx))


def nominal_step(
    p: SimpleNamespace, x: ca.SX, u: ca.SX, dt: ca.SX, nominal: str = "kinematic", substeps: int = 1
) -> ca.SX:
    """The kernel's nominal step. The kinematic ones on ``x`` of 5 or 7 fields:
    ``kinematic_exact_step`` on the pose (it reads the first five fields), the fields past them
    carried -- the equations of ``KinematicBicycle`` and ``KinematicDynamicState``. The
    single-track one: ``single_track_step``, ``substeps`` RK4 sub-steps, the equations of
    ``SingleTrackNominal`` (tests/controller/test_native.py holds the generated steps to each)."""
    if nominal == "single_track":
        return ca.vertcat(*single_track_step(CASADI, p, ca.vertsplit(x), ca.vertsplit(u), dt, substeps,
                                             p.kinematic_below))
    pose = kinematic_exact_step(CASADI, p, x, u, dt)
    return ca.vertcat(pose, x[KINEMATIC_STATE_DIM:]) if x.numel() > KINEMATIC_STATE_DIM else pose


@functools.lru_cache(maxsize=None)
def generated_header(nx: int = KINEMATIC_STATE_DIM, nominal: str | None = None, substeps: int = 1) -> str:
    """C of every generated equation for an ``nx``-field state and a nominal model (default
    the kinematic one of that size; ``substeps``: the single-track one's RK4 sub-steps per
    step): ``nominal_step``, ``nominal_jacobian``, ``state_residuals``, ``state_residual_jacobian``,
    ``action_residuals``, ``action_residual_jacobian``, ``linear_residuals``,
    ``linear_residual_jacobian``, ``vehicle_features`` and ``vehicle_feature_jacobian`` (a_lat from the yaw_rate field
    when the state carries one: ``costs.lateral_accel``)."""
    nominal = nominal or default_nominal(nx)
    if NOMINAL_STATE_DIMS.get(nominal) != nx:
        raise CodegenError(f"no kernel for the nominal {nominal!r} on {nx} state fields")
    names = nominal_params(nominal)
    if len(names) > MAX_VEHICLE_PARAMS:
        raise CodegenError(f"{len(names)} vehicle parameters, room for {MAX_VEHICLE_PARAMS}")
    x, u, theta, dt, p = _model_symbols(nx, names)
    x_next = nominal_step(p, x, u, dt, nominal, substeps)
    step = ca.Function("nominal_step", [x, u, theta, dt], [x_next])
    jacobian = ca.Function(
        "nominal_jacobian", [x, u, theta, dt], [ca.jacobian(x_next, x), ca.jacobian(x_next, u)]
    )
    vx, vu, vtheta, vf = _vehicle_features(nx)
    action_step, action_jacobian = _action_residuals()
    linear_step, linear_jacobian = _linear_residuals()
    features_step, features_jacobian = _track_features(nx)
    increment_step, increment_jacobian = _residual_increment(nx)
    segment = "p->segments[{} * NCOL + {{}}]"
    return "\n\n".join(
        [
            "/* Generated by controller/native/codegen.py from the Python definitions named at each"
            " function. Do not edit. */",
            f"#define GENERATED_NX {nx} /* the state size these equations are for */",
            f"#define GENERATED_NOMINAL \"{nominal}\" /* the nominal model (vehicle_models/dynamic_nominal.py,"
            " NOMINALS) */",
            "/* x (NX, LANES) -> x_next (NX, LANES): one step of the nominal model"
            + (f" (single_track_step, {substeps} RK4 sub-steps). */" if nominal == "single_track" else
               " (kinematic_exact_step on the pose, fields past the fifth carried). */"),
            c_function("nominal_step", step, _INPUTS, ["x_next"], lanes=True),
            "/* Its Jacobians: A (NX, NX) = d x_next / d x, B (NX, NU) = d x_next / d u, row-major. */",
            c_function("nominal_jacobian", jacobian, _INPUTS, ["A", "B"]),
            "/* x (NX, LANES) and, per lane, the segment of each branch its grid cell names -> the projection"
            " pr (N_PROJECTION, LANES) onto the better fitting one (controller/track/lookup.py,"
            " project_on_branches). */",
            c_function("project_on_branches", _projection(nx),
                       ["x[{}]", segment.format("seg_a[l]"), segment.format("seg_b[l]"), "p->branch_penalty",
                        "p->length"], ["pr"], lanes=True, arrays=(("x", "NX"),),
                       extra_params=("const int seg_a[LANES]", "const int seg_b[LANES]")),
            "/* x (NX, LANES), its projection pr and the speed reference there -> the track features"
            " (N_TRACK_FEATURES, LANES), the first rows of f (controller/costs.py, track_features). */",
            c_function("track_features", features_step, ["x[{}]", "pr[{}]", "speed_ref[{}]", "p->half_width"],
                       ["f"], lanes=True, arrays=(("x", "NX"), ("pr", "N_PROJECTION"), ("speed_ref", "1"))),
            "/* At one point: from the projection pr (N_PROJECTION) and the slopes along s of the speed,"
            " left and right width tables, J (N_TRACK_FEATURES, N_TRACK_FEATURE_FIELDS) = d(track"
            " features)/d(state fields TRACK_FEATURE_FIELD), row-major (track_feature_jacobian). */",
            c_function("track_feature_jacobian", features_jacobian, ["pr[{}]", "slope[{}]"], ["J"],
                       arrays=(("pr", "N_PROJECTION"), ("slope", "3"))),
            "/* x (NX, LANES) and the residual's correction rates r (NX, LANES: one per state field, zero where"
            " it corrects none) -> the increment of x over dt (NX, LANES), world frame"
            " (vehicle_models/semi_parametric.py, residual_increment). */",
            c_function("residual_increment", increment_step, ["x[{}]", "r[{}]", "p->dt"], ["out"], lanes=True,
                       arrays=(("x", "NX"), ("r", "NX"))),
            "/* At one point: its Jacobians Jx (NX, NX) w.r.t. x and Jr (NX, NX) w.r.t. r, row-major. */",
            c_function("residual_increment_jacobian", increment_jacobian, ["x[{}]", "r[{}]", "p->dt"],
                       ["Jx", "Jr"], arrays=(("x", "NX"), ("r", "NX"))),
            "/* The residual network's activations and their slopes, in place on LANES values"
            " (vehicle_models/residual.py, activate). */",
            activations_c(),
            "/* Track features f (N_FEATURES, LANES) -> the state terms' residuals r (N_STATE_TERMS, LANES)"
            " (controller/costs.py, STATE_RESIDUALS). */",
            c_function("state_residuals", _state_residuals(), ["f[{}]", "p->cost_const[{}]"], ["r"],
                       lanes=True, arrays=(("f", "N_FEATURES"),)),
            "/* At one point: the residuals r (N_STATE_TERMS) and their Jacobian Jr (N_STATE_TERMS,"
            " N_FEATURES) w.r.t. the features, row-major (iLQR's Gauss-Newton derivatives). */",
            c_function("state_residual_jacobian", _state_residual_jacobian(), ["f[{}]", "p->cost_const[{}]"],
                       ["r", "Jr"], arrays=(("f", "N_FEATURES"),)),
            "/* u_t, u_{t-1} (NU, LANES) -> the action terms' residuals r (N_ACTION_TERMS * NU, LANES), NU rows"
            " per term (controller/costs.py, ACTION_RESIDUALS). */",
            c_function("action_residuals", action_step, _ACTION_INPUTS, ["r"], lanes=True,
                       arrays=(("u", "NU"), ("prev", "NU"))),
            "/* At one point: r (N_ACTION_TERMS * NU) and its Jacobians Ju, Jprev (N_ACTION_TERMS * NU, NU)"
            " w.r.t. u_t and u_{t-1}, row-major. */",
            c_function("action_residual_jacobian", action_jacobian, _ACTION_INPUTS, ["r", "Ju", "Jprev"],
                       arrays=(("u", "NU"), ("prev", "NU"))),
            "/* s (2, LANES): the arc length at the horizon's end and at the start -> the linear terms'"
            " residuals r (N_LINEAR_TERMS, LANES) (controller/costs.py, LINEAR_RESIDUALS). */",
            c_function("linear_residuals", linear_step, ["s[{}]", "p->length"], ["r"], lanes=True,
                       arrays=(("s", "2"),)),
            "/* At one point: r (N_LINEAR_TERMS) and J (N_LINEAR_TERMS) = dr/ds_end. */",
            c_function("linear_residual_jacobian", linear_jacobian, ["s[{}]", "p->length"], ["r", "J"],
                       arrays=(("s", "2"),)),
            "/* x (NX, LANES), u (NU, LANES) -> the vehicle features (N_VEHICLE_FEATURES, LANES) of state x"
            " reached by action u (controller/costs.py, vehicle_features). */",
            c_function("vehicle_features", ca.Function("vehicle_features", [vx, vu, vtheta], [vf]),
                       _INPUTS[:3], ["out"], lanes=True),
            "/* Their Jacobians at one point: Jx (N_VEHICLE_FEATURES, NX), Ju (N_VEHICLE_FEATURES, NU). */",
            c_function("vehicle_feature_jacobian",
                       ca.Function("vehicle_feature_jacobian", [vx, vu, vtheta],
                                   [ca.jacobian(vf, vx), ca.jacobian(vf, vu)]),
                       _INPUTS[:3], ["Jx", "Ju"]),
            "",
        ]
    )
