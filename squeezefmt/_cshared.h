/* Helpers shared by squeezefmt's C extension modules (header only, static inline: every module stays
 * one translation unit and an optional build of its own, see setup.py _C_MODULES).
 *
 *   sqz_load64le / sqz_store64le / sqz_store32le   unaligned little-endian access (bit readers, writers)
 *   sqz_get_contiguous(obj, view, writable)        a C-contiguous buffer with its format
 *   sqz_format_code(view)                          its struct format letter, byte-order prefix skipped
 *   sqz_error_class(name)                          squeezefmt.errors.<name> (a new reference), or
 *                                                  ValueError when that module cannot be imported
 *   SQZ_AVX2_CLONES                                on a function: GCC builds an AVX2 version beside
 *                                                  the baseline one and picks one by the CPU at load
 */
#ifndef SQZ_CSHARED_H
#define SQZ_CSHARED_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Where GCC can build several versions of a function and choose one by the CPU at load time (ELF
 * ifuncs, x86-64 Linux), simple loops get an AVX2 version beside the baseline x86-64 (SSE2) one: the
 * same C, vectorised twice as wide. Elsewhere: one version, as before. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define SQZ_AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SQZ_AVX2_CLONES
#endif

static inline uint64_t sqz_load64le(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline void sqz_store64le(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, 8);
}

static inline void sqz_store32le(uint8_t *p, uint32_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    memcpy(p, &v, 4);
}

static inline int sqz_get_contiguous(PyObject *obj, Py_buffer *view, int writable)
{
    return PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0));
}

static inline const char *sqz_format_code(const Py_buffer *view)
{
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@')
        f++;
    return f;
}

static inline PyObject *sqz_error_class(const char *name)
{
    PyObject *errors = PyImport_ImportModule("squeezefmt.errors"), *cls = NULL;
    if (errors) {
        cls = PyObject_GetAttrString(errors, name);
        Py_DECREF(errors);
    }
    if (!cls) {
        PyErr_Clear();
        cls = PyExc_ValueError;
        Py_INCREF(cls);
    }
    return cls;
}

#endif /* SQZ_CSHARED_H */
