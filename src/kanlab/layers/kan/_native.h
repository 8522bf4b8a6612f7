/* What the native kernels share (included by _native.c, _native_gather.c, _native_runtime.c): the build's
 * element type REAL (float or double, set by -DREAL), the per-order inlining, and the local
 * B-spline basis of a uniform grid. */
#ifndef KANLAB_NATIVE_H
#define KANLAB_NATIVE_H
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define MAX_K 5
/* The kernels' bodies are inlined once per order (see the switch at the end), so every loop over
 * the k + 1 local bases has a constant trip count and is unrolled. */
#define INLINE inline __attribute__((always_inline))
/* The gradient of the coefficients is summed in LANES copies, sample n into copy n % LANES:
 * neighbouring samples mostly share a cell, and one copy would chain their additions. */
#define LANES 4

/* Per input row: the grid's origin and 1 / spacing. The uniform-grid contract (origin, spacing,
 * u = (x - t0) * inv_h in double, clamped to [-1, m - 1], cell = floor(u)) is written once, in
 * kanlab/splines.py (uniform_cells and the module docstring); these kernels keep their own code
 * of it, and tests/test_basis_parity.py checks them against it. */
static inline void grid_steps(const double *grid, int64_t ni, int64_t m, double *t0, double *inv_h) {
    for (int64_t i = 0; i < ni; i++) {
        t0[i] = grid[i * m];
        inv_h[i] = (double)(m - 1) / (grid[i * m + m - 1] - t0[i]);
    }
}

/* Samples are taken CHUNK at a time, one input at a time: the local bases of a chunk are
 * independent of each other, so those loops pipeline (and vectorize) instead of waiting on one
 * sample's arithmetic after another's. */
#define CHUNK 128

/* The k + 1 bases that can be nonzero at each of nn samples of one input (as _fast.local_basis):
 * at[n], the padded index of the first (cell + 1, in 0..c + k + 1: the table rows are padded by
 * k + 1 zeros each side, so no index needs a check), val[r * CHUNK + n] their values and, when
 * dval is not NULL, d/dx. A NaN input gives NaN values at a valid index: it reaches the output.
 * Returns whether any input was NaN (backward then makes every gradient of the input's edges NaN,
 * as the reference's dense basis does). */
static INLINE int local_basis(const REAL *x, int64_t stride, int64_t nn, double t0, double inv_h, int64_t m,
                              int k, const double *poly, int64_t *restrict at, double *restrict val,
                              double *restrict dval) {
    /* Three passes, so that the first and last have no calls or integer conversions and vectorize:
     * the cell (floor by rounding at 1.5 * 2^52, exact for the small non-negative values here,
     * then one step down where rounding went up) and offset s, the cells as indices, the values.
     * The first pass's selects vectorize only without trapping math (-fno-trapping-math in the
     * build; benchmarks/README.md): no branches, and a NaN fails the first comparison, takes cell 0 and
     * keeps s NaN. */
    const double top = (double)(m - 1), round = 6755399441055744.0;
    double s[CHUNK], cell[CHUNK];
    int nan = 0;
    for (int64_t n = 0; n < nn; n++) {
        double raw = ((double)x[n * stride] - t0) * inv_h;
        double u = raw >= -1.0 ? raw : -1.0;      /* NaN too: it gets a valid cell */
        u = u <= top ? u : top;
        double v = u + 1.0;                       /* in 0..m */
        double c = (v + round) - round;
        c = c > v ? c - 1.0 : c;                  /* floor(v) = cell + 1 */
        cell[n] = c;
        s[n] = raw == raw ? v - c : raw;
        nan |= raw != raw;
    }
    for (int64_t n = 0; n < nn; n++) at[n] = (int64_t)cell[n];  /* (cell - k) + (k + 1) */
    for (int r = 0; r <= k; r++) {
        const double *p = poly + r * (k + 1);
        for (int64_t n = 0; n < nn; n++) {
            double v = p[k];
            for (int q = k - 1; q >= 0; q--) v = v * s[n] + p[q];
            val[r * CHUNK + n] = v;
        }
    }
    if (dval)
        for (int r = 0; r <= k; r++) {
            const double *p = poly + (k + 1 + r) * (k + 1);
            for (int64_t n = 0; n < nn; n++) {
                double v = p[k];
                for (int q = k - 1; q >= 0; q--) v = v * s[n] + p[q];
                dval[r * CHUNK + n] = v * inv_h;
            }
        }
    return nan;
}

/* Grids of any spacing (after update_grid): per input a block of SEARCH_SIZE(m) knots (the m
 * knots, then +inf) and m + 1 cell records of CELL_WIDTH(k) doubles (_native.cell_table): cell
 * c - 1 for c = 0..m, i.e. the one below the first knot, the m - 1 intervals and the one from the
 * last knot on; each its first knot, 1 / its width and its k + 1 bases' polynomials in s, k + 1
 * coefficients each (splines.cell_polynomials), all zero for the outer cells. */
#define CELL_WIDTH(k) (2 + ((k) + 1) * ((k) + 1))

static inline int64_t search_size(int64_t m) {  /* the smallest power of two >= m + 1 */
    int64_t size = 1;
    while (size < m + 1) size <<= 1;
    return size;
}

/* local_basis on such a block: the cell by a branch-free binary search (c = the number of knots
 * <= x; a NaN compares false and takes c = 0), then the values from the cell's polynomials. */
static INLINE int local_basis_cells(const REAL *x, int64_t stride, int64_t nn, const double *block, int64_t m,
                                    int k, int64_t *restrict at, double *restrict val, double *restrict dval) {
    const int64_t size = search_size(m), width = CELL_WIDTH(k);
    const double *knots = block, *cells = block + size;
    double s[CHUNK];
    int nan = 0;
    for (int64_t n = 0; n < nn; n++) {
        double xv = (double)x[n * stride];
        int64_t c = 0;
        for (int64_t half = size >> 1; half > 0; half >>= 1) c += knots[c + half - 1] <= xv ? half : 0;
        const double *cell = cells + c * width;
        double u = (xv - cell[0]) * cell[1];
        s[n] = c == 0 || c == m ? (xv == xv ? 0.0 : xv) : u;  /* outside: zero polynomials */
        nan |= xv != xv;
        at[n] = c;
    }
    for (int r = 0; r <= k; r++)
        for (int64_t n = 0; n < nn; n++) {
            const double *p = cells + at[n] * width + 2 + r * (k + 1);
            double v = p[k];
            for (int q = k - 1; q >= 0; q--) v = v * s[n] + p[q];
            val[r * CHUNK + n] = v;
        }
    if (dval)
        for (int r = 0; r <= k; r++)
            for (int64_t n = 0; n < nn; n++) {
                const double *cell = cells + at[n] * width, *p = cell + 2 + r * (k + 1);
                double v = k * p[k];
                for (int q = k - 1; q >= 1; q--) v = v * s[n] + q * p[q];
                dval[r * CHUNK + n] = v * cell[1];
            }
    return nan;
}

/* One inlined copy of a body per order k = 2..MAX_K (the kernels' exported entry points). */
#define BY_ORDER(call)                      \
    switch (k) {                            \
        case 2: return call(2);             \
        case 3: return call(3);             \
        case 4: return call(4);             \
        case 5: return call(5);             \
        default: return 2;                  \
    }

/* range(args, part, lo, hi) over [0, total) in kan_parts(total, threads) parts, each on one of
 * torch's OpenMP threads (part: its index); returns the first non-zero status of a part. */
int kan_parts(int64_t total, int threads);
int kan_run(int (*range)(const void *, int, int64_t, int64_t), const void *args, int64_t total, int threads);

#endif
