/* delta.c - model deltas: build (model -> payload -> chunks), reassemble, verify, apply.
 * Layouts are documented in delta.h. */
#include "model/delta.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/ckpt.h"
#include "model/featurize.h"

#define FP_WORDS 7 /* u32 words of the config fingerprint */

/* ---- little-endian helpers ------------------------------------------------------------------- */

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static void put_u64(unsigned char *p, uint64_t v)
{
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* dst [4n bytes] = x [n] as little-endian binary32 (bit patterns preserved, NaNs included). */
static void put_f32s(unsigned char *dst, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        put_u32(dst + 4 * i, u);
    }
}

/* x [n] = the little-endian binary32 values at src [4n bytes]. */
static void get_f32s(float *x, const unsigned char *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = get_u32(src + 4 * i);
        memcpy(&x[i], &u, 4);
    }
}

/* ---- config fingerprint ---------------------------------------------------------------------- */

static void fingerprint(const kp_bienc *m, uint32_t fp[FP_WORDS])
{
    const kp_bienc_config *c = kp_bienc_cfg(m);
    fp[0] = c->n_buckets;
    fp[1] = (uint32_t)c->emb_dim;
    fp[2] = (uint32_t)c->hidden_dim;
    fp[3] = (uint32_t)c->out_dim;
    fp[4] = c->shared_towers ? 1u : 0u;
    fp[5] = (uint32_t)KP_FEAT_VERSION;
    fp[6] = (uint32_t)kp_bienc_n_towers(m);
}

/* Bytes of one tower's dense tensors W1 [H x E], b1 [H], W2 [D x H], b2 [D]. */
static size_t dense_floats(const kp_bienc_config *c)
{
    size_t E = (size_t)c->emb_dim, H = (size_t)c->hidden_dim, D = (size_t)c->out_dim;
    return H * E + H + D * H + D;
}

static const kp_bienc_param_id dense_ids[4] = {KP_BIENC_W1, KP_BIENC_B1, KP_BIENC_W2, KP_BIENC_B2};

/* ---- build ----------------------------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

void kp_delta_chunks_free(void **chunks, size_t *lens, int n)
{
    if (chunks)
        for (int i = 0; i < n; i++)
            free(chunks[i]);
    free(chunks);
    free(lens);
}

/* The changed rows of each tower, validated, sorted and without duplicates, into ids[t] (malloc'ed,
 * the caller frees them) and nid[t]. 0, or -1 with a message. */
static int changed_rows(const kp_bienc_config *c, int T, const uint32_t *const *rows,
                        const int *nrows, uint32_t *ids[2], size_t nid[2], char *err, size_t errlen)
{
    for (int t = 0; t < T; t++) {
        int n = nrows ? nrows[t] : 0;
        if (n < 0) {
            kp_errf(err, errlen, "delta build: tower %d: negative row count %d", t, n);
            return -1;
        }
        if (n == 0) continue;
        if (!rows || !rows[t]) {
            kp_errf(err, errlen, "delta build: tower %d: %d rows but no row array", t, n);
            return -1;
        }
        ids[t] = malloc((size_t)n * sizeof(uint32_t));
        if (!ids[t]) {
            kp_errf(err, errlen, "delta build: out of memory");
            return -1;
        }
        for (int i = 0; i < n; i++) {
            if (rows[t][i] >= c->n_buckets) {
                kp_errf(err, errlen, "delta build: tower %d: row %" PRIu32 " >= n_buckets %" PRIu32,
                        t, rows[t][i], c->n_buckets);
                return -1;
            }
            ids[t][i] = rows[t][i];
        }
        qsort(ids[t], (size_t)n, sizeof(uint32_t), cmp_u32);
        size_t k = 1;
        for (int i = 1; i < n; i++)
            if (ids[t][i] != ids[t][k - 1]) ids[t][k++] = ids[t][i];
        nid[t] = k;
    }
    return 0;
}

/* The payload (malloc'ed, *total bytes): the config fingerprint, then per tower the changed rows
 * and the dense tensors. NULL with a message on OOM. */
static unsigned char *build_payload(const kp_bienc *m, uint32_t *const ids[2], const size_t nid[2],
                                    size_t *total, char *err, size_t errlen)
{
    const kp_bienc_config *c = kp_bienc_cfg(m);
    const int T = kp_bienc_n_towers(m);
    const size_t E = (size_t)c->emb_dim;
    size_t n = 4 * FP_WORDS;
    for (int t = 0; t < T; t++)
        n += 4 + 4 * nid[t] + 4 * nid[t] * E + 4 * dense_floats(c);
    unsigned char *payload = malloc(n);
    if (!payload) {
        kp_errf(err, errlen, "delta build: out of memory (%zu bytes payload)", n);
        return NULL;
    }
    uint32_t fp[FP_WORDS];
    fingerprint(m, fp);
    unsigned char *p = payload;
    for (int i = 0; i < FP_WORDS; i++, p += 4)
        put_u32(p, fp[i]);
    for (int t = 0; t < T; t++) {
        const float *emb = kp_bienc_param_c(m, (kp_tower)t, KP_BIENC_EMB, NULL, NULL);
        put_u32(p, (uint32_t)nid[t]);
        p += 4;
        for (size_t i = 0; i < nid[t]; i++, p += 4)
            put_u32(p, ids[t][i]);
        for (size_t i = 0; i < nid[t]; i++, p += 4 * E)
            put_f32s(p, emb + (size_t)ids[t][i] * E, E);
        for (int k = 0; k < 4; k++) {
            size_t r, cl;
            const float *w = kp_bienc_param_c(m, (kp_tower)t, dense_ids[k], &r, &cl);
            put_f32s(p, w, r * cl);
            p += 4 * r * cl;
        }
    }
    *total = n;
    return payload;
}

/* Cuts payload[0..total) into chunks of at most max_chunk bytes (header + slice + CRC) into
 * *chunks / *lens / *nchunks. 0, or -1 with a message (nothing left allocated). */
static int cut_chunks(const unsigned char *payload, size_t total, uint64_t version,
                      uint64_t base_version, size_t max_chunk, void ***chunks, size_t **lens,
                      int *nchunks, char *err, size_t errlen)
{
    const uint32_t pcrc = kp_crc32(0, payload, total);
    const size_t slice = max_chunk - KP_DELTA_OVERHEAD;
    const size_t nch = (total + slice - 1) / slice;
    if (nch > INT_MAX) {
        kp_errf(err, errlen, "delta build: %zu chunks needed, too many (raise max_chunk)", nch);
        return -1;
    }
    void **out = calloc(nch, sizeof(void *));
    size_t *olen = calloc(nch, sizeof(size_t));
    int count = 0;
    if (!out || !olen) goto oom;
    for (size_t i = 0; i < nch; i++) {
        size_t off = i * slice;
        size_t sl = total - off < slice ? total - off : slice;
        size_t len = KP_DELTA_OVERHEAD + sl;
        unsigned char *b = malloc(len);
        if (!b) goto oom;
        out[count++] = b;
        olen[i] = len;
        memcpy(b, KP_DELTA_MAGIC, 4);
        put_u32(b + 4, KP_DELTA_FORMAT_VERSION);
        put_u64(b + 8, version);
        put_u64(b + 16, base_version);
        put_u32(b + 24, (uint32_t)i);
        put_u32(b + 28, (uint32_t)nch);
        put_u64(b + 32, total);
        put_u32(b + 40, pcrc);
        put_u64(b + 44, off);
        put_u32(b + 52, (uint32_t)sl);
        memcpy(b + KP_DELTA_HEADER, payload + off, sl);
        put_u32(b + KP_DELTA_HEADER + sl, kp_crc32(0, b, KP_DELTA_HEADER + sl));
    }
    *chunks = out;
    *lens = olen;
    *nchunks = count;
    return 0;
oom:
    kp_errf(err, errlen, "delta build: out of memory");
    kp_delta_chunks_free(out, olen, count);
    return -1;
}

int kp_delta_build(const kp_bienc *m, uint64_t base_version, const uint32_t *const *rows,
                   const int *nrows, size_t max_chunk, void ***chunks, size_t **lens, int *nchunks,
                   char *err, size_t errlen)
{
    if (chunks) *chunks = NULL;
    if (lens) *lens = NULL;
    if (nchunks) *nchunks = 0;
    if (!m || !chunks || !lens || !nchunks) {
        kp_errf(err, errlen, "delta build: NULL argument");
        return -1;
    }
    const uint64_t version = kp_bienc_version(m);
    if (max_chunk <= KP_DELTA_OVERHEAD) {
        kp_errf(err, errlen, "delta build: max_chunk %zu too small (a chunk needs %d bytes + data)",
                max_chunk, KP_DELTA_OVERHEAD);
        return -1;
    }
    if (version <= base_version) {
        kp_errf(err, errlen, "delta build: model version %" PRIu64 " is not after base %" PRIu64,
                version, base_version);
        return -1;
    }
    uint32_t *ids[2] = {NULL, NULL}; /* sorted unique changed rows per tower */
    size_t nid[2] = {0, 0}, total = 0;
    unsigned char *payload = NULL;
    int rc = -1;
    if (changed_rows(kp_bienc_cfg(m), kp_bienc_n_towers(m), rows, nrows, ids, nid, err, errlen) ==
            0 &&
        (payload = build_payload(m, ids, nid, &total, err, errlen)) != NULL)
        rc = cut_chunks(payload, total, version, base_version, max_chunk, chunks, lens, nchunks,
                        err, errlen);
    KP_FREE_ALL(payload, ids[0], ids[1]);
    return rc;
}

/* ---- chunk parsing --------------------------------------------------------------------------- */

typedef struct {
    uint64_t version, base, total, off;
    uint32_t index, count, pcrc, slen;
    const unsigned char *slice;
} chunk_hdr;

/* Validates a chunk and decodes its header. 0, or -1 with the reason in err. */
static int parse_chunk(const void *chunk, size_t len, chunk_hdr *h, char *err, size_t errlen)
{
    const unsigned char *b = chunk;
    if (!b || len < 4 || memcmp(b, KP_DELTA_MAGIC, 4) != 0) {
        kp_errf(err, errlen, "foreign: not a delta chunk (no \"KPDL\" magic)");
        return -1;
    }
    if (len < KP_DELTA_OVERHEAD) {
        kp_errf(err, errlen, "truncated chunk: %zu bytes, a delta chunk has at least %d", len,
                KP_DELTA_OVERHEAD);
        return -1;
    }
    uint32_t slen = get_u32(b + 52);
    uint64_t want = (uint64_t)KP_DELTA_OVERHEAD + slen;
    if (kp_crc32(0, b, len - 4) != get_u32(b + len - 4)) {
        if (want > len)
            kp_errf(err, errlen, "truncated chunk: %zu bytes, its header says %" PRIu64, len, want);
        else
            kp_errf(err, errlen, "checksum mismatch: delta chunk corrupted");
        return -1;
    }
    uint32_t fmt = get_u32(b + 4);
    if (fmt != KP_DELTA_FORMAT_VERSION) {
        kp_errf(err, errlen, "unsupported delta format version %" PRIu32 " (this build reads %u)",
                fmt, KP_DELTA_FORMAT_VERSION);
        return -1;
    }
    if (want != len) {
        kp_errf(err, errlen, "inconsistent chunk: %zu bytes, its header says %" PRIu64, len, want);
        return -1;
    }
    h->version = get_u64(b + 8);
    h->base = get_u64(b + 16);
    h->index = get_u32(b + 24);
    h->count = get_u32(b + 28);
    h->total = get_u64(b + 32);
    h->pcrc = get_u32(b + 40);
    h->off = get_u64(b + 44);
    h->slen = slen;
    h->slice = b + KP_DELTA_HEADER;
    if (h->count == 0 || h->count > INT_MAX || h->index >= h->count) {
        kp_errf(err, errlen, "inconsistent chunk: index %" PRIu32 " of %" PRIu32, h->index,
                h->count);
        return -1;
    }
    if (h->version <= h->base) {
        kp_errf(err, errlen,
                "inconsistent chunk: version %" PRIu64 " is not after its base %" PRIu64,
                h->version, h->base);
        return -1;
    }
    if (slen == 0 || h->off > h->total || slen > h->total - h->off) {
        kp_errf(err, errlen,
                "inconsistent chunk: slice [%" PRIu64 ", +%" PRIu32 ") of a %" PRIu64
                "-byte payload",
                h->off, slen, h->total);
        return -1;
    }
    return 0;
}

int kp_delta_peek(const void *chunk, size_t len, uint64_t *version, uint64_t *base_version,
                  int *index, int *count)
{
    chunk_hdr h;
    if (parse_chunk(chunk, len, &h, NULL, 0) != 0) return -1;
    if (version) *version = h.version;
    if (base_version) *base_version = h.base;
    if (index) *index = (int)h.index;
    if (count) *count = (int)h.count;
    return 0;
}

/* ---- reassembly ------------------------------------------------------------------------------ */

struct kp_delta_asm {
    int held;     /* a delta (partial or complete) is held */
    int complete; /* all chunks taken and the payload CRC verified */
    uint64_t version, base, total;
    uint32_t count, pcrc;
    uint32_t next; /* chunks taken */
    uint64_t got;  /* payload bytes taken */
    unsigned char *buf;
    size_t cap;
};

kp_delta_asm *kp_delta_asm_new(void)
{
    return calloc(1, sizeof(kp_delta_asm));
}

void kp_delta_asm_free(kp_delta_asm *a)
{
    if (!a) return;
    free(a->buf);
    free(a);
}

/* Forgets the held delta (keeps the buffer for the next one). */
static void asm_drop(kp_delta_asm *a)
{
    a->held = a->complete = 0;
    a->version = a->base = a->total = a->got = 0;
    a->count = a->pcrc = a->next = 0;
}

uint64_t kp_delta_asm_version(const kp_delta_asm *a)
{
    return a && a->held ? a->version : 0;
}

uint64_t kp_delta_asm_base(const kp_delta_asm *a)
{
    return a && a->held ? a->base : 0;
}

int kp_delta_asm_add(kp_delta_asm *a, const void *chunk, size_t len, char *err, size_t errlen)
{
    chunk_hdr h;
    if (!a) {
        kp_errf(err, errlen, "delta assembler: NULL");
        return -1;
    }
    if (parse_chunk(chunk, len, &h, err, errlen) != 0) return -1;

    int same = a->held && h.version == a->version && h.base == a->base && h.total == a->total &&
               h.pcrc == a->pcrc && h.count == a->count;
    if (same && (a->complete || h.index < a->next)) return a->complete; /* redelivered */
    if (!same) {
        asm_drop(a);
        if (h.index != 0) {
            kp_errf(err, errlen,
                    "out of order: chunk %" PRIu32 " of %" PRIu32 " of version %" PRIu64
                    " without its start (chunk 0)",
                    h.index, h.count, h.version);
            return -1;
        }
        a->held = 1;
        a->version = h.version;
        a->base = h.base;
        a->total = h.total;
        a->pcrc = h.pcrc;
        a->count = h.count;
    }
    if (h.index != a->next) {
        kp_errf(err, errlen,
                "out of order: expected chunk %" PRIu32 " of %" PRIu32 " of version %" PRIu64
                ", got chunk %" PRIu32,
                a->next, a->count, a->version, h.index);
        return -1;
    }
    if (h.off != a->got) {
        kp_errf(err, errlen,
                "inconsistent chunk %" PRIu32 " of version %" PRIu64 ": slice at %" PRIu64
                ", expected %" PRIu64,
                h.index, h.version, h.off, a->got);
        asm_drop(a);
        return -1;
    }
    uint64_t need = a->got + h.slen; /* <= total (parse_chunk) */
#if SIZE_MAX < UINT64_MAX
    if (a->total > SIZE_MAX) {
        kp_errf(err, errlen, "delta of %" PRIu64 " bytes too large for this machine", a->total);
        asm_drop(a);
        return -1;
    }
#endif
    if (need > a->cap) { /* grow geometrically, never past the announced total */
        uint64_t ncap = (uint64_t)a->cap * 2;
        if (ncap < need) ncap = need;
        if (ncap > a->total) ncap = a->total;
        unsigned char *nb = realloc(a->buf, (size_t)ncap);
        if (!nb) {
            kp_errf(err, errlen, "delta assembler: out of memory (%" PRIu64 " bytes)", ncap);
            asm_drop(a);
            return -1;
        }
        a->buf = nb;
        a->cap = (size_t)ncap;
    }
    memcpy(a->buf + a->got, h.slice, h.slen);
    a->got = need;
    a->next++;

    int last = a->next == a->count, full = a->got == a->total;
    if (last != full) {
        kp_errf(err, errlen,
                "inconsistent delta version %" PRIu64 ": %" PRIu32 " of %" PRIu32
                " chunks carry %" PRIu64 " of %" PRIu64 " bytes",
                a->version, a->next, a->count, a->got, a->total);
        asm_drop(a);
        return -1;
    }
    if (!last) return 0;
    if (kp_crc32(0, a->buf, (size_t)a->total) != a->pcrc) {
        kp_errf(err, errlen, "checksum mismatch: reassembled delta version %" PRIu64 " corrupted",
                a->version);
        asm_drop(a);
        return -1;
    }
    a->complete = 1;
    return 1;
}

/* ---- apply ----------------------------------------------------------------------------------- */

typedef struct {
    uint32_t nrows;
    const unsigned char *ids, *rows, *dense;
} tower_view;

int kp_delta_asm_apply(kp_delta_asm *a, kp_bienc *m, char *err, size_t errlen)
{
    if (!a || !m) {
        kp_errf(err, errlen, "delta apply: NULL argument");
        return -1;
    }
    if (!a->complete) {
        kp_errf(err, errlen, "delta apply: no complete delta held");
        return -1;
    }
    const kp_bienc_config *c = kp_bienc_cfg(m);
    const unsigned char *p = a->buf;
    size_t n = (size_t)a->total, pos = 0;

    /* config fingerprint */
    if (n < 4 * FP_WORDS) {
        kp_errf(err, errlen, "malformed delta: %zu-byte payload", n);
        return -1;
    }
    uint32_t fp[FP_WORDS], dfp[FP_WORDS];
    fingerprint(m, fp);
    for (int i = 0; i < FP_WORDS; i++)
        dfp[i] = get_u32(p + 4 * i);
    pos = 4 * FP_WORDS;
    if (memcmp(fp, dfp, sizeof(fp)) != 0) {
        kp_errf(err, errlen,
                "config mismatch: delta has n_buckets=%" PRIu32 " E=%" PRIu32 " H=%" PRIu32
                " D=%" PRIu32 " shared=%" PRIu32 " featurizer=%" PRIu32
                ", model has n_buckets=%" PRIu32 " E=%" PRIu32 " H=%" PRIu32 " D=%" PRIu32
                " shared=%" PRIu32 " featurizer=%" PRIu32,
                dfp[0], dfp[1], dfp[2], dfp[3], dfp[4], dfp[5], fp[0], fp[1], fp[2], fp[3], fp[4],
                fp[5]);
        return -1;
    }
    if (kp_bienc_version(m) != a->base) {
        kp_errf(err, errlen, "gap: model is at version %" PRIu64 ", delta needs base %" PRIu64,
                kp_bienc_version(m), a->base);
        return -1;
    }

    /* validate the whole payload before touching m */
    const int T = kp_bienc_n_towers(m);
    const size_t E = (size_t)c->emb_dim, nd = dense_floats(c);
    tower_view tv[2];
    for (int t = 0; t < T; t++) {
        if (n - pos < 4) goto malformed;
        tv[t].nrows = get_u32(p + pos);
        pos += 4;
        uint64_t nr = tv[t].nrows;
        if (nr > c->n_buckets || (n - pos) / 4 < nr + nr * E + nd) goto malformed;
        tv[t].ids = p + pos;
        tv[t].rows = tv[t].ids + 4 * nr;
        tv[t].dense = tv[t].rows + 4 * nr * E;
        pos += 4 * (nr + nr * E + nd);
        for (uint32_t i = 0; i < tv[t].nrows; i++) {
            uint32_t id = get_u32(tv[t].ids + 4 * (size_t)i);
            if (id >= c->n_buckets || (i > 0 && id <= get_u32(tv[t].ids + 4 * (size_t)(i - 1)))) {
                kp_errf(err, errlen,
                        "malformed delta: tower %d row %" PRIu32 " out of range or order", t, id);
                return -1;
            }
        }
    }
    if (pos != n) goto malformed;

    for (int t = 0; t < T; t++) {
        float *emb = kp_bienc_param(m, (kp_tower)t, KP_BIENC_EMB, NULL, NULL);
        for (uint32_t i = 0; i < tv[t].nrows; i++) {
            uint32_t id = get_u32(tv[t].ids + 4 * (size_t)i);
            get_f32s(emb + (size_t)id * E, tv[t].rows + 4 * (size_t)i * E, E);
        }
        const unsigned char *d = tv[t].dense;
        for (int k = 0; k < 4; k++) {
            size_t r, cl;
            float *w = kp_bienc_param(m, (kp_tower)t, dense_ids[k], &r, &cl);
            get_f32s(w, d, r * cl);
            d += 4 * r * cl;
        }
    }
    kp_bienc_set_version(m, a->version);
    return 0;

malformed:
    kp_errf(err, errlen, "malformed delta: payload lengths do not match the config");
    return -1;
}
