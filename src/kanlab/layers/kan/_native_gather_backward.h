/* The gather kernels' per-range loops, backward side: the table gradient (bucketed by row or per
 * sample), its unpacking into coef's and scale's gradients, and x's; included once, by
 * _native_gather.c after _native_gather_forward.h (its constants). */
#ifndef KANLAB_NATIVE_GATHER_BACKWARD_H
#define KANLAB_NATIVE_GATHER_BACKWARD_H

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

/* rows[r][o, o + keep) += sum over the cnt samples idx[] of val[n, r] * gy[n, o, o + keep), the
 * sums held in registers while the samples' gy rows (ldg apart) are read; summed over len >= keep
 * outputs (the lanes past keep read gy's zero columns, and are dropped). */
static INLINE void bucket_span(int64_t no, int64_t ldg, const int k, const int64_t *idx, int64_t cnt,
                               const REAL *val, const REAL *gy, REAL *rows, int64_t o, const int64_t len,
                               int64_t keep) {
    REAL acc[MAX_K + 1][SPAN];
    for (int r = 0; r <= k; r++)
        for (int64_t l = 0; l < len; l++) acc[r][l] = 0;
    for (int64_t q = 0; q < cnt; q++) {
        const REAL *restrict g = gy + idx[q] * ldg + o, *v = val + idx[q] * (k + 1);
        for (int r = 0; r <= k; r++) {
            REAL vr = v[r];
            for (int64_t l = 0; l < len; l++) acc[r][l] += vr * g[l];
        }
    }
    for (int r = 0; r <= k; r++)
        for (int64_t l = 0; l < keep; l++) rows[r * no + o + l] += acc[r][l];
}

/* bucket_span() for a row's last keep < SPAN outputs, over keep rounded up to a multiple of
 * TAIL_STEP (as forward_tail(): a length known at compile time keeps the sums in registers; gy's
 * rows are padded with zeros to ldg, a multiple of TAIL_STEP). */
static INLINE void bucket_tail(int64_t no, int64_t ldg, const int k, const int64_t *idx, int64_t cnt,
                               const REAL *val, const REAL *gy, REAL *rows, int64_t o, int64_t keep) {
#define TAIL(V) bucket_span(no, ldg, k, idx, cnt, val, gy, rows, o, (V) * TAIL_STEP <= SPAN ? (V) * TAIL_STEP : SPAN, \
                            keep); break
    switch ((keep + TAIL_STEP - 1) / TAIL_STEP) {
        case 1: TAIL(1); case 2: TAIL(2); case 3: TAIL(3); default: TAIL(4);
    }
#undef TAIL
}

/* One input's block gt (w * no) of the table's gradient from its first rows first[n] - base
 * and bases val (b, k + 1): a counting sort of the samples by first row (into order, with w + 1
 * counts), then each bucket's k + 1 rows SPAN outputs at a time (no >= SPAN). */
static INLINE void table_grad_by_row(int64_t b, int64_t no, int64_t ldg, int64_t w, const int k,
                                     const int64_t *first,
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
        for (; o + SPAN <= no; o += SPAN)
            bucket_span(no, ldg, k, order + start, cnt, val, gy, gt + j * no, o, SPAN, SPAN);
        if (o < no) bucket_tail(no, ldg, k, order + start, cnt, val, gy, gt + j * no, o, no - o);
    }
}

/* For inputs [i0, i1): the gradients of coef (gcoef = scale * G, G the block of the table's
 * gradient, sum_n val * gy[n] per row, summed in the scratch blocks gt: see SPAN) and of scale
 * (gscale = G . coef) when want_gt, and gx[n, i] = gy[n] . sum_r dval * table[first + r] when
 * want_gx. order and count: table_grad_by_row's. */
static INLINE int backward(int64_t b, int64_t ni, int64_t no, int64_t ldg, int64_t c, const int k,
                           const REAL *table,
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
            const REAL *restrict g = gy + n * ldg, *restrict t = table + at, *v = val + (i * b + n) * (k + 1);
            if (by_sample) {
                REAL *restrict dst = gt + (n % COPIES) * w * no + at - i * w * no;
                for (int r = 0; r <= k; r++) {
                    REAL vr = v[r];
                    for (int64_t o = 0; o < no; o++) dst[r * no + o] += vr * g[o];
                }
            }
            if (want_gx) {
                /* one dot product of g with the rows' sum weighted by dval, in VL partial sums
                 * (faster than a dot per row, then their weighted sum: benchmarks/README.md), over
                 * all ldg columns of g, whole vectors: past no, g is 0 and the rows read on into
                 * the next rows of the same input's block (or the table's PAD after its last) */
                const REAL *dv = dval + (i * b + n) * (k + 1);
                REAL lanes[VL], slope = 0, d[MAX_K + 1];
                for (int r = 0; r <= k; r++) d[r] = dv[r];
                for (int l = 0; l < VL; l++) lanes[l] = 0;
                for (int64_t o = 0; o < ldg; o += VL)
                    for (int l = 0; l < VL; l++) {
                        REAL row = d[0] * t[o + l];
                        for (int r = 1; r <= k; r++) row += d[r] * t[r * no + o + l];
                        lanes[l] += row * g[o + l];
                    }
                for (int l = 0; l < VL; l++) slope += lanes[l];
                gx[n * ni + i] = slope;
            }
        }
        if (by_row)
            table_grad_by_row(b, no, ldg, w, k, first + i * b, i * w, val + i * b * (k + 1), gy, gt, order, count);
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

#endif
