/* The "gather" KANLinear path's CPU kernels (layers/kan/_native_gather.py): y = sum over inputs and
 * the k + 1 nonzero bases of value * table row, and every gradient of it, for layers of any size.
 *
 * The same sums as the path's embedding bags, without their index sorts and bag layouts. The
 * forward splits samples over threads (or, where it builds the table as it goes, inputs, each
 * thread but the first summing into its own copy of y), the backward inputs, so that no two
 * threads write the same memory; the threads are torch's own OpenMP threads (kan_run in
 * _native_runtime.c). The loops over outputs are contiguous and vectorize; sums are in REAL, as a GEMM's
 * would be.
 *
 * Shapes (row-major, contiguous): x (b, ni); grid (ni, m) float64, uniform per row unless cells is
 * given (one block per input, as in _native.h's local_basis_cells); coef (no, ni,
 * c), scale (no, ni); table (ni * w, no), input i's block of w = c + 2k + 2 rows starting at row
 * i * w: k + 1 zero rows, scale * coef's c, k + 1 zero rows; first (ni, b) int64, the table row of
 * sample n's first nonzero basis of input i; val, dval (ni, b, k + 1) the bases' values and
 * x-derivatives; y (b, no); gy (b, ldg), ldg >= no a multiple of TAIL_STEP, zeros past column no;
 * gx (b, ni). Arrays that the kernels read past their rows' ends (the table, _native_gather.PAD)
 * have PAD more elements after their last. Entry points return 0, 1 when out of memory, 2 for
 * an order they were not built for, 3 for a gy stride they cannot read.
 */
#include "_native.h"
#include "_native_gather_forward.h"
#include "_native_gather_backward.h"

/* ---- entry points: each splits its range (samples or inputs) over threads ---------------- */

/* One inlined copy per order k = 0..MAX_K for the table kernels (any grid: they get the bases). */
#define ANY_ORDER(call)                     \
    switch (a->k) {                         \
        case 0: return call(0);             \
        case 1: return call(1);             \
        case 2: return call(2);             \
        case 3: return call(3);             \
        case 4: return call(4);             \
        case 5: return call(5);             \
        default: return 2;                  \
    }

typedef struct {
    int64_t b, ni, no, ldg, m, c, w;
    int k;
    const REAL *x, *table, *val, *dval, *gy, *coef, *scale;
    const double *grid, *poly, *cells;
    int64_t *first;
    REAL *out_val, *out_dval, *y, *gcoef, *gscale, *gx, *out_table, *partial;
    int *ran;
} args_t;

static int basis_range(const void *p, int part, int64_t i0, int64_t i1) {
    const args_t *a = p;
    int k = a->k;
    (void)part;
#define BASIS(K) basis(a->b, a->ni, a->m, K, a->x, a->grid, a->poly, a->cells, a->first, a->out_val, a->out_dval, \
                       i0, i1)
    BY_ORDER(BASIS)
}

static int forward_by_order(const args_t *a, REAL *y, int64_t n0, int64_t n1, int64_t i0, int64_t i1) {
#define FORWARD(K) forward(a->b, a->ni, a->no, a->c, K, a->table, a->out_table, a->coef, a->scale, a->first, \
                           a->val, y, n0, n1, i0, i1)
    ANY_ORDER(FORWARD)
}

/* Part p's inputs [i0, i1), every sample, into y (p = 0) or its partial sums (p - 1 of them). */
static int forward_build_range(const void *p, int part, int64_t i0, int64_t i1) {
    const args_t *a = p;
    a->ran[part] = 1;
    return forward_by_order(a, part ? a->partial + (part - 1) * a->b * a->no : a->y, 0, a->b, i0, i1);
}

/* y[n] += the partial sums of the parts that ran, for samples [n0, n1). */
static int add_partials_range(const void *p, int part, int64_t n0, int64_t n1) {
    const args_t *a = p;
    (void)part;
    for (int q = 1; a->ran[q] >= 0; q++) {
        if (!a->ran[q]) continue;
        const REAL *src = a->partial + (q - 1) * a->b * a->no;
        for (int64_t e = n0 * a->no; e < n1 * a->no; e++) a->y[e] += src[e];
    }
    return 0;
}

static int forward_range(const void *p, int part, int64_t n0, int64_t n1) {
    const args_t *a = p;
    (void)part;
    return forward_by_order(a, a->y, n0, n1, 0, a->ni);
}

/* backward() for the inputs [i0, i1) with this thread's scratch, by order. The gradient flags
 * stay run-time values: inlining a copy per combination tripled the compile time for no
 * measurable speed. */
static int backward_by_order(const args_t *a, REAL *gt, int64_t *order, int64_t i0, int64_t i1) {
#define BACKWARD(K) backward(a->b, a->ni, a->no, a->ldg, a->c, K, a->table, a->first, a->val, a->dval, a->gy, a->coef, \
                             a->scale, a->gcoef, a->gscale, a->gx, gt, order, order + a->b, i0, i1, gt != NULL, \
                             a->gx != NULL)
    ANY_ORDER(BACKWARD)
}

static int backward_range(const void *p, int part, int64_t i0, int64_t i1) {
    const args_t *a = p;
    (void)part;
    int want_gt = a->gcoef != NULL || a->gscale != NULL;
    /* this thread's scratch: the table gradient's blocks, the bucket order (b) and counts (w + 1) */
    REAL *gt = want_gt ? malloc((size_t)(COPIES * a->w * a->no) * sizeof(REAL)) : NULL;
    int64_t *order = want_gt ? malloc((size_t)(a->b + a->w + 1) * sizeof(int64_t)) : NULL;
    int status = want_gt && (gt == NULL || order == NULL) ? 1 : backward_by_order(a, gt, order, i0, i1);
    free(gt);
    free(order);
    return status;
}

static int table_range(const void *p, int part, int64_t i0, int64_t i1) {
    const args_t *a = p;
    (void)part;
    return table_rows(a->ni, a->no, a->c, a->k, a->coef, a->scale, a->out_table, i0, i1);
}

/* first, val and (dval not NULL) dval of x on a grid (ni, m), uniform or given by its cells; k 2..MAX_K. */
int gather_basis(int64_t b, int64_t ni, int64_t m, int k, const REAL *x, const double *grid, const double *poly,
                 const double *cells, int64_t *first, REAL *val, REAL *dval, int threads) {
    args_t a = {.b = b, .ni = ni, .m = m, .k = k, .x = x, .grid = grid, .poly = poly, .cells = cells,
                .first = first, .out_val = val, .out_dval = dval};
    return kan_run(basis_range, &a, ni, threads);
}

/* y (b, no) from the table (ni * w, no) and the bases. */
int gather_forward(int64_t b, int64_t ni, int64_t no, int64_t w, int k, const REAL *table, const int64_t *first,
                   const REAL *val, REAL *y, int threads) {
    args_t a = {.b = b, .ni = ni, .no = no, .c = w - 2 * k - 2, .w = w, .k = k, .table = table,
                .first = (int64_t *)first, .val = val, .y = y};
    return kan_run(forward_range, &a, b, threads);
}

/* y (b, no) and the padded table (ni * w, no) of coef (no, ni, c) times scale (no, ni; NULL: 1), in
 * one pass: the inputs split over threads, each thread's block of table rows built and read while
 * in its cache (not written, then read back from memory), into its own partial sums of y, added
 * up at the end. */
int gather_forward_build(int64_t b, int64_t ni, int64_t no, int64_t c, int k, const REAL *coef, const REAL *scale,
                         REAL *table, const int64_t *first, const REAL *val, REAL *y, int threads) {
    int parts = kan_parts(ni, threads);
    REAL *partial = parts > 1 ? malloc((size_t)((parts - 1) * b * no) * sizeof(REAL)) : NULL;
    int *ran = calloc((size_t)parts + 1, sizeof(int));  /* which parts ran; -1 ends the list */
    if ((parts > 1 && partial == NULL) || ran == NULL) {
        free(partial);
        free(ran);
        return 1;
    }
    ran[parts] = -1;
    args_t a = {.b = b, .ni = ni, .no = no, .c = c, .w = c + 2 * k + 2, .k = k, .coef = coef, .scale = scale,
                .out_table = table, .first = (int64_t *)first, .val = val, .y = y, .partial = partial, .ran = ran};
    int status = kan_run(forward_build_range, &a, ni, threads);
    if (status == 0 && parts > 1) status = kan_run(add_partials_range, &a, b, threads);
    free(partial);
    free(ran);
    return status;
}

/* The gradients of x (gx, needs dval), coef (gcoef) and scale (gscale), each skipped when NULL. */
int gather_backward(int64_t b, int64_t ni, int64_t no, int64_t ldg, int64_t c, int k, const REAL *table,
                    const int64_t *first,
                    const REAL *val, const REAL *dval, const REAL *gy, const REAL *coef, const REAL *scale,
                    REAL *gcoef, REAL *gscale, REAL *gx, int threads) {
    if (ldg < no || ldg % TAIL_STEP) return 3;
    args_t a = {.b = b, .ni = ni, .no = no, .ldg = ldg, .c = c, .w = c + 2 * k + 2, .k = k, .table = table,
                .first = (int64_t *)first, .val = val, .dval = dval, .gy = gy, .coef = coef, .scale = scale,
                .gcoef = gcoef, .gscale = gscale, .gx = gx};
    return kan_run(backward_range, &a, ni, threads);
}

/* The padded table (ni * w, no) of coef (no, ni, c) times scale (no, ni; NULL: 1). */
int gather_table(int64_t ni, int64_t no, int64_t c, int k, const REAL *coef, const REAL *scale, REAL *table,
                 int threads) {
    args_t a = {.ni = ni, .no = no, .c = c, .k = k, .coef = coef, .scale = scale, .out_table = table};
    return kan_run(table_range, &a, ni, threads);
}
