/* Fast byte-plane interleaving for the bytegroup codec.
 *
 * join(planes, out, rotate): planes is a sequence of w bytes-like objects of n bytes each
 * (least significant byte first), out a writable buffer of n*w bytes (w in 2, 4, 8), rotate 0/1.
 * Writes element i = sum(planes[k][i] << 8k), rotated right by one bit when rotate is set.
 * The pure numpy reference is squeezefmt.codecs.bytegroup.join_planes (without this module).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "../_cshared.h"

/* The interleave, one loop per width with the rotation hoisted out, so that each vectorises (with
 * an AVX2 version, SQZ_AVX2_CLONES). */
SQZ_AVX2_CLONES static void join16(const uint8_t *const *p, uint16_t *o, Py_ssize_t n, int rotate)
{
    if (rotate)
        for (Py_ssize_t i = 0; i < n; i++) {
            uint16_t u = (uint16_t)(p[0][i] | (p[1][i] << 8));
            o[i] = (uint16_t)((u >> 1) | (u << 15));
        }
    else
        for (Py_ssize_t i = 0; i < n; i++)
            o[i] = (uint16_t)(p[0][i] | (p[1][i] << 8));
}

SQZ_AVX2_CLONES static void join32(const uint8_t *const *p, uint32_t *o, Py_ssize_t n, int rotate)
{
    const uint8_t *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3];
    if (rotate)
        for (Py_ssize_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)p0[i] | ((uint32_t)p1[i] << 8) | ((uint32_t)p2[i] << 16) | ((uint32_t)p3[i] << 24);
            o[i] = (u >> 1) | (u << 31);
        }
    else
        for (Py_ssize_t i = 0; i < n; i++)
            o[i] = (uint32_t)p0[i] | ((uint32_t)p1[i] << 8) | ((uint32_t)p2[i] << 16) | ((uint32_t)p3[i] << 24);
}

SQZ_AVX2_CLONES static void join64(const uint8_t *const *p, uint64_t *o, Py_ssize_t n, int rotate)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t u = 0;
        for (int k = 0; k < 8; k++)
            u |= (uint64_t)p[k][i] << (8 * k);
        o[i] = rotate ? ((u >> 1) | (u << 63)) : u;
    }
}

static PyObject *join(PyObject *self, PyObject *args) {
    PyObject *planes_obj, *out_obj;
    int rotate;
    if (!PyArg_ParseTuple(args, "OOp", &planes_obj, &out_obj, &rotate)) return NULL;
    PyObject *seq = PySequence_Fast(planes_obj, "planes must be a sequence");
    if (!seq) return NULL;
    Py_ssize_t w = PySequence_Fast_GET_SIZE(seq);
    if (w != 1 && w != 2 && w != 4 && w != 8) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "element width must be 1, 2, 4 or 8 bytes");
        return NULL;
    }
    Py_buffer views[8];
    Py_buffer out;
    int got = 0;
    if (PyObject_GetBuffer(out_obj, &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        Py_DECREF(seq);
        return NULL;
    }
    Py_ssize_t n = out.len / w;
    if (out.len != n * w) goto bad_size;
    for (got = 0; got < w; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, got), &views[got], PyBUF_C_CONTIGUOUS) < 0) goto fail;
        if (views[got].len != n) { got++; goto bad_size; }
    }
    Py_BEGIN_ALLOW_THREADS
    const uint8_t *p[8];
    for (int k = 0; k < w; k++) p[k] = (const uint8_t *)views[k].buf;
    if (w == 1)
        memcpy(out.buf, p[0], (size_t)n);
    else if (w == 2)
        join16(p, (uint16_t *)out.buf, n, rotate);
    else if (w == 4)
        join32(p, (uint32_t *)out.buf, n, rotate);
    else
        join64(p, (uint64_t *)out.buf, n, rotate);
    Py_END_ALLOW_THREADS
    for (int k = 0; k < w; k++) PyBuffer_Release(&views[k]);
    PyBuffer_Release(&out);
    Py_DECREF(seq);
    Py_RETURN_NONE;
bad_size:
    PyErr_SetString(PyExc_ValueError, "plane lengths do not match the output size");
fail:
    for (int k = 0; k < got; k++) PyBuffer_Release(&views[k]);
    PyBuffer_Release(&out);
    Py_DECREF(seq);
    return NULL;
}

static PyMethodDef methods[] = {
    {"join", join, METH_VARARGS, "join(planes, out, rotate): interleave byte planes into out."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_bytegroupc", "bytegroup fast path", -1, methods};

PyMODINIT_FUNC PyInit__bytegroupc(void) { return PyModule_Create(&module); }
