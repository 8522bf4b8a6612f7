/* The "native" KANLinear path: one uniform-grid B-spline KAN layer, forward and backward, as
 * plain C loops (compiled on first use by layers/kan/_native.py, loaded with ctypes).
 *
 * For small layers, where the other paths spend their time dispatching a few hundred tensor
 * operations rather than computing. Built once per element type: REAL is float or double, and
 * every sum is accumulated in double whatever REAL is.
 *
 * Shapes (all row-major, contiguous): x (b, ni), grid (ni, m) float64, uniform per row unless
 * cells is not NULL (then any knots: cells holds one block per input, see local_basis_cells),
 * coef (no, ni, c), scale / base_weight (no, ni), bias (no), y and gy (b, no); c = m - k - 1.
 * poly is (2k + 2, k + 1): row r < k + 1 holds the coefficients (by power of s) of the r-th
 * nonzero cardinal basis on a cell, row k + 1 + r those of its d/ds. Optional arrays are NULL.
 * base: 0 none, 1 silu, 2 identity, 3 tanh; aux (b, ni) is sigmoid(x) for silu and tanh(x) for
 * tanh (computed by torch, vectorized: no exp per element here), NULL otherwise.
 * For the KAN paper's sparsity term (training/native_objective.py) forward can also sum each
 * edge's |r_oi(x_i)| over the samples (mass, (no, ni) double), r_oi = scale * phi + base_weight *
 * b(x), the edge's response without the bias, and backward can add d term / d r_oi =
 * weight_oi * sign(r_oi) to each edge's own upstream gradient (weight (no, ni) double).
 * Both entry points return 0, 1 when their work space could not be allocated, 2 for an order
 * they were not built for. Samples are split over up to `threads` of torch's OpenMP threads
 * (kan_run, _native_runtime.c), each with its own accumulators (summed in a fixed order).
 */
#include "_native.h"

/* b(x) and b'(x) from x and aux (sigmoid(x) for silu, tanh(x) for tanh, unused otherwise); base is
 * the number bases.BASES gives each function (1 silu, 2 identity, 3 tanh; 0: no base branch). */
static inline double base_value(int base, double x, double aux) {
    return base == 1 ? x * aux : base == 2 ? x : base == 3 ? aux : 0.0;
}

static inline double base_slope(int base, double x, double aux) {
    return base == 1 ? aux * (1.0 + x * (1.0 - aux)) : base == 2 ? 1.0 : base == 3 ? 1.0 - aux * aux : 0.0;
}

/* sign(r) as torch's abs' gradient takes it: 0 at 0, NaN for NaN. */
static inline double sign_of(double r) {
    return r > 0.0 ? 1.0 : r < 0.0 ? -1.0 : r == r ? 0.0 : r;
}

/* scale * coef as double rows of c + 2k + 2 with k + 1 zeros each side: (no * ni, c + 2k + 2). */
static double *padded_table(const REAL *coef, const REAL *scale, int64_t edges, int64_t c, int k) {
    int64_t w = c + 2 * k + 2;
    double *table = calloc((size_t)(edges * w), sizeof(double));
    if (table == NULL) return NULL;
    for (int64_t e = 0; e < edges; e++) {
        double sc = scale ? (double)scale[e] : 1.0;
        for (int64_t j = 0; j < c; j++) table[e * w + k + 1 + j] = sc * (double)coef[e * c + j];
    }
    return table;
}

/* Everything a kernel call reads and writes, for its ranges of samples (kan_run). */
typedef struct {
    int64_t b, ni, no, m;
    int k, base;
    const REAL *x, *aux, *coef, *scale, *base_weight, *bias, *gy;
    const double *grid, *poly, *table, *cells, *weight;
    REAL *y, *gx;
    double *acc;   /* one accumulator block of acc_size per part (backward; forward: the masses) */
    int64_t acc_size;
} call_t;

/* The local bases of nn samples of input i from x (see local_basis): from the uniform grid's t0
 * and 1 / h, or from input i's block of cells; returns whether a sample was NaN. */
static INLINE int input_basis(const call_t *a, const int k, int64_t i, const REAL *xi, int64_t nn,
                              const double *t0, const double *inv_h, int64_t *at, double *val, double *dval) {
    if (a->cells)
        return local_basis_cells(xi, a->ni, nn, a->cells + i * (search_size(a->m) + (a->m + 1) * CELL_WIDTH(k)),
                                 a->m, k, at, val, dval);
    return local_basis(xi, a->ni, nn, t0[i], inv_h[i], a->m, k, a->poly, at, val, dval);
}

/* r_oi at sample n of a chunk: base_weight * b(x) plus the k + 1 local bases times the edge's
 * padded row of scale * coef. */
static INLINE double response(const int k, const double *val, const double *row, const int64_t *at,
                              int64_t n, double bw, double bx) {
    double sum = bw * bx;
    for (int r = 0; r <= k; r++) sum += val[r * CHUNK + n] * row[at[n] + r];
    return sum;
}

/* y for the samples of chunks [c0, c1), and the masses (when wanted) in this part's block. */
static INLINE int forward(const call_t *a, const int k, int part, int64_t c0, int64_t c1) {
    int64_t ni = a->ni, no = a->no, m = a->m, w = m + k + 1;
    const REAL *x = a->x, *aux = a->aux, *base_weight = a->base_weight, *bias = a->bias;
    double *work = malloc((size_t)((no + k + 2) * CHUNK + 2 * ni) * sizeof(double));
    int64_t *at = malloc(CHUNK * sizeof(int64_t));
    if (work == NULL || at == NULL) {
        free(work);
        free(at);
        return 1;
    }
    double *acc = work, *val = acc + no * CHUNK, *bx = val + (k + 1) * CHUNK, *t0 = bx + CHUNK;
    double *inv_h = t0 + ni, *mass = a->acc ? a->acc + part * a->acc_size : NULL;
    grid_steps(a->grid, ni, m, t0, inv_h);
    for (int64_t n0 = c0 * CHUNK; n0 < a->b && n0 < c1 * CHUNK; n0 += CHUNK) {
        int64_t nn = a->b - n0 < CHUNK ? a->b - n0 : CHUNK;
        for (int64_t o = 0; o < no; o++)
            for (int64_t n = 0; n < nn; n++) acc[o * CHUNK + n] = bias ? (double)bias[o] : 0.0;
        for (int64_t i = 0; i < ni; i++) {
            const REAL *xi = x + n0 * ni + i;
            input_basis(a, k, i, xi, nn, t0, inv_h, at, val, NULL);
            for (int64_t n = 0; n < nn; n++)
                bx[n] = base_value(a->base, (double)xi[n * ni], aux ? (double)aux[(n0 + n) * ni + i] : 0.0);
            for (int64_t o = 0; o < no; o++) {
                int64_t e = o * ni + i;
                const double *row = a->table + e * w;
                double bw = base_weight ? (double)base_weight[e] : 1.0, *dst = acc + o * CHUNK;
                if (mass) {
                    double sum = 0.0;
                    for (int64_t n = 0; n < nn; n++) {
                        double r = response(k, val, row, at, n, bw, bx[n]);
                        dst[n] += r;
                        sum += fabs(r);
                    }
                    mass[e] += sum;
                } else {
                    for (int64_t n = 0; n < nn; n++) dst[n] += response(k, val, row, at, n, bw, bx[n]);
                }
            }
        }
        for (int64_t n = 0; n < nn; n++)
            for (int64_t o = 0; o < no; o++) a->y[(n0 + n) * no + o] = (REAL)acc[o * CHUNK + n];
    }
    free(work);
    free(at);
    return 0;
}

/* The layout of one part's accumulator block: sum_n gy * B per edge and lane (padded, unscaled),
 * sum_n gy * b(x) per edge, sum_n gy. */
#define ACC_SIZE(edges, no, w) ((edges) * (LANES * (w) + 1) + (no))

/* For the samples of chunks [c0, c1): gx, and the sums behind the parameters' gradients in
 * this part's accumulator block. Each edge's own upstream gradient is gy[n, o], plus
 * weight_oi * sign(r_oi) when weight is given. */
static INLINE int backward(const call_t *a, const int k, int part, int64_t c0, int64_t c1) {
    int64_t ni = a->ni, no = a->no, m = a->m, w = m + k + 1, edges = no * ni;
    const REAL *x = a->x, *aux = a->aux, *base_weight = a->base_weight, *gy = a->gy;
    REAL *gx = a->gx;
    /* t0, 1 / h, then per chunk: the values, slopes, b(x), b'(x), the gradient of x, an edge's
     * upstream gradient with the sparsity term and gy by output (no, CHUNK) */
    double *work = malloc((size_t)(2 * ni + (2 * k + 7 + no) * CHUNK) * sizeof(double));
    int64_t *at = malloc(CHUNK * sizeof(int64_t));
    if (work == NULL || at == NULL) {
        free(work);
        free(at);
        return 1;
    }
    double *abasis = a->acc + part * a->acc_size, *abase = abasis + edges * LANES * w, *abias = abase + edges;
    double *t0 = work, *inv_h = t0 + ni, *val = inv_h + ni, *dval = val + (k + 1) * CHUNK;
    double *bx = dval + (k + 1) * CHUNK, *dbx = bx + CHUNK, *gxc = dbx + CHUNK, *gsp = gxc + CHUNK;
    double *gyo = gsp + CHUNK;
    int spline_grads = a->acc_size > 0;
    grid_steps(a->grid, ni, m, t0, inv_h);
    for (int64_t n0 = c0 * CHUNK; n0 < a->b && n0 < c1 * CHUNK; n0 += CHUNK) {
        int64_t nn = a->b - n0 < CHUNK ? a->b - n0 : CHUNK;
        const REAL *g = gy + n0 * no;
        for (int64_t o = 0; o < no; o++)
            for (int64_t n = 0; n < nn; n++) gyo[o * CHUNK + n] = (double)g[n * no + o];
        if (spline_grads)
            for (int64_t n = 0; n < nn; n++)
                for (int64_t o = 0; o < no; o++) abias[o] += gyo[o * CHUNK + n];
        for (int64_t i = 0; i < ni; i++) {
            const REAL *xi = x + n0 * ni + i;
            int nan = input_basis(a, k, i, xi, nn, t0, inv_h, at, val, gx ? dval : NULL);
            for (int64_t n = 0; n < nn; n++) {
                double xv = (double)xi[n * ni], av = aux ? (double)aux[(n0 + n) * ni + i] : 0.0;
                bx[n] = base_value(a->base, xv, av);
                dbx[n] = base_slope(a->base, xv, av);
                gxc[n] = 0.0;
            }
            for (int64_t o = 0; o < no; o++) {
                int64_t e = o * ni + i;
                double bw = base_weight ? (double)base_weight[e] : 1.0, sum_base = 0.0;
                const double *go = gyo + o * CHUNK;  /* the edge's own upstream gradient */
                if (a->weight) {
                    const double *row = a->table + e * w;
                    double we = a->weight[e];
                    for (int64_t n = 0; n < nn; n++)
                        gsp[n] = go[n] + we * sign_of(response(k, val, row, at, n, bw, bx[n]));
                    go = gsp;
                }
                if (gx) {
                    const double *row = a->table + e * w;
                    for (int64_t n = 0; n < nn; n++) {
                        double slope = bw * dbx[n];
                        for (int r = 0; r <= k; r++) slope += dval[r * CHUNK + n] * row[at[n] + r];
                        gxc[n] += go[n] * slope;
                    }
                }
                if (spline_grads) {
                    double *dst = abasis + e * LANES * w;
                    for (int64_t n = 0; n < nn; n++) {
                        double *lane = dst + (n % LANES) * w + at[n];
                        for (int r = 0; r <= k; r++) lane[r] += go[n] * val[r * CHUNK + n];
                    }
                    for (int64_t n = 0; n < nn; n++) sum_base += go[n] * bx[n];
                    abase[e] += sum_base;
                    if (nan)  /* a NaN input: every coefficient of the edge, as with a dense basis */
                        for (int64_t j = 0; j < w; j++) dst[j] = NAN;
                }
            }
            if (gx)
                for (int64_t n = 0; n < nn; n++) gx[(n0 + n) * ni + i] = (REAL)gxc[n];
        }
    }
    free(work);
    free(at);
    return 0;
}

static int forward_range(const void *p, int part, int64_t c0, int64_t c1) {
    const call_t *a = p;
    int k = a->k;
#define FORWARD(K) forward(a, K, part, c0, c1)
    BY_ORDER(FORWARD)
}

static int backward_range(const void *p, int part, int64_t c0, int64_t c1) {
    const call_t *a = p;
    int k = a->k;
#define BACKWARD(K) backward(a, K, part, c0, c1)
    BY_ORDER(BACKWARD)
}

/* ---- the exported entry points -------------------------------------------------------------- */

/* y, and mass (sum_n |r_oi|) unless it is NULL. */
int kan_forward(int64_t b, int64_t ni, int64_t no, int64_t m, int k, const REAL *x, const REAL *aux,
                const double *grid, const double *poly, const double *cells, const REAL *coef, const REAL *scale,
                const REAL *base_weight, int base, const REAL *bias, REAL *y, double *mass, int threads) {
    if (k < 2 || k > MAX_K) return 2;
    int64_t edges = no * ni, chunks = (b + CHUNK - 1) / CHUNK;
    int parts = kan_parts(chunks, threads);
    double *table = padded_table(coef, scale, edges, m - k - 1, k);
    double *acc = mass ? calloc((size_t)(parts * edges), sizeof(double)) : NULL;
    if (table == NULL || (mass && acc == NULL)) {
        free(table);
        free(acc);
        return 1;
    }
    call_t a = {.b = b, .ni = ni, .no = no, .m = m, .k = k, .base = base, .x = x, .aux = aux,
                .base_weight = base_weight, .bias = bias, .grid = grid, .poly = poly, .table = table, .cells = cells,
                .y = y, .acc = acc, .acc_size = edges};
    int status = kan_run(forward_range, &a, chunks, threads);
    if (status == 0 && mass)
        for (int64_t e = 0; e < edges; e++) {
            mass[e] = acc[e];
            for (int q = 1; q < parts; q++) mass[e] += acc[q * edges + e];  /* parts in order */
        }
    free(table);
    free(acc);
    return status;
}

/* Gradients of sum(gy * y), plus sum_oi weight_oi * mass_oi unless weight is NULL, for the inputs
 * whose output pointer is not NULL. */
int kan_backward(int64_t b, int64_t ni, int64_t no, int64_t m, int k, const REAL *x, const REAL *aux,
                 const double *grid, const double *poly, const double *cells, const REAL *coef, const REAL *scale,
                 const REAL *base_weight, int base, const REAL *gy, const double *weight, REAL *gx, REAL *gcoef,
                 REAL *gscale, REAL *gbase_weight, REAL *gbias, int threads) {
    if (k < 2 || k > MAX_K) return 2;
    int64_t c = m - k - 1, w = c + 2 * k + 2, edges = no * ni, chunks = (b + CHUNK - 1) / CHUNK;
    int spline_grads = gcoef || gscale || gbase_weight || gbias, parts = kan_parts(chunks, threads);
    int64_t size = spline_grads ? ACC_SIZE(edges, no, w) : 0;
    double *table = gx || weight ? padded_table(coef, scale, edges, c, k) : NULL;
    double *acc = spline_grads ? calloc((size_t)(parts * size), sizeof(double)) : NULL;
    if (((gx || weight) && table == NULL) || (spline_grads && acc == NULL)) {
        free(table);
        free(acc);
        return 1;
    }
    call_t a = {.b = b, .ni = ni, .no = no, .m = m, .k = k, .base = base, .x = x, .aux = aux,
                .base_weight = base_weight, .gy = gy, .grid = grid, .poly = poly, .table = table, .cells = cells,
                .weight = weight, .gx = gx, .acc = acc, .acc_size = size};
    int status = kan_run(backward_range, &a, chunks, threads);
    if (status == 0 && spline_grads) {
        for (int q = 1; q < parts; q++)  /* every part's sums into the first's */
            for (int64_t j = 0; j < size; j++) acc[j] += acc[q * size + j];
        const double *abase = acc + edges * LANES * w, *abias = abase + edges;
        for (int64_t e = 0; e < edges; e++) {
            const double *lanes = acc + e * LANES * w + k + 1;  /* the c real bases of lane 0 */
            double sc = scale ? (double)scale[e] : 1.0, dot = 0.0;
            for (int64_t j = 0; j < c; j++) {
                double sum = 0.0;
                for (int l = 0; l < LANES; l++) sum += lanes[l * w + j];
                if (gcoef) gcoef[e * c + j] = (REAL)(sc * sum);
                dot += sum * (double)coef[e * c + j];
            }
            if (gscale) gscale[e] = (REAL)dot;
            if (gbase_weight) gbase_weight[e] = (REAL)abase[e];
        }
        if (gbias)
            for (int64_t o = 0; o < no; o++) gbias[o] = (REAL)abias[o];
        /* a NaN or inf in gy's column o (a NaN loss): every coefficient of the output's edges, as
         * the reference's product with its dense basis (zeros times NaN) */
        for (int64_t o = 0; o < no; o++)
            for (int64_t i = 0; !isfinite(abias[o]) && i < ni; i++) {
                for (int64_t j = 0; gcoef && j < c; j++) gcoef[(o * ni + i) * c + j] = NAN;
                if (gscale) gscale[o * ni + i] = NAN;
            }
    }
    free(table);
    free(acc);
    return status;
}
