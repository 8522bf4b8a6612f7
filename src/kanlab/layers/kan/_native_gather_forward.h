/* The gather kernels' per-range loops, forward side: the local bases, the forward sums and the
 * padded table; included once, by _native_gather.c (one translation unit, so the always_inline
 * kernels compile as before). Shapes and conventions: _native_gather.c's header. */
#ifndef KANLAB_NATIVE_GATHER_FORWARD_H
#define KANLAB_NATIVE_GATHER_FORWARD_H

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
                                int64_t i0, int64_t i1, int fresh, int keep) {
    REAL acc[OB];
    for (int l = 0; l < len; l++) acc[l] = fresh || l >= keep ? 0 : dst[l];
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
    for (int l = 0; l < keep; l++) dst[l] = acc[l];
}

/* forward_span() for a row's last keep < OB outputs: summed over keep rounded up to a multiple of
 * TAIL_STEP, a length known at compile time, so that the sums stay in registers (with keep itself
 * they went through memory, and a 47-wide layer's forward took 2.3x a 64-wide one's per output:
 * benchmarks/README.md). The lanes past keep read on into the next row, or into the PAD elements
 * after the table (_native_gather.py), and are dropped. Out of line, with the order a run-time
 * value, so that there is one copy per length rather than one per length and order and caller
 * (which took the compile from 6 to 25 s for no more speed). */
#define TAIL_STEP (VL > 8 ? VL : 8)
static __attribute__((noinline)) void forward_tail(int64_t b, int64_t no, int k, const REAL *table,
                                                   const int64_t *first, const REAL *val, REAL *restrict dst,
                                                   int64_t n, int64_t o, int keep, int64_t i0, int64_t i1,
                                                   int fresh) {
/* (the cases past OB / TAIL_STEP never run: their lengths are clamped to OB only to compile) */
#define TAIL(V) forward_span(b, no, k, table, first, val, dst, n, o, (V) * TAIL_STEP <= OB ? (V) * TAIL_STEP : OB, \
                             i0, i1, fresh, keep); break
    switch ((keep + TAIL_STEP - 1) / TAIL_STEP) {
        case 1: TAIL(1); case 2: TAIL(2); case 3: TAIL(3); case 4: TAIL(4);
        case 5: TAIL(5); case 6: TAIL(6); case 7: TAIL(7); default: TAIL(8);
    }
#undef TAIL
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
                forward_span(b, no, k, table, first, val, y + n * no + o, n, o, OB, i0, i1, fresh, OB);
        if (o < no)
            for (int64_t n = n0; n < n1; n++)
                forward_tail(b, no, k, table, first, val, y + n * no + o, n, o, (int)(no - o), i0, i1, fresh);
        return;
    }
    for (int64_t n = n0; n < n1; n++) {
        int64_t o = 0;
        for (; o + OB <= no; o += OB)
            forward_span(b, no, k, table, first, val, y + n * no + o, n, o, OB, i0, i1, fresh, OB);
        if (o < no) forward_tail(b, no, k, table, first, val, y + n * no + o, n, o, (int)(no - o), i0, i1, fresh);
    }
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

#endif
