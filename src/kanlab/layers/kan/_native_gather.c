/* The "gather" KANLinear path's CPU kernels (layers/kan/_native_gather.py): y = sum over inputs and
 * the k + 1 nonzero bases of value * table row, and every gradient of it, for layers of any size.
 *
 * The same sums as the path's embedding bags, without their index sorts and bag layouts. The
 * forward splits samples over threads (or, where it builds the table as it goes, inputs, each
 * thread but the first summing into its own copy of y), the backward inputs, so that no two
 * threads write the same memory; the threads are torch's own OpenMP threads (kan_run in
 * _native.c). The loops over outputs are contiguous and vectorize; sums are in REAL, as a GEMM's
 * would be.
 *
 * Shapes (row-major, contiguous): x (b, ni); grid (ni, m) float64, uniform per row unless cells is
 * given (one block per input, as in _native.h's local_basis_cells); coef (no, ni,
 * c), scale (no, ni); table (ni * w, no), input i's block of w = c + 2k + 2 rows starting at row
 * i * w: k + 1 zero rows, scale * coef's c, k + 1 zero rows; first (ni, b) int64, the table row of
 * sample n's first nonzero basis of input i; val, dval (ni, b, k + 1) the bases' values and
 * x-derivatives; y, gy (b, no); gx (b, ni). Entry points return 0, 1 when out of memory, 2 for
 * an order they were not built for.
 */
#include "_native.h"

/* Backward: dot products over outputs in VL partial sums, one vector register: 256 bits (fewer
 * partial sums to add up per sample and input than two), or 512 where AVX-512 is on (gcc
 * vectorizes 256-bit partial sums badly there).
 * The table's gradient, with at least SPAN outputs: samples bucketed by their first row, and
 * each bucket's k + 1 rows summed SPAN outputs at a time in registers over its samples
 * (table_grad_by_row; fewer outputs made gcc spill). Narrower layers: per sample, into COPIES
 * scratch blocks, sample n into copy n % COPIES (neighbouring samples' rows mostly overlap, and
 * in one copy each addition would wait on the last one's store).
 * The measured figures behind these choices: benchmarks/README.md, 'Measured figures behind code
 * choices'. */
#ifdef __AVX512F__
#define VL (64 / (int)sizeof(REAL))
#else
#define VL (32 / (int)sizeof(REAL))
#endif
#define SPAN 32
#define COPIES 2
/* Forward: OB outputs at a time summed in registers, over blocks of inputs whose table rows stay
 * in cache (forward()): L1_BYTES of OB-wide spans where that holds at least L1_INPUTS inputs
 * (each block reads and writes y's span once more), else L2_BYTES of whole rows. */
#define OB 64
/* The padded table is built through TT x TT tiles (table_rows()). */
#define TT 8
/* The table gradient's unpacking: tiles of TT outputs by UJ coefficients (unpack_tile()). */
#define UJ 64
#define L1_BYTES (24 << 10)
#define L1_INPUTS 4
#define L2_BYTES (512 << 10)

/* first, val and (when dval is not NULL) dval for inputs [i0, i1) on a uniform grid, or on any
 * grid from its cells (not NULL). */
static INLINE int basis(int64_t b, int64_t ni, int64_t m, const int k, const REAL *x, const double *grid,
                        const double *poly, const double *cells, int64_t *first, REAL *val, REAL *dval,
                        int64_t i0, int64_t i1) {
    int64_t w = m + k + 1, at[CHUNK], block = search_size(m) + (m + 1) * CELL_WIDTH(k);
    double v[(MAX_K + 1) * CHUNK], dv[(MAX_K + 1) * CHUNK];
    for (int64_t i = i0; i < i1; i++) {
        const double *g = grid + i * m;
        double t0 = g[0], inv_h = (double)(m - 1) / (g[m - 1] - t0);
        for (int64_t n0 = 0; n0 < b; n0 += CHUNK) {
            int64_t nn = b - n0 < CHUNK ? b - n0 : CHUNK, row = i * b + n0;
            if (cells)
                local_basis_cells(x + n0 * ni + i, ni, nn, cells + i * block, m, k, at, v, dval ? dv : NULL);
            else
                local_basis(x + n0 * ni + i, ni, nn, t0, inv_h, m, k, poly, at, v, dval ? dv : NULL);
            for (int64_t n = 0; n < nn; n++) {
                first[row + n] = i * w + at[n];
                for (int r = 0; r <= k; r++) val[(row + n) * (k + 1) + r] = (REAL)v[r * CHUNK + n];
                if (dval)
                    for (int r = 0; r <= k; r++) dval[(row + n) * (k + 1) + r] = (REAL)dv[r * CHUNK + n];
            }
        }
    }
    return 0;
}

/* len outputs from column o of sample n's row of y, summed over inputs [i0, i1) (onto dst's, unless
 * fresh): acc stays in registers while the table rows are read, and y is written once per block
 * of inputs. */
static INLINE void forward_span(int64_t b, int64_t no, const int k, const REAL *table, const int64_t *first,
                                const REAL *val, REAL *restrict dst, int64_t n, int64_t o, const int len,
                                int64_t i0, int64_t i1, int fresh) {
    REAL acc[OB];
    for (int l = 0; l < len; l++) acc[l] = fresh ? 0 : dst[l];
    for (int64_t i = i0; i < i1; i++) {
        const REAL *restrict rows = table + first[i * b + n] * no + o, *v = val + (i * b + n) * (k + 1);
        REAL vr[MAX_K + 1];
        for (int r = 0; r <= k; r++) vr[r] = v[r];
        REAL part[OB];  /* the k + 1 rows first: acc then waits on one addition per input */
        for (int l = 0; l < len; l++) part[l] = vr[0] * rows[l];
        for (int r = 1; r <= k; r++)
            for (int l = 0; l < len; l++) part[l] += vr[r] * rows[r * no + l];
        for (int l = 0; l < len; l++) acc[l] += part[l];
    }
    for (int l = 0; l < len; l++) dst[l] = acc[l];
}

/* Inputs per block of forward_block(): OB-wide spans of their table rows in L1_BYTES where that
 * holds at least L1_INPUTS inputs (*spans set), else whole rows in L2_BYTES; at least one. */
static int64_t forward_step(int64_t no, int64_t w, int *spans) {
    int64_t span_bytes = w * OB * (int64_t)sizeof(REAL), row_bytes = w * no * (int64_t)sizeof(REAL);
    *spans = span_bytes * L1_INPUTS <= L1_BYTES;
    int64_t step = *spans ? L1_BYTES / span_bytes : L2_BYTES / row_bytes;
    return step < 1 ? 1 : step;
}

/* y[n] (or, if fresh, y[n] =) += the sums over the block of inputs [i0, i1) for samples [n0, n1):
 * at small grids, OB-wide spans of the rows of enough inputs fit in L1, and every sample reads one
 * span's block before the next; at larger grids, whole rows in L2 (spans of L2-sized blocks have
 * strided rows); each the faster where chosen (benchmarks/README.md). */
static INLINE void forward_block(int64_t b, int64_t no, const int k, const REAL *table, const int64_t *first,
                                 const REAL *val, REAL *y, int64_t n0, int64_t n1, int64_t i0, int64_t i1,
                                 int spans, int fresh) {
    if (spans) {
        int64_t o = 0;
        for (; o + OB <= no; o += OB)
            for (int64_t n = n0; n < n1; n++)
                forward_span(b, no, k, table, first, val, y + n * no + o, n, o, OB, i0, i1, fresh);
        if (o < no)
            for (int64_t n = n0; n < n1; n++)
                forward_span(b, no, k, table, first, val, y + n * no + o, n, o, (int)(no - o), i0, i1, fresh);
        return;
    }
    for (int64_t n = n0; n < n1; n++) {
        int64_t o = 0;
        for (; o + OB <= no; o += OB)
            forward_span(b, no, k, table, first, val, y + n * no + o, n, o, OB, i0, i1, fresh);
        if (o < no) forward_span(b, no, k, table, first, val, y + n * no + o, n, o, (int)(no - o), i0, i1, fresh);
    }
}

/* The unpacking's dot products are summed without fused multiply-adds, as gcc compiled the
 * untiled loop it replaces (the same values to the bit: training trajectories, and what tests
 * pin to them, do not move); unpack() is kept out of line so that this holds where it is called. */
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

/* unpack() for the tt outputs from o0: their entries of the block's c rows copied UJ at a time
 * into a tile (tt rows of contiguous coefficients), then gcoef = scale * tile, and gscale's dot
 * products with coef, each summed in coefficient order (the tt sums interleaved, so that none
 * waits on its last addition), as the untiled loop summed them: the same values to the bit. */
static INLINE void unpack_tile(int64_t ni, int64_t no, int64_t c, int64_t i, const REAL *inner, const REAL *coef,
                               const REAL *scale, REAL *gcoef, REAL *gscale, int64_t o0, const int tt) {
    double dot[TT];
    for (int q = 0; q < tt; q++) dot[q] = 0;
    for (int64_t j0 = 0; j0 < c; j0 += UJ) {
        int64_t jn = c - j0 < UJ ? c - j0 : UJ;
        REAL tile[TT][UJ];
        for (int64_t j = 0; j < jn; j++)
            for (int q = 0; q < tt; q++) tile[q][j] = inner[(j0 + j) * no + o0 + q];
        if (gcoef)
            for (int q = 0; q < tt; q++) {
                int64_t e = (o0 + q) * ni + i;
                REAL sc = scale ? scale[e] : 1, *restrict dst = gcoef + e * c + j0;
                for (int64_t j = 0; j < jn; j++) dst[j] = sc * tile[q][j];
            }
        if (gscale)
            for (int64_t j = 0; j < jn; j++)
                for (int q = 0; q < tt; q++)
                    dot[q] += (double)tile[q][j] * (double)coef[((o0 + q) * ni + i) * c + j0 + j];
    }
    if (gscale)
        for (int q = 0; q < tt; q++) gscale[(o0 + q) * ni + i] = (REAL)dot[q];
}

/* gcoef and gscale of input i (either may be NULL) from its block of the table's gradient, TT
 * outputs at a time (unpack_tile). One output at a time down a column of the block, each dot
 * product was a chain of c dependent double additions, and the column's reads fell in few L1
 * sets (rows of no * sizeof(REAL) bytes): at 256->256 grid 100 that took about a third of the
 * backward; tiled, the table's gradient with the unpacking takes 0.8-0.9x its time then. */
static __attribute__((noinline)) void unpack(int64_t ni, int64_t no, int64_t c, int k, int64_t i, const REAL *block,
                                             const REAL *coef, const REAL *scale, REAL *gcoef, REAL *gscale) {
    const REAL *inner = block + (k + 1) * no;  /* the c inner rows */
    int64_t o0 = 0;
    for (; o0 + TT <= no; o0 += TT) unpack_tile(ni, no, c, i, inner, coef, scale, gcoef, gscale, o0, TT);
    if (o0 < no) unpack_tile(ni, no, c, i, inner, coef, scale, gcoef, gscale, o0, (int)(no - o0));
}
#pragma GCC pop_options

/* rows[r][o, o + len) += sum over the cnt samples idx[] of val[n, r] * gy[n, o, o + len), the
 * sums held in registers while the samples' gy rows are read. */
static INLINE void bucket_span(int64_t no, const int k, const int64_t *idx, int64_t cnt, const REAL *val,
                               const REAL *gy, REAL *rows, int64_t o, const int64_t len) {
    REAL acc[MAX_K + 1][SPAN];
    for (int r = 0; r <= k; r++)
        for (int64_t l = 0; l < len; l++) acc[r][l] = 0;
    for (int64_t q = 0; q < cnt; q++) {
        const REAL *restrict g = gy + idx[q] * no + o, *v = val + idx[q] * (k + 1);
        for (int r = 0; r <= k; r++) {
            REAL vr = v[r];
            for (int64_t l = 0; l < len; l++) acc[r][l] += vr * g[l];
        }
    }
    for (int r = 0; r <= k; r++)
        for (int64_t l = 0; l < len; l++) rows[r * no + o + l] += acc[r][l];
}

/* One input's block gt (w * no) of the table's gradient from its first rows first[n] - base
 * and bases val (b, k + 1): a counting sort of the samples by first row (into order, with w + 1
 * counts), then each bucket's k + 1 rows SPAN outputs at a time (no >= SPAN). */
static INLINE void table_grad_by_row(int64_t b, int64_t no, int64_t w, const int k, const int64_t *first,
                                     int64_t base, const REAL *val, const REAL *gy, REAL *gt, int64_t *order,
                                     int64_t *count) {
    for (int64_t e = 0; e < w * no; e++) gt[e] = 0;
    for (int64_t j = 0; j <= w; j++) count[j] = 0;
    for (int64_t n = 0; n < b; n++) count[first[n] - base + 1]++;
    for (int64_t j = 0; j < w; j++) count[j + 1] += count[j];  /* count[j]: where bucket j starts */
    for (int64_t n = 0; n < b; n++) order[count[first[n] - base]++] = n;
    for (int64_t j = 0, start = 0; j < w; start = count[j], j++) {  /* count[j]: now where it ends */
        int64_t cnt = count[j] - start, o = 0;
        if (cnt == 0) continue;
        for (; o + SPAN <= no; o += SPAN) bucket_span(no, k, order + start, cnt, val, gy, gt + j * no, o, SPAN);
        if (o < no) bucket_span(no, k, order + start, cnt, val, gy, gt + j * no, o, no - o);
    }
}

/* For inputs [i0, i1): the gradients of coef (gcoef = scale * G, G the block of the table's
 * gradient, sum_n val * gy[n] per row, summed in the scratch blocks gt: see SPAN) and of scale
 * (gscale = G . coef) when want_gt, and gx[n, i] = gy[n] . sum_r dval * table[first + r] when
 * want_gx. order and count: table_grad_by_row's. */
static INLINE int backward(int64_t b, int64_t ni, int64_t no, int64_t c, const int k, const REAL *table,
                           const int64_t *first, const REAL *val, const REAL *dval, const REAL *gy,
                           const REAL *coef, const REAL *scale, REAL *gcoef, REAL *gscale, REAL *gx,
                           REAL *gt, int64_t *order, int64_t *count, int64_t i0, int64_t i1, int want_gt,
                           int want_gx) {
    int64_t w = c + 2 * k + 2;
    int by_row = want_gt && no >= SPAN, by_sample = want_gt && !by_row;
    for (int64_t i = i0; i < i1; i++) {
        if (by_sample)
            for (int64_t e = 0; e < COPIES * w * no; e++) gt[e] = 0;
        for (int64_t n = 0; n < b && (by_sample || want_gx); n++) {
            int64_t at = first[i * b + n] * no;
            const REAL *restrict g = gy + n * no, *restrict t = table + at, *v = val + (i * b + n) * (k + 1);
            if (by_sample) {
                REAL *restrict dst = gt + (n % COPIES) * w * no + at - i * w * no;
                for (int r = 0; r <= k; r++) {
                    REAL vr = v[r];
                    for (int64_t o = 0; o < no; o++) dst[r * no + o] += vr * g[o];
                }
            }
            if (want_gx) {
                /* one dot product of g with the rows' sum weighted by dval, in VL partial sums
                 * (faster than a dot per row, then their weighted sum: benchmarks/README.md) */
                const REAL *dv = dval + (i * b + n) * (k + 1);
                REAL lanes[VL], slope = 0, d[MAX_K + 1];
                for (int r = 0; r <= k; r++) d[r] = dv[r];
                int64_t o = 0;
                for (int l = 0; l < VL; l++) lanes[l] = 0;
                for (; o + VL <= no; o += VL)
                    for (int l = 0; l < VL; l++) {
                        REAL row = d[0] * t[o + l];
                        for (int r = 1; r <= k; r++) row += d[r] * t[r * no + o + l];
                        lanes[l] += row * g[o + l];
                    }
                for (int l = 0; l < VL; l++) slope += lanes[l];
                for (int64_t p = o; p < no; p++) {
                    REAL row = 0;
                    for (int r = 0; r <= k; r++) row += d[r] * t[r * no + p];
                    slope += row * g[p];
                }
                gx[n * ni + i] = slope;
            }
        }
        if (by_row)
            table_grad_by_row(b, no, w, k, first + i * b, i * w, val + i * b * (k + 1), gy, gt, order, count);
        if (by_sample)
            for (int copy = 1; copy < COPIES; copy++)
                for (int64_t e = 0; e < w * no; e++) gt[e] += gt[copy * w * no + e];
        if (want_gt) {
            unpack(ni, no, c, k, i, gt, coef, scale, gcoef, gscale);
            /* a NaN input (its values are NaN): every coefficient of its edges, as with a dense basis */
            int nan = 0;
            for (int64_t n = 0; n < b; n++) nan |= val[(i * b + n) * (k + 1)] != val[(i * b + n) * (k + 1)];
            for (int64_t o = 0; nan && o < no; o++) {
                int64_t e = o * ni + i;
                for (int64_t j = 0; gcoef && j < c; j++) gcoef[e * c + j] = NAN;
                if (gscale) gscale[e] = NAN;
            }
        }
    }
    return 0;
}

/* Input i's block of the table from coef (no, ni, c) times scale (no, ni) (NULL: 1), with k + 1
 * zero rows each side, for inputs [i0, i1). A transposition (each edge's c coefficients go down a
 * column of c rows), through TT x TT tiles, so that reads and writes are both contiguous: straight
 * down the columns, wide layers' rows map a column's cache lines to a few L1 sets
 * (benchmarks/README.md). */
static int table_rows(int64_t ni, int64_t no, int64_t c, int k, const REAL *coef, const REAL *scale,
                      REAL *table, int64_t i0, int64_t i1) {
    int64_t w = c + 2 * k + 2;
    for (int64_t i = i0; i < i1; i++) {
        REAL *block = table + i * w * no, *inner = block + (k + 1) * no;
        for (int64_t e = 0; e < (k + 1) * no; e++) block[e] = block[(w - k - 1) * no + e] = 0;
        int64_t o0 = 0;
        for (; o0 + TT <= no; o0 += TT) {
            REAL sc[TT], tile[TT][TT];
            int64_t j0 = 0;
            for (int q = 0; q < TT; q++) sc[q] = scale ? scale[(o0 + q) * ni + i] : 1;
            for (; j0 + TT <= c; j0 += TT) {
                for (int q = 0; q < TT; q++) {
                    const REAL *src = coef + ((o0 + q) * ni + i) * c + j0;
                    for (int jj = 0; jj < TT; jj++) tile[jj][q] = sc[q] * src[jj];
                }
                for (int jj = 0; jj < TT; jj++)
                    for (int q = 0; q < TT; q++) inner[(j0 + jj) * no + o0 + q] = tile[jj][q];
            }
            for (int q = 0; q < TT; q++)  /* the last c % TT coefficients: down the columns */
                for (int64_t j = j0; j < c; j++) inner[j * no + o0 + q] = sc[q] * coef[((o0 + q) * ni + i) * c + j];
        }
        for (int64_t o = o0; o < no; o++) {  /* the last no % TT edges */
            REAL sc = scale ? scale[o * ni + i] : 1;
            for (int64_t j = 0; j < c; j++) inner[j * no + o] = sc * coef[(o * ni + i) * c + j];
        }
    }
    return 0;
}

/* y[n] = sum_{i, r} val[i, n, r] * table[first[i, n] + r] over the inputs [i0, i1), for samples
 * [n0, n1), in blocks of inputs whose table rows stay in cache (forward_step). The rows are
 * table's or, where out_table is not NULL, built there a block at a time (table_rows()) just
 * before the block is read, while they are in cache (gather_forward_build()). */
static INLINE int forward(int64_t b, int64_t ni, int64_t no, int64_t c, const int k, const REAL *table,
                          REAL *out_table, const REAL *coef, const REAL *scale, const int64_t *first,
                          const REAL *val, REAL *y, int64_t n0, int64_t n1, int64_t i0, int64_t i1) {
    int64_t w = c + 2 * k + 2;
    int spans;
    int64_t step = forward_step(no, w, &spans);
    const REAL *rows = out_table ? out_table : table;
    for (int64_t ib = i0; ib < i1; ib += step) {
        int64_t ie = i1 - ib < step ? i1 : ib + step;
        if (out_table) table_rows(ni, no, c, k, coef, scale, out_table, ib, ie);
        forward_block(b, no, k, rows, first, val, y, n0, n1, ib, ie, spans, ib == i0);
    }
    return 0;
}

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
    int64_t b, ni, no, m, c, w;
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
#define BACKWARD(K) backward(a->b, a->ni, a->no, a->c, K, a->table, a->first, a->val, a->dval, a->gy, a->coef, \
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
int gather_backward(int64_t b, int64_t ni, int64_t no, int64_t c, int k, const REAL *table, const int64_t *first,
                    const REAL *val, const REAL *dval, const REAL *gy, const REAL *coef, const REAL *scale,
                    REAL *gcoef, REAL *gscale, REAL *gx, int threads) {
    args_t a = {.b = b, .ni = ni, .no = no, .c = c, .w = c + 2 * k + 2, .k = k, .table = table,
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
