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
    int32_t widths[MAX_LAYERS + 1];
    int32_t input_source[MAX_FEATURES]; /* 0..4 a state field, 5..6 an action field */
    int32_t output_field[MAX_OUTPUTS];  /* state field each output corrects */
    float inv_output_scale[MAX_OUTPUTS];
    const float *weights[MAX_LAYERS]; /* (members, in, out) */
    const float *biases[MAX_LAYERS];  /* (members, out) */
    /* track */
    const int32_t *cell_segments; /* (cells, 2) */
    const float *segments;        /* (num_points, NCOL) */
    const float *speed_table;     /* (num_points,) */
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


/* One vector of LANES floats (GCC/Clang vector extension: lowered to AVX-512, AVX2 or NEON). */
typedef float lanes_t __attribute__((vector_size(LANES * sizeof(float)), aligned(4)));

static inline void activate_lanes(float *restrict v, int kind) {
    if (kind == ACT_SILU) {
#pragma omp simd
        for (int l = 0; l < LANES; l++) v[l] = v[l] / (1.0f + expf(-v[l]));
    } else if (kind == ACT_RELU) {
#pragma omp simd
        for (int l = 0; l < LANES; l++) v[l] = v[l] > 0.0f ? v[l] : 0.0f;
    } else {
#pragma omp simd
        for (int l = 0; l < LANES; l++) v[l] = tanhf(v[l]);
    }
}

/*
 * out[j][l] = act(b[j] + sum_i in[i][l] w[i][j]) for one member; in, out are (width, LANES).
 * COLUMN_BLOCK output rows accumulate in registers while the inputs stream past once.
 */
static void dense(const float *restrict in, int n_in, const float *restrict w, const float *restrict b,
                  int n_out, int act, int apply_act, float *restrict out) {
    int j0 = 0;
    for (; j0 + COLUMN_BLOCK <= n_out; j0 += COLUMN_BLOCK) {
        lanes_t acc[COLUMN_BLOCK];
        for (int jj = 0; jj < COLUMN_BLOCK; jj++) acc[jj] = (lanes_t){0} + b[j0 + jj];
        for (int i = 0; i < n_in; i++) {
            lanes_t xi;
            memcpy(&xi, in + (size_t)i * LANES, sizeof xi);
            const float *wi = w + (size_t)i * n_out + j0;
            for (int jj = 0; jj < COLUMN_BLOCK; jj++) acc[jj] += wi[jj] * xi;
        }
        for (int jj = 0; jj < COLUMN_BLOCK; jj++) {
            float *o = out + (size_t)(j0 + jj) * LANES;
            memcpy(o, &acc[jj], sizeof acc[jj]);
            if (apply_act) activate_lanes(o, act);
        }
    }
    for (int j = j0; j < n_out; j++) {
        lanes_t acc = (lanes_t){0} + b[j];
        for (int i = 0; i < n_in; i++) {
            lanes_t xi;
            memcpy(&xi, in + (size_t)i * LANES, sizeof xi);
            acc += w[(size_t)i * n_out + j] * xi;
        }
        float *o = out + (size_t)j * LANES;
        memcpy(o, &acc, sizeof acc);
        if (apply_act) activate_lanes(o, act);
    }
}

/* Ensemble mean of the correction rates (num_outputs, LANES) and the disagreement (LANES). */
static void residual_rates(const Problem *p, const float *x[NX], const float *u[NU], float *rates,
                           float *disagreement) {
    float features[MAX_FEATURES * LANES], buf_a[MAX_WIDTH * LANES], buf_b[MAX_WIDTH * LANES];
    float member_out[MAX_MEMBERS][MAX_OUTPUTS * LANES];
    const int n_in = p->widths[0], n_out = p->widths[p->num_layers];
    for (int f = 0; f < n_in; f++) {
        const int src = p->input_source[f];
        const float *col = src < NX ? x[src] : u[src - NX];
        for (int l = 0; l < LANES; l++) features[f * LANES + l] = col[l];
    }
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

/* ---- track projection ------------------------------------------------------------------------ */

typedef struct {
    float s[LANES], lateral[LANES], heading[LANES], width_left[LANES], width_right[LANES];
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

/*
 * Rollouts of block b: samples k = b * LANES + l; lanes past K are computed (from whatever
 * their padding holds) but never written to costs, terms or states.
 * Actions u_t = clamp(base[t] + perturb[b, t, :, l], low, high); perturb may be NULL.
 * Writes the clamped actions to samples (blocked, like perturb) if given, states (H + 1, K, NX)
 * if given, each rollout's total cost to costs[k] and its terms to terms[slot * K + k].
 */
static void rollout_block(const Problem *p, int H, int K, int b, const float *x0, const float *base,
                          const float *perturb, const float *last_action, float s_start,
                          float *samples, float *states, float *costs, float *terms) {
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
            const float *d = perturb ? perturb + row : NULL;
#pragma omp simd
            for (int l = 0; l < LANES; l++)
                u[n][l] = clampf(base[t * NU + n] + (d ? d[l] : 0.0f), p->low[n], p->high[n]);
            if (samples) memcpy(samples + row, u[n], sizeof u[n]);
        }
        if (p->num_layers > 0) {
            const float *xs[NX] = {x[0], x[1], x[2], x[3], x[4]};
            const float *us[NU] = {u[0], u[1]};
            residual_rates(p, xs, us, rates, p->term_slot[T_DISAGREEMENT] >= 0 ? spread : NULL);
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
            const int n_out = p->widths[p->num_layers];
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
                        const float *perturb, const float *last_action, float *samples, float *states,
                        float *costs, float *terms) {
    const float s_start = start_arc_length(p, x0);
    const int blocks = (K + LANES - 1) / LANES;
    const int threads = p->num_threads < blocks ? p->num_threads : blocks;
#pragma omp parallel for num_threads(threads > 0 ? threads : 1) schedule(static)
    for (int b = 0; b < blocks; b++)
        rollout_block(p, H, K, b, x0, base, perturb, last_action, s_start, samples, states, costs, terms);
}

/* ---- entry points ----------------------------------------------------------------------------- */

/* Rollouts of u = clamp(base + perturb) (perturb blocked, or NULL: K copies of base). */
int vmpc_rollout(const Problem *p, int H, int K, const float *x0, const float *base, const float *perturb,
                 const float *last_action, float *samples, float *states, float *costs, float *terms) {
    if (H < 1 || K < 1) return -1;
    rollout_all(p, H, K, x0, base, perturb, last_action, samples, states, costs, terms);
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
    rollout_all(p, H, K, x0, nominal, noise, last_action, samples, NULL, costs, NULL);
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
    rollout_all(p, H, 1, x0, plan, NULL, last_action, NULL, plan_states, &plan_cost, plan_terms);
    stats[0] = plan_cost;
    stats[1] = best;
    stats[2] = (float)(total * total / total_sq);
    return 0;
}

/* sizeof(Problem), so the Python side can check its struct layout against this one. */
int vmpc_problem_size(void) { return (int)sizeof(Problem); }

/* LANES, the sample-block width of the blocked layouts. */
int vmpc_lanes(void) { return LANES; }
