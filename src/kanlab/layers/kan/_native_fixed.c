/* A layer of fixed-function edges, y[s][o] = bias[o] + sum_i (c f(a x[s][i] + b) + d) with (a, b, c, d)
 * = affine[o][i] and f = the elementary function coded fn[o][i], and its backward: the symbolic
 * workflow's layers once every edge is fixed (kanlab/symbolic/fixed_edges.py, which maps its
 * library's names to these codes and keeps the torch form these functions follow, clamps included;
 * J0 is not here: torch's bessel_j0, which the layer's forward uses, differs from libm's j0 by up
 * to 2e-10 relative, so a layer with a J0 edge runs the torch form).
 *
 * Legend: b batch, ni inputs, no outputs; x (b, ni), y and gy (b, no), fn (no, ni), affine (no, ni, 4),
 * all contiguous. One thread: the symbolic layers are a few edges wide, and the call is dwarfed by
 * waking threads. Returns 0, 1 when it cannot allocate its sums, 2 for an unknown code. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* library.TINY: singular functions are evaluated at least this far from their poles. In REAL, as
 * torch compares, clamps and replaces in the tensor's dtype (float32's 1e-8 is 1e-8 - 6e-17). */
#define TINY ((double)(REAL)1e-8)

enum { ZERO, X, X2, X3, X4, X5, INV, INV2, SQRT, RSQRT, EXP, LOG, SIN, COS, TAN, TANH, SIGMOID, GAUSSIAN,
       ABS, ATAN, CODES };

/* library._away_from_zero: u, or +-TINY (the sign of u) where |u| < TINY */
static inline double away(double u) { return fabs(u) < TINY ? (u < 0 ? -TINY : TINY) : u; }
/* u.clamp(min=TINY), NaN kept */
static inline double clamped(double u) { return u < TINY ? TINY : u; }

/* f(u) and, through *df, f'(u) as autograd gives it through library's torch form: zero where that
 * form clamps u or moves it off a pole. */
static inline double edge(int fn, double u, double *df) {
    double v, w, s, t;
    switch (fn) {
    case ZERO: *df = 0; return 0;
    case X: *df = 1; return u;
    case X2: *df = 2 * u; return u * u;
    case X3: *df = 3 * (u * u); return u * u * u;
    case X4: *df = 4 * (u * u * u); return pow(u, 4);
    case X5: *df = 5 * pow(u, 4); return pow(u, 5);
    case INV: *df = fabs(u) < TINY ? 0 : -1 / (u * u); return 1 / away(u);
    case INV2: w = away(u); *df = fabs(u) < TINY ? 0 : -2 / (u * u * u); return 1 / (w * w);
    case SQRT: v = clamped(u); *df = u >= TINY ? 0.5 / sqrt(v) : 0; return sqrt(v);
    case RSQRT: v = clamped(u); *df = u >= TINY ? -0.5 / sqrt(v) / v : 0; return 1 / sqrt(v);
    case EXP: *df = exp(u); return *df;
    case LOG: v = clamped(u); *df = u >= TINY ? 1 / v : 0; return log(v);
    case SIN: *df = cos(u); return sin(u);
    case COS: *df = -sin(u); return cos(u);
    case TAN:
        s = sin(u), t = cos(u), w = away(t);
        *df = t / w + (fabs(t) < TINY ? 0 : s * s / (w * w));
        return s / w;
    case TANH: t = tanh(u); *df = 1 - t * t; return t;
    case SIGMOID: t = 1 / (1 + exp(-u)); *df = t * (1 - t); return t;
    case GAUSSIAN: t = exp(-(u * u)); *df = -2 * u * t; return t;
    case ABS: *df = u > 0 ? 1 : (u < 0 ? -1 : 0); return fabs(u); /* torch.sign: 0 at 0 and NaN */
    case ATAN: *df = 1 / (1 + u * u); return atan(u);
    default: *df = NAN; return NAN;
    }
}

static int known(int64_t edges, const int32_t *fn) {
    for (int64_t e = 0; e < edges; e++)
        if (fn[e] < 0 || fn[e] >= CODES) return 0;
    return 1;
}

int fixed_forward(int64_t b, int64_t ni, int64_t no, const REAL *x, const int32_t *fn, const REAL *affine,
                  const REAL *bias, REAL *y) {
    if (!known(no * ni, fn)) return 2;
    for (int64_t s = 0; s < b; s++) {
        for (int64_t o = 0; o < no; o++) {
            double sum = bias ? (double)bias[o] : 0, df;
            for (int64_t i = 0; i < ni; i++) {
                const REAL *p = affine + (o * ni + i) * 4;
                sum += p[2] * edge(fn[o * ni + i], p[0] * (double)x[s * ni + i] + p[1], &df) + p[3];
            }
            y[s * no + o] = (REAL)sum;
        }
    }
    return 0;
}

/* d loss / d affine (no, ni, 4) and / d bias (no) from gy, each summed over the batch (either may be
 * NULL: not wanted), and d loss / d x into gx (b, ni) unless it is NULL. */
int fixed_backward(int64_t b, int64_t ni, int64_t no, const REAL *x, const int32_t *fn, const REAL *affine,
                   const REAL *gy, REAL *gaffine, REAL *gbias, REAL *gx) {
    if (!known(no * ni, fn)) return 2;
    double *acc = calloc((size_t)(no * ni * 4 + no), sizeof(double)); /* (no, ni, 4), then (no) */
    if (acc == NULL) return 1;
    for (int64_t s = 0; s < b; s++) {
        for (int64_t i = 0; gx && i < ni; i++) gx[s * ni + i] = 0;
        for (int64_t o = 0; o < no; o++) {
            double g = gy[s * no + o], df;
            acc[no * ni * 4 + o] += g;
            for (int64_t i = 0; i < ni; i++) {
                const REAL *p = affine + (o * ni + i) * 4;
                double xi = x[s * ni + i], f = edge(fn[o * ni + i], p[0] * xi + p[1], &df);
                double gu = g * p[2] * df, *a = acc + (o * ni + i) * 4;
                a[0] += gu * xi;
                a[1] += gu;
                a[2] += g * f;
                a[3] += g;
                if (gx) gx[s * ni + i] += (REAL)(gu * p[0]);
            }
        }
    }
    for (int64_t e = 0; gaffine && e < no * ni * 4; e++) gaffine[e] = (REAL)acc[e];
    for (int64_t o = 0; gbias && o < no; o++) gbias[o] = (REAL)acc[no * ni * 4 + o];
    free(acc);
    return 0;
}
