/* Fast run-length Elias gamma coder, bit-compatible with tensorflow-compression's
 * run_length_gamma_encode / run_length_gamma_decode ops (spec/entropy-gamma.md).
 *
 *   encode(values, clamp_int32_min) -> bytes
 *       values: a C-contiguous buffer of int32 (itemsize 4), coded as one coding unit.
 *   decode_into(data, out, strict) -> None
 *       data: any contiguous bytes-like object; out: a writable C-contiguous int32 buffer whose
 *       length is the number of values to decode. Every element of out is written.
 *   decode_part(data, out, state, total, strict) -> state
 *       the same decoder in consecutive parts: decodes the next len(out) of the unit's `total`
 *       values into out and returns the state to resume from (see decode_part below).
 *
 * Errors raise squeezefmt.errors.StreamError (bad stream) or CodecError (unencodable input) with
 * the same messages as the pure Python reference, squeezefmt/entropy/gamma_ref.py.
 *
 * Bits fill bytes from the least significant bit up; both directions keep a 64-bit bit buffer
 * and touch memory eight bytes at a time. Every read is checked against the input length; the
 * coding loops run without the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../_cshared.h"
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define CTZ64(x) ((unsigned)__builtin_ctzll(x))
#define CLZ32(x) ((unsigned)__builtin_clz(x))
#else
#define LIKELY(x) (x)
#define UNLIKELY(x) (x)
static unsigned CTZ64(uint64_t x) { unsigned n = 0; while (!(x & 1)) { x >>= 1; n++; } return n; }
static unsigned CLZ32(uint32_t x) { unsigned n = 0; while (!(x & 0x80000000u)) { x <<= 1; n++; } return n; }
#endif

#define MAX_GAMMA 0x7fffffffu /* tfc reads gamma codes of at most 31 significant bits */
#define MAX_ZERO_BITS 30

static PyObject *StreamError; /* squeezefmt.errors.StreamError */
static PyObject *CodecError;  /* squeezefmt.errors.CodecError */

#define load64 sqz_load64le   /* squeezefmt/_cshared.h */
#define store64 sqz_store64le

/* ------------------------------------------------------------------------------------------ */
/* Encoder                                                                                    */

typedef struct {
    uint8_t *out; /* malloc'ed; always at least pos + 8 bytes */
    size_t pos;   /* whole bytes written */
    size_t cap;
    uint64_t buf; /* pending bits, first at bit 0 */
    unsigned nb;  /* pending bit count, < 8 between puts */
} writer;

/* Append the len (<= 56) low bits of code (no bits set above len). */
static inline void put(writer *w, uint64_t code, unsigned len) {
    w->buf |= code << w->nb;
    w->nb += len; /* <= 63 */
    store64(w->out + w->pos, w->buf);
    unsigned bytes = w->nb >> 3;
    w->pos += bytes;
    w->buf >>= bytes << 3; /* shift < 64 */
    w->nb &= 7;
}

/* gamma(x), 1 <= x < 2^31: z = bit width - 1 zero bits, a 1, then the z low bits of x. */
static inline void gamma_code(uint32_t x, uint64_t *code, unsigned *len) {
    unsigned z = 31u - CLZ32(x);
    uint64_t low = (uint64_t)(x ^ (1u << z));
    *code = ((low << 1) | 1u) << z;
    *len = 2 * z + 1;
}

static inline void put_gamma(writer *w, uint32_t x) {
    uint64_t code;
    unsigned len;
    gamma_code(x, &code, &len);
    if (LIKELY(len <= 56)) {
        put(w, code, len);
    } else { /* z >= 28: the prefix and the low bits separately */
        unsigned z = len >> 1;
        put(w, code & ((2ull << z) - 1), z + 1);
        put(w, code >> (z + 1), z);
    }
}

/* Make room for one more value (at most 123 bits) plus the 8-byte store. */
static inline int reserve(writer *w) {
    if (LIKELY(w->pos + 32 <= w->cap)) return 0;
    size_t cap = w->cap * 2 + 64;
    uint8_t *p = (uint8_t *)realloc(w->out, cap);
    if (!p) return -1;
    w->out = p;
    w->cap = cap;
    return 0;
}

enum { ENC_OK = 0, ENC_NOMEM, ENC_LONG_RUN, ENC_INT32_MIN };

/* Bit k of the result is set when p[k] != 0 (m <= 64 values). Finding the non-zero values 64 at
 * a time and walking the set bits keeps the data-dependent "is it zero?" branch out of the loop,
 * which matters for EPR latents (mostly zeros, in no predictable pattern). */
static inline uint64_t nonzero_mask(const int32_t *p, Py_ssize_t m) {
    uint64_t mask = 0;
#if defined(__SSE2__)
    if (m == 64) {
        const __m128i zero = _mm_setzero_si128();
        for (int j = 0; j < 16; j++) {
            __m128i x = _mm_loadu_si128((const __m128i *)(p + 4 * j));
            int eq = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(x, zero)));
            mask |= (uint64_t)(~eq & 0xF) << (4 * j);
        }
        return mask;
    }
#endif
    for (Py_ssize_t k = 0; k < m; k++) mask |= (uint64_t)(p[k] != 0) << k;
    return mask;
}

static int encode_loop(writer *w, const int32_t *v, Py_ssize_t n, int clamp, Py_ssize_t *where) {
    Py_ssize_t last = -1; /* index of the previous non-zero value */
    for (Py_ssize_t base = 0; base < n; base += 64) {
        uint64_t mask = nonzero_mask(v + base, n - base < 64 ? n - base : 64);
        while (mask) {
            Py_ssize_t i = base + (Py_ssize_t)CTZ64(mask);
            mask &= mask - 1;
            uint64_t run = (uint64_t)(i - last); /* 1 + zeros since the previous non-zero value */
            last = i;
            int32_t s = v[i];
            if (UNLIKELY(run > MAX_GAMMA)) { *where = i; return ENC_LONG_RUN; }
            if (UNLIKELY(reserve(w))) return ENC_NOMEM;
            uint32_t mag;
            if (UNLIKELY(s == INT32_MIN)) {
                if (!clamp) { *where = i; return ENC_INT32_MIN; }
                mag = 0x7fffffffu; /* tfc codes INT32_MIN as -INT32_MAX */
            } else {
                mag = (uint32_t)(s < 0 ? -s : s);
            }
            uint64_t cr, cm;
            unsigned lr, lm;
            gamma_code((uint32_t)run, &cr, &lr);
            gamma_code(mag, &cm, &lm);
            uint64_t sign = s > 0;
            if (LIKELY(lr + 1 + lm <= 56)) {
                put(w, cr | (sign << lr) | (cm << (lr + 1)), lr + 1 + lm);
            } else {
                put_gamma(w, (uint32_t)run);
                put(w, sign, 1);
                put_gamma(w, mag);
            }
        }
    }
    uint64_t run = (uint64_t)(n - last); /* 1 + trailing zeros */
    if (run > 1) {
        if (UNLIKELY(run > MAX_GAMMA)) { *where = n; return ENC_LONG_RUN; }
        if (UNLIKELY(reserve(w))) return ENC_NOMEM;
        put_gamma(w, (uint32_t)run);
    }
    if (w->nb) w->out[w->pos++] = (uint8_t)w->buf; /* zero-padded last byte */
    return ENC_OK;
}

static PyObject *encode(PyObject *self, PyObject *args) {
    PyObject *obj;
    int clamp = 1;
    if (!PyArg_ParseTuple(args, "O|p", &obj, &clamp)) return NULL;
    Py_buffer in;
    if (PyObject_GetBuffer(obj, &in, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (in.itemsize != 4 || (in.format && strcmp(in.format, "i") && strcmp(in.format, "<i") &&
                             strcmp(in.format, "=i") && strcmp(in.format, "l"))) {
        PyBuffer_Release(&in);
        PyErr_SetString(PyExc_TypeError, "values must be a contiguous int32 buffer");
        return NULL;
    }
    Py_ssize_t n = in.len / 4;
    writer w = {NULL, 0, 0, 0, 0};
    w.cap = (size_t)n + 64; /* grows as needed; typical latents need well under a byte per value */
    w.out = (uint8_t *)malloc(w.cap);
    if (!w.out) {
        PyBuffer_Release(&in);
        return PyErr_NoMemory();
    }
    int err;
    Py_ssize_t where = 0;
    Py_BEGIN_ALLOW_THREADS
    err = encode_loop(&w, (const int32_t *)in.buf, n, clamp, &where);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in);
    PyObject *result = NULL;
    switch (err) {
    case ENC_OK:
        result = PyBytes_FromStringAndSize((const char *)w.out, (Py_ssize_t)w.pos);
        break;
    case ENC_NOMEM:
        PyErr_NoMemory();
        break;
    case ENC_LONG_RUN:
        PyErr_Format(CodecError, "a run of %u or more zeros cannot be coded (tfc's limit)", MAX_GAMMA);
        break;
    case ENC_INT32_MIN:
        PyErr_SetString(CodecError, "INT32_MIN cannot be coded exactly (tfc codes it as -INT32_MAX)");
        break;
    }
    free(w.out);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* Decoder                                                                                    */

typedef struct {
    const uint8_t *p, *end; /* next byte not yet counted in nb */
    uint64_t buf;           /* bits at and above nb may hold real (uncounted) stream bits */
    unsigned nb;            /* counted bits in buf */
} reader;

/* Afterwards nb >= 56, or all input bytes are counted (and buf is zero above nb). */
static inline void refill(reader *r) {
    if (LIKELY(r->end - r->p >= 8)) {
        r->buf |= load64(r->p) << r->nb;
        r->p += (63 - r->nb) >> 3;
        r->nb = 56 + (r->nb & 7);
    } else {
        while (r->nb <= 56 && r->p < r->end) {
            r->buf |= (uint64_t)(*r->p++) << r->nb;
            r->nb += 8;
        }
    }
}

enum { DEC_OK = 0, DEC_TRUNCATED, DEC_OVERFLOW, DEC_OVERRUN, DEC_TRAILING, DEC_PADDING };

static inline int read_gamma(reader *r, uint32_t *x) {
    if (r->nb < 32) refill(r);
    uint64_t b = r->buf;
    unsigned z = b ? CTZ64(b) : 64;
    if (UNLIKELY(z > MAX_ZERO_BITS)) return r->nb > MAX_ZERO_BITS ? DEC_OVERFLOW : DEC_TRUNCATED;
    if (UNLIKELY(z >= r->nb)) return DEC_TRUNCATED;
    unsigned len = 2 * z + 1;
    if (LIKELY(len <= r->nb)) {
        *x = (uint32_t)(((b >> (z + 1)) & ((1ull << z) - 1)) | (1ull << z));
        r->buf = b >> len;
        r->nb -= len;
        return DEC_OK;
    }
    /* long code near the end of the bit buffer: take the prefix, refill, then the low bits */
    r->buf = b >> (z + 1);
    r->nb -= z + 1;
    refill(r);
    if (r->nb < z) return DEC_TRUNCATED;
    *x = (uint32_t)((r->buf & ((1ull << z) - 1)) | (1ull << z));
    r->buf >>= z;
    r->nb -= z;
    return DEC_OK;
}

static inline int read_bit(reader *r, uint32_t *bit) {
    if (UNLIKELY(r->nb == 0)) {
        refill(r);
        if (r->nb == 0) return DEC_TRUNCATED;
    }
    *bit = (uint32_t)(r->buf & 1);
    r->buf >>= 1;
    r->nb--;
    return DEC_OK;
}

/* Sets the StreamError of a failed decode of n values and returns NULL. */
static PyObject *decode_error(int err, Py_ssize_t where, Py_ssize_t n, Py_ssize_t extra) {
    switch (err) {
    case DEC_TRUNCATED:
        PyErr_Format(StreamError, "gamma stream truncated at value %zd of %zd", where, n);
        break;
    case DEC_OVERFLOW:
        PyErr_Format(StreamError,
                     "gamma code longer than 61 bits (more than int32 can hold) at value %zd of %zd",
                     where, n);
        break;
    case DEC_OVERRUN:
        PyErr_Format(StreamError, "zero run at value %zd of %zd overruns the %zd values (by %zd)",
                     where, n, n, extra);
        break;
    case DEC_TRAILING:
        PyErr_Format(StreamError, "%zd trailing byte(s) after the last value", extra);
        break;
    default:
        PyErr_SetString(StreamError, "non-zero padding bits after the last value");
        break;
    }
    return NULL;
}

static int check_end(reader *r, Py_ssize_t *extra) {
    size_t left = r->nb + 8 * (size_t)(r->end - r->p);
    if (left >= 8) { *extra = (Py_ssize_t)(left / 8); return DEC_TRAILING; }
    if (r->buf & ((1ull << r->nb) - 1)) return DEC_PADDING;
    return DEC_OK;
}

/* Resumable decode_loop. The state between parts: the stream bit to resume at, the values decoded
 * so far (i), the zeros of a run still to be written (pending), whether the run ends in a value
 * (value_next: its sign and magnitude are the next bits) and where that run started (for the error
 * messages, which are those of decode_loop). Writes out[0 .. stop - i) for values i .. stop - 1. */
typedef struct {
    Py_ssize_t i, pending, where;
    int value_next;
} part_state;

static int decode_part_loop(reader *r, int32_t *out, part_state *st, Py_ssize_t stop, Py_ssize_t n,
                            int strict, Py_ssize_t *extra) {
    const Py_ssize_t base = st->i;
    Py_ssize_t i = st->i;
    int err = DEC_OK;
    while (i < stop) {
        if (st->pending) {
            Py_ssize_t m = st->pending < stop - i ? st->pending : stop - i;
            memset(out + (i - base), 0, (size_t)m * sizeof(int32_t));
            i += m;
            st->pending -= m;
            continue;
        }
        if (st->value_next) {
            uint32_t positive, mag;
            if (UNLIKELY((err = read_bit(r, &positive)) != DEC_OK)) break;
            if (UNLIKELY((err = read_gamma(r, &mag)) != DEC_OK)) break;
            out[i - base] = positive ? (int32_t)mag : -(int32_t)mag;
            i++;
            st->value_next = 0;
            continue;
        }
        uint32_t run;
        st->where = i;
        if (UNLIKELY((err = read_gamma(r, &run)) != DEC_OK)) break;
        Py_ssize_t zeros = (Py_ssize_t)run - 1;
        if (UNLIKELY(zeros > n - i)) { *extra = zeros - (n - i); err = DEC_OVERRUN; break; }
        st->pending = zeros;
        st->value_next = zeros < n - i; /* the unit's last run of zeros ends in no value */
    }
    st->i = i;
    if (err == DEC_OK && strict && i == n && !st->pending && !st->value_next) err = check_end(r, extra);
    return err;
}

/* decode_part(data, out, (bit, i, pending, value_next, where), total, strict) -> the next state */
static PyObject *decode_part(PyObject *self, PyObject *args) {
    PyObject *data_obj, *out_obj;
    Py_ssize_t bit, n;
    int strict = 1;
    part_state st;
    if (!PyArg_ParseTuple(args, "OO(nnnin)n|p", &data_obj, &out_obj, &bit, &st.i, &st.pending, &st.value_next,
                          &st.where, &n, &strict))
        return NULL;
    Py_buffer data, out;
    if (PyObject_GetBuffer(data_obj, &data, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (PyObject_GetBuffer(out_obj, &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    Py_ssize_t len = out.len / 4;
    if (out.itemsize != 4 || out.len % 4 || bit < 0 || bit > 8 * data.len || st.i < 0 || st.pending < 0 ||
        st.i + st.pending > n || len > n - st.i) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "decode_part: bad out buffer or state");
        return NULL;
    }
    reader r = {(const uint8_t *)data.buf + bit / 8, (const uint8_t *)data.buf + data.len, 0, 0};
    Py_ssize_t extra = 0;
    int err;
    Py_BEGIN_ALLOW_THREADS
    refill(&r);
    r.buf >>= bit % 8;
    r.nb -= (unsigned)(bit % 8);
    err = decode_part_loop(&r, (int32_t *)out.buf, &st, st.i + len, n, strict, &extra);
    Py_END_ALLOW_THREADS
    bit = (Py_ssize_t)(r.p - (const uint8_t *)data.buf) * 8 - (Py_ssize_t)r.nb;
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    if (err != DEC_OK) return decode_error(err, st.where, n, extra);
    return Py_BuildValue("(nnnin)", bit, st.i, st.pending, st.value_next, st.where);
}

/* On error, *where is the index of the value being decoded and *extra the overrun / byte count. */
static int decode_loop(reader *r, int32_t *out, Py_ssize_t n, int strict, Py_ssize_t *where,
                       Py_ssize_t *extra) {
    /* Zeros are written run by run as the stream is decoded (no memset of the whole output first):
     * an invalid or short stream touches only the part of out it actually decoded. */
    Py_ssize_t i = 0;
    int err;
    while (i < n) {
        uint32_t run, positive, mag;
        *where = i;
        if (UNLIKELY((err = read_gamma(r, &run)) != DEC_OK)) return err;
        Py_ssize_t zeros = (Py_ssize_t)run - 1;
        if (UNLIKELY(zeros >= n - i)) {
            if (zeros > n - i) { *extra = zeros - (n - i); return DEC_OVERRUN; }
            memset(out + i, 0, (size_t)zeros * sizeof(int32_t));
            i = n;
            break;
        }
        if (zeros) memset(out + i, 0, (size_t)zeros * sizeof(int32_t));
        i += zeros;
        if (UNLIKELY((err = read_bit(r, &positive)) != DEC_OK)) return err;
        if (UNLIKELY((err = read_gamma(r, &mag)) != DEC_OK)) return err;
        out[i] = positive ? (int32_t)mag : -(int32_t)mag;
        i++;
    }
    return strict ? check_end(r, extra) : DEC_OK;
}

static PyObject *decode_into(PyObject *self, PyObject *args) {
    PyObject *data_obj, *out_obj;
    int strict = 1;
    if (!PyArg_ParseTuple(args, "OO|p", &data_obj, &out_obj, &strict)) return NULL;
    Py_buffer data, out;
    if (PyObject_GetBuffer(data_obj, &data, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (PyObject_GetBuffer(out_obj, &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (out.itemsize != 4 || out.len % 4) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_TypeError, "out must be a writable contiguous int32 buffer");
        return NULL;
    }
    Py_ssize_t n = out.len / 4, where = 0, extra = 0;
    reader r = {(const uint8_t *)data.buf, (const uint8_t *)data.buf + data.len, 0, 0};
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = decode_loop(&r, (int32_t *)out.buf, n, strict, &where, &extra);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    if (err == DEC_OK) Py_RETURN_NONE;
    return decode_error(err, where, n, extra);
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_VARARGS,
     "encode(values, clamp_int32_min=True) -> bytes: one coding unit of contiguous int32 values."},
    {"decode_into", decode_into, METH_VARARGS,
     "decode_into(data, out, strict=True): decode len(out) int32 values from data into out."},
    {"decode_part", decode_part, METH_VARARGS,
     "decode_part(data, out, state, total, strict=True) -> state: the next len(out) of total values."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gammac",
                                    "run-length Elias gamma fast path (tfc-compatible)", -1, methods};

PyMODINIT_FUNC PyInit__gammac(void) {
    if (!StreamError) StreamError = sqz_error_class("StreamError");
    if (!CodecError) CodecError = sqz_error_class("CodecError");
    return PyModule_Create(&module);
}
