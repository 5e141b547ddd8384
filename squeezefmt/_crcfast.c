/* CRC-32 of stream bytes, fast: the checksum the container stores (spec/format.md: CRC-32/ISO-HDLC,
 * reflected polynomial 0xEDB88320, the value zlib.crc32 gives), bit for bit.
 *
 * crc32(data, value=0) -> int
 *     Same contract as zlib.crc32(data, value): `value` is a previous result to continue from.
 *     x86-64 with PCLMULQDQ (checked at run time): carry-less multiply folding of 64 bytes per step
 *     (Gopal, Ozturk et al., "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ
 *     Instruction", Intel 2009), the head and tail bytes by table. Elsewhere: slice-by-8 tables.
 *     Reference: zlib.crc32 (squeezefmt.checksum falls back to it; the tests compare the two).
 *     The GIL is released for inputs of 64 KiB and more.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_CLMUL 1
#include <cpuid.h>
#include <emmintrin.h>
#include <smmintrin.h>
#include <wmmintrin.h>
#endif

#define POLY 0xEDB88320u

static uint32_t table[8][256];

static void make_tables(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int t = 1; t < 8; t++)
            table[t][n] = (table[t - 1][n] >> 8) ^ table[0][table[t - 1][n] & 0xff];
}

/* crc is the register (already inverted). Slice-by-8: eight table lookups per 8 bytes. */
static uint32_t crc_tables(uint32_t crc, const uint8_t *p, size_t n)
{
    while (n && ((uintptr_t)p & 7)) {
        crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
        n--;
    }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= crc;
        crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24] ^
              table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^ table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
    }
#endif
    while (n--)
        crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
    return crc;
}

#ifdef HAVE_CLMUL
static int has_clmul = 0;

#define CLMUL(a, b, imm) _mm_clmulepi64_si128((a), (b), (imm))

/* One 16-byte lane folded 128 bits forward (k = the pair of constants for that distance), plus data. */
__attribute__((target("pclmul,sse4.1"))) static inline __m128i fold(__m128i x, __m128i k, __m128i data)
{
    return _mm_xor_si128(_mm_xor_si128(CLMUL(x, k, 0x00), CLMUL(x, k, 0x11)), data);
}

/* n >= 64 and a multiple of 16; crc is the register (already inverted). Four lanes of 16 bytes are
 * folded 512 bits forward per step, then into one lane, then reduced to 32 bits (Barrett). */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc_clmul(uint32_t crc, const uint8_t *p, size_t n)
{
    const __m128i k1k2 = _mm_set_epi64x(0x1c6e41596LL, 0x154442bd4LL); /* x^(512+64), x^(512) mod P */
    const __m128i k3k4 = _mm_set_epi64x(0x0ccaa009eLL, 0x1751997d0LL); /* x^(128+64), x^(128) mod P */
    const __m128i k5 = _mm_set_epi64x(0, 0x163cd6124LL);                /* x^64 mod P */
    const __m128i pmu = _mm_set_epi64x(0x1f7011641LL, 0x1db710641LL);   /* mu, P (reflected, 33 bits) */
    const __m128i mask32 = _mm_setr_epi32(-1, 0, -1, 0);
    __m128i x1 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p), _mm_cvtsi32_si128((int)crc));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x4 = _mm_loadu_si128((const __m128i *)(p + 48));
    for (p += 64, n -= 64; n >= 64; p += 64, n -= 64) {
        x1 = fold(x1, k1k2, _mm_loadu_si128((const __m128i *)p));
        x2 = fold(x2, k1k2, _mm_loadu_si128((const __m128i *)(p + 16)));
        x3 = fold(x3, k1k2, _mm_loadu_si128((const __m128i *)(p + 32)));
        x4 = fold(x4, k1k2, _mm_loadu_si128((const __m128i *)(p + 48)));
    }
    x1 = fold(x1, k3k4, x2);
    x1 = fold(x1, k3k4, x3);
    x1 = fold(x1, k3k4, x4);
    for (; n >= 16; p += 16, n -= 16)
        x1 = fold(x1, k3k4, _mm_loadu_si128((const __m128i *)p));
    /* 128 -> 64 bits */
    __m128i x = _mm_xor_si128(_mm_srli_si128(x1, 8), CLMUL(x1, k3k4, 0x10));
    x = _mm_xor_si128(CLMUL(_mm_and_si128(x, mask32), k5, 0x00), _mm_srli_si128(x, 4));
    /* 64 -> 32 bits, Barrett reduction */
    __m128i t = CLMUL(_mm_and_si128(x, mask32), pmu, 0x10);
    t = CLMUL(_mm_and_si128(t, mask32), pmu, 0x00);
    return (uint32_t)_mm_extract_epi32(_mm_xor_si128(x, t), 1);
}
#endif

static uint32_t crc_update(uint32_t value, const uint8_t *p, size_t n)
{
    uint32_t crc = ~value;
#ifdef HAVE_CLMUL
    if (has_clmul && n >= 128) {
        size_t head = (size_t)(-(uintptr_t)p & 15);
        crc = crc_tables(crc, p, head);
        p += head;
        n -= head;
        size_t body = n & ~(size_t)15;
        crc = crc_clmul(crc, p, body);
        p += body;
        n -= body;
    }
#endif
    return ~crc_tables(crc, p, n);
}

static PyObject *py_crc32(PyObject *self, PyObject *args)
{
    Py_buffer data;
    unsigned long value = 0;
    if (!PyArg_ParseTuple(args, "y*|k", &data, &value))
        return NULL;
    uint32_t crc;
    const uint8_t *p = (const uint8_t *)data.buf;
    size_t n = (size_t)data.len;
    if (n >= 65536) {
        Py_BEGIN_ALLOW_THREADS
        crc = crc_update((uint32_t)value, p, n);
        Py_END_ALLOW_THREADS
    } else {
        crc = crc_update((uint32_t)value, p, n);
    }
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(crc);
}

static PyObject *py_tables_only(PyObject *self, PyObject *args)
{
    Py_buffer data;
    unsigned long value = 0;
    if (!PyArg_ParseTuple(args, "y*|k", &data, &value))
        return NULL;
    uint32_t crc = ~crc_tables(~(uint32_t)value, (const uint8_t *)data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(crc);
}

static PyMethodDef methods[] = {
    {"crc32", py_crc32, METH_VARARGS, "crc32(data, value=0) -> int: zlib.crc32's value, faster"},
    {"crc32_tables", py_tables_only, METH_VARARGS, "crc32_tables(data, value=0) -> int: the table path only (tests)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_crcfast", "fast CRC-32 (zlib's value)", -1, methods};

PyMODINIT_FUNC PyInit__crcfast(void)
{
    make_tables();
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
#ifdef HAVE_CLMUL
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d))
        has_clmul = (c & bit_PCLMUL) && (c & bit_SSE4_1);
    PyModule_AddIntConstant(m, "CLMUL", has_clmul);
#else
    PyModule_AddIntConstant(m, "CLMUL", 0);
#endif
    return m;
}
