/* The "native" KANLinear path: one uniform-grid B-spline KAN layer, forward and backward, as
 * plain C loops (compiled on first use by layers/_native.py, loaded with ctypes).
 *
 * For small layers, where the other paths spend their time dispatching a few hundred tensor
 * operations rather than computing. Built once per element type: REAL is float or double, and
 * every sum is accumulated in double whatever REAL is.
 *
 * Shapes (all row-major, contiguous): x (b, ni), grid (ni, m) float64, uniform per row,
 * coef (no, ni, c), scale / base_weight (no, ni), bias (no), y and gy (b, no); c = m - k - 1.
 * poly is (2k + 2, k + 1): row r < k + 1 holds the coefficients (by power of s) of the r-th
 * nonzero cardinal basis on a cell, row k + 1 + r those of its d/ds. Optional arrays are NULL.
 * base: 0 none, 1 silu, 2 identity, 3 tanh; aux (b, ni) is sigmoid(x) for silu and tanh(x) for
 * tanh (computed by torch, vectorized: no exp per element here), NULL otherwise.
 * Both entry points return 0, or non-zero when their work space could not be allocated.
 */
#include "_native.h"

/* b(x) and b'(x) from x and aux (sigmoid(x) for silu, tanh(x) for tanh, unused otherwise). */
static inline double base_value(int base, double x, double aux) {
    return base == 1 ? x * aux : base == 2 ? x : base == 3 ? aux : 0.0;
}

static inline double base_slope(int base, double x, double aux) {
    return base == 1 ? aux * (1.0 + x * (1.0 - aux)) : base == 2 ? 1.0 : base == 3 ? 1.0 - aux * aux : 0.0;
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

static INLINE int forward(int64_t b, int64_t ni, int64_t no, int64_t m, const int k, const REAL *x,
                          const REAL *aux, const double *grid, const double *poly, const REAL *coef,
                          const REAL *scale, const REAL *base_weight, int base, const REAL *bias, REAL *y) {
    int64_t c = m - k - 1, w = c + 2 * k + 2;
    double *table = padded_table(coef, scale, no * ni, c, k);
    double *work = malloc((size_t)((no + k + 2) * CHUNK + 2 * ni) * sizeof(double));
    int64_t *at = malloc(CHUNK * sizeof(int64_t));
    if (table == NULL || work == NULL || at == NULL) {
        free(table);
        free(work);
        free(at);
        return 1;
    }
    double *acc = work, *val = acc + no * CHUNK, *bx = val + (k + 1) * CHUNK, *t0 = bx + CHUNK;
    double *inv_h = t0 + ni;
    grid_steps(grid, ni, m, t0, inv_h);
    for (int64_t n0 = 0; n0 < b; n0 += CHUNK) {
        int64_t nn = b - n0 < CHUNK ? b - n0 : CHUNK;
        for (int64_t o = 0; o < no; o++)
            for (int64_t n = 0; n < nn; n++) acc[o * CHUNK + n] = bias ? (double)bias[o] : 0.0;
        for (int64_t i = 0; i < ni; i++) {
            const REAL *xi = x + n0 * ni + i;
            local_basis(xi, ni, nn, t0[i], inv_h[i], m, k, poly, at, val, NULL);
            for (int64_t n = 0; n < nn; n++)
                bx[n] = base_value(base, (double)xi[n * ni], aux ? (double)aux[(n0 + n) * ni + i] : 0.0);
            for (int64_t o = 0; o < no; o++) {
                int64_t e = o * ni + i;
                const double *row = table + e * w;
                double bw = base_weight ? (double)base_weight[e] : 1.0, *dst = acc + o * CHUNK;
                for (int64_t n = 0; n < nn; n++) {
                    double sum = bw * bx[n];
                    for (int r = 0; r <= k; r++) sum += val[r * CHUNK + n] * row[at[n] + r];
                    dst[n] += sum;
                }
            }
        }
        for (int64_t n = 0; n < nn; n++)
            for (int64_t o = 0; o < no; o++) y[(n0 + n) * no + o] = (REAL)acc[o * CHUNK + n];
    }
    free(table);
    free(work);
    free(at);
    return 0;
}

static INLINE int backward(int64_t b, int64_t ni, int64_t no, int64_t m, const int k, const REAL *x,
                           const REAL *aux, const double *grid, const double *poly, const REAL *coef,
                           const REAL *scale, const REAL *base_weight, int base, const REAL *gy, REAL *gx,
                           REAL *gcoef, REAL *gscale, REAL *gbase_weight, REAL *gbias) {
    int64_t c = m - k - 1, w = c + 2 * k + 2, edges = no * ni;
    double *table = gx ? padded_table(coef, scale, edges, c, k) : NULL;
    /* sum_n gy * B per edge and lane (padded, unscaled), sum_n gy * b(x) per edge, sum_n gy, t0,
     * 1 / h, then per chunk: the values, slopes, b(x), b'(x) and the gradient of x */
    int64_t size = edges * (LANES * w + 1) + no + 2 * ni + (2 * k + 6) * CHUNK;
    double *acc = calloc((size_t)size, sizeof(double));
    int64_t *at = malloc(CHUNK * sizeof(int64_t));
    if (acc == NULL || at == NULL || (gx && table == NULL)) {
        free(table);
        free(acc);
        free(at);
        return 1;
    }
    double *abasis = acc, *abase = acc + edges * LANES * w, *abias = abase + edges, *t0 = abias + no;
    double *inv_h = t0 + ni, *val = inv_h + ni, *dval = val + (k + 1) * CHUNK;
    double *bx = dval + (k + 1) * CHUNK, *dbx = bx + CHUNK, *gxc = dbx + CHUNK;
    int spline_grads = gcoef != NULL || gscale != NULL;
    grid_steps(grid, ni, m, t0, inv_h);
    for (int64_t n0 = 0; n0 < b; n0 += CHUNK) {
        int64_t nn = b - n0 < CHUNK ? b - n0 : CHUNK;
        const REAL *g = gy + n0 * no;
        for (int64_t n = 0; n < nn; n++)
            for (int64_t o = 0; o < no; o++) abias[o] += (double)g[n * no + o];
        for (int64_t i = 0; i < ni; i++) {
            const REAL *xi = x + n0 * ni + i;
            local_basis(xi, ni, nn, t0[i], inv_h[i], m, k, poly, at, val, gx ? dval : NULL);
            for (int64_t n = 0; n < nn; n++) {
                double xv = (double)xi[n * ni], av = aux ? (double)aux[(n0 + n) * ni + i] : 0.0;
                bx[n] = base_value(base, xv, av);
                dbx[n] = base_slope(base, xv, av);
                gxc[n] = 0.0;
            }
            for (int64_t o = 0; o < no; o++) {
                int64_t e = o * ni + i;
                double bw = base_weight ? (double)base_weight[e] : 1.0, sum_base = 0.0;
                if (gx) {
                    const double *row = table + e * w;
                    for (int64_t n = 0; n < nn; n++) {
                        double slope = bw * dbx[n];
                        for (int r = 0; r <= k; r++) slope += dval[r * CHUNK + n] * row[at[n] + r];
                        gxc[n] += (double)g[n * no + o] * slope;
                    }
                }
                if (spline_grads) {
                    double *dst = abasis + e * LANES * w;
                    for (int64_t n = 0; n < nn; n++) {
                        double go = (double)g[n * no + o], *lane = dst + (n % LANES) * w + at[n];
                        for (int r = 0; r <= k; r++) lane[r] += go * val[r * CHUNK + n];
                    }
                }
                for (int64_t n = 0; n < nn; n++) sum_base += (double)g[n * no + o] * bx[n];
                abase[e] += sum_base;
            }
            if (gx)
                for (int64_t n = 0; n < nn; n++) gx[(n0 + n) * ni + i] = (REAL)gxc[n];
        }
    }
    for (int64_t e = 0; e < edges; e++) {
        const double *a = abasis + e * LANES * w + k + 1;  /* the c real bases of lane 0 */
        double sc = scale ? (double)scale[e] : 1.0, dot = 0.0;
        for (int64_t j = 0; j < c; j++) {
            double sum = 0.0;
            for (int l = 0; l < LANES; l++) sum += a[l * w + j];
            if (gcoef) gcoef[e * c + j] = (REAL)(sc * sum);
            dot += sum * (double)coef[e * c + j];
        }
        if (gscale) gscale[e] = (REAL)dot;
        if (gbase_weight) gbase_weight[e] = (REAL)abase[e];
    }
    if (gbias)
        for (int64_t o = 0; o < no; o++) gbias[o] = (REAL)abias[o];
    free(table);
    free(acc);
    free(at);
    return 0;
}

/* The exported entry points. */
int kan_forward(int64_t b, int64_t ni, int64_t no, int64_t m, int k, const REAL *x, const REAL *aux,
                const double *grid, const double *poly, const REAL *coef, const REAL *scale,
                const REAL *base_weight, int base, const REAL *bias, REAL *y) {
#define FORWARD(K) forward(b, ni, no, m, K, x, aux, grid, poly, coef, scale, base_weight, base, bias, y)
    BY_ORDER(FORWARD)
}

/* Gradients of sum(gy * y) for the inputs whose output pointer is not NULL. */
int kan_backward(int64_t b, int64_t ni, int64_t no, int64_t m, int k, const REAL *x, const REAL *aux,
                 const double *grid, const double *poly, const REAL *coef, const REAL *scale,
                 const REAL *base_weight, int base, const REAL *gy, REAL *gx, REAL *gcoef, REAL *gscale,
                 REAL *gbase_weight, REAL *gbias) {
#define BACKWARD(K) backward(b, ni, no, m, K, x, aux, grid, poly, coef, scale, base_weight, base, gy, gx, \
                             gcoef, gscale, gbase_weight, gbias)
    BY_ORDER(BACKWARD)
}
