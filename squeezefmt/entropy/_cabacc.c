/*
 * squeezefmt.entropy._cabacc -- fast path of the context-adaptive binary arithmetic coder.
 *
 * Implements the CABAC payload of spec/entropy-cabac.md exactly like the readable reference
 * squeezefmt/entropy/cabac_ref.py: the encoder produces the same bytes, the decoder returns the
 * same values and rejects the same streams (StreamError from squeezefmt.errors), and rdoq makes
 * the same rate-distortion decisions (same double arithmetic, in the same order, with the rate
 * table passed in from Python). The tests compare the two.
 *
 * The range coder is LZMA-style: `low` holds the current 32-bit window plus a carry bit; bytes
 * whose value may still change by a carry wait in `cache` / `pending` (a run of 0xFF bytes).
 *
 * Untrusted input: the decoder writes only into the caller's count-sized output, reads bytes
 * with a bounds check (bytes past the end read as zero, and the termination check rejects a
 * stream that is not exactly consumed), and every loop is bounded (at most 2 + 15 context bins
 * and 2 * 30 + 1 + 15 bypass bins per value). All loops run with the GIL released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../_cshared.h"

#define PROB_BITS 15
#define PROB_ONE (1u << PROB_BITS)
#define PROB_INIT (PROB_ONE / 2)
#define FAST_SHIFT 4
#define SLOW_SHIFT 7
#define TOP (1u << 24)
#define MAX_GT 15
#define MAX_EG_ORDER 15
#define MAX_MAGNITUDE 2147483647LL
#define MAX_EG_PREFIX 30
#define SIG_CONTEXTS 9
#define SIGN_BASE 9
#define GT_BASE 12
#define NUM_CONTEXTS (GT_BASE + 2 * MAX_GT)
#define RATE_SHIFT 5
#define RATE_TABLE_SIZE (PROB_ONE >> RATE_SHIFT)

static PyObject *StreamError = NULL;

/* ------------------------------------------------------------------------------------------ */
/* Contexts                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    uint16_t fast[NUM_CONTEXTS];
    uint16_t slow[NUM_CONTEXTS];
} contexts_t;

static void ctx_init(contexts_t *c)
{
    for (int i = 0; i < NUM_CONTEXTS; i++)
        c->fast[i] = c->slow[i] = PROB_INIT;
}

static inline uint32_t ctx_p(const contexts_t *c, int i)
{
    return ((uint32_t)c->fast[i] + c->slow[i]) >> 1;
}

/* Branch-free form of: bin ? (s -= s >> shift) : (s += (ONE - s) >> shift), for both estimates. */
static inline void ctx_update(contexts_t *c, int i, int bin)
{
    uint32_t mask = 0u - (uint32_t)bin, f = c->fast[i], s = c->slow[i];
    f = f - ((f >> FAST_SHIFT) & mask) + (((PROB_ONE - f) >> FAST_SHIFT) & ~mask);
    s = s - ((s >> SLOW_SHIFT) & mask) + (((PROB_ONE - s) >> SLOW_SHIFT) & ~mask);
    c->fast[i] = (uint16_t)f;
    c->slow[i] = (uint16_t)s;
}

static inline uint32_t mag_min2(int32_t v)
{
    return v == 0 ? 0 : (v == 1 || v == -1) ? 1 : 2;
}

static inline int sig_ctx(int32_t p1, int32_t p2) { return 3 * mag_min2(p1) + mag_min2(p2); }
static inline int sign_ctx(int32_t p1) { return SIGN_BASE + (p1 == 0 ? 0 : p1 > 0 ? 1 : 2); }
static inline int gt_ctx(int i, uint32_t abs_p1) { return GT_BASE + 2 * (i - 1) + (abs_p1 > (uint32_t)i); }

static inline uint32_t uabs(int32_t v) { return v < 0 ? (uint32_t)(-(int64_t)v) : (uint32_t)v; }

/* ------------------------------------------------------------------------------------------ */
/* Encoder                                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    uint64_t low;
    uint32_t range;
    uint8_t cache;
    uint64_t pending;   /* bytes waiting: cache, then pending - 1 bytes of 0xFF */
    uint8_t *buf;
    size_t len, cap;
    int oom;
} encoder_t;

static void put_byte(encoder_t *e, uint8_t b)
{
    if (e->len == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 4096;
        uint8_t *nb = (uint8_t *)realloc(e->buf, cap);
        if (!nb) {
            e->oom = 1;
            return;
        }
        e->buf = nb;
        e->cap = cap;
    }
    e->buf[e->len++] = b;
}

static void shift_low(encoder_t *e)
{
    if ((uint32_t)e->low < 0xFF000000u || (e->low >> 32) != 0) {
        uint8_t carry = (uint8_t)(e->low >> 32);
        uint8_t temp = e->cache;
        do {
            put_byte(e, (uint8_t)(temp + carry));
            temp = 0xFF;
        } while (--e->pending != 0);
        e->cache = (uint8_t)(e->low >> 24);
    }
    e->pending++;
    e->low = (e->low & 0x00FFFFFFu) << 8;
}

static inline void enc_bin(encoder_t *e, contexts_t *c, int ctx, int bin)
{
    uint32_t bound = (e->range >> PROB_BITS) * ctx_p(c, ctx);
    if (bin) {
        e->low += bound;
        e->range -= bound;
    } else {
        e->range = bound;
    }
    ctx_update(c, ctx, bin);
    while (e->range < TOP) {
        e->range <<= 8;
        shift_low(e);
    }
}

static inline void enc_bypass(encoder_t *e, int bin)
{
    e->range >>= 1;
    if (bin)
        e->low += e->range;
    while (e->range < TOP) {
        e->range <<= 8;
        shift_low(e);
    }
}

static void enc_eg(encoder_t *e, uint64_t r, int g)
{
    uint64_t v = (r >> g) + 1;
    int m = 63 - __builtin_clzll(v);
    for (int j = 0; j < m; j++)
        enc_bypass(e, 1);
    enc_bypass(e, 0);
    for (int j = m - 1; j >= 0; j--)
        enc_bypass(e, (int)((v >> j) & 1));
    for (int j = g - 1; j >= 0; j--)
        enc_bypass(e, (int)((r >> j) & 1));
}

static void enc_value(encoder_t *e, contexts_t *c, int32_t q, int32_t p1, int32_t p2, int k, int g)
{
    uint32_t a = uabs(q), ap1 = uabs(p1);
    enc_bin(e, c, sig_ctx(p1, p2), a != 0);
    if (!a)
        return;
    enc_bin(e, c, sign_ctx(p1), q < 0);
    for (int i = 1; i <= k; i++) {
        int flag = a > (uint32_t)i;
        enc_bin(e, c, gt_ctx(i, ap1), flag);
        if (!flag)
            return;
    }
    enc_eg(e, (uint64_t)a - (uint64_t)k - 1, g);
}

/* The canonical termination: V = ceil(low / 2^24) * 2^24, all bytes out, the leading always-zero
 * byte dropped (returns its index 1), trailing zero bytes trimmed (the caller uses e->len). */
static void enc_finish(encoder_t *e)
{
    e->low += (TOP - (e->low & (TOP - 1))) & (TOP - 1);
    for (int i = 0; i < 5; i++)
        shift_low(e);
    while (e->len > 1 && e->buf[e->len - 1] == 0)
        e->len--;
}

/* ------------------------------------------------------------------------------------------ */
/* Decoder                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* The coder state. decode_values keeps it in a local whose address never escapes, so after
 * inlining the compiler holds range/code/pos in registers (the int32 output could alias uint32
 * fields of anything it cannot prove local, which would force a reload after every store).
 *
 * What makes this loop fast (measured by tools/bench_cabac.py; each was tried against the
 * alternative): (1) context bins branch on the decision and update the probability state inside
 * each branch, so a correctly predicted bin does not wait for the multiply and compare before the
 * state of the next bin is known (a branch-free update puts load, multiply, compare and store of
 * the context in one loop-carried chain); (2) the sign, a coin toss, is branch-free instead;
 * (3) the context indices of the next value are produced where the value's path already knows
 * them (no re-derivation from p1 with data-dependent branches); (4) no bounds checks while
 * FAST_MARGIN bytes remain. Branch-free renormalisation (clz or cmov) was slower on every input. */
typedef struct {
    const uint8_t *data;
    size_t len, pos;       /* pos counts reads past the end too (the termination check needs it) */
    uint32_t range, code;
    contexts_t c;
} decoder_t;

/* One value has at most 2 + 15 context bins, each shrinking range by less than 2^9 (p lies in
 * 71..32697), and 2 * 30 + 1 + 15 bypass bins, each halving it: at most 17 * 9 + 76 = 229 bits,
 * i.e. <= 29 bytes read. While FAST_MARGIN bytes are left, a value is decoded without bounds
 * checks. */
#define FAST_MARGIN 128

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Renormalise: while range < 2^24, shift in a byte (0, 1 or 2 of them: range >= 2^15 after any
 * bin). `fast`: the bytes are surely there (FAST_MARGIN); else bytes past the end read as 0. */
ALWAYS_INLINE void dec_renorm(decoder_t *d, const int fast)
{
    if (fast) {
        while (d->range < TOP) {
            d->range <<= 8;
            d->code = (d->code << 8) | d->data[d->pos++];
        }
        return;
    }
    while (d->range < TOP) {
        uint32_t byte = d->pos < d->len ? d->data[d->pos] : 0u;
        d->range <<= 8;
        d->code = (d->code << 8) | byte;
        d->pos++;
    }
}

/* A context bin (sections 5 and 6), branching on the decision (see decoder_t). */
ALWAYS_INLINE int dec_bin(decoder_t *d, int ctx, const int fast)
{
    uint32_t bound = (d->range >> PROB_BITS) * ctx_p(&d->c, ctx);
    int bin;
    uint16_t *f = &d->c.fast[ctx], *s = &d->c.slow[ctx];
    if (d->code >= bound) {
        d->code -= bound;
        d->range -= bound;
        *f -= *f >> FAST_SHIFT;
        *s -= *s >> SLOW_SHIFT;
        bin = 1;
    } else {
        d->range = bound;
        *f += (PROB_ONE - *f) >> FAST_SHIFT;
        *s += (PROB_ONE - *s) >> SLOW_SHIFT;
        bin = 0;
    }
    dec_renorm(d, fast);
    return bin;
}

/* A context bin whose value is close to a coin toss (the sign): no branch to mispredict. */
ALWAYS_INLINE int dec_bin_nobranch(decoder_t *d, int ctx, const int fast)
{
    uint32_t bound = (d->range >> PROB_BITS) * ctx_p(&d->c, ctx);
    uint32_t mask = 0u - (uint32_t)(d->code >= bound);
    d->code -= bound & mask;
    d->range = ((d->range - bound) & mask) | (bound & ~mask);
    int bin = (int)(mask & 1u);
    ctx_update(&d->c, ctx, bin);
    dec_renorm(d, fast);
    return bin;
}

ALWAYS_INLINE int dec_bypass(decoder_t *d, const int fast)
{
    d->range >>= 1;
    uint32_t mask = 0u - (uint32_t)(d->code >= d->range);
    d->code -= d->range & mask;
    dec_renorm(d, fast);
    return (int)(mask & 1u);
}

/* The Exp-Golomb remainder of order g (section 3, step 4); -1 for a prefix over 30 bins. */
ALWAYS_INLINE int64_t dec_eg(decoder_t *d, int g, const int fast)
{
    int m = 0;
    while (dec_bypass(d, fast))
        if (++m > MAX_EG_PREFIX)
            return -1;
    uint64_t r = 1;
    for (int j = 0; j < m; j++)
        r = (r << 1) | (uint64_t)dec_bypass(d, fast);
    r -= 1;
    for (int j = 0; j < g; j++)
        r = (r << 1) | (uint64_t)dec_bypass(d, fast);
    return (int64_t)r;
}

/* What the contexts of a value need from the values before it (section 4), kept in the form the
 * context indices use: min(|p1|, 2) and min(|p2|, 2), |p1|, and the sign context of p1. */
typedef struct {
    uint32_t c1, c2, ap1, sgn;
} neighbours_t;

/* One value; 0 on success, else a message. Updates the neighbours for the next value. */
ALWAYS_INLINE const char *dec_value(decoder_t *d, neighbours_t *nb, int k, int g, int32_t *q, const int fast)
{
    uint32_t c2 = nb->c1;
    if (!dec_bin(d, (int)(3 * nb->c1 + nb->c2), fast)) {
        *q = 0;
        *nb = (neighbours_t){0, c2, 0, SIGN_BASE};
        return NULL;
    }
    uint32_t neg = (uint32_t)dec_bin_nobranch(d, (int)nb->sgn, fast);
    uint32_t a = 1, ap1 = nb->ap1;
    while ((int)a <= k && dec_bin(d, GT_BASE + 2 * ((int)a - 1) + (ap1 > a), fast))
        a++;
    if ((int)a > k) {
        int64_t r = dec_eg(d, g, fast);
        if (r < 0)
            return "cabac stream: an Exp-Golomb prefix longer than 30 bins";
        if ((uint64_t)r > (uint64_t)MAX_MAGNITUDE - (uint64_t)k - 1)
            return "cabac stream: a magnitude above 2147483647";
        a = (uint32_t)k + 1 + (uint32_t)r;
    }
    *q = (int32_t)((a ^ (0u - neg)) + neg);
    *nb = (neighbours_t){a < 2 ? a : 2, c2, a, SIGN_BASE + 1 + neg};
    return NULL;
}

static const char *decode_values(const uint8_t *data, size_t len, int k, int g, int32_t *out, Py_ssize_t count)
{
    decoder_t d = {data, len, 0, 0xFFFFFFFFu, 0};
    ctx_init(&d.c);
    for (int i = 0; i < 4; i++, d.pos++)
        d.code = (d.code << 8) | (d.pos < len ? data[d.pos] : 0u);
    if (d.code >= d.range)
        return "cabac stream: the first code value lies outside the coder's range";
    neighbours_t nb = {0, 0, 0, SIGN_BASE};
    const size_t fast_end = len > FAST_MARGIN ? len - FAST_MARGIN : 0;
    Py_ssize_t n = 0;
    const char *err = NULL;
    /* pos only grows: the unchecked loop runs while a whole value's bytes are surely there */
    for (; n < count && d.pos < fast_end; n++) {
        int32_t q;
        if ((err = dec_value(&d, &nb, k, g, &q, 1)) != NULL)
            return err;
        out[n] = q;
    }
    for (; n < count; n++) {
        int32_t q;
        if ((err = dec_value(&d, &nb, k, g, &q, 0)) != NULL)
            return err;
        out[n] = q;
    }
    if (d.pos < len)
        return "cabac stream: trailing bytes after the last value";
    /* window: the last four bytes read (zeros past the end), big-endian */
    uint32_t window = 0;
    for (size_t i = d.pos - 4; i < d.pos; i++)
        window = (window << 8) | (i < len ? data[i] : 0u);
    if (d.code >= TOP || (window & (TOP - 1)))
        return "cabac stream: the final value is not the canonical termination (truncated or corrupt)";
    if (len && data[len - 1] == 0)
        return "cabac stream: a trailing zero byte (streams end with their last non-zero byte)";
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Rate-distortion optimised quantization                                                      */
/* ------------------------------------------------------------------------------------------ */

static inline double bin_cost(const contexts_t *c, const double *rate, int ctx, int bin)
{
    uint32_t idx = ctx_p(c, ctx) >> RATE_SHIFT;
    return bin ? rate[RATE_TABLE_SIZE - 1 - idx] : rate[idx];
}

static double value_rate(const contexts_t *c, const double *rate, int32_t q, int32_t p1, int32_t p2,
                         int k, int g)
{
    uint32_t a = uabs(q), ap1 = uabs(p1);
    double bits = bin_cost(c, rate, sig_ctx(p1, p2), a != 0);
    if (!a)
        return bits;
    bits += bin_cost(c, rate, sign_ctx(p1), q < 0);
    for (int i = 1; i <= k; i++) {
        int flag = a > (uint32_t)i;
        bits += bin_cost(c, rate, gt_ctx(i, ap1), flag);
        if (!flag)
            return bits;
    }
    uint64_t r = (uint64_t)a - (uint64_t)k - 1;
    int m = 63 - __builtin_clzll((r >> g) + 1);
    return bits + (double)(2 * m + 1 + g);
}

static void update_value(contexts_t *c, int32_t q, int32_t p1, int32_t p2, int k)
{
    uint32_t a = uabs(q), ap1 = uabs(p1);
    ctx_update(c, sig_ctx(p1, p2), a != 0);
    if (!a)
        return;
    ctx_update(c, sign_ctx(p1), q < 0);
    for (int i = 1; i <= k; i++) {
        int flag = a > (uint32_t)i;
        ctx_update(c, gt_ctx(i, ap1), flag);
        if (!flag)
            return;
    }
}

static void rdoq_values(const double *x, Py_ssize_t count, double lam, int k, int g, const double *rate,
                        int32_t *out)
{
    contexts_t c;
    ctx_init(&c);
    int32_t p1 = 0, p2 = 0;
    for (Py_ssize_t n = 0; n < count; n++) {
        double v = x[n];
        double r = floor(fabs(v) + 0.5);
        if (r > (double)MAX_MAGNITUDE)
            r = (double)MAX_MAGNITUDE;
        int32_t sgn = v < 0 ? -1 : 1;
        int32_t best_q = 0;
        double best_cost = v * v + lam * value_rate(&c, rate, 0, p1, p2, k, g);
        for (int32_t mag = (int32_t)r - 1; mag <= (int32_t)r; mag++) {
            if (mag <= 0)
                continue;
            int32_t q = sgn * mag;
            double dd = v - (double)q;
            double cost = dd * dd + lam * value_rate(&c, rate, q, p1, p2, k, g);
            if (cost < best_cost) {
                best_q = q;
                best_cost = cost;
            }
        }
        update_value(&c, best_q, p1, p2, k);
        out[n] = best_q;
        p2 = p1;
        p1 = best_q;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Cost of each part of the binarisation, for choosing K (encoder only)                        */
/* ------------------------------------------------------------------------------------------ */

/* Adapts the contexts as a K = 15 encoder would and adds -log2 P(bin) (``tab``: 2^-16 bits, indexed
 * by the 15-bit probability of a 0 bin) into out[0] for the significance and sign bins and into
 * out[i] for gt_i. A gt_i bin is coded, and its context adapted, exactly when |v| >= i for every
 * K >= i, so the arithmetic part of a K stream costs out[0] + out[1] + ... + out[K]. */
static void k_costs(const int32_t *v, Py_ssize_t count, const uint32_t *tab, uint64_t *out)
{
    contexts_t c;
    ctx_init(&c);
    int32_t p1 = 0, p2 = 0;
    for (int i = 0; i <= MAX_GT; i++)
        out[i] = 0;
    for (Py_ssize_t n = 0; n < count; n++) {
        int32_t q = v[n];
        uint32_t a = uabs(q), ap1 = uabs(p1);
        int ctx = sig_ctx(p1, p2);
        uint32_t p = ctx_p(&c, ctx);
        out[0] += a ? tab[PROB_ONE - p] : tab[p];
        ctx_update(&c, ctx, a != 0);
        if (a) {
            ctx = sign_ctx(p1);
            p = ctx_p(&c, ctx);
            out[0] += q < 0 ? tab[PROB_ONE - p] : tab[p];
            ctx_update(&c, ctx, q < 0);
            for (int i = 1; i <= MAX_GT; i++) {
                int flag = a > (uint32_t)i;
                ctx = gt_ctx(i, ap1);
                p = ctx_p(&c, ctx);
                out[i] += flag ? tab[PROB_ONE - p] : tab[p];
                ctx_update(&c, ctx, flag);
                if (!flag)
                    break;
            }
        }
        p2 = p1;
        p1 = q;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Python bindings                                                                             */
/* ------------------------------------------------------------------------------------------ */

static int get_buffer(PyObject *obj, Py_buffer *view, int writable, const char *fmt_char, Py_ssize_t itemsize,
                      const char *what)
{
    if (sqz_get_contiguous(obj, view, writable) < 0)
        return -1;
    const char *f = sqz_format_code(view);
    int ok = view->itemsize == itemsize && strchr(fmt_char, *f) != NULL && f[1] == '\0';
    if (!ok) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "%s: expected a contiguous buffer of %s", what,
                     itemsize == 4 ? "int32" : "float64");
        return -1;
    }
    return 0;
}

static int check_kg(int k, int g)
{
    if (k < 0 || k > MAX_GT || g < 0 || g > MAX_EG_ORDER) {
        PyErr_SetString(PyExc_ValueError, "k and g must be in 0..15");
        return -1;
    }
    return 0;
}

static PyObject *py_encode(PyObject *self, PyObject *args)
{
    PyObject *obj;
    int k, g;
    if (!PyArg_ParseTuple(args, "Oii", &obj, &k, &g) || check_kg(k, g) < 0)
        return NULL;
    Py_buffer v;
    if (get_buffer(obj, &v, 0, "il", 4, "values") < 0)
        return NULL;
    const int32_t *q = (const int32_t *)v.buf;
    Py_ssize_t count = v.len / 4;
    for (Py_ssize_t n = 0; n < count; n++) {
        if (q[n] == INT32_MIN) {
            PyBuffer_Release(&v);
            PyErr_SetString(PyExc_ValueError, "cabac: values must lie in [-2147483647, 2147483647]");
            return NULL;
        }
    }
    encoder_t e = {0, 0xFFFFFFFFu, 0, 1, NULL, 0, 0, 0};
    Py_BEGIN_ALLOW_THREADS
    contexts_t c;
    ctx_init(&c);
    int32_t p1 = 0, p2 = 0;
    for (Py_ssize_t n = 0; n < count && !e.oom; n++) {
        enc_value(&e, &c, q[n], p1, p2, k, g);
        p2 = p1;
        p1 = q[n];
    }
    if (!e.oom)
        enc_finish(&e);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&v);
    if (e.oom) {
        free(e.buf);
        return PyErr_NoMemory();
    }
    /* e.buf[0] is the always-zero leading byte of the LZMA-style framing. */
    PyObject *res = e.len > 1 ? PyBytes_FromStringAndSize((const char *)e.buf + 1, (Py_ssize_t)e.len - 1)
                              : PyBytes_FromStringAndSize("", 0);
    free(e.buf);
    return res;
}

static PyObject *py_decode(PyObject *self, PyObject *args)
{
    Py_buffer data;
    Py_ssize_t start;
    int k, g;
    PyObject *outobj;
    if (!PyArg_ParseTuple(args, "y*niiO", &data, &start, &k, &g, &outobj))
        return NULL;
    if (check_kg(k, g) < 0 || start < 0 || start > data.len) {
        PyBuffer_Release(&data);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "start outside the data");
        return NULL;
    }
    Py_buffer out;
    if (get_buffer(outobj, &out, 1, "il", 4, "out") < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    Py_ssize_t count = out.len / 4;
    const char *err = NULL;
    const uint8_t *payload = (const uint8_t *)data.buf + start;
    size_t payload_len = (size_t)(data.len - start);
    if (count == 0) {
        if (payload_len)
            err = "cabac stream: payload bytes for zero values";
    } else {
        Py_BEGIN_ALLOW_THREADS
        err = decode_values(payload, payload_len, k, g, (int32_t *)out.buf, count);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&data);
    if (err) {
        PyErr_SetString(StreamError, err);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *py_rdoq(PyObject *self, PyObject *args)
{
    PyObject *xobj, *robj, *outobj;
    double lam;
    int k, g;
    if (!PyArg_ParseTuple(args, "OdiiOO", &xobj, &lam, &k, &g, &robj, &outobj) || check_kg(k, g) < 0)
        return NULL;
    Py_buffer x, rt, out;
    if (get_buffer(xobj, &x, 0, "d", 8, "x") < 0)
        return NULL;
    if (get_buffer(robj, &rt, 0, "d", 8, "rate") < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    if (get_buffer(outobj, &out, 1, "il", 4, "out") < 0) {
        PyBuffer_Release(&x);
        PyBuffer_Release(&rt);
        return NULL;
    }
    if (rt.len != RATE_TABLE_SIZE * 8 || out.len / 4 != x.len / 8) {
        PyBuffer_Release(&x);
        PyBuffer_Release(&rt);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "rdoq: wrong rate table or output size");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rdoq_values((const double *)x.buf, x.len / 8, lam, k, g, (const double *)rt.buf, (int32_t *)out.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&x);
    PyBuffer_Release(&rt);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

static PyObject *py_k_costs(PyObject *self, PyObject *args)
{
    PyObject *vobj, *tobj, *outobj;
    if (!PyArg_ParseTuple(args, "OOO", &vobj, &tobj, &outobj))
        return NULL;
    Py_buffer v, tab, out;
    if (get_buffer(vobj, &v, 0, "il", 4, "values") < 0)
        return NULL;
    if (get_buffer(tobj, &tab, 0, "I", 4, "table") < 0) {
        PyBuffer_Release(&v);
        return NULL;
    }
    if (get_buffer(outobj, &out, 1, "QL", 8, "out") < 0) {
        PyBuffer_Release(&v);
        PyBuffer_Release(&tab);
        return NULL;
    }
    int ok = tab.len == (PROB_ONE + 1) * 4 && out.len == (MAX_GT + 1) * 8;
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        k_costs((const int32_t *)v.buf, v.len / 4, (const uint32_t *)tab.buf, (uint64_t *)out.buf);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&v);
    PyBuffer_Release(&tab);
    PyBuffer_Release(&out);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "k_costs: wrong table or output size");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"encode", py_encode, METH_VARARGS, "encode(int32 values, k, g) -> CABAC payload bytes"},
    {"decode", py_decode, METH_VARARGS, "decode(data, start, k, g, int32 out) -> None"},
    {"rdoq", py_rdoq, METH_VARARGS, "rdoq(float64 x, lam, k, g, float64 rate_table, int32 out) -> None"},
    {"k_costs", py_k_costs, METH_VARARGS, "k_costs(int32 values, uint32 cost_table, uint64 out[16]) -> None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cabacc", "CABAC fast path", -1, methods};

PyMODINIT_FUNC PyInit__cabacc(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (!StreamError)
        StreamError = sqz_error_class("StreamError");
    return m;
}
