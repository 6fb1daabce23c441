/*
 * Native rollout kernel: the planners' hot path in one fused loop.
 *
 * For K action sequences of H steps from one start state, each rollout steps the kinematic
 * bicycle (exact scheme), adds the residual ensemble's correction, projects the new state onto
 * the track and accumulates every cost term, all without leaving registers and L1: samples are
 * processed in blocks of LANES (one AVX-512 vector of floats; the compiler lowers the lane loops
 * to whatever the CPU has), blocks are split across OpenMP threads (the same libgomp runtime as
 * torch), and the residual network's layers are register-blocked outer products.
 *
 * The equations are those of vehicle_models/kinematic.py (kinematic_exact_step),
 * vehicle_models/semi_parametric.py (step_fields), controller/track/lookup.py (project) and
 * controller/costs.py (TrackCost.evaluate); tests/controller/test_native.py holds the two
 * implementations equal. Layouts: states (.., 5) in CommonRoad order x, y, steer, v, yaw;
 * actions (.., 2) steer_rate, accel; arrays are C-contiguous float32. Per-sample action arrays
 * (noise, samples) are *blocked*: (ceil(K / LANES), H, 2, LANES), sample k = b * LANES + l, so
 * that one block's whole horizon is one contiguous run of memory read with vector loads
 * (the (H, K, 2) layout made every step of every block a cache miss).
 *
 * Built with -ffast-math (vectorised libm), so non-finite values are recognised by their bits,
 * and every table index is clamped in integer arithmetic: a NaN or absurd state can never read
 * outside a table.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define LANES 16
#define MAX_LAYERS 6
#define MAX_WIDTH 256
#define MAX_FEATURES 16
#define MAX_OUTPUTS 8
#define MAX_MEMBERS 16
#define NX 5
#define NU 2
#define COLUMN_BLOCK 8

enum { SX, SY, STEER, V, YAW };
enum { T_LATERAL, T_HEADING, T_SPEED, T_BOUNDARY, T_EFFORT, T_RATE, T_PROGRESS, T_DISAGREEMENT, N_TERM_KINDS };
/* Columns of the per-segment table (controller/track/lookup.py, with 1 / length for the length). */
enum { AX, AY, TX, TY, S0, INV_LEN, HEAD, DHEAD, WL, DWL, WR, DWR, NCOL };
enum { ACT_SILU, ACT_RELU, ACT_TANH };

typedef struct {
    /* kinematic bicycle */
    float dt, wheelbase, ref_ratio, steer_gain, steer_offset;
    float steer_min, steer_max, speed_min, speed_max;
    float steer_rate_min, steer_rate_max, accel_min, accel_max;
    /* the planner's action box */
    float low[NU], high[NU];
    /* residual ensemble (num_layers = 0: none); normalisers folded into the weights */
    int32_t num_layers, members, activation;
    int32_t widths[MAX_LAYERS + 1]; /* widths[0] inputs; the rest padded to COLUMN_BLOCK */
    int32_t num_outputs;            /* real outputs of the last layer */
    int32_t input_source[MAX_FEATURES]; /* 0..4 a state field, 5..6 an action field */
    int32_t output_field[MAX_OUTPUTS];  /* state field each output corrects */
    float inv_output_scale[MAX_OUTPUTS];
    const float *weights[MAX_LAYERS]; /* (members, in, out) */
    const float *biases[MAX_LAYERS];  /* (members, out) */
    /* track */
    const int32_t *cell_segments; /* (cells, 2) */
    const float *segments;        /* (num_points, NCOL) */
    const float *speed_table;     /* (num_points,) */
    const float *width_left_table, *width_right_table; /* (num_points,) */
    int32_t num_points, grid_nx, grid_ny;
    float origin_x, origin_y, inv_cell, length, inv_length, inv_spacing, branch_penalty;
    /* cost */
    int32_t term_slot[N_TERM_KINDS]; /* row of each term in the terms output; -1: off */
    int32_t num_terms;
    float w_lateral, w_heading, w_speed, w_boundary, w_progress, w_disagreement;
    float effort_w[NU], rate_w[NU], inv_action_scale[NU];
    float half_width, terminal_weight;
    int32_t num_threads;
} Problem;

static inline int is_finite_f(float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return (bits & 0x7f800000u) != 0x7f800000u;
}

static inline int clamp_index(float f, int hi) {
    /* float -> int of NaN or huge values is INT_MIN on x86; the integer clamp keeps it in range */
    f = f < -1.0f ? -1.0f : (f > (float)hi + 1.0f ? (float)hi + 1.0f : f);
    int i = (int)f;
    return i < 0 ? 0 : (i > hi ? hi : i);
}

static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

static const float TWO_PI = 6.283185307179586f;
static const float PI = 3.141592653589793f;

static inline float wrap_angle(float a) { return a - TWO_PI * floorf((a + PI) / TWO_PI); }

/* ---- residual ensemble ---------------------------------------------------------------------- */


/*
 * The hardware's vector of floats (GCC/Clang vector extension). A vector type wider than the
 * hardware's (16 floats on AVX2) is lowered by GCC through the stack, element pairs moved via
 * general registers: every vector in the dense layers is written in the hardware's width.
 * vec_mem_t reads and writes the (width, LANES) buffers, which are only float-aligned.
 */
#if defined(__AVX512F__)
#define VEC_FLOATS 16
#elif defined(__AVX__)
#define VEC_FLOATS 8
#else
#define VEC_FLOATS 4 /* SSE2, NEON */
#endif
#define VECS (LANES / VEC_FLOATS) /* hardware vectors per row of LANES samples */
typedef float vec_t __attribute__((vector_size(VEC_FLOATS * sizeof(float))));
typedef float vec_mem_t __attribute__((vector_size(VEC_FLOATS * sizeof(float)), aligned(4), may_alias));

/*
 * exp(x) for the activations, inlined so it vectorises with the loop around it (a call to the
 * vector libm costs a spill of every live register): 2^n by the exponent bits times a degree-6
 * polynomial for 2^f, |f| <= 1/2; relative error below 2e-7, the float32 rounding level.
 */
static inline float exp_inline(float x) {
    x = clampf(x, -87.0f, 88.0f);
    const float t = x * 1.4426950408889634f;
    const float n = floorf(t + 0.5f);
    const float f = t - n;
    const float p =
        1.0f + f * (0.69314718f + f * (0.24022652f + f * (0.05550411f + f * (0.00961813f + f * (0.00133336f + f * 0.00015404f)))));
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline void activate_lanes(float *restrict v, int kind) {
    if (kind == ACT_SILU) {
#pragma omp simd
        for (int l = 0; l < LANES; l++) v[l] = v[l] / (1.0f + exp_inline(-v[l]));
    } else if (kind == ACT_RELU) {
#pragma omp simd
        for (int l = 0; l < LANES; l++) v[l] = v[l] > 0.0f ? v[l] : 0.0f;
    } else {
#pragma omp simd
        for (int l = 0; l < LANES; l++) v[l] = 1.0f - 2.0f / (exp_inline(2.0f * v[l]) + 1.0f);
    }
}

/*
 * Output columns accumulated together: ACC_COLUMNS * VECS accumulator registers, plus VECS for
 * the input row and one broadcast weight, must fit the register file (AVX-512: 8 + 1 + 1 of
 * 32 zmm; AVX2: 8 + 2 + 1 of 16 ymm; SSE/NEON: 8 + 4 + 1 of 16 or 32). More accumulators
 * than registers spill every one of them on every input row.
 * COLUMN_BLOCK (the padding of every layer's width) is a multiple of ACC_COLUMNS.
 */
#define ACC_COLUMNS (8 / VECS)
_Static_assert(COLUMN_BLOCK % ACC_COLUMNS == 0, "layer widths are padded to COLUMN_BLOCK");

/*
 * out[j][l] = act(b[j] + sum_i in[i][l] w[i][j]) for one member; in, out are (width, LANES).
 * ACC_COLUMNS output rows accumulate in registers while the inputs stream past once; every
 * layer's output width is padded to a multiple of COLUMN_BLOCK with zero weights (problem.py),
 * so there is no latency-bound remainder.
 *
 * What the inner loop (over i) must compile to -- check with `objdump -d` of the built .so
 * (`python bench/planners.py --disassemble` prints it) or `perf annotate residual_forward`:
 * VECS vector loads of the row in[i] into registers (vmovups), then per column one broadcast
 * of w[i][j] (vbroadcastss, or on AVX-512 folded into the FMA as a {1to16} operand) and VECS
 * FMAs into accumulator registers (vfmadd231ps); no stores, no stack (%rsp) operands and no
 * second read of the row inside the loop. Three ways it has failed: a memcpy of the row into
 * a local vector (two 256-bit stores, then one 512-bit load of the same bytes: a
 * store-forwarding stall per row; issue 11: 11.8 -> 4.5 ms on AVX-512); one 16-float vector
 * type on AVX2 (GCC lowers it through the stack: 27 ms on the same CPU); and the row folded
 * into every FMA as a memory operand (GCC's znver3 tuning: 12 loads per 8 FMAs).
 */
static void dense(const float *restrict in, int n_in, const float *restrict w, const float *restrict b,
                  int n_out, int act, int apply_act, float *restrict out) {
    for (int j0 = 0; j0 < n_out; j0 += ACC_COLUMNS) {
        vec_t acc[ACC_COLUMNS][VECS];
#pragma GCC unroll 8
        for (int jj = 0; jj < ACC_COLUMNS; jj++)
#pragma GCC unroll 4
            for (int v = 0; v < VECS; v++) acc[jj][v] = (vec_t){0} + b[j0 + jj];
        const float *wi = w + j0;
        const float *row = in;
        for (int i = 0; i < n_in; i++, wi += n_out, row += LANES) {
            vec_t x[VECS];
#pragma GCC unroll 4
            for (int v = 0; v < VECS; v++) {
                x[v] = *(const vec_mem_t *)(row + v * VEC_FLOATS);
#if defined(__x86_64__)
                /* In a register, not folded into every FMA as a memory operand: GCC's znver3
                   tuning re-read the row once per column (12 loads per 8 FMAs, load-bound). */
                __asm__("" : "+v"(x[v]));
#endif
            }
#pragma GCC unroll 8
            for (int jj = 0; jj < ACC_COLUMNS; jj++) {
                const float wij = wi[jj];
#pragma GCC unroll 4
                for (int v = 0; v < VECS; v++) acc[jj][v] += wij * x[v];
            }
        }
#pragma GCC unroll 8
        for (int jj = 0; jj < ACC_COLUMNS; jj++) {
            float *o = out + (size_t)(j0 + jj) * LANES;
#pragma GCC unroll 4
            for (int v = 0; v < VECS; v++) *(vec_mem_t *)(o + v * VEC_FLOATS) = acc[jj][v];
        }
        if (apply_act)
            for (int jj = 0; jj < ACC_COLUMNS; jj++) activate_lanes(out + (size_t)(j0 + jj) * LANES, act);
    }
}

/* Ensemble mean of the correction rates (num_outputs, LANES) and the disagreement (LANES) at
   features (widths[0], LANES). */
static void residual_forward(const Problem *p, const float *features, float *rates, float *disagreement) {
    float buf_a[MAX_WIDTH * LANES], buf_b[MAX_WIDTH * LANES];
    float member_out[MAX_MEMBERS][MAX_OUTPUTS * LANES];
    const int n_out = p->num_outputs;
    for (int e = 0; e < p->members; e++) {
        const float *h = features;
        for (int k = 0; k < p->num_layers; k++) {
            const int last = k == p->num_layers - 1;
            float *dst = last ? member_out[e] : ((k & 1) ? buf_b : buf_a);
            const int fan_in = p->widths[k], fan_out = p->widths[k + 1];
            dense(h, fan_in, p->weights[k] + (size_t)e * fan_in * fan_out,
                  p->biases[k] + (size_t)e * fan_out, fan_out, p->activation, !last, dst);
            h = dst;
        }
    }
    const float inv_e = 1.0f / (float)p->members;
    for (int o = 0; o < n_out; o++)
        for (int l = 0; l < LANES; l++) {
            float m = 0.0f;
            for (int e = 0; e < p->members; e++) m += member_out[e][o * LANES + l];
            rates[o * LANES + l] = m * inv_e;
        }
    if (!disagreement) return;
    for (int l = 0; l < LANES; l++) disagreement[l] = 0.0f;
    if (p->members < 2) return;
    for (int o = 0; o < n_out; o++) {
        const float s = p->inv_output_scale[o];
        for (int l = 0; l < LANES; l++) {
            const float m = rates[o * LANES + l];
            float var = 0.0f;
            for (int e = 0; e < p->members; e++) {
                const float d = member_out[e][o * LANES + l] - m;
                var += d * d;
            }
            disagreement[l] += var * inv_e * s * s;
        }
    }
    for (int l = 0; l < LANES; l++) disagreement[l] = sqrtf(disagreement[l] / (float)n_out);
}

/* The residual's features (widths[0], LANES) of LANES states and actions. */
static void residual_features(const Problem *p, const float x[NX][LANES], const float u[NU][LANES],
                              float *features) {
    for (int f = 0; f < p->widths[0]; f++) {
        const int src = p->input_source[f];
        const float *col = src < NX ? x[src] : u[src - NX];
        for (int l = 0; l < LANES; l++) features[f * LANES + l] = col[l];
    }
}

/* ---- track projection ------------------------------------------------------------------------ */

typedef struct {
    float s[LANES], lateral[LANES], heading[LANES], curvature[LANES], width_left[LANES], width_right[LANES];
} Projection;

/* cos(a - pi/2) for sin(a): a sin and a cos of one argument would be fused into a scalar sincos. */
static const float HALF_PI = 1.5707963267948966f;
static inline float sin_via_cos(float a) { return cosf(a - HALF_PI); }

/* The projection onto one branch's segment (the columns of ``segments`` it needs). */
static inline void fit_branch(const Problem *p, int segment, float px, float py, float yaw, float *lateral,
                              float *along, float *frac, float *heading, float *score) {
    /* index arithmetic, not a row pointer: the vectoriser turns base[index] into gathers */
    const float *T = p->segments;
    const int r = segment * NCOL;
    const float rx = px - T[r + AX], ry = py - T[r + AY];
    *along = rx * T[r + TX] + ry * T[r + TY];
    *lateral = T[r + TX] * ry - T[r + TY] * rx;
    *frac = clampf(*along * T[r + INV_LEN], 0.0f, 1.0f);
    *heading = T[r + HEAD] + *frac * T[r + DHEAD];
    *score = fabsf(*lateral) + p->branch_penalty * (1.0f - cosf(yaw - *heading));
}

static void project(const Problem *p, const float *px, const float *py, const float *yaw, Projection *out) {
#pragma omp simd
    for (int l = 0; l < LANES; l++) {
        const int ix = clamp_index(floorf((px[l] - p->origin_x) * p->inv_cell), p->grid_nx - 1);
        const int iy = clamp_index(floorf((py[l] - p->origin_y) * p->inv_cell), p->grid_ny - 1);
        const int cell = ix * p->grid_ny + iy;
        const int seg_a = p->cell_segments[2 * cell], seg_b = p->cell_segments[2 * cell + 1];
        float lat_a, along_a, frac_a, head_a, score_a, lat_b, along_b, frac_b, head_b, score_b;
        fit_branch(p, seg_a, px[l], py[l], yaw[l], &lat_a, &along_a, &frac_a, &head_a, &score_a);
        fit_branch(p, seg_b, px[l], py[l], yaw[l], &lat_b, &along_b, &frac_b, &head_b, &score_b);
        const int use_b = score_b < score_a;
        const int seg = use_b ? seg_b : seg_a;
        const float frac = use_b ? frac_b : frac_a;
        const float *T = p->segments;
        const int r = seg * NCOL;
        const float s = T[r + S0] + (use_b ? along_b : along_a);
        out->s[l] = s - p->length * floorf(s * p->inv_length);
        out->lateral[l] = use_b ? lat_b : lat_a;
        out->heading[l] = use_b ? head_b : head_a;
        out->curvature[l] = T[r + DHEAD] * T[r + INV_LEN];
        out->width_left[l] = T[r + WL] + frac * T[r + DWL];
        out->width_right[l] = T[r + WR] + frac * T[r + DWR];
    }
}

static inline float speed_reference(const Problem *p, float s) {
    const float u = (s - p->length * floorf(s * p->inv_length)) * p->inv_spacing;
    const int i = clamp_index(floorf(u), p->num_points - 1);
    const int j = i + 1 == p->num_points ? 0 : i + 1;
    const float frac = u - (float)i;
    return p->speed_table[i] + frac * (p->speed_table[j] - p->speed_table[i]);
}

/* ---- one block of rollouts -------------------------------------------------------------------- */

static inline float sinc(float z) {
    const float sz = sinf(z); /* computed unconditionally: a call under a branch is not vectorised */
    return fabsf(z) < 1e-4f ? 1.0f - z * z * (1.0f / 6.0f) : sz / z;
}

/* iLQR's closed-loop update, one step length per lane: u = clamp(u_bar + alpha k + K dz). */
typedef struct {
    const float *states_bar;  /* (H + 1, NX) */
    const float *actions_bar; /* (H, NU) */
    const float *k;           /* (H, NU) */
    const float *K;           /* (H, NU, NX + NU), on dz = (x - x_bar, u_prev - u_prev_bar) */
    float alpha[LANES];
} Policy;

/*
 * Rollouts of block b: samples k = b * LANES + l; lanes past K are computed (from whatever
 * their padding holds) but never written to costs, terms or states.
 * Actions u_t = clamp(base[t] + perturb[b, t, :, l], low, high); perturb may be NULL; with a
 * policy, u_t is the policy's instead (base and perturb unused).
 * Writes the clamped actions to samples (blocked, like perturb) if given, states (H + 1, K, NX)
 * if given, each rollout's total cost to costs[k] and its terms to terms[slot * K + k].
 */
static void rollout_block(const Problem *p, int H, int K, int b, const float *x0, const float *base,
                          const float *perturb, const Policy *policy, const float *last_action,
                          float s_start, float *samples, float *states, float *costs, float *terms) {
    float x[NX][LANES], u[NU][LANES], prev[NU][LANES];
    float acc[N_TERM_KINDS][LANES];
    float rates[MAX_OUTPUTS * LANES], spread[LANES];
    const int k0 = b * LANES;
    const size_t block_offset = (size_t)b * H * NU * LANES;
    for (int l = 0; l < LANES; l++) {
        for (int i = 0; i < NX; i++) x[i][l] = x0[i];
        for (int n = 0; n < NU; n++) prev[n][l] = last_action[n];
        for (int term = 0; term < N_TERM_KINDS; term++) acc[term][l] = 0.0f;
    }
    const int lanes_used = K - k0 < LANES ? K - k0 : LANES;
    if (states)
        for (int l = 0; l < lanes_used; l++)
            for (int i = 0; i < NX; i++) states[(size_t)(k0 + l) * NX + i] = x[i][l];
    const float dt = p->dt;
    for (int t = 0; t < H; t++) {
        for (int n = 0; n < NU; n++) {
            const size_t row = block_offset + ((size_t)t * NU + n) * LANES;
            if (policy) {
                const float *xb = policy->states_bar + t * NX;
                const float *prev_bar = t == 0 ? last_action : policy->actions_bar + (t - 1) * NU;
                const float *gain = policy->K + ((size_t)t * NU + n) * (NX + NU);
                for (int l = 0; l < LANES; l++) {
                    float v = policy->actions_bar[t * NU + n] + policy->alpha[l] * policy->k[t * NU + n];
                    for (int i = 0; i < NX; i++) v += gain[i] * (x[i][l] - xb[i]);
                    for (int m = 0; m < NU; m++) v += gain[NX + m] * (prev[m][l] - prev_bar[m]);
                    u[n][l] = clampf(v, p->low[n], p->high[n]);
                }
            } else {
                const float *d = perturb ? perturb + row : NULL;
#pragma omp simd
                for (int l = 0; l < LANES; l++)
                    u[n][l] = clampf(base[t * NU + n] + (d ? d[l] : 0.0f), p->low[n], p->high[n]);
            }
            if (samples) memcpy(samples + row, u[n], sizeof u[n]);
        }
        if (p->num_layers > 0) {
            float features[MAX_FEATURES * LANES];
            residual_features(p, (const float(*)[LANES])x, (const float(*)[LANES])u, features);
            residual_forward(p, features, rates, p->term_slot[T_DISAGREEMENT] >= 0 ? spread : NULL);
        }
        float nx[NX][LANES];
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
            const float steer_rate = clampf(u[0][l], p->steer_rate_min, p->steer_rate_max);
            const float accel = clampf(u[1][l], p->accel_min, p->accel_max);
            const float steer_next = clampf(x[STEER][l] + steer_rate * dt, p->steer_min, p->steer_max);
            const float v_next = clampf(x[V][l] + accel * dt, p->speed_min, p->speed_max);
            const float steer_mid = 0.5f * (x[STEER][l] + steer_next);
            const float v_mid = 0.5f * (x[V][l] + v_next);
            const float tan_delta = tanf(p->steer_gain * steer_mid + p->steer_offset);
            const float slip_tan = p->ref_ratio * tan_delta;
            const float beta = atanf(slip_tan);
            const float cos_beta = 1.0f / sqrtf(1.0f + slip_tan * slip_tan);
            const float yaw_change = v_mid * cos_beta * tan_delta * (dt / p->wheelbase);
            const float heading_mid = x[YAW][l] + beta + 0.5f * yaw_change;
            const float arc = v_mid * dt * sinc(0.5f * yaw_change);
            nx[SX][l] = x[SX][l] + arc * cosf(heading_mid);
            nx[SY][l] = x[SY][l] + arc * sin_via_cos(heading_mid);
            nx[STEER][l] = steer_next;
            nx[V][l] = v_next;
            nx[YAW][l] = x[YAW][l] + yaw_change;
        }
        if (p->num_layers > 0) {
            const int n_out = p->num_outputs;
            int along = -1, across = -1;
            for (int o = 0; o < n_out; o++) {
                if (p->output_field[o] == SX) along = o;
                if (p->output_field[o] == SY) across = o;
            }
            if (along >= 0)
#pragma omp simd
                for (int l = 0; l < LANES; l++) {
                    const float c = cosf(x[YAW][l]), s = sin_via_cos(x[YAW][l]);
                    const float a = rates[along * LANES + l], b = rates[across * LANES + l];
                    nx[SX][l] += dt * (c * a - s * b);
                    nx[SY][l] += dt * (s * a + c * b);
                }
            for (int o = 0; o < n_out; o++) {
                const int field = p->output_field[o];
                if (field == SX || field == SY) continue;
                for (int l = 0; l < LANES; l++) nx[field][l] += dt * rates[o * LANES + l];
            }
        }
        memcpy(x, nx, sizeof x);
        if (states)
            for (int l = 0; l < lanes_used; l++)
                for (int i = 0; i < NX; i++) states[((size_t)(t + 1) * K + k0 + l) * NX + i] = x[i][l];

        /* cost of the new state and of the action that led there */
        Projection pr;
        project(p, x[SX], x[SY], x[YAW], &pr);
        const float step_w = t == H - 1 ? p->terminal_weight : 1.0f;
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
            const float lat = pr.lateral[l];
            const float heading_error = wrap_angle(x[YAW][l] - pr.heading[l]);
            const float speed_error = x[V][l] - speed_reference(p, pr.s[l]);
            const float room_left = pr.width_left[l] - p->half_width;
            const float room_right = pr.width_right[l] - p->half_width;
            const float over_left = lat - room_left, over_right = -lat - room_right;
            const float excess = (over_left > 0.0f ? over_left : 0.0f) + (over_right > 0.0f ? over_right : 0.0f);
            acc[T_LATERAL][l] += step_w * lat * lat;
            acc[T_HEADING][l] += step_w * heading_error * heading_error;
            acc[T_SPEED][l] += step_w * speed_error * speed_error;
            acc[T_BOUNDARY][l] += step_w * excess * excess;
            float effort = 0.0f, rate = 0.0f;
            for (int n = 0; n < NU; n++) {
                const float a = u[n][l] * p->inv_action_scale[n];
                const float d = (u[n][l] - prev[n][l]) * p->inv_action_scale[n];
                effort += p->effort_w[n] * a * a;
                rate += p->rate_w[n] * d * d;
                prev[n][l] = u[n][l];
            }
            acc[T_EFFORT][l] += effort;
            acc[T_RATE][l] += rate;
            if (p->term_slot[T_DISAGREEMENT] >= 0) acc[T_DISAGREEMENT][l] += spread[l];
            if (t == H - 1) {
                const float half = 0.5f * p->length;
                const float gained = pr.s[l] - s_start + half;
                acc[T_PROGRESS][l] = -(gained - p->length * floorf(gained / p->length) - half);
            }
        }
    }
    const float scale[N_TERM_KINDS] = {p->w_lateral, p->w_heading, p->w_speed, p->w_boundary,
                                       1.0f, 1.0f, p->w_progress, p->w_disagreement};
    for (int l = 0; l < lanes_used; l++) {
        float total = 0.0f;
        for (int term = 0; term < N_TERM_KINDS; term++) {
            const int slot = p->term_slot[term];
            if (slot < 0) continue;
            const float value = scale[term] * acc[term][l];
            total += value;
            if (terms) terms[(size_t)slot * K + k0 + l] = value;
        }
        costs[k0 + l] = total;
    }
}

/* Arc length of the start state's projection (the progress term's origin). */
static float start_arc_length(const Problem *p, const float *x0) {
    float px[LANES], py[LANES], yaw[LANES];
    for (int l = 0; l < LANES; l++) px[l] = x0[SX], py[l] = x0[SY], yaw[l] = x0[YAW];
    Projection pr;
    project(p, px, py, yaw, &pr);
    return pr.s[0];
}

static void rollout_all(const Problem *p, int H, int K, const float *x0, const float *base,
                        const float *perturb, const Policy *policy, const float *last_action,
                        float *samples, float *states, float *costs, float *terms) {
    const float s_start = start_arc_length(p, x0);
    const int blocks = (K + LANES - 1) / LANES;
    const int threads = p->num_threads < blocks ? p->num_threads : blocks;
    /* Dynamic, block by block: after an idle gap a worker thread can take milliseconds to wake
       (a descheduled vCPU); the calling thread then takes its share instead of waiting. */
#pragma omp parallel for num_threads(threads > 0 ? threads : 1) schedule(dynamic, 1)
    for (int b = 0; b < blocks; b++)
        rollout_block(p, H, K, b, x0, base, perturb, policy, last_action, s_start, samples, states, costs, terms);
}

/* ---- entry points ----------------------------------------------------------------------------- */

/*
 * The residual network alone at N points: features (N, widths[0]) -> mean rates
 * (N, num_outputs), disagreement (N) if not NULL. Blocks of LANES points across threads; the
 * benchmark's GFLOP/s and the tests' comparison with the torch forward pass use it.
 */
int vmpc_residual(const Problem *p, int N, const float *features, float *rates, float *disagreement) {
    if (N < 1 || p->num_layers < 1) return -1;
    const int n_in = p->widths[0], n_out = p->num_outputs, blocks = (N + LANES - 1) / LANES;
    const int threads = p->num_threads < blocks ? p->num_threads : blocks;
#pragma omp parallel for num_threads(threads > 0 ? threads : 1) schedule(static)
    for (int b = 0; b < blocks; b++) {
        float in[MAX_FEATURES * LANES], out[MAX_OUTPUTS * LANES], spread[LANES];
        for (int f = 0; f < n_in; f++)
            for (int l = 0; l < LANES; l++) {
                const int k = b * LANES + l < N ? b * LANES + l : N - 1;
                in[f * LANES + l] = features[(size_t)k * n_in + f];
            }
        residual_forward(p, in, out, disagreement ? spread : NULL);
        for (int l = 0; l < LANES && b * LANES + l < N; l++) {
            const size_t k = (size_t)b * LANES + l;
            for (int o = 0; o < n_out; o++) rates[k * n_out + o] = out[o * LANES + l];
            if (disagreement) disagreement[k] = spread[l];
        }
    }
    return 0;
}

/* Rollouts of u = clamp(base + perturb) (perturb blocked, or NULL: K copies of base). */
int vmpc_rollout(const Problem *p, int H, int K, const float *x0, const float *base, const float *perturb,
                 const float *last_action, float *samples, float *states, float *costs, float *terms) {
    if (H < 1 || K < 1) return -1;
    rollout_all(p, H, K, x0, base, perturb, NULL, last_action, samples, states, costs, terms);
    return 0;
}

/*
 * One MPPI iteration: K perturbed rollouts of ``nominal`` (H, NU), softmin weights at
 * ``temperature`` over the finite costs, the weighted mean plan, and that plan's own rollout.
 * ``noise`` and the scratch ``samples`` are blocked; the scratch ``costs`` holds
 * ceil(K / LANES) * LANES floats. Out: plan (H, NU), plan_states (H + 1, NX),
 * plan_terms (num_terms), stats = [plan cost, best sample cost, effective samples].
 * Returns 0, or 1 when no sample had a finite cost (the plan is then NaN).
 */
int vmpc_mppi_iteration(const Problem *p, int H, int K, const float *x0, const float *nominal,
                        const float *noise, const float *last_action, float temperature, float *samples,
                        float *costs, float *plan, float *plan_states, float *plan_terms, float *stats) {
    if (H < 1 || K < 1) return -1;
    rollout_all(p, H, K, x0, nominal, noise, NULL, last_action, samples, NULL, costs, NULL);
    float best = INFINITY;
    int any = 0;
    for (int k = 0; k < K; k++)
        if (is_finite_f(costs[k]) && (!any || costs[k] < best)) best = costs[k], any = 1;
    if (!any) {
        for (int i = 0; i < H * NU; i++) plan[i] = NAN;
        stats[0] = stats[1] = NAN;
        stats[2] = 0.0f;
        return 1;
    }
    /* the weights overwrite the costs */
    double total = 0.0, total_sq = 0.0;
    const float inv_t = 1.0f / temperature;
    for (int k = 0; k < K; k++) {
        const float w = is_finite_f(costs[k]) ? expf((best - costs[k]) * inv_t) : 0.0f;
        costs[k] = w;
        total += w;
        total_sq += (double)w * w;
    }
    const float inv_total = (float)(1.0 / total);
    const int blocks = (K + LANES - 1) / LANES;
    for (int k = K; k < blocks * LANES; k++) costs[k] = 0.0f; /* padding lanes weigh nothing */
    for (int t = 0; t < H; t++)
        for (int n = 0; n < NU; n++) {
            float m[LANES] = {0};
            for (int b = 0; b < blocks; b++) {
                const float *row = samples + (((size_t)b * H + t) * NU + n) * LANES;
                const float *w = costs + (size_t)b * LANES;
#pragma omp simd
                for (int l = 0; l < LANES; l++) m[l] += w[l] * row[l];
            }
            float sum = 0.0f;
            for (int l = 0; l < LANES; l++) sum += m[l];
            plan[t * NU + n] = sum * inv_total;
        }
    float plan_cost;
    rollout_all(p, H, 1, x0, plan, NULL, NULL, last_action, NULL, plan_states, &plan_cost, plan_terms);
    stats[0] = plan_cost;
    stats[1] = best;
    stats[2] = (float)(total * total / total_sq);
    return 0;
}

/*
 * iLQR's line search: one closed-loop rollout per step length alphas[0 .. n_alpha - 1] (at most
 * LANES), all in one block. Out: states (H + 1, n_alpha, NX), actions blocked (1, H, NU, LANES),
 * costs (n_alpha), terms (num_terms, n_alpha).
 */
int vmpc_policy_rollout(const Problem *p, int H, int n_alpha, const float *x0, const float *states_bar,
                        const float *actions_bar, const float *k, const float *K, const float *alphas,
                        const float *last_action, float *states, float *actions, float *costs, float *terms) {
    if (H < 1 || n_alpha < 1 || n_alpha > LANES) return -1;
    Policy policy = {states_bar, actions_bar, k, K, {0}};
    for (int l = 0; l < n_alpha; l++) policy.alpha[l] = alphas[l];
    const float s_start = start_arc_length(p, x0);
    rollout_block(p, H, n_alpha, 0, x0, NULL, NULL, &policy, last_action, s_start, actions, states, costs, terms);
    return 0;
}

/* ---- derivatives along one trajectory (iLQR) ----------------------------------------------- */

static inline float activation_slope(float h, int kind) {
    if (kind == ACT_SILU) {
        const float sig = 1.0f / (1.0f + exp_inline(-h));
        return sig * (1.0f + h * (1.0f - sig));
    }
    if (kind == ACT_RELU) return h > 0.0f ? 1.0f : 0.0f;
    const float th = 1.0f - 2.0f / (exp_inline(2.0f * h) + 1.0f);
    return 1.0f - th * th;
}

static const float ZERO_BIAS[MAX_WIDTH] = {0};

/*
 * Mean over members of the residual's outputs and of their derivatives w.r.t. the features,
 * for up to LANES points (one per lane): rates (num_outputs, LANES), slopes (num_outputs,
 * n_in, LANES). Forward mode: each feature direction is pushed through the layers.
 */
static void residual_slopes(const Problem *p, const float *features, float *rates, float *slopes) {
    const int n_in = p->widths[0], n_out = p->num_outputs, L = p->num_layers;
    float pre[MAX_LAYERS][MAX_WIDTH * LANES]; /* pre-activations of the hidden layers */
    float act[MAX_WIDTH * LANES], tangent[MAX_WIDTH * LANES], next[MAX_WIDTH * LANES];
    float out[MAX_OUTPUTS * LANES];
    memset(rates, 0, sizeof(float) * n_out * LANES);
    memset(slopes, 0, sizeof(float) * n_out * n_in * LANES);
    const float inv_e = 1.0f / (float)p->members;
    for (int e = 0; e < p->members; e++) {
        const float *h = features;
        for (int k = 0; k < L; k++) {
            const int fan_in = p->widths[k], fan_out = p->widths[k + 1];
            const float *w = p->weights[k] + (size_t)e * fan_in * fan_out;
            const float *b = p->biases[k] + (size_t)e * fan_out;
            float *dst = k == L - 1 ? out : pre[k];
            dense(h, fan_in, w, b, fan_out, p->activation, 0, dst);
            if (k < L - 1) {
                memcpy(act, dst, sizeof(float) * fan_out * LANES);
                for (int j = 0; j < fan_out; j++) activate_lanes(act + j * LANES, p->activation);
                memcpy(k & 1 ? next : tangent, act, sizeof(float) * fan_out * LANES);
                h = k & 1 ? next : tangent;
            }
        }
        for (int o = 0; o < n_out; o++)
            for (int l = 0; l < LANES; l++) rates[o * LANES + l] += inv_e * out[o * LANES + l];
        for (int f = 0; f < n_in; f++) {
            /* d(first pre-activation)/d feature f is row f of the first weights */
            const int w1 = p->widths[1];
            const float *row = p->weights[0] + (size_t)e * n_in * w1 + (size_t)f * w1;
            for (int j = 0; j < w1; j++)
                for (int l = 0; l < LANES; l++) tangent[j * LANES + l] = row[j];
            for (int k = 1; k < L; k++) {
                const int fan_in = p->widths[k], fan_out = p->widths[k + 1];
                for (int j = 0; j < fan_in; j++)
                    for (int l = 0; l < LANES; l++)
                        tangent[j * LANES + l] *= activation_slope(pre[k - 1][j * LANES + l], p->activation);
                dense(tangent, fan_in, p->weights[k] + (size_t)e * fan_in * fan_out, ZERO_BIAS, fan_out,
                      p->activation, 0, next);
                memcpy(tangent, next, sizeof(float) * fan_out * LANES);
            }
            for (int o = 0; o < n_out; o++)
                for (int l = 0; l < LANES; l++)
                    slopes[(o * n_in + f) * LANES + l] += inv_e * tangent[o * LANES + l];
        }
    }
}

static inline float sinc_slope(float z) {
    return fabsf(z) < 1e-4f ? -z * (1.0f / 3.0f) : (z * cosf(z) - sinf(z)) / (z * z);
}

/* Exact Jacobians of the kinematic exact step at one point: A (NX, NX), B (NX, NU). */
static void kinematic_jacobian(const Problem *p, const float *x, const float *u, float *A, float *B) {
    const float dt = p->dt;
    const float w_raw = u[0], a_raw = u[1];
    const float m_w = (w_raw > p->steer_rate_min && w_raw < p->steer_rate_max) ? 1.0f : 0.0f;
    const float m_a = (a_raw > p->accel_min && a_raw < p->accel_max) ? 1.0f : 0.0f;
    const float steer_rate = clampf(w_raw, p->steer_rate_min, p->steer_rate_max);
    const float accel = clampf(a_raw, p->accel_min, p->accel_max);
    const float s_sum = x[STEER] + steer_rate * dt, v_sum = x[V] + accel * dt;
    const float m_s = (s_sum > p->steer_min && s_sum < p->steer_max) ? 1.0f : 0.0f;
    const float m_v = (v_sum > p->speed_min && v_sum < p->speed_max) ? 1.0f : 0.0f;
    const float steer_mid = 0.5f * (x[STEER] + clampf(s_sum, p->steer_min, p->steer_max));
    const float v_mid = 0.5f * (x[V] + clampf(v_sum, p->speed_min, p->speed_max));
    const float dsm_dsteer = 0.5f * (1.0f + m_s), dsm_dw = 0.5f * m_s * m_w * dt;
    const float dvm_dv = 0.5f * (1.0f + m_v), dvm_da = 0.5f * m_v * m_a * dt;

    const float T = tanf(p->steer_gain * steer_mid + p->steer_offset);
    const float dT = p->steer_gain * (1.0f + T * T);
    const float z = p->ref_ratio * T, dz = p->ref_ratio * dT;
    const float beta = atanf(z), dbeta = dz / (1.0f + z * z);
    const float cb = 1.0f / sqrtf(1.0f + z * z), dcb = -z * cb * cb * cb * dz;
    const float kk = dt / p->wheelbase;
    const float yaw_change = v_mid * cb * T * kk;
    const float dyc_dsm = v_mid * kk * (dcb * T + cb * dT), dyc_dvm = cb * T * kk;
    const float h = x[YAW] + beta + 0.5f * yaw_change;
    const float dh_dsm = dbeta + 0.5f * dyc_dsm, dh_dvm = 0.5f * dyc_dvm;
    const float half = 0.5f * yaw_change;
    const float sc = sinc(half), dsc = sinc_slope(half);
    const float arc = v_mid * dt * sc;
    const float darc_dsm = v_mid * dt * dsc * 0.5f * dyc_dsm;
    const float darc_dvm = dt * sc + v_mid * dt * dsc * 0.5f * dyc_dvm;
    const float ch = cosf(h), sh = sin_via_cos(h);
    const float dpx_dsm = darc_dsm * ch - arc * sh * dh_dsm, dpx_dvm = darc_dvm * ch - arc * sh * dh_dvm;
    const float dpy_dsm = darc_dsm * sh + arc * ch * dh_dsm, dpy_dvm = darc_dvm * sh + arc * ch * dh_dvm;

    memset(A, 0, sizeof(float) * NX * NX);
    memset(B, 0, sizeof(float) * NX * NU);
    A[SX * NX + SX] = 1.0f;
    A[SX * NX + STEER] = dpx_dsm * dsm_dsteer;
    A[SX * NX + V] = dpx_dvm * dvm_dv;
    A[SX * NX + YAW] = -arc * sh;
    A[SY * NX + SY] = 1.0f;
    A[SY * NX + STEER] = dpy_dsm * dsm_dsteer;
    A[SY * NX + V] = dpy_dvm * dvm_dv;
    A[SY * NX + YAW] = arc * ch;
    A[STEER * NX + STEER] = m_s;
    A[V * NX + V] = m_v;
    A[YAW * NX + STEER] = dyc_dsm * dsm_dsteer;
    A[YAW * NX + V] = dyc_dvm * dvm_dv;
    A[YAW * NX + YAW] = 1.0f;
    B[SX * NU + 0] = dpx_dsm * dsm_dw;
    B[SX * NU + 1] = dpx_dvm * dvm_da;
    B[SY * NU + 0] = dpy_dsm * dsm_dw;
    B[SY * NU + 1] = dpy_dvm * dvm_da;
    B[STEER * NU + 0] = m_s * m_w * dt;
    B[V * NU + 1] = m_v * m_a * dt;
    B[YAW * NU + 0] = dyc_dsm * dsm_dw;
    B[YAW * NU + 1] = dyc_dvm * dvm_da;
}

/* Jacobians of the model's step at H points: A (H, NX, NX), B (H, NX, NU). */
int vmpc_linearize(const Problem *p, int H, const float *states, const float *actions, float *A, float *B) {
    if (H < 1) return -1;
    for (int t = 0; t < H; t++)
        kinematic_jacobian(p, states + t * NX, actions + t * NU, A + t * NX * NX, B + t * NX * NU);
    if (p->num_layers == 0) return 0;
    const int n_in = p->widths[0], n_out = p->num_outputs;
    float features[MAX_FEATURES * LANES], rates[MAX_OUTPUTS * LANES];
    float slopes[MAX_OUTPUTS * MAX_FEATURES * LANES];
    int along = -1, across = -1;
    for (int o = 0; o < n_out; o++) {
        if (p->output_field[o] == SX) along = o;
        if (p->output_field[o] == SY) across = o;
    }
    const float dt = p->dt;
    for (int t0 = 0; t0 < H; t0 += LANES) {
        for (int f = 0; f < n_in; f++) {
            const int src = p->input_source[f];
            for (int l = 0; l < LANES; l++) {
                const int t = t0 + l < H ? t0 + l : H - 1;
                features[f * LANES + l] = src < NX ? states[t * NX + src] : actions[t * NU + src - NX];
            }
        }
        residual_slopes(p, features, rates, slopes);
        for (int l = 0; l < LANES && t0 + l < H; l++) {
            const int t = t0 + l;
            float *At = A + t * NX * NX, *Bt = B + t * NX * NU;
            const float yaw = states[t * NX + YAW], c = cosf(yaw), sn = sin_via_cos(yaw);
            /* d correction[field] / d feature f, in the world frame */
            for (int f = 0; f < n_in; f++) {
                const int src = p->input_source[f];
                float d[NX] = {0};
                for (int o = 0; o < n_out; o++) {
                    const int field = p->output_field[o];
                    if (field != SX && field != SY) d[field] += dt * slopes[(o * n_in + f) * LANES + l];
                }
                if (along >= 0) {
                    const float ga = slopes[(along * n_in + f) * LANES + l];
                    const float gc = slopes[(across * n_in + f) * LANES + l];
                    d[SX] += dt * (c * ga - sn * gc);
                    d[SY] += dt * (sn * ga + c * gc);
                }
                for (int i = 0; i < NX; i++) {
                    if (src < NX) At[i * NX + src] += d[i];
                    else Bt[i * NU + src - NX] += d[i];
                }
            }
            if (along >= 0) { /* the body-to-world rotation depends on the yaw */
                const float ra = rates[along * LANES + l], rc = rates[across * LANES + l];
                At[SX * NX + YAW] += dt * (-sn * ra - c * rc);
                At[SY * NX + YAW] += dt * (c * ra - sn * rc);
            }
        }
    }
    return 0;
}

static inline float table_slope(const Problem *p, const float *table, float s) {
    const float u = (s - p->length * floorf(s * p->inv_length)) * p->inv_spacing;
    const int i = clamp_index(floorf(u), p->num_points - 1);
    const int j = i + 1 == p->num_points ? 0 : i + 1;
    return (table[j] - table[i]) * p->inv_spacing;
}

/*
 * Gauss-Newton derivatives of the cost along states (H + 1, NX), actions (H, NU) w.r.t. the
 * augmented state z_t = (x_t, u_{t-1}) (controller/costs.py, TrackCost.quadratize):
 * l_z (H + 1, NZ), l_u (H, NU), l_zz (H + 1, NZ, NZ), l_uu (H, NU, NU), l_uz (H, NU, NZ).
 */
int vmpc_quadratize(const Problem *p, int H, const float *states, const float *actions, const float *last_action,
                    float *l_z, float *l_u, float *l_zz, float *l_uu, float *l_uz) {
    enum { NZ = NX + NU };
    if (H < 1) return -1;
    memset(l_z, 0, sizeof(float) * (H + 1) * NZ);
    memset(l_zz, 0, sizeof(float) * (H + 1) * NZ * NZ);
    memset(l_u, 0, sizeof(float) * H * NU);
    memset(l_uu, 0, sizeof(float) * H * NU * NU);
    memset(l_uz, 0, sizeof(float) * H * NU * NZ);
    for (int t0 = 0; t0 < H; t0 += LANES) {
        float px[LANES], py[LANES], yaw[LANES];
        for (int l = 0; l < LANES; l++) {
            const int t = (t0 + l < H ? t0 + l : H - 1) + 1; /* states 1..H */
            px[l] = states[t * NX + SX], py[l] = states[t * NX + SY], yaw[l] = states[t * NX + YAW];
        }
        Projection pr;
        project(p, px, py, yaw, &pr);
        for (int l = 0; l < LANES && t0 + l < H; l++) {
            const int t = t0 + l;
            const float *x = states + (t + 1) * NX;
            float *gz = l_z + (t + 1) * NZ, *hz = l_zz + (t + 1) * NZ * NZ;
            const float step_w = t == H - 1 ? p->terminal_weight : 1.0f;
            const float ch = cosf(pr.heading[l]), sh = sin_via_cos(pr.heading[l]);
            float stretch = 1.0f - pr.curvature[l] * pr.lateral[l];
            stretch = 1.0f / (stretch > 0.1f ? stretch : 0.1f);
            const float ds[2] = {ch * stretch, sh * stretch}, normal[2] = {-sh, ch};
            const float lat = pr.lateral[l];
            float J[NX], r;
#define ADD_SQUARED(weight)                                                                     \
    do {                                                                                        \
        const float c_ = 2.0f * (weight) * step_w;                                              \
        for (int i = 0; i < NX; i++) {                                                          \
            gz[i] += c_ * r * J[i];                                                             \
            for (int j = 0; j < NX; j++) hz[i * NZ + j] += c_ * J[i] * J[j];                    \
        }                                                                                       \
    } while (0)
            if (p->term_slot[T_LATERAL] >= 0) {
                memset(J, 0, sizeof J);
                J[SX] = normal[0], J[SY] = normal[1], r = lat;
                ADD_SQUARED(p->w_lateral);
            }
            if (p->term_slot[T_HEADING] >= 0) {
                memset(J, 0, sizeof J);
                J[SX] = -pr.curvature[l] * ds[0], J[SY] = -pr.curvature[l] * ds[1], J[YAW] = 1.0f;
                r = wrap_angle(x[YAW] - pr.heading[l]);
                ADD_SQUARED(p->w_heading);
            }
            if (p->term_slot[T_SPEED] >= 0) {
                const float slope = table_slope(p, p->speed_table, pr.s[l]);
                memset(J, 0, sizeof J);
                J[SX] = -slope * ds[0], J[SY] = -slope * ds[1], J[V] = 1.0f;
                r = x[V] - speed_reference(p, pr.s[l]);
                ADD_SQUARED(p->w_speed);
            }
            if (p->term_slot[T_BOUNDARY] >= 0) {
                const float left = lat - (pr.width_left[l] - p->half_width);
                const float right = -lat - (pr.width_right[l] - p->half_width);
                const float sl = table_slope(p, p->width_left_table, pr.s[l]);
                const float sr = table_slope(p, p->width_right_table, pr.s[l]);
                const float on_left = left > 0.0f ? 1.0f : 0.0f, on_right = right > 0.0f ? 1.0f : 0.0f;
                memset(J, 0, sizeof J);
                for (int q = 0; q < 2; q++)
                    J[SX + q] = on_left * (normal[q] - sl * ds[q]) + on_right * (-normal[q] - sr * ds[q]);
                r = (left > 0.0f ? left : 0.0f) + (right > 0.0f ? right : 0.0f);
                ADD_SQUARED(p->w_boundary);
            }
#undef ADD_SQUARED
            if (p->term_slot[T_PROGRESS] >= 0 && t == H - 1) {
                gz[SX] -= p->w_progress * ds[0];
                gz[SY] -= p->w_progress * ds[1];
            }
        }
    }
    for (int t = 0; t < H; t++)
        for (int n = 0; n < NU; n++) {
            const float inv2 = p->inv_action_scale[n] * p->inv_action_scale[n];
            const float u = actions[t * NU + n];
            const float prev = t == 0 ? last_action[n] : actions[(t - 1) * NU + n];
            if (p->term_slot[T_EFFORT] >= 0) {
                l_u[t * NU + n] += 2.0f * p->effort_w[n] * u * inv2;
                l_uu[(t * NU + n) * NU + n] += 2.0f * p->effort_w[n] * inv2;
            }
            if (p->term_slot[T_RATE] >= 0) {
                const float g = 2.0f * p->rate_w[n] * (u - prev) * inv2, h = 2.0f * p->rate_w[n] * inv2;
                l_u[t * NU + n] += g;
                l_uu[(t * NU + n) * NU + n] += h;
                l_z[t * NZ + NX + n] -= g;
                l_zz[(t * NZ + NX + n) * NZ + NX + n] += h;
                l_uz[(t * NU + n) * NZ + NX + n] -= h;
            }
        }
    return 0;
}

/* sizeof(Problem), so the Python side can check its struct layout against this one. */
int vmpc_problem_size(void) { return (int)sizeof(Problem); }

/*
 * The layout of Problem, field by field, so problem.py checks its ctypes mirror at load time
 * (name, offset, size and element kind: 'f' float, 'i' int32, 'p' pointer), not just the total
 * size, which two swapped fields of one type leave unchanged. A field missing from this table
 * fails the check too: the Python side expects one entry per field of its struct.
 */
typedef struct {
    const char *name;
    int32_t offset, size;
    char kind;
} FieldLayout;

/* The element kind from the field's own type (an array decays to a pointer to its element;
   the struct's pointer fields are all const, its arrays not). */
#define KIND_OF(e) _Generic((e), float: 'f', float *: 'f', int32_t: 'i', int32_t *: 'i', \
                         const float *: 'p', const int32_t *: 'p', const float **: 'p', default: '?')
#define FIELD(field) {#field, (int32_t)offsetof(Problem, field), (int32_t)sizeof(((Problem *)0)->field), \
                      KIND_OF(((Problem *)0)->field)}
static const FieldLayout PROBLEM_LAYOUT[] = {
    FIELD(dt), FIELD(wheelbase), FIELD(ref_ratio), FIELD(steer_gain),
    FIELD(steer_offset), FIELD(steer_min), FIELD(steer_max), FIELD(speed_min),
    FIELD(speed_max), FIELD(steer_rate_min), FIELD(steer_rate_max), FIELD(accel_min),
    FIELD(accel_max), FIELD(low), FIELD(high),
    FIELD(num_layers), FIELD(members), FIELD(activation), FIELD(widths),
    FIELD(num_outputs), FIELD(input_source), FIELD(output_field), FIELD(inv_output_scale),
    FIELD(weights), FIELD(biases),
    FIELD(cell_segments), FIELD(segments), FIELD(speed_table), FIELD(width_left_table),
    FIELD(width_right_table), FIELD(num_points), FIELD(grid_nx), FIELD(grid_ny),
    FIELD(origin_x), FIELD(origin_y), FIELD(inv_cell), FIELD(length), FIELD(inv_length),
    FIELD(inv_spacing), FIELD(branch_penalty),
    FIELD(term_slot), FIELD(num_terms),
    FIELD(w_lateral), FIELD(w_heading), FIELD(w_speed), FIELD(w_boundary),
    FIELD(w_progress), FIELD(w_disagreement),
    FIELD(effort_w), FIELD(rate_w), FIELD(inv_action_scale),
    FIELD(half_width), FIELD(terminal_weight),
    FIELD(num_threads),
};
#undef FIELD
#undef KIND_OF

int vmpc_num_fields(void) { return (int)(sizeof PROBLEM_LAYOUT / sizeof PROBLEM_LAYOUT[0]); }

/* Entry i of the layout table; -1 past its end. */
int vmpc_field(int i, const char **name, int32_t *offset, int32_t *size, char *kind) {
    if (i < 0 || i >= vmpc_num_fields()) return -1;
    *name = PROBLEM_LAYOUT[i].name, *offset = PROBLEM_LAYOUT[i].offset;
    *size = PROBLEM_LAYOUT[i].size, *kind = PROBLEM_LAYOUT[i].kind;
    return 0;
}

/* LANES, the sample-block width of the blocked layouts. */
int vmpc_lanes(void) { return LANES; }
