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

typedef struct {
    const uint8_t *data;
    size_t n;
} decoder_t;

/* The hot loop keeps the coder state in locals (the output is int32, which may alias uint32
 * struct fields, so a struct would be reloaded after every store). 0 on success, else a message. */
#define DEC_BIN(ctx, bin)                                                              \
    do {                                                                               \
        int ctx_ = (ctx);                                                              \
        uint32_t bound_ = (range >> PROB_BITS) * ctx_p(&c, ctx_);                      \
        uint32_t mask_ = 0u - (uint32_t)(code >= bound_);                              \
        code -= bound_ & mask_;                                                        \
        range = ((range - bound_) & mask_) | (bound_ & ~mask_);                        \
        (bin) = (int)(mask_ & 1u);                                                     \
        ctx_update(&c, ctx_, (bin));                                                   \
        while (range < TOP) {                                                          \
            uint32_t byte_ = pos < len ? data[pos] : 0u;                               \
            range <<= 8;                                                               \
            code = (code << 8) | byte_;                                                \
            window = (window << 8) | byte_;                                            \
            pos++;                                                                     \
        }                                                                              \
    } while (0)

#define DEC_BYPASS(bin)                                                                \
    do {                                                                               \
        range >>= 1;                                                                   \
        uint32_t mask_ = 0u - (uint32_t)(code >= range);                               \
        code -= range & mask_;                                                         \
        (bin) = (int)(mask_ & 1u);                                                     \
        while (range < TOP) {                                                          \
            uint32_t byte_ = pos < len ? data[pos] : 0u;                               \
            range <<= 8;                                                               \
            code = (code << 8) | byte_;                                                \
            window = (window << 8) | byte_;                                            \
            pos++;                                                                     \
        }                                                                              \
    } while (0)

static const char *decode_values(decoder_t *d, int k, int g, int32_t *out, Py_ssize_t count)
{
    contexts_t c;
    ctx_init(&c);
    const uint8_t *data = d->data;
    const size_t len = d->n;
    size_t pos = 0;
    uint32_t range = 0xFFFFFFFFu, window = 0, code;
    for (int i = 0; i < 4; i++, pos++)
        window = (window << 8) | (pos < len ? data[pos] : 0u);
    code = window;
    if (code >= range)
        return "cabac stream: the first code value lies outside the coder's range";
    int32_t p1 = 0;
    uint32_t c1 = 0, c2 = 0;   /* min(|p1|, 2), min(|p2|, 2) */
    for (Py_ssize_t n = 0; n < count; n++) {
        int32_t q = 0;
        int bin;
        DEC_BIN((int)(3 * c1 + c2), bin);
        if (bin) {
            uint32_t ap1 = uabs(p1);
            int neg, i;
            uint64_t a = 1;
            DEC_BIN(sign_ctx(p1), neg);
            for (i = 1; i <= k; i++) {
                DEC_BIN(gt_ctx(i, ap1), bin);
                if (!bin)
                    break;
                a = (uint64_t)i + 1;
            }
            if (i > k) {
                int m = 0;
                for (;;) {
                    DEC_BYPASS(bin);
                    if (!bin)
                        break;
                    if (++m > MAX_EG_PREFIX)
                        return "cabac stream: an Exp-Golomb prefix longer than 30 bins";
                }
                uint64_t r = 0;
                for (int j = 0; j < m; j++) {
                    DEC_BYPASS(bin);
                    r = (r << 1) | (uint64_t)bin;
                }
                r += ((uint64_t)1 << m) - 1;
                for (int j = 0; j < g; j++) {
                    DEC_BYPASS(bin);
                    r = (r << 1) | (uint64_t)bin;
                }
                a = (uint64_t)k + 1 + r;
                if (a > (uint64_t)MAX_MAGNITUDE)
                    return "cabac stream: a magnitude above 2147483647";
            }
            q = neg ? -(int32_t)a : (int32_t)a;
        }
        out[n] = q;
        c2 = c1;
        c1 = mag_min2(q);
        p1 = q;
    }
    if (pos < len)
        return "cabac stream: trailing bytes after the last value";
    if (code >= TOP || (window & (TOP - 1)))
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
/* Python bindings                                                                             */
/* ------------------------------------------------------------------------------------------ */

static int get_buffer(PyObject *obj, Py_buffer *view, int writable, const char *fmt_char, Py_ssize_t itemsize,
                      const char *what)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@')
        f++;
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
    decoder_t d = {(const uint8_t *)data.buf + start, (size_t)(data.len - start)};
    if (count == 0) {
        if (d.n)
            err = "cabac stream: payload bytes for zero values";
    } else {
        Py_BEGIN_ALLOW_THREADS
        err = decode_values(&d, k, g, (int32_t *)out.buf, count);
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

static PyMethodDef methods[] = {
    {"encode", py_encode, METH_VARARGS, "encode(int32 values, k, g) -> CABAC payload bytes"},
    {"decode", py_decode, METH_VARARGS, "decode(data, start, k, g, int32 out) -> None"},
    {"rdoq", py_rdoq, METH_VARARGS, "rdoq(float64 x, lam, k, g, float64 rate_table, int32 out) -> None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cabacc", "CABAC fast path", -1, methods};

PyMODINIT_FUNC PyInit__cabacc(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    PyObject *errors = PyImport_ImportModule("squeezefmt.errors");
    if (errors) {
        StreamError = PyObject_GetAttrString(errors, "StreamError");
        Py_DECREF(errors);
    }
    if (!StreamError) {
        PyErr_Clear();
        StreamError = PyExc_ValueError;
        Py_INCREF(StreamError);
    }
    return m;
}
