/*
 * squeezefmt.entropy._huffmanc -- fast path of the canonical Huffman coder and bit packing.
 *
 * Implements exactly the stream of spec/entropy-huffman.md, like the readable reference
 * squeezefmt/entropy/huffman_ref.py: the encoder produces the same bytes, the decoder accepts the
 * same streams and rejects the same malformed ones (with StreamError from squeezefmt.errors).
 * The tests compare the two on random and corrupted inputs.
 *
 * Decoding: a lookup table indexed by the next P = min(M, 11) stream bits (M = longest code)
 * gives (symbol, length); codes longer than P go through one second-level table per P-bit prefix.
 * For outputs of MULTI_MIN_COUNT symbols or more a second table indexed by the next 12 bits gives
 * every whole codeword inside them at once (up to 4 uint8 / 2 uint16 symbols per lookup).
 * The bit reader loads 64 bits (unaligned, little endian) once per group of lookups that cannot
 * use more than 57 bits, so the hot loop has no refill branch. All heavy loops run with the GIL
 * released.
 *
 * Decoding into values (decode_gather, decode_dequant: quant and cluster tensors): each codeword
 * goes straight to its value, with no symbol array. For long outputs a "value table" indexed by
 * the next 12 (or 14, VT_WIDE_BITS) bits holds the values of every whole codeword inside them (16 bytes, stored with one
 * copy) beside a 2-byte entry with the bits consumed (the only load on the critical path);
 * per-channel dequantisation decodes symbols into a cached chunk and converts it with a
 * vectorised loop. References: huffman.decode_gather_reference and the two-stage codec paths.
 * Long outputs run several decoders in one loop (independent lookup chains): a first decode of a
 * stream two, joined where their code boundaries meet; it records where the stream's eighths start
 * (bit and output index), and a later decode of the same stream (a lazy model's next call) runs from
 * there in two halves of four decoders each (decode_gather_half: the halves may run on two threads),
 * each segment checked to end exactly where the next one starts.
 *
 * Untrusted input: every read is bounds-checked (the fast loop only runs while 8 whole bytes are
 * left), loops are bounded by the caller's count, and memory is the output (allocated by the
 * caller) plus tables of at most 2**16 entries.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../_cshared.h"

#define MODE_RAW 0
#define MODE_CONST 1
#define MODE_HUFFMAN 2
#define MAX_CODE_LENGTH 16
#define MAX_ALPHABET 65536
#define MAX_RAW_WIDTH 16
#define MAX_PACK_WIDTH 32
#define PRIMARY_BITS 11
#define SUB_FLAG 0x80u

static PyObject *StreamError = NULL; /* squeezefmt.errors.StreamError (ValueError if unavailable) */
static PyObject *CodecError = NULL;  /* squeezefmt.errors.CodecError: bad input to the encoder */

/* Little-endian unaligned access: squeezefmt/_cshared.h */
#define load64le sqz_load64le
#define store64le sqz_store64le
#define store32le sqz_store32le

/* 8 bytes from byte offset `off`, zero-filled past the end. */
static inline uint64_t load64_safe(const uint8_t *p, size_t n, size_t off)
{
    if (off + 8 <= n)
        return load64le(p + off);
    uint64_t v = 0;
    for (size_t j = 0; off + j < n && j < 8; j++)
        v |= (uint64_t)p[off + j] << (8 * j);
    return v;
}

static inline uint32_t reverse_bits(uint32_t v, int n)
{
    uint32_t r = 0;
    for (int i = 0; i < n; i++) {
        r = (r << 1) | (v & 1u);
        v >>= 1;
    }
    return r;
}

/* Error text produced while the GIL is released; raised afterwards. */
typedef struct {
    PyObject *type; /* NULL = no error */
    char msg[256];
} err_t;

#define SET_ERR(e, exc, ...)                                                                     \
    do {                                                                                         \
        (e)->type = (exc);                                                                       \
        snprintf((e)->msg, sizeof((e)->msg), __VA_ARGS__);                                       \
    } while (0)

static PyObject *raise_err(const err_t *e)
{
    if (e->type == PyExc_MemoryError)
        return PyErr_NoMemory();
    PyErr_SetString(e->type, e->msg);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Bit packing (fixed width, LSB first)                                                        */
/* ------------------------------------------------------------------------------------------ */

static inline uint32_t get_value(const void *src, int itemsize, size_t i)
{
    switch (itemsize) {
    case 1: return ((const uint8_t *)src)[i];
    case 2: return ((const uint16_t *)src)[i];
    default: return ((const uint32_t *)src)[i];
    }
}

/* Pack n values at `width` bits into dst (exactly ceil(n*width/8) bytes). Returns the OR of the
 * value bits above `width` (non-zero = a value did not fit). */
#define PACK_LOOP(T)                                                                             \
    {                                                                                            \
        const T *s = (const T *)src;                                                             \
        for (size_t i = 0; i < n; i++) {                                                         \
            uint64_t v = s[i];                                                                   \
            over |= v & ~mask;                                                                   \
            buf |= (v & mask) << nb;                                                             \
            nb += width;                                                                         \
            if (nb >= 32) {                                                                      \
                store32le(o, (uint32_t)buf);                                                     \
                o += 4;                                                                          \
                buf >>= 32;                                                                      \
                nb -= 32;                                                                        \
            }                                                                                    \
        }                                                                                        \
    }

static uint64_t pack_values(const void *src, int itemsize, size_t n, int width, uint8_t *dst)
{
    uint64_t mask = width >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << width) - 1);
    uint64_t over = 0, buf = 0;
    int nb = 0;
    uint8_t *o = dst;
    if (width == 0) {
        for (size_t i = 0; i < n; i++)
            over |= get_value(src, itemsize, i);
        return over;
    }
    if (itemsize == 1) PACK_LOOP(uint8_t)
    else if (itemsize == 2) PACK_LOOP(uint16_t)
    else PACK_LOOP(uint32_t)
    while (nb > 0) {
        *o++ = (uint8_t)buf;
        buf >>= 8;
        nb -= 8;
    }
    return over;
}

#define UNPACK_LOOP(T)                                                                           \
    {                                                                                            \
        T *d = (T *)dst;                                                                         \
        size_t i = 0;                                                                            \
        uint64_t pos = 0;                                                                        \
        for (; i < n && (pos >> 3) + 8 <= nbytes; i++, pos += (uint64_t)width)                   \
            d[i] = (T)((load64le(src + (pos >> 3)) >> (pos & 7)) & mask);                        \
        for (; i < n; i++, pos += (uint64_t)width)                                               \
            d[i] = (T)((load64_safe(src, nbytes, pos >> 3) >> (pos & 7)) & mask);                \
    }

/* Unpack n values of `width` bits from exactly ceil(n*width/8) bytes, checking padding. */
static int unpack_values(const uint8_t *src, size_t nbytes, int width, size_t n, void *dst,
                         int itemsize, err_t *err)
{
    uint64_t nbits = (uint64_t)n * (uint64_t)width;
    size_t need = (size_t)((nbits + 7) / 8);
    if (nbytes != need) {
        SET_ERR(err, StreamError, "bit-packed data %s: %zu bytes for %zu values of %d bits (expected %zu)",
                nbytes < need ? "truncated" : "has trailing bytes", nbytes, n, width, need);
        return -1;
    }
    if ((nbits & 7) && (src[nbytes - 1] >> (nbits & 7))) {
        SET_ERR(err, StreamError, "bit-packed data: non-zero padding bits after the last value");
        return -1;
    }
    if (width == 0) {
        memset(dst, 0, n * (size_t)itemsize);
        return 0;
    }
    uint64_t mask = ((uint64_t)1 << width) - 1;
    if (itemsize == 1) UNPACK_LOOP(uint8_t)
    else if (itemsize == 2) UNPACK_LOOP(uint16_t)
    else UNPACK_LOOP(uint32_t)
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Code lengths (same algorithm as huffman_ref.code_lengths)                                   */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    uint64_t count;
    uint32_t sym;
} ranked_t;

static int cmp_rank(const void *a, const void *b)
{
    const ranked_t *x = (const ranked_t *)a, *y = (const ranked_t *)b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1; /* count descending */
    return x->sym < y->sym ? -1 : (x->sym > y->sym); /* then symbol ascending */
}

/* lengths[0..nsym) := length-limited Huffman code lengths (0 = unused). n_used >= 2 and
 * n_used <= 2**max_len are the caller's job. Returns 0 or -1 (out of memory). */
static int build_lengths(const uint64_t *hist, size_t nsym, int max_len, uint8_t *lengths)
{
    size_t n = 0;
    memset(lengths, 0, nsym);
    for (size_t s = 0; s < nsym; s++)
        n += hist[s] != 0;
    ranked_t *rank = malloc(n * sizeof(ranked_t));
    uint64_t *nw = malloc(n * sizeof(uint64_t));      /* internal node weights */
    int32_t *np_ = malloc(n * sizeof(int32_t));       /* internal node parents, then depths */
    int32_t *lp = malloc(n * sizeof(int32_t));        /* leaf parents */
    int64_t *bl = calloc(n + 2, sizeof(int64_t));     /* leaves per depth */
    if (!rank || !nw || !np_ || !lp || !bl) {
        free(rank); free(nw); free(np_); free(lp); free(bl);
        return -1;
    }
    size_t k = 0;
    for (size_t s = 0; s < nsym; s++)
        if (hist[s]) {
            rank[k].count = hist[s];
            rank[k].sym = (uint32_t)s;
            k++;
        }
    qsort(rank, n, sizeof(ranked_t), cmp_rank);

    /* Two-queue Huffman over weights ascending = rank reversed: leaf i is rank[n-1-i]. */
    size_t i = 0, j = 0, m = 0;
    for (size_t step = 0; step + 1 < n; step++) {
        uint64_t total = 0;
        for (int pick = 0; pick < 2; pick++) {
            if (i < n && (j >= m || rank[n - 1 - i].count <= nw[j])) {
                lp[i] = (int32_t)m;
                total += rank[n - 1 - i].count;
                i++;
            } else {
                np_[j] = (int32_t)m;
                total += nw[j];
                j++;
            }
        }
        nw[m] = total;
        m++;
    }
    /* depths of internal nodes (root = m-1 at depth 0); parents always have larger indices */
    np_[m - 1] = 0;
    for (size_t t = m - 1; t-- > 0;)
        np_[t] = np_[np_[t]] + 1;
    int maxd = 0;
    for (size_t l = 0; l < n; l++) {
        int d = np_[lp[l]] + 1;
        bl[d]++;
        if (d > maxd)
            maxd = d;
    }
    /* length limit: clamp, then remove the excess one unit at a time */
    if (maxd > max_len) {
        for (int d = max_len + 1; d <= maxd; d++) {
            bl[max_len] += bl[d];
            bl[d] = 0;
        }
        int64_t total = 0;
        for (int d = 1; d <= max_len; d++)
            total += bl[d] << (max_len - d);
        while (total > ((int64_t)1 << max_len)) {
            bl[max_len]--;
            for (int d = max_len - 1; d > 0; d--)
                if (bl[d]) {
                    bl[d]--;
                    bl[d + 1] += 2;
                    break;
                }
            total--;
        }
        maxd = max_len;
    }
    size_t r = 0;
    for (int d = 1; d <= maxd; d++)
        for (int64_t c = 0; c < bl[d]; c++)
            lengths[rank[r++].sym] = (uint8_t)d;
    free(rank); free(nw); free(np_); free(lp); free(bl);
    return 0;
}

/* Canonical codewords, returned bit-reversed (first code bit in bit 0). */
static void canonical_rev_codes(const uint8_t *lengths, size_t nsym, uint32_t *rev)
{
    uint32_t bl[MAX_CODE_LENGTH + 2] = {0}, next[MAX_CODE_LENGTH + 2] = {0};
    for (size_t s = 0; s < nsym; s++)
        if (lengths[s])
            bl[lengths[s]]++;
    uint32_t code = 0;
    for (int d = 1; d <= MAX_CODE_LENGTH; d++) {
        code = (code + bl[d - 1]) << 1;
        next[d] = code;
    }
    for (size_t s = 0; s < nsym; s++) {
        int ln = lengths[s];
        rev[s] = ln ? reverse_bits(next[ln]++, ln) : 0;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Code-length table: writer and reader                                                        */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    uint8_t *buf; /* zero-initialised, large enough */
    size_t pos;   /* bits written */
} bitw_t;

static inline void bw_bit(bitw_t *w, unsigned b)
{
    if (b)
        w->buf[w->pos >> 3] |= (uint8_t)(1u << (w->pos & 7));
    w->pos++;
}
static void bw_lsb(bitw_t *w, uint32_t v, int n) { for (int i = 0; i < n; i++) bw_bit(w, (v >> i) & 1u); }
static void bw_msb(bitw_t *w, uint32_t v, int n) { for (int i = n - 1; i >= 0; i--) bw_bit(w, (v >> i) & 1u); }
static void bw_gamma(bitw_t *w, uint32_t v)
{
    int k = 0;
    while ((v >> (k + 1)) != 0)
        k++;
    bw_lsb(w, 0, k);
    bw_msb(w, v, k + 1);
}

/* Upper bound of a table's size in bytes: 4 + 33 bits header, at most 7 bits per entry. */
#define TABLE_MAX_BYTES ((4 + 33 + 7 * MAX_ALPHABET + 7) / 8 + 8)

/* Writes the table of lengths[0..nsym) (>= 2 used) into w. */
static void write_table(bitw_t *w, const uint8_t *lengths, size_t nsym)
{
    size_t n = 0;
    int m = 0;
    for (size_t s = 0; s < nsym; s++)
        if (lengths[s]) {
            n = s + 1;
            if (lengths[s] > m)
                m = lengths[s];
        }
    bw_lsb(w, (uint32_t)(m - 1), 4);
    bw_gamma(w, (uint32_t)n);
    int prev = m;
    size_t s = 0;
    while (s < n) {
        int ln = lengths[s];
        if (ln == 0) {
            size_t r = 0;
            while (lengths[s + r] == 0)
                r++;
            bw_msb(w, 6, 3);
            bw_gamma(w, (uint32_t)r);
            s += r;
            continue;
        }
        if (ln == prev)
            bw_msb(w, 0, 1);
        else if (ln == prev + 1)
            bw_msb(w, 4, 3);
        else if (ln == prev - 1)
            bw_msb(w, 5, 3);
        else {
            bw_msb(w, 7, 3);
            bw_lsb(w, (uint32_t)(ln - 1), 4);
        }
        prev = ln;
        s++;
    }
}

typedef struct {
    const uint8_t *p;
    size_t pos, end; /* bit positions */
} bitr_t;

static inline int br_bit(bitr_t *r, err_t *err, const char *what)
{
    if (r->pos >= r->end) {
        if (!err->type)
            SET_ERR(err, StreamError, "huffman stream truncated in %s", what);
        return -1;
    }
    int b = (r->p[r->pos >> 3] >> (r->pos & 7)) & 1;
    r->pos++;
    return b;
}

static int64_t br_lsb(bitr_t *r, int n, err_t *err, const char *what)
{
    int64_t v = 0;
    for (int i = 0; i < n; i++) {
        int b = br_bit(r, err, what);
        if (b < 0)
            return -1;
        v |= (int64_t)b << i;
    }
    return v;
}

static int64_t br_gamma(bitr_t *r, int max_bits, err_t *err, const char *what)
{
    int k = 0, b;
    while ((b = br_bit(r, err, what)) == 0) {
        k++;
        if (k >= max_bits) {
            SET_ERR(err, StreamError, "huffman %s: gamma number longer than %d bits", what, max_bits);
            return -1;
        }
    }
    if (b < 0)
        return -1;
    int64_t v = 1;
    for (int i = 0; i < k; i++) {
        b = br_bit(r, err, what);
        if (b < 0)
            return -1;
        v = (v << 1) | b;
    }
    return v;
}

/* Reads and validates a table into lengths[MAX_ALPHABET]; returns N or -1. *m_out = M. */
static int64_t read_table(bitr_t *r, uint8_t *lengths, int *m_out, err_t *err)
{
    const char *what = "code-length table";
    int64_t v = br_lsb(r, 4, err, what);
    if (v < 0)
        return -1;
    int m = (int)v + 1;
    int64_t n = br_gamma(r, 17, err, "code-length table size");
    if (n < 0)
        return -1;
    if (n < 2 || n > MAX_ALPHABET) {
        SET_ERR(err, StreamError, "huffman table size %lld out of range 2..%d", (long long)n, MAX_ALPHABET);
        return -1;
    }
    memset(lengths, 0, (size_t)n);
    int prev = m;
    int64_t s = 0;
    while (s < n) {
        int b = br_bit(r, err, what), ln;
        if (b < 0)
            return -1;
        if (b == 0) {
            ln = prev;
        } else {
            if ((b = br_bit(r, err, what)) < 0)
                return -1;
            if (b == 0) {
                if ((b = br_bit(r, err, what)) < 0)
                    return -1;
                ln = b ? prev - 1 : prev + 1;
            } else {
                if ((b = br_bit(r, err, what)) < 0)
                    return -1;
                if (b == 0) {
                    int64_t run = br_gamma(r, 17, err, "code-length table run");
                    if (run < 0)
                        return -1;
                    if (run > n - s) {
                        SET_ERR(err, StreamError,
                                "huffman table: run of %lld unused symbols passes the table end (%lld)",
                                (long long)run, (long long)n);
                        return -1;
                    }
                    s += run;
                    continue;
                }
                if ((v = br_lsb(r, 4, err, what)) < 0)
                    return -1;
                ln = (int)v + 1;
            }
        }
        if (ln < 1 || ln > m) {
            SET_ERR(err, StreamError, "huffman table: code length %d of symbol %lld outside 1..%d", ln,
                    (long long)s, m);
            return -1;
        }
        lengths[s] = (uint8_t)ln;
        prev = ln;
        s++;
    }
    if (lengths[n - 1] == 0) {
        SET_ERR(err, StreamError, "huffman table: last table entry has no code");
        return -1;
    }
    int maxl = 0;
    int64_t used = 0, kraft = 0;
    for (int64_t t = 0; t < n; t++)
        if (lengths[t]) {
            used++;
            if (lengths[t] > maxl)
                maxl = lengths[t];
            kraft += (int64_t)1 << (m - lengths[t]);
        }
    if (maxl != m) {
        SET_ERR(err, StreamError, "huffman table: declared longest code %d but longest is %d", m, maxl);
        return -1;
    }
    if (used < 2) {
        SET_ERR(err, StreamError, "huffman table: fewer than two coded symbols");
        return -1;
    }
    if (kraft != ((int64_t)1 << m)) {
        SET_ERR(err, StreamError, "huffman table: code is %s (Kraft sum %lld/%lld)",
                kraft > ((int64_t)1 << m) ? "over-subscribed" : "incomplete", (long long)kraft,
                (long long)1 << m);
        return -1;
    }
    *m_out = m;
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Decoding tables and the payload loop                                                        */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    uint32_t *primary; /* 2**pbits entries: (symbol << 16) | length, or (sub << 16) | SUB_FLAG */
    uint32_t *sub;     /* nsub << sbits entries: (symbol << 16) | length */
    int pbits, sbits;
} dtable_t;

static void free_dtable(dtable_t *t)
{
    free(t->primary);
    free(t->sub);
}

/* The code is complete (checked), so every primary and secondary entry gets filled. */
static int build_dtable(const uint8_t *lengths, size_t n, int m, dtable_t *t)
{
    uint32_t *rev = malloc(n * sizeof(uint32_t));
    int pbits = m < PRIMARY_BITS ? m : PRIMARY_BITS, sbits = m - pbits;
    t->pbits = pbits;
    t->sbits = sbits;
    t->primary = calloc((size_t)1 << pbits, sizeof(uint32_t));
    t->sub = NULL;
    if (!rev || !t->primary) {
        free(rev);
        return -1;
    }
    canonical_rev_codes(lengths, n, rev);
    uint32_t pmask = (1u << pbits) - 1;
    if (sbits) {
        /* one sub-table per primary prefix that starts a code longer than pbits */
        uint32_t nsub = 0;
        for (size_t s = 0; s < n; s++)
            if (lengths[s] > pbits) {
                uint32_t pre = rev[s] & pmask;
                if (!(t->primary[pre] & SUB_FLAG))
                    t->primary[pre] = (nsub++ << 16) | SUB_FLAG;
            }
        t->sub = calloc((size_t)nsub << sbits, sizeof(uint32_t));
        if (!t->sub) {
            free(rev);
            return -1;
        }
    }
    for (size_t s = 0; s < n; s++) {
        int ln = lengths[s];
        if (!ln)
            continue;
        uint32_t entry = ((uint32_t)s << 16) | (uint32_t)ln;
        if (ln <= pbits) {
            for (uint32_t hi = 0; hi < (1u << (pbits - ln)); hi++)
                t->primary[rev[s] | (hi << ln)] = entry;
        } else {
            uint32_t *st = t->sub + ((size_t)(t->primary[rev[s] & pmask] >> 16) << sbits);
            int extra = ln - pbits;
            uint32_t low = rev[s] >> pbits;
            for (uint32_t hi = 0; hi < (1u << (sbits - extra)); hi++)
                st[low | (hi << extra)] = entry;
        }
    }
    free(rev);
    return 0;
}

#define LOOKUP(w, e)                                                                             \
    do {                                                                                         \
        e = T[(w) & pmask];                                                                      \
        if (__builtin_expect((e & SUB_FLAG) != 0, 0))                                            \
            e = S[((size_t)(e >> 16) << sbits) | (((w) >> pbits) & smask)];                      \
    } while (0)

/* Fast loop: K symbols per 64-bit load; K * M <= 57. */
#define DEFINE_FAST(T_OUT, SUFFIX, K)                                                            \
    static size_t fast_##SUFFIX##_##K(const uint8_t *src, size_t nbytes, uint64_t *bitpos_io,    \
                                      const dtable_t *t, T_OUT *out, size_t count)               \
    {                                                                                            \
        const uint32_t *T = t->primary, *S = t->sub;                                             \
        const int pbits = t->pbits, sbits = t->sbits;                                            \
        const uint64_t pmask = ((uint64_t)1 << pbits) - 1, smask = ((uint64_t)1 << sbits) - 1;   \
        uint64_t bitpos = *bitpos_io;                                                            \
        size_t i = 0;                                                                            \
        while (i + (K) <= count && (bitpos >> 3) + 8 <= nbytes) {                                \
            uint64_t w = load64le(src + (bitpos >> 3)) >> (bitpos & 7);                          \
            uint32_t used = 0;                                                                   \
            for (int k = 0; k < (K); k++) {                                                      \
                uint32_t e;                                                                      \
                LOOKUP(w, e);                                                                    \
                out[i + k] = (T_OUT)(e >> 16);                                                   \
                w >>= (e & 31);                                                                  \
                used += e & 31;                                                                  \
            }                                                                                    \
            bitpos += used;                                                                      \
            i += (K);                                                                            \
        }                                                                                        \
        *bitpos_io = bitpos;                                                                     \
        return i;                                                                                \
    }

#define DEFINE_FAST_ALL(T_OUT, SUFFIX)                                                           \
    DEFINE_FAST(T_OUT, SUFFIX, 3)                                                                \
    DEFINE_FAST(T_OUT, SUFFIX, 4)                                                                \
    DEFINE_FAST(T_OUT, SUFFIX, 5)                                                                \
    DEFINE_FAST(T_OUT, SUFFIX, 6)                                                                \
    DEFINE_FAST(T_OUT, SUFFIX, 7)                                                                \
    DEFINE_FAST(T_OUT, SUFFIX, 8)                                                                \
    static size_t fast_##SUFFIX(int m, const uint8_t *src, size_t nbytes, uint64_t *bp,          \
                                const dtable_t *t, T_OUT *out, size_t count)                     \
    {                                                                                            \
        int k = 57 / m;                                                                          \
        switch (k > 8 ? 8 : k) {                                                                 \
        case 3: return fast_##SUFFIX##_3(src, nbytes, bp, t, out, count);                        \
        case 4: return fast_##SUFFIX##_4(src, nbytes, bp, t, out, count);                        \
        case 5: return fast_##SUFFIX##_5(src, nbytes, bp, t, out, count);                        \
        case 6: return fast_##SUFFIX##_6(src, nbytes, bp, t, out, count);                        \
        case 7: return fast_##SUFFIX##_7(src, nbytes, bp, t, out, count);                        \
        default: return fast_##SUFFIX##_8(src, nbytes, bp, t, out, count);                       \
        }                                                                                        \
    }

DEFINE_FAST_ALL(uint8_t, u8)
DEFINE_FAST_ALL(uint16_t, u16)

/* Multi-symbol decoding: a table indexed by the next MULTI_BITS stream bits whose entry holds
 * every whole codeword inside those bits (up to 4 uint8 or 2 uint16 symbols), so one lookup
 * yields several symbols when codes are short. Entry (uint64):
 *   bits 0..31 the symbols (byte j / halfword j = symbol j), bits 32..39 bits consumed,
 *   bits 40..47 number of symbols; 0 = the first code is longer than MULTI_BITS (take the
 *   single-symbol path for it). Built only for long enough outputs. */
#define MULTI_BITS 12
#define MULTI_MIN_COUNT 8192

static uint64_t *build_multi(const dtable_t *t, int itemsize)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    (void)t; (void)itemsize;
    return NULL; /* the symbol lanes are stored little-endian; use the single-symbol loop */
#endif
    uint64_t *mt = malloc(sizeof(uint64_t) << MULTI_BITS);
    if (!mt)
        return NULL;
    const uint32_t *T = t->primary, *S = t->sub;
    const int pbits = t->pbits, sbits = t->sbits;
    const uint64_t pmask = ((uint64_t)1 << pbits) - 1, smask = ((uint64_t)1 << sbits) - 1;
    const int maxsyms = itemsize == 1 ? 4 : 2;
    for (uint64_t idx = 0; idx < ((uint64_t)1 << MULTI_BITS); idx++) {
        uint64_t syms = 0;
        int used = 0, ns = 0;
        while (ns < maxsyms) {
            uint64_t w = idx >> used; /* bits above MULTI_BITS - used are unknown (zero here) */
            uint32_t e;
            LOOKUP(w, e);
            int ln = (int)(e & 31);
            if (ln > MULTI_BITS - used)
                break; /* this code is not inside the known bits */
            syms |= (uint64_t)(e >> 16) << (ns * 8 * itemsize);
            used += ln;
            ns++;
        }
        mt[idx] = syms | ((uint64_t)used << 32) | ((uint64_t)ns << 40);
    }
    return mt;
}

#define DEFINE_MULTI(T_OUT, SUFFIX, K)                                                           \
    static size_t multi_##SUFFIX##_##K(const uint8_t *src, size_t nbytes, uint64_t *bitpos_io,   \
                                       const dtable_t *t, const uint64_t *mt, T_OUT *out,        \
                                       size_t count)                                             \
    {                                                                                            \
        const uint32_t *T = t->primary, *S = t->sub;                                             \
        const int pbits = t->pbits, sbits = t->sbits;                                            \
        const uint64_t pmask = ((uint64_t)1 << pbits) - 1, smask = ((uint64_t)1 << sbits) - 1;   \
        const uint64_t qmask = ((uint64_t)1 << MULTI_BITS) - 1;                                  \
        const size_t per = 4 / sizeof(T_OUT); /* symbols written per store */                  \
        uint64_t bitpos = *bitpos_io;                                                            \
        size_t i = 0;                                                                            \
        while (i + per * (K) <= count && (bitpos >> 3) + 8 <= nbytes) {                          \
            uint64_t w = load64le(src + (bitpos >> 3)) >> (bitpos & 7);                          \
            uint32_t used = 0;                                                                   \
            for (int k = 0; k < (K); k++) {                                                      \
                uint64_t e = mt[w & qmask];                                                      \
                uint32_t nb;                                                                     \
                if (__builtin_expect((e >> 40) != 0, 1)) {                                       \
                    memcpy(out + i, &e, 4); /* little-endian symbol lanes */                    \
                    i += (size_t)(e >> 40);                                                      \
                    nb = (uint32_t)(e >> 32) & 0xff;                                             \
                } else {                                                                         \
                    uint32_t e1;                                                                 \
                    LOOKUP(w, e1);                                                               \
                    out[i++] = (T_OUT)(e1 >> 16);                                                \
                    nb = e1 & 31;                                                                \
                }                                                                                \
                w >>= nb;                                                                        \
                used += nb;                                                                      \
            }                                                                                    \
            bitpos += used;                                                                      \
        }                                                                                        \
        *bitpos_io = bitpos;                                                                     \
        return i;                                                                                \
    }

/* K lookups per 64-bit load, each consuming at most max(MULTI_BITS, M) <= 16 bits: K * 16 <= 57
 * needs K = 3; K * 12 <= 57 allows K = 4 when M <= 12. (MULTI_BITS = 12: a 32 KiB table, which
 * measured faster than 11 bits on every distribution tried; it stays in L1.) */
DEFINE_MULTI(uint8_t, u8, 3)
DEFINE_MULTI(uint8_t, u8, 4)
DEFINE_MULTI(uint8_t, u8, 5)
DEFINE_MULTI(uint16_t, u16, 3)
DEFINE_MULTI(uint16_t, u16, 4)
DEFINE_MULTI(uint16_t, u16, 5)

static size_t multi_decode(int m, const uint8_t *src, size_t nbytes, uint64_t *bp, const dtable_t *t,
                           const uint64_t *mt, void *out, int itemsize, size_t count)
{
    int bits = m > MULTI_BITS ? m : MULTI_BITS, k = 57 / bits;
    if (itemsize == 1) {
        if (k >= 5) return multi_u8_5(src, nbytes, bp, t, mt, (uint8_t *)out, count);
        if (k == 4) return multi_u8_4(src, nbytes, bp, t, mt, (uint8_t *)out, count);
        return multi_u8_3(src, nbytes, bp, t, mt, (uint8_t *)out, count);
    }
    if (k >= 5) return multi_u16_5(src, nbytes, bp, t, mt, (uint16_t *)out, count);
    if (k == 4) return multi_u16_4(src, nbytes, bp, t, mt, (uint16_t *)out, count);
    return multi_u16_3(src, nbytes, bp, t, mt, (uint16_t *)out, count);
}

/* Decode `count` codes from src[0..nbytes) into out (itemsize 1 or 2). */
static int decode_payload(const uint8_t *src, size_t nbytes, const uint8_t *lengths, size_t n, int m,
                          void *out, int itemsize, size_t count, int multi, err_t *err)
{
    if ((uint64_t)count > 8 * (uint64_t)nbytes) {
        SET_ERR(err, StreamError, "huffman stream truncated: %zu payload bytes cannot hold %zu codes",
                nbytes, count);
        return -1;
    }
    dtable_t t;
    if (build_dtable(lengths, n, m, &t) < 0) {
        free_dtable(&t);
        SET_ERR(err, PyExc_MemoryError, "out of memory");
        return -1;
    }
    uint64_t bitpos = 0, nbits = 8 * (uint64_t)nbytes;
    size_t i = 0;
    uint64_t *mt = multi && count >= MULTI_MIN_COUNT ? build_multi(&t, itemsize) : NULL;
    if (mt) {
        i = multi_decode(m, src, nbytes, &bitpos, &t, mt, out, itemsize, count);
        free(mt);
    } else {
        i = itemsize == 1 ? fast_u8(m, src, nbytes, &bitpos, &t, (uint8_t *)out, count)
                          : fast_u16(m, src, nbytes, &bitpos, &t, (uint16_t *)out, count);
    }
    const uint32_t *T = t.primary, *S = t.sub;
    const int pbits = t.pbits, sbits = t.sbits;
    const uint64_t pmask = ((uint64_t)1 << pbits) - 1, smask = ((uint64_t)1 << sbits) - 1;
    for (; i < count; i++) {
        uint64_t w = load64_safe(src, nbytes, (size_t)(bitpos >> 3)) >> (bitpos & 7);
        uint32_t e;
        LOOKUP(w, e);
        if (bitpos + (e & 31) > nbits) {
            free_dtable(&t);
            SET_ERR(err, StreamError, "huffman stream truncated at symbol %zu of %zu", i, count);
            return -1;
        }
        if (itemsize == 1)
            ((uint8_t *)out)[i] = (uint8_t)(e >> 16);
        else
            ((uint16_t *)out)[i] = (uint16_t)(e >> 16);
        bitpos += e & 31;
    }
    free_dtable(&t);
    size_t used_bytes = (size_t)((bitpos + 7) >> 3);
    if (used_bytes != nbytes) {
        SET_ERR(err, StreamError, "huffman stream: %zu trailing bytes after the last code", nbytes - used_bytes);
        return -1;
    }
    if ((bitpos & 7) && (src[nbytes - 1] >> (bitpos & 7))) {
        SET_ERR(err, StreamError, "huffman stream: non-zero padding bits after the last code");
        return -1;
    }
    return 0;
}

/* The code-length table of a HUFFMAN-mode stream (mode byte at data[0]) and its zero padding:
 * returns N (table size) or -1, with *m_out = M and *start = the payload's first byte. */
static int64_t read_header(const uint8_t *data, size_t len, uint8_t *lengths, int *m_out, size_t *start,
                           err_t *err)
{
    bitr_t r = {data, 8, 8 * len};
    int64_t n = read_table(&r, lengths, m_out, err);
    if (n < 0)
        return -1;
    while (r.pos & 7) {
        int b = br_bit(&r, err, "the code-length table");
        if (b != 0) {
            if (b > 0)
                SET_ERR(err, StreamError, "huffman stream: non-zero padding bits after the code-length table");
            return -1;
        }
    }
    *start = r.pos >> 3;
    return n;
}

/* Whole stream. out has `count` items of `itemsize` (1 or 2) bytes. */
static int decode_stream(const uint8_t *data, size_t len, void *out, int itemsize, size_t count, int multi,
                         err_t *err)
{
    const char *dtname = itemsize == 1 ? "uint8" : "uint16";
    uint32_t limit = itemsize == 1 ? 0xFFu : 0xFFFFu;
    if (len == 0) {
        SET_ERR(err, StreamError, "huffman stream is empty (no mode byte)");
        return -1;
    }
    int mode = data[0];
    if (mode == MODE_RAW) {
        if (len < 2) {
            SET_ERR(err, StreamError, "huffman stream truncated: RAW mode without its width byte");
            return -1;
        }
        int width = data[1];
        if (width > MAX_RAW_WIDTH) {
            SET_ERR(err, StreamError, "huffman stream: RAW width %d > %d", width, MAX_RAW_WIDTH);
            return -1;
        }
        if (((1u << width) - 1) > limit) {
            SET_ERR(err, StreamError, "huffman stream: %d-bit RAW symbols do not fit %s", width, dtname);
            return -1;
        }
        return unpack_values(data + 2, len - 2, width, count, out, itemsize, err);
    }
    if (mode == MODE_CONST) {
        uint32_t sym = 0;
        int shift = 0;
        size_t pos = 1;
        for (;;) {
            if (pos >= len) {
                SET_ERR(err, StreamError, "huffman stream truncated in the CONST symbol");
                return -1;
            }
            uint8_t byte = data[pos++];
            sym |= (uint32_t)(byte & 0x7F) << shift;
            shift += 7;
            if (!(byte & 0x80))
                break;
            if (shift >= 21) {
                SET_ERR(err, StreamError, "huffman stream: CONST symbol longer than 3 bytes");
                return -1;
            }
        }
        if (pos != len) {
            SET_ERR(err, StreamError, "huffman stream: %zu trailing bytes after the CONST symbol", len - pos);
            return -1;
        }
        /* minimal: the last byte is non-zero unless it is the only one */
        if (sym >= MAX_ALPHABET || (pos > 2 && data[pos - 1] == 0)) {
            SET_ERR(err, StreamError, "huffman stream: CONST symbol %u out of range or not minimally encoded", sym);
            return -1;
        }
        if (sym > limit) {
            SET_ERR(err, StreamError, "huffman stream: symbol %u does not fit %s", sym, dtname);
            return -1;
        }
        if (itemsize == 1)
            memset(out, (int)sym, count);
        else
            for (size_t i = 0; i < count; i++)
                ((uint16_t *)out)[i] = (uint16_t)sym;
        return 0;
    }
    if (mode == MODE_HUFFMAN) {
        uint8_t *lengths = malloc(MAX_ALPHABET);
        if (!lengths) {
            SET_ERR(err, PyExc_MemoryError, "out of memory");
            return -1;
        }
        int m = 0;
        size_t start = 0;
        int64_t n = read_header(data, len, lengths, &m, &start, err);
        if (n < 0) {
            free(lengths);
            return -1;
        }
        if ((uint64_t)(n - 1) > limit) {
            free(lengths);
            SET_ERR(err, StreamError, "huffman stream: symbol %lld does not fit %s", (long long)(n - 1), dtname);
            return -1;
        }
        int rc = decode_payload(data + start, len - start, lengths, (size_t)n, m, out, itemsize, count, multi, err);
        free(lengths);
        return rc;
    }
    SET_ERR(err, StreamError, "huffman stream: unknown mode byte %d", mode);
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Fused decoding into values (quant / cluster): no symbol array                               */
/* ------------------------------------------------------------------------------------------ */

/* Lane table: like build_multi, indexed by the next MULTI_BITS bits, but the entry keeps the bit
 * count in its low byte (so it feeds the shift directly: a shorter dependency chain per lookup)
 *   bits 0..7 bits consumed, bits 8..15 number of symbols (0 = the first code is longer than
 *   MULTI_BITS), bits 16..63 the symbols in lanes of LW bits (LW = 12: 4 lanes, LW = 16: 3). */
static uint64_t *build_lanes(const dtable_t *t, int lw)
{
    uint64_t *mt = malloc(sizeof(uint64_t) << MULTI_BITS);
    if (!mt)
        return NULL;
    const uint32_t *T = t->primary, *S = t->sub;
    const int pbits = t->pbits, sbits = t->sbits;
    const uint64_t pmask = ((uint64_t)1 << pbits) - 1, smask = ((uint64_t)1 << sbits) - 1;
    const int maxsyms = lw == 12 ? 4 : 3;
    for (uint64_t idx = 0; idx < ((uint64_t)1 << MULTI_BITS); idx++) {
        uint64_t syms = 0;
        int used = 0, ns = 0;
        while (ns < maxsyms) {
            uint64_t w = idx >> used;
            uint32_t e;
            LOOKUP(w, e);
            int ln = (int)(e & 31);
            if (ln > MULTI_BITS - used)
                break;
            syms |= (uint64_t)(e >> 16) << (ns * lw);
            used += ln;
            ns++;
        }
        mt[idx] = (uint64_t)used | ((uint64_t)ns << 8) | (syms << 16);
    }
    return mt;
}

/* out[i] = tab[symbol i] while 4*K outputs and 8 stream bytes are left; K lookups per 64-bit load
 * (each consumes at most max(MULTI_BITS, M) bits, K * that <= 57). Every lookup writes 4 lanes;
 * lanes past the entry's count are overwritten by the next lookup. Returns symbols decoded. */
#define DEFINE_FUSED(T_OUT, SUF, LW, K)                                                          \
    static size_t fused_##SUF##_##LW##_##K(const uint8_t *src, size_t nbytes, uint64_t *bitpos_io,\
                                           const dtable_t *t, const uint64_t *mt,                \
                                           const T_OUT *tab, T_OUT *out, size_t count)           \
    {                                                                                            \
        const uint32_t *T = t->primary, *S = t->sub;                                             \
        const int pbits = t->pbits, sbits = t->sbits;                                            \
        const uint64_t pmask = ((uint64_t)1 << pbits) - 1, smask = ((uint64_t)1 << sbits) - 1;   \
        const uint64_t qmask = ((uint64_t)1 << MULTI_BITS) - 1, lmask = ((uint64_t)1 << LW) - 1;  \
        uint64_t bitpos = *bitpos_io;                                                            \
        size_t i = 0;                                                                            \
        while (i + 4 * (K) <= count && (bitpos >> 3) + 8 <= nbytes) {                            \
            uint64_t w = load64le(src + (bitpos >> 3)) >> (bitpos & 7);                          \
            uint32_t used = 0;                                                                   \
            for (int k = 0; k < (K); k++) {                                                      \
                uint64_t e = mt[w & qmask];                                                      \
                uint32_t nb;                                                                     \
                if (__builtin_expect((e & 0xff00) != 0, 1)) {                                    \
                    uint64_t s = e >> 16;                                                        \
                    out[i] = tab[s & lmask];                                                     \
                    out[i + 1] = tab[(s >> (LW)) & lmask];                                       \
                    out[i + 2] = tab[(s >> (2 * (LW))) & lmask];                                 \
                    if ((LW) == 12)                                                              \
                        out[i + 3] = tab[(s >> 36) & lmask];                                     \
                    i += (size_t)((e >> 8) & 0xff);                                              \
                    nb = (uint32_t)(e & 0xff);                                                   \
                } else {                                                                         \
                    uint32_t e1;                                                                 \
                    LOOKUP(w, e1);                                                               \
                    out[i++] = tab[e1 >> 16];                                                    \
                    nb = e1 & 31;                                                                \
                }                                                                                \
                w >>= nb;                                                                        \
                used += nb;                                                                      \
            }                                                                                    \
            bitpos += used;                                                                      \
        }                                                                                        \
        *bitpos_io = bitpos;                                                                     \
        return i;                                                                                \
    }

#define DEFINE_FUSED_LW(T_OUT, SUF, LW)                                                          \
    DEFINE_FUSED(T_OUT, SUF, LW, 3)                                                              \
    DEFINE_FUSED(T_OUT, SUF, LW, 4)                                                              \
    static size_t fused_##SUF##_##LW(int m, const uint8_t *src, size_t nbytes, uint64_t *bp,     \
                                     const dtable_t *t, const uint64_t *mt, const T_OUT *tab,    \
                                     T_OUT *out, size_t count)                                   \
    {                                                                                            \
        if (57 / (m > MULTI_BITS ? m : MULTI_BITS) >= 4)                                         \
            return fused_##SUF##_##LW##_4(src, nbytes, bp, t, mt, tab, out, count);              \
        return fused_##SUF##_##LW##_3(src, nbytes, bp, t, mt, tab, out, count);                  \
    }

/* Value tables, for long outputs of 1-, 2- or 4-byte items: the entry for the next `bits` stream bits
 * is split in two. meta[idx] (uint16: on the critical path, stays in L1) = bits consumed | number of
 * codes << 8 (0: the first code is longer than `bits`); vals[idx] (16 bytes) = the table values of
 * those codes, ready to be stored with one 16-byte copy (16 / itemsize lanes).
 * `bits` is VT_BITS (8 KiB of meta, 64 KiB of values), or VT_WIDE_BITS (32 KiB and 256 KiB) for
 * outputs of VT_WIDE_MIN_COUNT and more whose codes average VT_WIDE_MIN_CODE_BITS or more, where
 * building the larger table is a small part of the decode: codes of ~7 bits (8-bit quantised
 * Gaussian kernels) fit ~1.35 to a 12-bit lookup and more to a 14-bit one, so a lookup chain covers
 * more codes (1.2-1.3x); short codes (~3.7 bits) already fill the lanes at 12 bits, and there the
 * larger table only costs (0.7-0.9x, tools/bench_decode.py). */
#define VT_BYTES 16
#define VT_BITS 12
#define VT_WIDE_BITS 14
#define VT_WIDE_MIN_COUNT ((size_t)1 << 20)
#define VT_WIDE_MIN_CODE_BITS 5 /* mean code length (payload bits / count) from which 14 bits pay */

static int build_vtable(const dtable_t *t, const void *tab, int itemsize, int bits, uint16_t **meta_out,
                        uint8_t **vals_out)
{
    uint16_t *meta = malloc(sizeof(uint16_t) << bits);
    uint8_t *vals = calloc((size_t)VT_BYTES << bits, 1);
    if (!meta || !vals) {
        free(meta);
        free(vals);
        return -1;
    }
    const uint32_t *T = t->primary, *S = t->sub;
    const int pbits = t->pbits, sbits = t->sbits;
    const uint64_t pmask = ((uint64_t)1 << pbits) - 1, smask = ((uint64_t)1 << sbits) - 1;
    const int lanes = VT_BYTES / itemsize;
    for (uint64_t idx = 0; idx < ((uint64_t)1 << bits); idx++) {
        int used = 0, ns = 0;
        while (ns < lanes) {
            uint64_t w = idx >> used;
            uint32_t e;
            LOOKUP(w, e);
            int ln = (int)(e & 31);
            if (ln > bits - used)
                break;
            memcpy(vals + idx * VT_BYTES + (size_t)ns * itemsize, (const uint8_t *)tab + (size_t)(e >> 16) * itemsize,
                   (size_t)itemsize);
            used += ln;
            ns++;
        }
        meta[idx] = (uint16_t)(used | (ns << 8));
    }
    *meta_out = meta;
    *vals_out = vals;
    return 0;
}

#define DEFINE_VT(T_OUT, SUF, K)                                                                 \
    static size_t vt_##SUF##_##K(int vbits, const uint8_t *src, size_t nbytes, uint64_t *bitpos_io,\
                                 const dtable_t *t, const uint16_t *meta, const uint8_t *vals,   \
                                 const T_OUT *tab, T_OUT *out, size_t count)                     \
    {                                                                                            \
        const uint32_t *T = t->primary, *S = t->sub;                                             \
        const int pbits = t->pbits, sbits = t->sbits;                                            \
        const uint64_t pmask = ((uint64_t)1 << pbits) - 1, smask = ((uint64_t)1 << sbits) - 1;   \
        const uint64_t qmask = ((uint64_t)1 << vbits) - 1;                                       \
        const size_t lanes = VT_BYTES / sizeof(T_OUT);                                           \
        uint64_t bitpos = *bitpos_io;                                                            \
        size_t i = 0;                                                                            \
        while (i + lanes * (K) <= count && (bitpos >> 3) + 8 <= nbytes) {                        \
            uint64_t w = load64le(src + (bitpos >> 3)) >> (bitpos & 7);                          \
            uint32_t used = 0;                                                                   \
            for (int k = 0; k < (K); k++) {                                                      \
                size_t idx = (size_t)(w & qmask);                                                \
                uint32_t mt = meta[idx], nb;                                                     \
                if (__builtin_expect(mt > 0xff, 1)) {                                            \
                    memcpy(out + i, vals + idx * VT_BYTES, VT_BYTES);                            \
                    i += mt >> 8;                                                                \
                    nb = mt & 0xff;                                                              \
                } else {                                                                         \
                    uint32_t e1;                                                                 \
                    LOOKUP(w, e1);                                                               \
                    out[i++] = tab[e1 >> 16];                                                    \
                    nb = e1 & 31;                                                                \
                }                                                                                \
                w >>= nb;                                                                        \
                used += nb;                                                                      \
            }                                                                                    \
            bitpos += used;                                                                      \
        }                                                                                        \
        *bitpos_io = bitpos;                                                                     \
        return i;                                                                                \
    }

#define DEFINE_VT_TYPE(T_OUT, SUF)                                                               \
    DEFINE_VT(T_OUT, SUF, 3)                                                                     \
    DEFINE_VT(T_OUT, SUF, 4)                                                                     \
    static size_t vt_##SUF(int m, int vbits, const uint8_t *src, size_t nbytes, uint64_t *bp,    \
                           const dtable_t *t, const uint16_t *meta, const uint8_t *vals,         \
                           const T_OUT *tab, T_OUT *out, size_t count)                           \
    {                                                                                            \
        if (57 / (m > vbits ? m : vbits) >= 4)                                                   \
            return vt_##SUF##_4(vbits, src, nbytes, bp, t, meta, vals, tab, out, count);         \
        return vt_##SUF##_3(vbits, src, nbytes, bp, t, meta, vals, tab, out, count);             \
    }

DEFINE_VT_TYPE(uint8_t, v8)
DEFINE_VT_TYPE(uint16_t, v16)
DEFINE_VT_TYPE(uint32_t, v32)
DEFINE_VT_TYPE(uint64_t, v64)

/* A HUFFMAN-mode stream ready for value decoding: the payload, its tables, the bit position. */
typedef struct {
    const uint8_t *src;
    size_t nbytes;
    uint64_t bitpos;
    int m, lw;
    size_t n;       /* code-length table size: symbols are < n */
    dtable_t t;
    uint64_t *mt;   /* lane table (medium outputs) or NULL */
    uint16_t *meta; /* value table (long outputs) or NULL */
    uint8_t *vals;
    int vbits;      /* its index bits: VT_BITS or VT_WIDE_BITS */
} vstream_t;

/* The whole payload decoder for one item type: a fast loop (value table or lane table, when
 * built), then one bounds-checked lookup per remaining symbol. Returns 0 or -1 (err set). */
#define DEFINE_VALUES(T_OUT, SUF)                                                                \
    static int values_##SUF(vstream_t *v, const T_OUT *tab, T_OUT *out, size_t count, size_t done,\
                            err_t *err)                                                          \
    {                                                                                            \
        size_t i = 0;                                                                            \
        if (v->meta)                                                                             \
            i = vt_##SUF(v->m, v->vbits, v->src, v->nbytes, &v->bitpos, &v->t, v->meta, v->vals, \
                         tab, out, count);                                                       \
        else if (v->mt)                                                                          \
            i = v->lw == 12 ? fused_##SUF##_12(v->m, v->src, v->nbytes, &v->bitpos, &v->t, v->mt,\
                                               tab, out, count)                                  \
                            : fused_##SUF##_16(v->m, v->src, v->nbytes, &v->bitpos, &v->t, v->mt,\
                                               tab, out, count);                                 \
        const uint32_t *T = v->t.primary, *S = v->t.sub;                                         \
        const int pbits = v->t.pbits, sbits = v->t.sbits;                                        \
        const uint64_t pmask = ((uint64_t)1 << pbits) - 1, smask = ((uint64_t)1 << sbits) - 1;   \
        const uint8_t *src = v->src;                                                             \
        uint64_t bitpos = v->bitpos, nbits = 8 * (uint64_t)v->nbytes;                            \
        for (; i < count; i++) {                                                                 \
            uint64_t w = load64_safe(src, v->nbytes, (size_t)(bitpos >> 3)) >> (bitpos & 7);     \
            uint32_t e;                                                                          \
            LOOKUP(w, e);                                                                        \
            if (bitpos + (e & 31) > nbits) {                                                     \
                SET_ERR(err, StreamError, "huffman stream truncated at symbol %zu of %zu",       \
                        done + i, done + count);                                                 \
                return -1;                                                                       \
            }                                                                                    \
            out[i] = tab[e >> 16];                                                               \
            bitpos += e & 31;                                                                    \
        }                                                                                        \
        v->bitpos = bitpos;                                                                      \
        return 0;                                                                                \
    }

DEFINE_FUSED_LW(uint8_t, v8, 12)
DEFINE_FUSED_LW(uint8_t, v8, 16)
DEFINE_FUSED_LW(uint16_t, v16, 12)
DEFINE_FUSED_LW(uint16_t, v16, 16)
DEFINE_FUSED_LW(uint32_t, v32, 12)
DEFINE_FUSED_LW(uint32_t, v32, 16)
DEFINE_FUSED_LW(uint64_t, v64, 12)
DEFINE_FUSED_LW(uint64_t, v64, 16)
DEFINE_VALUES(uint8_t, v8)
DEFINE_VALUES(uint16_t, v16)
DEFINE_VALUES(uint32_t, v32)
DEFINE_VALUES(uint64_t, v64)

/* Two decoders in one loop. Huffman decoding is bound by the latency of its lookup chain (table
 * load, then the shift by the length it gives), not by the core's throughput. So decoder A starts
 * at bit 0 and decoder B at the middle bit of the payload, and the loop advances both: two
 * independent chains. B's first codes are garbage until it falls into step with the true code
 * boundaries (a prefix code resynchronises within a few codes); B records the boundaries after its
 * first SYNC_CODES codes, and when A has passed the middle it decodes code by code until it lands
 * on one of them: from that boundary on both decoders produce the same codes, so B's values after
 * it (kept in a scratch buffer) are the true values that follow A's. Anything unusual (no common
 * boundary, a stream that would not end where `count` says) returns 1 and the caller decodes the
 * stream again from the start with one decoder, which reports errors exactly as always. */
#define SPLIT_MIN_COUNT (1 << 18)
#define SYNC_CODES 64

/* The names VT_GROUP reads, from the open stream `v` (value tables built) decoding into T_OUT. */
#define VT_GROUP_LOCALS(v, T_OUT)                                                                \
    const uint32_t *T = (v)->t.primary, *S = (v)->t.sub;                                         \
    const int pbits = (v)->t.pbits, sbits = (v)->t.sbits;                                        \
    const uint64_t pmask = ((uint64_t)1 << pbits) - 1, smask = ((uint64_t)1 << sbits) - 1;       \
    const uint64_t qmask = ((uint64_t)1 << (v)->vbits) - 1;                                      \
    const uint16_t *meta = (v)->meta;                                                            \
    const uint8_t *vals = (v)->vals, *src = (v)->src;                                            \
    const size_t nbytes = (v)->nbytes, lanes = VT_BYTES / sizeof(T_OUT)

/* K = 3 lookups per refill: 3 x 16 bits <= 57 for every code length. */
#define VT_GROUP(bitpos, i, o)                                                                   \
    do {                                                                                         \
        uint64_t w = load64le(src + ((bitpos) >> 3)) >> ((bitpos) & 7);                          \
        uint32_t used = 0;                                                                       \
        for (int k = 0; k < 3; k++) {                                                            \
            size_t idx = (size_t)(w & qmask);                                                    \
            uint32_t mt = meta[idx], nb;                                                         \
            if (__builtin_expect(mt > 0xff, 1)) {                                                \
                memcpy((o) + (i), vals + idx * VT_BYTES, VT_BYTES);                              \
                (i) += mt >> 8;                                                                  \
                nb = mt & 0xff;                                                                  \
            } else {                                                                             \
                uint32_t e1;                                                                     \
                LOOKUP(w, e1);                                                                   \
                (o)[(i)++] = tab[e1 >> 16];                                                      \
                nb = e1 & 31;                                                                    \
            }                                                                                    \
            w >>= nb;                                                                            \
            used += nb;                                                                          \
        }                                                                                        \
        (bitpos) += used;                                                                        \
    } while (0)

/* Where a long stream's codes fall: segment j (1 <= j < NWAY) starts at a code boundary, bit bit[j],
 * whose code is output idx[j]. Learnt by the two-decoder loop (the first group end it passes at
 * j/NWAY of the payload); used by the hinted loops below (two halves of NWAY / 2 decoders), which
 * check every one of them. */
#define NWAY 8
typedef struct {
    uint64_t bit[NWAY], idx[NWAY]; /* [0] unused (segment 0 starts at bit 0, output 0) */
    int ok;                        /* every entry filled */
    int hinted;                    /* (vstream_gather) 1: ran on hints that held, -1: hints did not hold */
} hints_t;

/* B's boundary record: the first group end at or past the next target bit. */
#define RECORD(pos, i, j, tgt, rb, ri, lastj)                                                    \
    do {                                                                                         \
        if ((pos) >= (tgt)) {                                                                    \
            (rb)[j] = (pos);                                                                     \
            (ri)[j] = (i);                                                                       \
            (j)++;                                                                               \
            (tgt) = (j) <= (lastj) ? (uint64_t)(j) * nbits / NWAY : UINT64_MAX;                  \
        }                                                                                        \
    } while (0)

#define DEFINE_SPLIT(T_OUT, SUF)                                                                 \
    static int split_##SUF(vstream_t *v, const T_OUT *tab, T_OUT *out, size_t count, hints_t *learn,\
                           err_t *err)                                                           \
    {                                                                                            \
        VT_GROUP_LOCALS(v, T_OUT);                                                               \
        const uint64_t nbits = 8 * (uint64_t)nbytes, mid = nbits / 2;                            \
        const size_t cap = count < nbits - mid ? count : (size_t)(nbits - mid);                  \
        uint64_t bound[SYNC_CODES + 1], a = 0, b = mid, rb[NWAY], ri[NWAY];                      \
        size_t ia = 0, ib = 0;                                                                   \
        int ja = 1, jb = NWAY / 2 + 1; /* next segment start to record: A's, B's */             \
        uint64_t ta = nbits / NWAY, tb = jb < NWAY ? (uint64_t)jb * nbits / NWAY : UINT64_MAX;   \
        T_OUT *scr = malloc((cap + lanes) * sizeof(T_OUT));                                      \
        if (!scr)                                                                                \
            return 1;                                                                            \
        bound[0] = mid;                                                                          \
        for (; ib < SYNC_CODES && ib < cap && (b >> 3) + 8 <= nbytes; ib++) {                    \
            uint64_t w = load64le(src + (b >> 3)) >> (b & 7);                                    \
            uint32_t e;                                                                          \
            LOOKUP(w, e);                                                                        \
            scr[ib] = tab[e >> 16];                                                              \
            b += e & 31;                                                                         \
            bound[ib + 1] = b;                                                                   \
        }                                                                                        \
        if (ib < SYNC_CODES) {                                                                   \
            free(scr);                                                                           \
            return 1;                                                                            \
        }                                                                                        \
        while (a < mid && ia + 3 * lanes <= count) {                                             \
            if ((b >> 3) + 8 <= nbytes && ib + 3 * lanes <= cap) {                               \
                VT_GROUP(b, ib, scr);                                                            \
                RECORD(b, ib, jb, tb, rb, ri, NWAY - 1);                                         \
            }                                                                                    \
            VT_GROUP(a, ia, out);                                                                \
            RECORD(a, ia, ja, ta, learn->bit, learn->idx, NWAY / 2);                             \
        }                                                                                        \
        while ((b >> 3) + 8 <= nbytes && ib + 3 * lanes <= cap) {                                \
            VT_GROUP(b, ib, scr);                                                                \
            RECORD(b, ib, jb, tb, rb, ri, NWAY - 1);                                             \
        }                                                                                        \
        /* A, code by code, to the first boundary it shares with B */                           \
        size_t k = 0;                                                                            \
        for (;;) {                                                                               \
            while (k <= SYNC_CODES && bound[k] < a)                                              \
                k++;                                                                             \
            if (k > SYNC_CODES || ia >= count) {                                                 \
                free(scr);                                                                       \
                return 1;                                                                        \
            }                                                                                    \
            if (bound[k] == a)                                                                   \
                break;                                                                           \
            uint64_t w = load64_safe(src, nbytes, (size_t)(a >> 3)) >> (a & 7);                  \
            uint32_t e;                                                                          \
            LOOKUP(w, e);                                                                        \
            if (a + (e & 31) > nbits) {                                                          \
                free(scr);                                                                       \
                return 1;                                                                        \
            }                                                                                    \
            out[ia++] = tab[e >> 16];                                                            \
            a += e & 31;                                                                         \
        }                                                                                        \
        size_t have = ib - k, need = count - ia;                                                 \
        if (have > need) {                                                                       \
            free(scr);                                                                           \
            return 1;                                                                            \
        }                                                                                        \
        memcpy(out + ia, scr + k, have * sizeof(T_OUT));                                         \
        free(scr);                                                                               \
        /* B's records after the common boundary are true boundaries: output index ri - k + ia */\
        learn->ok = ja > NWAY / 2 && jb == NWAY;                                                 \
        for (int j = NWAY / 2 + 1; j < jb; j++) {                                                \
            learn->ok &= ri[j] >= k;                                                              \
            learn->bit[j] = rb[j];                                                               \
            learn->idx[j] = ri[j] - k + ia;                                                      \
        }                                                                                        \
        v->bitpos = b;                                                                           \
        return values_##SUF(v, tab, out + ia + have, need - have, ia + have, err);               \
    }

/* The hints' segment starts start[0..NWAY] (bits) and output indices at[0..NWAY], with start[NWAY] =
 * the payload's end and at[NWAY] = count; 0 when the hints are incomplete or out of order or range. */
static int hints_hold(const hints_t *h, uint64_t nbits, size_t count, uint64_t *start, size_t *at)
{
    start[0] = 0;
    at[0] = 0;
    if (!h->ok)
        return 0;
    for (int j = 1; j < NWAY; j++) {
        start[j] = h->bit[j];
        at[j] = (size_t)h->idx[j];
        if (start[j] <= start[j - 1] || start[j] >= nbits || at[j] <= at[j - 1] || at[j] >= count)
            return 0;
    }
    start[NWAY] = nbits;
    at[NWAY] = count;
    return 1;
}

/* HALF = NWAY / 2 decoders in one loop: segments j0 .. j0 + HALF - 1 (j0 = 0 or HALF), segment j from
 * the code boundary hints->bit[j] (output hints->idx[j]) to the next one: HALF independent lookup
 * chains, no scratch buffer, no resynchronisation. Segment j must end exactly at segment j+1's start
 * bit after exactly idx[j+1] - idx[j] codes (checked); segment 0 starts at bit 0, so by induction
 * every segment starts at a true code boundary with its true output index, whatever the hints' origin
 * (the two halves may run at once, on two threads: each writes only its own outputs and checks its
 * own segments' ends, and the induction needs both). Anything else returns 1 (the caller decodes
 * again from the start); the stream's last segment ends through values_ (same errors as one decoder,
 * at the same code). */
#define HALF (NWAY / 2)
#define DEFINE_HINTED(T_OUT, SUF)                                                                \
    static int hinted_half_##SUF(vstream_t *v, const T_OUT *tab, T_OUT *out, size_t count,         \
                                 const hints_t *h, int j0, err_t *err)                           \
    {                                                                                            \
        VT_GROUP_LOCALS(v, T_OUT);                                                               \
        const uint64_t nbits = 8 * (uint64_t)nbytes;                                             \
        uint64_t start[NWAY + 1], pos[HALF];                                                     \
        size_t at[NWAY + 1], ix[HALF], lim[HALF];                                                \
        if (!hints_hold(h, nbits, count, start, at))                                             \
            return 1;                                                                            \
        const int ends = j0 + HALF == NWAY; /* this half holds the stream's last segment */      \
        for (int j = 0; j < HALF; j++) {                                                         \
            pos[j] = start[j0 + j];                                                              \
            ix[j] = at[j0 + j];                                                                  \
            lim[j] = at[j0 + j + 1];                                                             \
        }                                                                                        \
        for (;;) {                                                                               \
            int go = 1;                                                                          \
            for (int j = 0; j < HALF; j++)                                                       \
                go &= (ix[j] + 3 * lanes <= lim[j]) & ((pos[j] >> 3) + 8 <= nbytes);             \
            if (!go)                                                                             \
                break;                                                                           \
            for (int j = 0; j < HALF; j++)                                                       \
                VT_GROUP(pos[j], ix[j], out);                                                    \
        }                                                                                        \
        for (int j = 0; j < HALF - ends; j++) { /* each segment to its end, then the check */    \
            uint64_t p = pos[j];                                                                 \
            size_t i = ix[j];                                                                    \
            while (i + 3 * lanes <= lim[j] && (p >> 3) + 8 <= nbytes)                            \
                VT_GROUP(p, i, out);                                                             \
            for (; i < lim[j]; i++) {                                                            \
                uint64_t w = load64_safe(src, nbytes, (size_t)(p >> 3)) >> (p & 7);              \
                uint32_t e;                                                                      \
                LOOKUP(w, e);                                                                    \
                if (p + (e & 31) > nbits)                                                        \
                    return 1;                                                                    \
                out[i] = tab[e >> 16];                                                           \
                p += e & 31;                                                                     \
            }                                                                                    \
            if (p != start[j0 + j + 1])                                                          \
                return 1;                                                                        \
        }                                                                                        \
        if (!ends)                                                                               \
            return 0;                                                                            \
        v->bitpos = pos[HALF - 1];                                                               \
        return values_##SUF(v, tab, out + ix[HALF - 1], count - ix[HALF - 1], ix[HALF - 1], err);\
    }                                                                                            \
    static int hinted_##SUF(vstream_t *v, const T_OUT *tab, T_OUT *out, size_t count, const hints_t *h,\
                            err_t *err)                                                          \
    {                                                                                            \
        int rc = hinted_half_##SUF(v, tab, out, count, h, 0, err);                               \
        return rc != 0 ? rc : hinted_half_##SUF(v, tab, out, count, h, HALF, err);               \
    }

DEFINE_SPLIT(uint8_t, v8)
DEFINE_SPLIT(uint16_t, v16)
DEFINE_SPLIT(uint32_t, v32)
DEFINE_SPLIT(uint64_t, v64)
DEFINE_HINTED(uint8_t, v8)
DEFINE_HINTED(uint16_t, v16)
DEFINE_HINTED(uint32_t, v32)
DEFINE_HINTED(uint64_t, v64)

/* Outputs from which the value table (4096 x 16 bytes to fill) pays for itself. */
#define VT_MIN_COUNT 65536

static void vstream_free(vstream_t *v)
{
    free_dtable(&v->t);
    free(v->mt);
    free(v->meta);
    free(v->vals);
}

/* Opens a stream for `count` values from `tab` (k items of `itemsize` bytes); `wide` = 1 lets a long
 * stream of long codes have a VT_WIDE_BITS value table (the gather paths; per-channel dequantisation
 * keeps VT_BITS). Returns 1 when this path does not take it (not HUFFMAN mode, or a coded symbol >= k:
 * the caller decodes the symbols and checks them), 0 = ready, -1 = error. vstream_free is safe after
 * any outcome. */
static int vstream_open(vstream_t *v, const uint8_t *data, size_t len, size_t count, const void *tab, size_t k,
                        int itemsize, int wide, err_t *err)
{
    memset(v, 0, sizeof(*v));
    if (len == 0 || data[0] != MODE_HUFFMAN)
        return 1;
    uint8_t *lengths = malloc(MAX_ALPHABET);
    if (!lengths) {
        SET_ERR(err, PyExc_MemoryError, "out of memory");
        return -1;
    }
    size_t start = 0;
    int64_t n = read_header(data, len, lengths, &v->m, &start, err);
    int rc = n < 0 ? -1 : (size_t)n > k ? 1 : 0;
    if (rc == 0 && (uint64_t)count > 8 * (uint64_t)(len - start)) {
        SET_ERR(err, StreamError, "huffman stream truncated: %zu payload bytes cannot hold %zu codes",
                len - start, count);
        rc = -1;
    }
    if (rc == 0 && build_dtable(lengths, (size_t)n, v->m, &v->t) < 0)
        rc = -2;
    free(lengths);
    if (rc != 0)
        goto fail;
    v->src = data + start;
    v->nbytes = len - start;
    v->n = (size_t)n;
    v->lw = n <= 4096 ? 12 : 16;
    /* no table at all for short outputs: the bounds-checked loop only */
    v->vbits = wide && count >= VT_WIDE_MIN_COUNT && 8 * (uint64_t)v->nbytes >= VT_WIDE_MIN_CODE_BITS * (uint64_t)count
                   ? VT_WIDE_BITS : VT_BITS;
    if (count >= VT_MIN_COUNT && build_vtable(&v->t, tab, itemsize, v->vbits, &v->meta, &v->vals) < 0)
        rc = -2;
    else if (count >= MULTI_MIN_COUNT && count < VT_MIN_COUNT && !(v->mt = build_lanes(&v->t, v->lw)))
        rc = -2;
    if (rc == 0)
        return 0;
fail:
    if (rc == -2) {
        SET_ERR(err, PyExc_MemoryError, "out of memory");
        rc = -1;
    }
    return rc;
}

/* After the last symbol: no trailing bytes, zero padding. */
static int vstream_finish(const vstream_t *v, err_t *err)
{
    size_t used_bytes = (size_t)((v->bitpos + 7) >> 3);
    if (used_bytes != v->nbytes) {
        SET_ERR(err, StreamError, "huffman stream: %zu trailing bytes after the last code", v->nbytes - used_bytes);
        return -1;
    }
    if ((v->bitpos & 7) && (v->src[v->nbytes - 1] >> (v->bitpos & 7))) {
        SET_ERR(err, StreamError, "huffman stream: non-zero padding bits after the last code");
        return -1;
    }
    return 0;
}

/* One decoder over the whole stream (value table built): the fast loop to about j/NWAY of the outputs
 * for each j, recording the code boundary it stops at in `learn`, then values_ to the end. */
#define DEFINE_SINGLE(T_OUT, SUF)                                                                \
    static int single_##SUF(vstream_t *v, const T_OUT *tab, T_OUT *out, size_t count, hints_t *learn,\
                            err_t *err)                                                          \
    {                                                                                            \
        size_t i = 0;                                                                            \
        learn->ok = 1;                                                                           \
        for (int j = 1; j < NWAY; j++) {                                                         \
            size_t upto = count / NWAY * (size_t)j;                                              \
            i += vt_##SUF(v->m, v->vbits, v->src, v->nbytes, &v->bitpos, &v->t, v->meta, v->vals,\
                          tab, out + i, upto - i);                                               \
            learn->bit[j] = v->bitpos;                                                           \
            learn->idx[j] = i;                                                                   \
            learn->ok &= i > learn->idx[j - 1] && (j == 1 || v->bitpos > learn->bit[j - 1]);     \
        }                                                                                        \
        learn->idx[0] = learn->bit[0] = 0;                                                       \
        return values_##SUF(v, tab, out + i, count - i, i, err);                                 \
    }

DEFINE_SINGLE(uint8_t, v8)
DEFINE_SINGLE(uint16_t, v16)
DEFINE_SINGLE(uint32_t, v32)
DEFINE_SINGLE(uint64_t, v64)

/* count values of `itemsize` bytes: out[i] = tab[symbol i] (the table given to vstream_open). Long
 * outputs: with `use` (hints of an earlier decode of this stream, or NULL) the hinted halves,
 * else (or when the hints do not hold) the two-decoder loop, else one decoder; these two fill `learn`
 * (learn->ok = 0 when they did not run or did not get every entry). */
static int vstream_gather(vstream_t *v, const void *tab, void *out, int itemsize, size_t count, const hints_t *use,
                          hints_t *learn, err_t *err)
{
    learn->ok = learn->hinted = 0;
    if (v->meta && count >= SPLIT_MIN_COUNT && v->nbytes >= 4096) {
        int rc = 1;
        if (use && use->ok) {
            switch (itemsize) {
            case 1: rc = hinted_v8(v, tab, out, count, use, err); break;
            case 2: rc = hinted_v16(v, tab, out, count, use, err); break;
            case 4: rc = hinted_v32(v, tab, out, count, use, err); break;
            default: rc = hinted_v64(v, tab, out, count, use, err); break;
            }
            learn->hinted = rc <= 0 ? 1 : -1; /* rc < 0: the checks held, the last segment met an error */
            if (rc <= 0)
                return rc;
            v->bitpos = 0; /* the hints do not hold for this stream: learn them again */
        }
        switch (itemsize) {
        case 1: rc = split_v8(v, tab, out, count, learn, err); break;
        case 2: rc = split_v16(v, tab, out, count, learn, err); break;
        case 4: rc = split_v32(v, tab, out, count, learn, err); break;
        default: rc = split_v64(v, tab, out, count, learn, err); break;
        }
        if (rc <= 0)
            return rc;
        v->bitpos = 0; /* no common boundary found (or an error ahead): one decoder, from the start */
        switch (itemsize) {
        case 1: return single_v8(v, tab, out, count, learn, err);
        case 2: return single_v16(v, tab, out, count, learn, err);
        case 4: return single_v32(v, tab, out, count, learn, err);
        default: return single_v64(v, tab, out, count, learn, err);
        }
    }
    switch (itemsize) {
    case 1: return values_v8(v, tab, out, count, 0, err);
    case 2: return values_v16(v, tab, out, count, 0, err);
    case 4: return values_v32(v, tab, out, count, 0, err);
    default: return values_v64(v, tab, out, count, 0, err);
    }
}

/* Per-channel dequantisation of one span of symbols (float32): element p (global index) has
 * channel (p / inner) % C; out[p] = (float)(s - off[c]) * step[c] (off = shift + zp), and a symbol
 * with s - shift[c] outside 0..qmax sets the returned flag. Branch-free inner loops (they vectorise). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default"))) /* 8 floats per step where there is AVX2 */
#else
#define VECTOR_CLONES
#endif

VECTOR_CLONES static uint32_t dequant_span(const uint16_t *s, size_t cnt, size_t pos, float *o, const int32_t *sh,
                             const int32_t *off, const float *st, size_t C, size_t inner, uint32_t qmax)
{
    uint32_t acc = 0;
    size_t j = 0;
    while (j < cnt) {
        size_t p = pos + j, len;
        if (inner == 1) {
            size_t c = p % C;
            len = C - c < cnt - j ? C - c : cnt - j;
            const int32_t *sh_c = sh + c, *off_c = off + c;
            const float *st_c = st + c;
            for (size_t k = 0; k < len; k++) {
                int32_t x = (int32_t)s[j + k];
                acc |= (uint32_t)(x - sh_c[k]) > qmax;
                o[p + k] = (float)(x - off_c[k]) * st_c[k];
            }
        } else {
            size_t c = (p / inner) % C;
            len = inner - p % inner < cnt - j ? inner - p % inner : cnt - j;
            const int32_t lo = sh[c], of = off[c];
            const float step = st[c];
            for (size_t k = 0; k < len; k++) {
                int32_t x = (int32_t)s[j + k];
                acc |= (uint32_t)(x - lo) > qmax;
                o[p + k] = (float)(x - of) * step;
            }
        }
        j += len;
    }
    return acc;
}

#define DEQUANT_CHUNK 16384

/* Per-channel dequantisation parameters (see dequant_span). */
typedef struct {
    const int32_t *sh, *off;
    const float *st;
    size_t C, inner;
    uint32_t qmax;
} dq_t;

/* Symbols [pos, count) in chunks of DEQUANT_CHUNK (a buffer that stays in cache), each dequantised at
 * once. `ident` is the identity table the stream was opened with. *bad collects out-of-range symbols. */
static int dequant_range(vstream_t *v, const uint16_t *ident, float *out, size_t pos, size_t count, const dq_t *q,
                         uint32_t *bad, err_t *err)
{
    uint16_t *buf = malloc(DEQUANT_CHUNK * sizeof(uint16_t));
    if (!buf) {
        SET_ERR(err, PyExc_MemoryError, "out of memory");
        return -1;
    }
    for (; pos < count; pos += DEQUANT_CHUNK) {
        size_t cnt = count - pos < DEQUANT_CHUNK ? count - pos : DEQUANT_CHUNK;
        if (values_v16(v, ident, buf, cnt, pos, err) < 0) {
            free(buf);
            return -1;
        }
        *bad |= dequant_span(buf, cnt, pos, out, q->sh, q->off, q->st, q->C, q->inner, q->qmax);
    }
    free(buf);
    return 0;
}

/* The two-decoder loop of split_v16 for per-channel dequantisation: A's symbols go through a cached
 * chunk into `out` as it goes; B's wait in a scratch buffer (2 bytes per symbol, half the tensor) until
 * their positions are known. Returns 0 (all of [0, count) done), 1 (start again with one decoder) or -1. */
static int dequant_split(vstream_t *v, const uint16_t *tab, float *out, size_t count, const dq_t *q, uint32_t *bad,
                         err_t *err)
{
    const uint32_t *T = v->t.primary, *S = v->t.sub;
    const int pbits = v->t.pbits, sbits = v->t.sbits;
    const uint64_t pmask = ((uint64_t)1 << pbits) - 1, smask = ((uint64_t)1 << sbits) - 1;
    const uint64_t qmask = ((uint64_t)1 << VT_BITS) - 1; /* vstream_open(wide = 0): a constant mask */
    const uint16_t *meta = v->meta;
    const uint8_t *vals = v->vals, *src = v->src;
    const size_t nbytes = v->nbytes, lanes = VT_BYTES / sizeof(uint16_t);
    const uint64_t nbits = 8 * (uint64_t)nbytes, mid = nbits / 2;
    const size_t cap = count < nbits - mid ? count : (size_t)(nbits - mid);
    uint64_t bound[SYNC_CODES + 1], a = 0, b = mid;
    size_t ia = 0, na = 0, ib = 0; /* A: abuf[0..na) are symbols ia..ia+na */
    uint16_t *scr = malloc((cap + lanes) * sizeof(uint16_t));
    uint16_t *abuf = malloc((DEQUANT_CHUNK + 4 * lanes) * sizeof(uint16_t));
    int rc = 1;
    if (!scr || !abuf)
        goto done;
    bound[0] = mid;
    for (; ib < SYNC_CODES && ib < cap && (b >> 3) + 8 <= nbytes; ib++) {
        uint64_t w = load64le(src + (b >> 3)) >> (b & 7);
        uint32_t e;
        LOOKUP(w, e);
        scr[ib] = tab[e >> 16];
        b += e & 31;
        bound[ib + 1] = b;
    }
    if (ib < SYNC_CODES)
        goto done;
    while (a < mid && ia + na + 3 * lanes <= count) {
        if ((b >> 3) + 8 <= nbytes && ib + 3 * lanes <= cap)
            VT_GROUP(b, ib, scr);
        VT_GROUP(a, na, abuf);
        if (na >= DEQUANT_CHUNK) {
            *bad |= dequant_span(abuf, na, ia, out, q->sh, q->off, q->st, q->C, q->inner, q->qmax);
            ia += na;
            na = 0;
        }
    }
    while ((b >> 3) + 8 <= nbytes && ib + 3 * lanes <= cap)
        VT_GROUP(b, ib, scr);
    size_t k = 0;
    for (;;) { /* A, code by code, to the first boundary it shares with B */
        while (k <= SYNC_CODES && bound[k] < a)
            k++;
        if (k > SYNC_CODES || ia + na >= count)
            goto done;
        if (bound[k] == a)
            break;
        if (na >= DEQUANT_CHUNK) {
            *bad |= dequant_span(abuf, na, ia, out, q->sh, q->off, q->st, q->C, q->inner, q->qmax);
            ia += na;
            na = 0;
        }
        uint64_t w = load64_safe(src, nbytes, (size_t)(a >> 3)) >> (a & 7);
        uint32_t e;
        LOOKUP(w, e);
        if (a + (e & 31) > nbits)
            goto done;
        abuf[na++] = tab[e >> 16];
        a += e & 31;
    }
    *bad |= dequant_span(abuf, na, ia, out, q->sh, q->off, q->st, q->C, q->inner, q->qmax);
    ia += na;
    size_t have = ib - k;
    if (have > count - ia)
        goto done;
    *bad |= dequant_span(scr + k, have, ia, out, q->sh, q->off, q->st, q->C, q->inner, q->qmax);
    free(scr);
    free(abuf);
    v->bitpos = b;
    return dequant_range(v, tab, out, ia + have, count, q, bad, err);
done:
    free(scr);
    free(abuf);
    return rc;
}

/* Returns 0, 1 (a symbol outside its channel's range) or -1 (err set). */
static int vstream_dequant(vstream_t *v, const uint16_t *ident, float *out, size_t count, const int32_t *sh,
                           const int32_t *off, const float *st, size_t C, size_t inner, uint32_t qmax, err_t *err)
{
    dq_t q = {sh, off, st, C, inner, qmax};
    uint32_t bad = 0;
    if (v->meta && count >= SPLIT_MIN_COUNT && v->nbytes >= 4096) {
        int rc = dequant_split(v, ident, out, count, &q, &bad, err);
        if (rc < 0)
            return -1;
        if (rc == 0)
            return bad != 0;
        v->bitpos = 0; /* one decoder from the start */
        bad = 0;
    }
    if (dequant_range(v, ident, out, 0, count, &q, &bad, err) < 0)
        return -1;
    return bad != 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Encoding                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* hist[0..65536) += counts of the symbols (itemsize 1 or 2). */
static void histogram(const void *src, int itemsize, size_t n, uint64_t *hist)
{
    if (itemsize == 1) {
        const uint8_t *s = (const uint8_t *)src;
        uint32_t h[4][256];
        size_t i = 0;
        while (i < n) {
            size_t end = n - i > ((size_t)1 << 30) ? i + ((size_t)1 << 30) : n;
            memset(h, 0, sizeof(h));
            for (; i + 4 <= end; i += 4) {
                h[0][s[i]]++;
                h[1][s[i + 1]]++;
                h[2][s[i + 2]]++;
                h[3][s[i + 3]]++;
            }
            for (; i < end; i++)
                h[0][s[i]]++;
            for (int v = 0; v < 256; v++)
                hist[v] += (uint64_t)h[0][v] + h[1][v] + h[2][v] + h[3][v];
        }
    } else {
        const uint16_t *s = (const uint16_t *)src;
        for (size_t i = 0; i < n; i++)
            hist[s[i]]++;
    }
}

static size_t leb128(uint32_t v, uint8_t *out)
{
    size_t k = 0;
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        out[k++] = b | (v ? 0x80 : 0);
    } while (v);
    return k;
}

#define ENCODE_LOOP(T)                                                                           \
    {                                                                                            \
        const T *s = (const T *)src;                                                             \
        for (size_t i = 0; i < n; i++) {                                                         \
            uint32_t e = enc[s[i]];                                                              \
            buf |= (uint64_t)(e >> 5) << nb;                                                     \
            nb += e & 31;                                                                        \
            if (nb >= 32) {                                                                      \
                store32le(o, (uint32_t)buf);                                                     \
                o += 4;                                                                          \
                buf >>= 32;                                                                      \
                nb -= 32;                                                                        \
            }                                                                                    \
        }                                                                                        \
    }

/* Writes exactly ceil(total_bits/8) bytes of codewords. */
static int encode_payload(const void *src, int itemsize, size_t n, const uint8_t *lengths, size_t nsym,
                          uint8_t *dst)
{
    uint32_t *enc = calloc(MAX_ALPHABET, sizeof(uint32_t));
    if (!enc)
        return -1;
    canonical_rev_codes(lengths, nsym, enc); /* rev codes in place, then fold the length in */
    for (size_t s = 0; s < nsym; s++)
        enc[s] = (enc[s] << 5) | lengths[s];
    uint64_t buf = 0;
    int nb = 0;
    uint8_t *o = dst;
    if (itemsize == 1) ENCODE_LOOP(uint8_t)
    else ENCODE_LOOP(uint16_t)
    while (nb > 0) {
        *o++ = (uint8_t)buf;
        buf >>= 8;
        nb -= 8;
    }
    free(enc);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Python bindings                                                                             */
/* ------------------------------------------------------------------------------------------ */

/* Unsigned integer buffer of itemsize in `allowed` (bitmask of 1, 2, 4). */
static int get_uint_buffer(PyObject *obj, Py_buffer *view, int writable, int allowed, const char *what)
{
    if (sqz_get_contiguous(obj, view, writable) < 0)
        return -1;
    const char *f = sqz_format_code(view);
    int ok = (f[0] == 'B' || f[0] == 'H' || f[0] == 'I' || f[0] == 'L' || f[0] == 'Q') && f[1] == 0 &&
             view->itemsize > 0 && view->itemsize <= 4 && (allowed & view->itemsize);
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous unsigned integer buffer of itemsize %s", what,
                     allowed == 3 ? "1 or 2" : "1, 2 or 4");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(pack_bits_doc, "pack_bits(values, width) -> bytes\n\n"
             "Pack a uint8/uint16/uint32 buffer at `width` (0..32) bits per value, LSB first.");

static PyObject *py_pack_bits(PyObject *self, PyObject *args)
{
    PyObject *obj;
    int width;
    if (!PyArg_ParseTuple(args, "Oi", &obj, &width))
        return NULL;
    if (width < 0 || width > MAX_PACK_WIDTH) {
        PyErr_Format(PyExc_ValueError, "width %d outside 0..%d", width, MAX_PACK_WIDTH);
        return NULL;
    }
    Py_buffer v;
    if (get_uint_buffer(obj, &v, 0, 7, "values") < 0)
        return NULL;
    size_t n = (size_t)(v.len / v.itemsize);
    size_t nbytes = (size_t)(((uint64_t)n * (uint64_t)width + 7) / 8);
    PyObject *res = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)nbytes);
    if (!res) {
        PyBuffer_Release(&v);
        return NULL;
    }
    uint64_t over;
    Py_BEGIN_ALLOW_THREADS
    over = pack_values(v.buf, (int)v.itemsize, n, width, (uint8_t *)PyBytes_AS_STRING(res));
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&v);
    if (over) {
        Py_DECREF(res);
        PyErr_Format(CodecError, "a value does not fit in %d bits", width);
        return NULL;
    }
    return res;
}

PyDoc_STRVAR(unpack_bits_doc, "unpack_bits(data, width, out) -> None\n\n"
             "Fill the uint8/uint16/uint32 buffer `out` with len(out) values of `width` bits; `data` must be "
             "exactly the packed bytes with zero padding (StreamError otherwise).");

static PyObject *py_unpack_bits(PyObject *self, PyObject *args)
{
    Py_buffer data, out;
    int width;
    PyObject *outobj;
    if (!PyArg_ParseTuple(args, "y*iO", &data, &width, &outobj))
        return NULL;
    if (width < 0 || width > MAX_PACK_WIDTH) {
        PyBuffer_Release(&data);
        PyErr_Format(PyExc_ValueError, "width %d outside 0..%d", width, MAX_PACK_WIDTH);
        return NULL;
    }
    if (get_uint_buffer(outobj, &out, 1, 7, "out") < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (width > 8 * out.itemsize) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&out);
        PyErr_Format(PyExc_ValueError, "%d-bit values do not fit an out buffer of itemsize %zd", width, out.itemsize);
        return NULL;
    }
    err_t err = {NULL, ""};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = unpack_values((const uint8_t *)data.buf, (size_t)data.len, width, (size_t)(out.len / out.itemsize),
                       out.buf, (int)out.itemsize, &err);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    if (rc < 0)
        return raise_err(&err);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(code_lengths_doc, "code_lengths(counts, max_len) -> bytes\n\n"
             "Length-limited Huffman code lengths for a uint64 count buffer (one byte per symbol).");

static PyObject *py_code_lengths(PyObject *self, PyObject *args)
{
    Py_buffer c;
    int max_len;
    if (!PyArg_ParseTuple(args, "y*i", &c, &max_len))
        return NULL;
    if (c.len % 8 || max_len < 1 || max_len > MAX_CODE_LENGTH) {
        PyBuffer_Release(&c);
        PyErr_SetString(PyExc_ValueError, "counts must be uint64 and max_len in 1..16");
        return NULL;
    }
    size_t nsym = (size_t)c.len / 8, used = 0;
    uint64_t *hist = malloc(nsym * 8 + 8);
    if (!hist) {
        PyBuffer_Release(&c);
        return PyErr_NoMemory();
    }
    memcpy(hist, c.buf, nsym * 8);
    PyBuffer_Release(&c);
    for (size_t s = 0; s < nsym; s++)
        used += hist[s] != 0;
    PyObject *res = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)nsym);
    if (!res) {
        free(hist);
        return NULL;
    }
    uint8_t *lengths = (uint8_t *)PyBytes_AS_STRING(res);
    memset(lengths, 0, nsym);
    if (used > ((size_t)1 << max_len)) {
        free(hist);
        Py_DECREF(res);
        PyErr_Format(PyExc_ValueError, "%zu distinct symbols do not fit max_code_length %d", used, max_len);
        return NULL;
    }
    int rc = 0;
    if (used >= 2) {
        Py_BEGIN_ALLOW_THREADS
        rc = build_lengths(hist, nsym, max_len, lengths);
        Py_END_ALLOW_THREADS
    }
    free(hist);
    if (rc < 0) {
        Py_DECREF(res);
        return PyErr_NoMemory();
    }
    return res;
}

PyDoc_STRVAR(encode_doc, "encode(symbols, alphabet_size, max_len, strict) -> bytes\n\n"
             "Encode a uint8/uint16 buffer of symbols < alphabet_size as a whole stream (smallest mode).");

static PyObject *py_encode(PyObject *self, PyObject *args)
{
    PyObject *obj;
    Py_ssize_t alphabet;
    int max_len, strict;
    if (!PyArg_ParseTuple(args, "Onip", &obj, &alphabet, &max_len, &strict))
        return NULL;
    if (alphabet < 1 || alphabet > MAX_ALPHABET || max_len < 1 || max_len > MAX_CODE_LENGTH) {
        PyErr_Format(PyExc_ValueError, "alphabet_size must be in 1..%d and max_len in 1..%d", MAX_ALPHABET,
                     MAX_CODE_LENGTH);
        return NULL;
    }
    Py_buffer v;
    if (get_uint_buffer(obj, &v, 0, 3, "symbols") < 0)
        return NULL;
    size_t n = (size_t)(v.len / v.itemsize), nsym = (size_t)alphabet;
    uint64_t *hist = calloc(MAX_ALPHABET, sizeof(uint64_t));
    uint8_t *lengths = calloc(MAX_ALPHABET, 1);
    uint8_t *table = calloc(TABLE_MAX_BYTES, 1);
    if (!hist || !lengths || !table) {
        free(hist); free(lengths); free(table);
        PyBuffer_Release(&v);
        return PyErr_NoMemory();
    }
    err_t err = {NULL, ""};
    size_t used = 0, first = 0, table_bytes = 0;
    uint64_t huff_bits = 0;
    int width = 0;
    while (((size_t)1 << width) < nsym)
        width++;
    Py_BEGIN_ALLOW_THREADS
    histogram(v.buf, (int)v.itemsize, n, hist);
    for (size_t s = nsym; s < MAX_ALPHABET; s++)
        if (hist[s]) {
            SET_ERR(&err, CodecError, "symbol %zu >= alphabet_size %zu", s, nsym);
            break;
        }
    if (!err.type) {
        for (size_t s = 0; s < nsym; s++)
            if (hist[s]) {
                if (!used)
                    first = s;
                used++;
            }
        if (used >= 2) {
            int need = 0;
            while (((size_t)1 << need) < used)
                need++;
            if (need > max_len) {
                if (strict)
                    SET_ERR(&err, PyExc_ValueError, "%zu distinct symbols need max_code_length >= %d", used, need);
                else
                    max_len = need;
            }
            if (!err.type) {
                if (build_lengths(hist, nsym, max_len, lengths) < 0) {
                    SET_ERR(&err, PyExc_MemoryError, "out of memory");
                } else {
                    bitw_t w = {table, 0};
                    write_table(&w, lengths, nsym);
                    table_bytes = (w.pos + 7) / 8;
                    for (size_t s = 0; s < nsym; s++)
                        huff_bits += hist[s] * lengths[s];
                }
            }
        }
    }
    Py_END_ALLOW_THREADS
    PyObject *res = NULL;
    if (err.type) {
        raise_err(&err);
        goto done;
    }
    /* candidates: CONST < RAW < HUFFMAN on ties */
    uint8_t leb[4];
    size_t leb_len = used == 1 ? leb128((uint32_t)first, leb) : 0;
    size_t best_size = 2 + (size_t)(((uint64_t)n * (uint64_t)width + 7) / 8);
    int best = MODE_RAW;
    if (used == 1 && 1 + leb_len <= best_size) {
        best = MODE_CONST;
        best_size = 1 + leb_len;
    }
    size_t huff_size = 1 + table_bytes + (size_t)((huff_bits + 7) / 8);
    if (used >= 2 && huff_size < best_size) {
        best = MODE_HUFFMAN;
        best_size = huff_size;
    }
    res = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)best_size);
    if (!res)
        goto done;
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(res);
    o[0] = (uint8_t)best;
    int rc = 0;
    if (best == MODE_CONST) {
        memcpy(o + 1, leb, leb_len);
    } else if (best == MODE_RAW) {
        o[1] = (uint8_t)width;
        Py_BEGIN_ALLOW_THREADS
        pack_values(v.buf, (int)v.itemsize, n, width, o + 2);
        Py_END_ALLOW_THREADS
    } else {
        memcpy(o + 1, table, table_bytes);
        Py_BEGIN_ALLOW_THREADS
        rc = encode_payload(v.buf, (int)v.itemsize, n, lengths, nsym, o + 1 + table_bytes);
        Py_END_ALLOW_THREADS
    }
    if (rc < 0) {
        Py_CLEAR(res);
        PyErr_NoMemory();
    }
done:
    free(hist); free(lengths); free(table);
    PyBuffer_Release(&v);
    return res;
}

PyDoc_STRVAR(decode_doc, "decode(data, out, multi=True) -> None\n\n"
             "Decode a whole stream into the writable uint8/uint16 buffer `out` (len(out) symbols).\n"
             "multi=False disables the multi-symbol table (for tests and benchmarks; same result).");

static PyObject *py_decode(PyObject *self, PyObject *args)
{
    Py_buffer data, out;
    PyObject *outobj;
    int multi = 1;
    if (!PyArg_ParseTuple(args, "y*O|p", &data, &outobj, &multi))
        return NULL;
    if (get_uint_buffer(outobj, &out, 1, 3, "out") < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    err_t err = {NULL, ""};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = decode_stream((const uint8_t *)data.buf, (size_t)data.len, out.buf, (int)out.itemsize,
                       (size_t)(out.len / out.itemsize), multi, &err);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    if (rc < 0)
        return raise_err(&err);
    Py_RETURN_NONE;
}

/* A contiguous buffer whose items are 1, 2, 4 or 8 bytes (any format: values are copied as bits). */
static int get_item_buffer(PyObject *obj, Py_buffer *view, int writable, const char *what)
{
    if (sqz_get_contiguous(obj, view, writable) < 0)
        return -1;
    Py_ssize_t w = view->itemsize;
    if (w != 1 && w != 2 && w != 4 && w != 8) {
        PyErr_Format(PyExc_TypeError, "%s must have items of 1, 2, 4 or 8 bytes", what);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Hints of recent long streams (see hints_t), keyed by the stream's address, size and code count:
 * a lazy model decodes the same mapped stream at every call. Read and written with the GIL held.
 * A wrong entry (another stream at the same address) costs one failed check, never a wrong value. */
#define HINT_SETS 128 /* x HINT_WAYS entries of 160 bytes: 80 KiB */
#define HINT_WAYS 4
typedef struct {
    const void *key;
    size_t len, count;
    hints_t h;
} hint_slot_t;
static hint_slot_t hint_cache[HINT_SETS][HINT_WAYS];
static unsigned char hint_next[HINT_SETS]; /* the way to replace next in each set */
static unsigned long long hint_used, hint_stored, hint_rejected;

static hint_slot_t *hint_set(const void *key, size_t len)
{
    uint64_t x = ((uint64_t)(uintptr_t)key ^ ((uint64_t)len << 17)) * 0x9E3779B97F4A7C15ull;
    return hint_cache[x >> 57]; /* 128 sets */
}

static int hint_get(const void *key, size_t len, size_t count, hints_t *h)
{
    const hint_slot_t *set = hint_set(key, len);
    for (int w = 0; w < HINT_WAYS; w++)
        if (set[w].key == key && set[w].len == len && set[w].count == count && set[w].h.ok) {
            *h = set[w].h;
            return 1;
        }
    return 0;
}

static void hint_put(const void *key, size_t len, size_t count, const hints_t *h)
{
    hint_slot_t *set = hint_set(key, len);
    int w = 0;
    while (w < HINT_WAYS && !(set[w].key == key && set[w].len == len && set[w].count == count))
        w++;
    if (w == HINT_WAYS) { /* not there: replace the ways in turn */
        size_t s = (size_t)(set - hint_cache[0]) / HINT_WAYS;
        w = hint_next[s];
        hint_next[s] = (unsigned char)((w + 1) % HINT_WAYS);
    }
    set[w].key = key;
    set[w].len = len;
    set[w].count = count;
    set[w].h = *h;
    hint_stored++;
}

PyDoc_STRVAR(hint_stats_doc, "hint_stats(clear=False) -> (used, stored, rejected)\n\n"
             "Long decode_gather calls whose hints of an earlier decode held (used: the multi-decoder loop ran, on the\n"
             "whole stream or on its first half by decode_gather_half), hints\n"
             "learnt and kept (stored), and calls whose hints did not hold for the stream (rejected: decoded\n"
             "again from the start), since the last clear; clear=True also forgets every hint.");

static PyObject *py_hint_stats(PyObject *self, PyObject *args)
{
    int clear = 0;
    if (!PyArg_ParseTuple(args, "|p", &clear))
        return NULL;
    PyObject *res = Py_BuildValue("(KKK)", hint_used, hint_stored, hint_rejected);
    if (clear) {
        memset(hint_cache, 0, sizeof(hint_cache));
        memset(hint_next, 0, sizeof(hint_next));
        hint_used = hint_stored = hint_rejected = 0;
    }
    return res;
}

/* The table and out buffers of decode_gather(_half) (data already held): same item size. 0, or -1
 * with an exception set and every buffer released, data included. */
static int gather_buffers(PyObject *tabobj, PyObject *outobj, Py_buffer *data, Py_buffer *tab, Py_buffer *out,
                          const char *name)
{
    if (get_item_buffer(tabobj, tab, 0, "table") < 0) {
        PyBuffer_Release(data);
        return -1;
    }
    if (get_item_buffer(outobj, out, 1, "out") < 0) {
        PyBuffer_Release(data);
        PyBuffer_Release(tab);
        return -1;
    }
    if (tab->itemsize != out->itemsize) {
        PyBuffer_Release(data); PyBuffer_Release(tab); PyBuffer_Release(out);
        PyErr_Format(PyExc_ValueError, "%s: table and out item sizes differ", name);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(decode_gather_doc, "decode_gather(data, table, out) -> bool\n\n"
             "out[i] = table[symbol i] for the len(out) symbols of a HUFFMAN-mode stream, in one pass with no\n"
             "symbol array (table and out: same item size, 1/2/4/8 bytes). False, with out untouched, when the\n"
             "stream is not in HUFFMAN mode or its code table has symbols >= len(table): the caller then\n"
             "decodes the symbols and checks them. Malformed streams raise StreamError.");

static PyObject *py_decode_gather(PyObject *self, PyObject *args)
{
    Py_buffer data, tab, out;
    PyObject *tabobj, *outobj;
    if (!PyArg_ParseTuple(args, "y*OO", &data, &tabobj, &outobj))
        return NULL;
    if (gather_buffers(tabobj, outobj, &data, &tab, &out, "decode_gather") < 0)
        return NULL;
    err_t err = {NULL, ""};
    int rc, w = (int)out.itemsize, have;
    size_t count = (size_t)(out.len / w), k = (size_t)(tab.len / w);
    hints_t use, learn = {{0}, {0}, 0, 0};
    have = hint_get(data.buf, (size_t)data.len, count, &use);
    Py_BEGIN_ALLOW_THREADS
    vstream_t v;
    rc = vstream_open(&v, (const uint8_t *)data.buf, (size_t)data.len, count, tab.buf, k, w, 1, &err);
    if (rc == 0)
        rc = vstream_gather(&v, tab.buf, out.buf, w, count, have ? &use : NULL, &learn, &err);
    if (rc == 0)
        rc = vstream_finish(&v, &err);
    if (rc >= 0 || v.t.primary)
        vstream_free(&v);
    Py_END_ALLOW_THREADS
    if (rc == 0 && learn.ok)
        hint_put(data.buf, (size_t)data.len, count, &learn);
    hint_used += learn.hinted > 0;
    hint_rejected += learn.hinted < 0;
    PyBuffer_Release(&data); PyBuffer_Release(&tab); PyBuffer_Release(&out);
    if (rc < 0)
        return raise_err(&err);
    return PyBool_FromLong(rc == 0);
}

PyDoc_STRVAR(has_hints_doc, "has_hints(data, count) -> bool\n\n"
             "Whether an earlier decode_gather of this stream (same buffer address and size) of `count` values left\n"
             "hints: then decode_gather_half can decode it in two halves, on two threads.");

static PyObject *py_has_hints(PyObject *self, PyObject *args)
{
    Py_buffer data;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "y*n", &data, &count))
        return NULL;
    hints_t h;
    int have = count >= 0 && hint_get(data.buf, (size_t)data.len, (size_t)count, &h);
    PyBuffer_Release(&data);
    return PyBool_FromLong(have);
}

PyDoc_STRVAR(decode_gather_half_doc, "decode_gather_half(data, table, out, half) -> bool\n\n"
             "decode_gather for one half (0 or 1) of the output: the segments of the stream that the hints of an\n"
             "earlier decode (has_hints) put there, decoded and checked as decode_gather checks them. The two\n"
             "halves write disjoint parts of `out` and may run at once on two threads. True: this half's values\n"
             "are in `out` and its segments held. False (never an exception for the stream's content): no hints,\n"
             "hints that do not hold, or a malformed stream; the values are then those of decode_gather only\n"
             "when both halves returned True: otherwise call decode_gather, which decodes (or rejects) the whole.");

static int vstream_gather_half(vstream_t *v, const void *tab, void *out, int itemsize, size_t count,
                               const hints_t *use, int half, err_t *err)
{
    if (!v->meta || count < SPLIT_MIN_COUNT || v->nbytes < 4096)
        return 1;
    int j0 = half ? HALF : 0, rc;
    switch (itemsize) {
    case 1: rc = hinted_half_v8(v, tab, out, count, use, j0, err); break;
    case 2: rc = hinted_half_v16(v, tab, out, count, use, j0, err); break;
    case 4: rc = hinted_half_v32(v, tab, out, count, use, j0, err); break;
    default: rc = hinted_half_v64(v, tab, out, count, use, j0, err); break;
    }
    if (rc == 0 && half)
        rc = vstream_finish(v, err);
    return rc;
}

static PyObject *py_decode_gather_half(PyObject *self, PyObject *args)
{
    Py_buffer data, tab, out;
    PyObject *tabobj, *outobj;
    int half;
    if (!PyArg_ParseTuple(args, "y*OOp", &data, &tabobj, &outobj, &half))
        return NULL;
    if (gather_buffers(tabobj, outobj, &data, &tab, &out, "decode_gather_half") < 0)
        return NULL;
    err_t err = {NULL, ""};
    int rc = 1, w = (int)out.itemsize;
    size_t count = (size_t)(out.len / w), k = (size_t)(tab.len / w);
    hints_t use;
    if (hint_get(data.buf, (size_t)data.len, count, &use)) {
        Py_BEGIN_ALLOW_THREADS
        vstream_t v;
        rc = vstream_open(&v, (const uint8_t *)data.buf, (size_t)data.len, count, tab.buf, k, w, 1, &err);
        if (rc == 0)
            rc = vstream_gather_half(&v, tab.buf, out.buf, w, count, &use, half, &err);
        if (rc >= 0 || v.t.primary)
            vstream_free(&v);
        Py_END_ALLOW_THREADS
        hint_used += half == 0 && rc == 0; /* a decode in halves counts once, as a hinted decode */
    }
    PyBuffer_Release(&data); PyBuffer_Release(&tab); PyBuffer_Release(&out);
    return PyBool_FromLong(rc == 0); /* an error in `err` is decode_gather's to report */
}

PyDoc_STRVAR(decode_dequant_doc, "decode_dequant(data, out, shift, zp, step, inner, qmax) -> int\n\n"
             "Per-channel dequantisation of a HUFFMAN-mode stream of quant symbols straight into the float32\n"
             "buffer `out` (element i has channel (i // inner) % C, C = len(step); shift/zp int32, step float32):\n"
             "out[i] = float32(s - shift[c] - zp[c]) * step[c]. Returns 0 (done), 1 (not HUFFMAN mode: out\n"
             "untouched, decode the symbols instead) or 2 (a symbol minus its shift lies outside 0..qmax).");

static PyObject *py_decode_dequant(PyObject *self, PyObject *args)
{
    PyObject *objs[4];
    Py_buffer data, bufs[4]; /* out, shift, zp, step */
    Py_ssize_t inner;
    int qmax;
    if (!PyArg_ParseTuple(args, "y*OOOOni", &data, &objs[0], &objs[1], &objs[2], &objs[3], &inner, &qmax))
        return NULL;
    int got = 0;
    for (; got < 4; got++)
        if (get_item_buffer(objs[got], &bufs[got], got == 0, "decode_dequant argument") < 0)
            break;
    size_t C = got == 4 ? (size_t)(bufs[3].len / 4) : 0, count = got == 4 ? (size_t)(bufs[0].len / 4) : 0;
    int ok = got == 4 && bufs[0].itemsize == 4 && bufs[1].itemsize == 4 && bufs[2].itemsize == 4 &&
             bufs[3].itemsize == 4 && (size_t)bufs[1].len == 4 * C && (size_t)bufs[2].len == 4 * C && C >= 1 &&
             inner >= 1 && qmax >= 0 && count % (C * (size_t)inner) == 0;
    int32_t *off = ok ? malloc(C * sizeof(int32_t)) : NULL;
    uint16_t *ident = ok ? malloc(MAX_ALPHABET * sizeof(uint16_t)) : NULL;
    err_t err = {NULL, ""};
    int rc = -1;
    if (ok && off && ident) {
        const int32_t *sh = bufs[1].buf, *zp = bufs[2].buf;
        for (size_t c = 0; c < C; c++)
            off[c] = sh[c] + zp[c];
        for (size_t s = 0; s < MAX_ALPHABET; s++)
            ident[s] = (uint16_t)s;
        Py_BEGIN_ALLOW_THREADS
        vstream_t v;
        rc = vstream_open(&v, (const uint8_t *)data.buf, (size_t)data.len, count, ident, MAX_ALPHABET, 2, 0, &err);
        if (rc == 0) {
            rc = vstream_dequant(&v, ident, bufs[0].buf, count, sh, off, bufs[3].buf, C, (size_t)inner,
                                 (uint32_t)qmax, &err);
            if (rc >= 0 && vstream_finish(&v, &err) < 0)
                rc = -1;
            else if (rc == 1)
                rc = 2;
        }
        vstream_free(&v);
        Py_END_ALLOW_THREADS
    }
    free(off);
    free(ident);
    PyBuffer_Release(&data);
    for (int i = 0; i < got; i++)
        PyBuffer_Release(&bufs[i]);
    if (got < 4)
        return NULL;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "decode_dequant: out/step float32, shift/zp int32 (one per channel), "
                        "channels x inner dividing the size");
        return NULL;
    }
    if (!off || !ident)
        return PyErr_NoMemory();
    if (rc < 0)
        return raise_err(&err);
    return PyLong_FromLong(rc);
}

static PyMethodDef methods[] = {
    {"encode", py_encode, METH_VARARGS, encode_doc},
    {"decode", py_decode, METH_VARARGS, decode_doc},
    {"decode_gather", py_decode_gather, METH_VARARGS, decode_gather_doc},
    {"decode_gather_half", py_decode_gather_half, METH_VARARGS, decode_gather_half_doc},
    {"has_hints", py_has_hints, METH_VARARGS, has_hints_doc},
    {"decode_dequant", py_decode_dequant, METH_VARARGS, decode_dequant_doc},
    {"hint_stats", py_hint_stats, METH_VARARGS, hint_stats_doc},
    {"pack_bits", py_pack_bits, METH_VARARGS, pack_bits_doc},
    {"unpack_bits", py_unpack_bits, METH_VARARGS, unpack_bits_doc},
    {"code_lengths", py_code_lengths, METH_VARARGS, code_lengths_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_huffmanc",
    "C fast path of squeezefmt.entropy.huffman (see huffman_ref.py for the reference).", -1, methods,
};

PyMODINIT_FUNC PyInit__huffmanc(void)
{
    PyObject *mod = PyModule_Create(&moduledef);
    if (!mod)
        return NULL;
    if (!StreamError)
        StreamError = sqz_error_class("StreamError");
    if (!CodecError)
        CodecError = sqz_error_class("CodecError");
    PyModule_AddIntConstant(mod, "PRIMARY_BITS", PRIMARY_BITS);
    PyModule_AddIntConstant(mod, "SPLIT_MIN_COUNT", SPLIT_MIN_COUNT);
    PyModule_AddIntConstant(mod, "VT_WIDE_MIN_COUNT", (long)VT_WIDE_MIN_COUNT);
    return mod;
}
