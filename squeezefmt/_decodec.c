/* Fast float-producing decode stages: table gathers and per-channel dequantisation.
 *
 * gather(table, idx, out) -> bad
 *     out[i] = table[idx[i]]; table and out have the same item size (1, 2, 4 or 8 bytes, given by
 *     out's format), idx is uint8 or uint16 (its format). Indices >= len(table) write 0 and are
 *     counted: the return value is the number of them (0 for a valid stream).
 *     Reference: numpy.take (squeezefmt.buffers.gather_reference).
 *
 * dequant(sym, out, shift, zp, step, inner, qmax) -> bad
 *     float32 per-channel dequantisation of the quant codec. sym is uint8/uint16 in C order, the
 *     channel of element i is (i / inner) % C with C = len(step). q = sym[i] - shift[c] must lie in
 *     0..qmax, else the return value is 1 (and out is garbage); out[i] = (float)(q - zp[c]) * step[c],
 *     one float32 multiply, the same bits as numpy's (q - zp).astype(float32) * step.
 *     Reference: squeezefmt.codecs.quantize.dequantize_channels_reference.
 *
 * Both loops run with the GIL released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_cshared.h"

static int idx_width(Py_buffer *b) {
    const char *f = b->format ? b->format : "B";
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    if (b->itemsize == 1 && (f[0] == 'B' || f[0] == 'b')) return 1;
    if (b->itemsize == 2 && (f[0] == 'H' || f[0] == 'h')) return 2;
    return 0;
}

#define GATHER_LOOP(T, IT)                                                         \
    do {                                                                           \
        const T *tab = (const T *)table.buf;                                       \
        const IT *ix = (const IT *)idx.buf;                                        \
        T *o = (T *)out.buf;                                                       \
        for (Py_ssize_t i = 0; i < n; i++) {                                       \
            Py_ssize_t j = ix[i];                                                  \
            if (j < k) o[i] = tab[j]; else { o[i] = 0; bad++; }                    \
        }                                                                          \
    } while (0)

#define GATHER_WIDTH(IT)                                                           \
    do {                                                                           \
        switch (w) {                                                               \
        case 1: GATHER_LOOP(uint8_t, IT); break;                                   \
        case 2: GATHER_LOOP(uint16_t, IT); break;                                  \
        case 4: GATHER_LOOP(uint32_t, IT); break;                                  \
        default: GATHER_LOOP(uint64_t, IT); break;                                 \
        }                                                                          \
    } while (0)

static PyObject *gather(PyObject *self, PyObject *args) {
    PyObject *table_obj, *idx_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "OOO", &table_obj, &idx_obj, &out_obj)) return NULL;
    Py_buffer table, idx, out;
    if (PyObject_GetBuffer(table_obj, &table, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (PyObject_GetBuffer(idx_obj, &idx, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&table);
        return NULL;
    }
    if (PyObject_GetBuffer(out_obj, &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&table);
        PyBuffer_Release(&idx);
        return NULL;
    }
    Py_ssize_t w = out.itemsize, iw = idx_width(&idx);
    Py_ssize_t n = idx.len / (iw ? iw : 1), k = table.len / (w ? w : 1);
    Py_ssize_t bad = 0;
    const char *err = NULL;
    if (w != 1 && w != 2 && w != 4 && w != 8) err = "gather: item size must be 1, 2, 4 or 8 bytes";
    else if (table.itemsize != w) err = "gather: table and out item sizes differ";
    else if (!iw) err = "gather: indices must be uint8 or uint16";
    else if (out.len != n * w) err = "gather: out does not hold one item per index";
    if (!err) {
        Py_BEGIN_ALLOW_THREADS
        if (iw == 1) GATHER_WIDTH(uint8_t); else GATHER_WIDTH(uint16_t);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&table);
    PyBuffer_Release(&idx);
    PyBuffer_Release(&out);
    if (err) {
        PyErr_SetString(PyExc_ValueError, err);
        return NULL;
    }
    return PyLong_FromSsize_t(bad);
}

/* Branch-free so that it vectorises (with an AVX2 version, SQZ_AVX2_CLONES: 2.8-3.7x the baseline
 * build's speed here): v - off[c] == q - zp[c] (off = shift + zp), and a symbol outside its channel's
 * range sets a bit of the result (the output is discarded then). */
#define DEFINE_DEQUANT(IT, SUF)                                                                \
    SQZ_AVX2_CLONES static uint32_t dequant_##SUF(const IT *s, float *o, Py_ssize_t n, Py_ssize_t C,  \
                                            Py_ssize_t inner, const int32_t *sh,               \
                                            const int32_t *off, const float *st, uint32_t qmax)\
    {                                                                                          \
        uint32_t acc = 0;                                                                      \
        if (inner == 1) {                                                                      \
            for (Py_ssize_t r = 0; r < n / C; r++) {                                           \
                const IT *sr = s + r * C;                                                      \
                float *orow = o + r * C;                                                       \
                for (Py_ssize_t c = 0; c < C; c++) {                                           \
                    int32_t v = (int32_t)sr[c];                                                \
                    acc |= (uint32_t)(v - sh[c]) > qmax;                                       \
                    orow[c] = (float)(v - off[c]) * st[c];                                     \
                }                                                                              \
            }                                                                                  \
        } else {                                                                               \
            for (Py_ssize_t b = 0; b < n / inner; b++) {                                       \
                Py_ssize_t c = b % C;                                                          \
                const int32_t lo = sh[c], of = off[c];                                         \
                const float step = st[c];                                                      \
                const IT *sb = s + b * inner;                                                  \
                float *ob = o + b * inner;                                                     \
                for (Py_ssize_t j = 0; j < inner; j++) {                                       \
                    int32_t v = (int32_t)sb[j];                                                \
                    acc |= (uint32_t)(v - lo) > qmax;                                          \
                    ob[j] = (float)(v - of) * step;                                            \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        return acc;                                                                            \
    }

DEFINE_DEQUANT(uint8_t, u8)
DEFINE_DEQUANT(uint16_t, u16)

static PyObject *dequant(PyObject *self, PyObject *args) {
    PyObject *sym_obj, *out_obj, *shift_obj, *zp_obj, *step_obj;
    Py_ssize_t inner;
    int qmax;
    if (!PyArg_ParseTuple(args, "OOOOOni", &sym_obj, &out_obj, &shift_obj, &zp_obj, &step_obj, &inner, &qmax))
        return NULL;
    Py_buffer sym, out, shift, zpb, step;
    Py_buffer *held[5] = {&sym, &out, &shift, &zpb, &step};
    PyObject *objs[5] = {sym_obj, out_obj, shift_obj, zp_obj, step_obj};
    int flags[5] = {PyBUF_C_CONTIGUOUS | PyBUF_FORMAT, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT,
                    PyBUF_C_CONTIGUOUS | PyBUF_FORMAT, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT,
                    PyBUF_C_CONTIGUOUS | PyBUF_FORMAT};
    int got = 0;
    for (; got < 5; got++)
        if (PyObject_GetBuffer(objs[got], held[got], flags[got]) < 0) break;
    const char *err = NULL;
    Py_ssize_t bad = 0;
    if (got == 5) {
        Py_ssize_t iw = idx_width(&sym);
        Py_ssize_t n = iw ? sym.len / iw : 0, C = step.len / 4;
        if (!iw) err = "dequant: symbols must be uint8 or uint16";
        else if (out.itemsize != 4 || out.len != n * 4) err = "dequant: out must be float32 with one item per symbol";
        else if (step.itemsize != 4 || shift.itemsize != 4 || zpb.itemsize != 4 || shift.len != C * 4 || zpb.len != C * 4)
            err = "dequant: shift/zp must be int32 and step float32, one per channel";
        else if (C < 1 || inner < 1 || n % (C * inner) != 0) err = "dequant: channels x inner does not divide the size";
        else {
            const int32_t *sh = (const int32_t *)shift.buf, *zp = (const int32_t *)zpb.buf;
            const float *st = (const float *)step.buf;
            float *o = (float *)out.buf;
            int32_t *off = PyMem_Malloc(C * sizeof(int32_t));
            if (!off) {
                for (int i = 0; i < got; i++) PyBuffer_Release(held[i]);
                return PyErr_NoMemory();
            }
            for (Py_ssize_t c = 0; c < C; c++) off[c] = sh[c] + zp[c];
            Py_BEGIN_ALLOW_THREADS
            uint32_t acc = iw == 1
                ? dequant_u8((const uint8_t *)sym.buf, o, n, C, inner, sh, off, st, (uint32_t)qmax)
                : dequant_u16((const uint16_t *)sym.buf, o, n, C, inner, sh, off, st, (uint32_t)qmax);
            bad = acc != 0;
            Py_END_ALLOW_THREADS
            PyMem_Free(off);
        }
    }
    for (int i = 0; i < got; i++) PyBuffer_Release(held[i]);
    if (got < 5) return NULL;
    if (err) {
        PyErr_SetString(PyExc_ValueError, err);
        return NULL;
    }
    return PyLong_FromSsize_t(bad);
}

static PyMethodDef methods[] = {
    {"gather", gather, METH_VARARGS, "gather(table, idx, out) -> count of out-of-range indices"},
    {"dequant", dequant, METH_VARARGS, "dequant(sym, out, shift, zp, step, inner, qmax) -> 1 if a symbol is out of range"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_decodec", "fast float decode stages", -1, methods};

PyMODINIT_FUNC PyInit__decodec(void) { return PyModule_Create(&module); }
