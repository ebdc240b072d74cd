/* ckpt.c - generic checkpoint container and bi-encoder save/load (see ckpt.h). */
#include "model/ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/util.h"
#include "model/featurize.h"

#define MAGIC_LEN 8
#define IO_CHUNK  (1u << 20)

/* ---- CRC-32: zlib ---------------------------------------------------------------------------- */

uint32_t kp_crc32(uint32_t crc, const void *buf, size_t len)
{
    /* zlib's crc32 returns its start value 0 for a NULL buffer, whatever crc is: keep crc then */
    if (len == 0) return crc;
    return (uint32_t)crc32_z((uLong)crc, (const Bytef *)buf, (z_size_t)len);
}

/* ---- little-endian helpers ------------------------------------------------------------------- */

static int host_is_le(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

static void put_le(unsigned char *b, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *b, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

/* Swaps float byte order in place when the host is big-endian. */
static void floats_le(unsigned char *b, size_t n)
{
    if (host_is_le()) return;
    for (size_t i = 0; i < n; i++, b += 4) {
        unsigned char t = b[0];
        b[0] = b[3], b[3] = t;
        t = b[1], b[1] = b[2], b[2] = t;
    }
}

/* ---- writer ---------------------------------------------------------------------------------- */

struct kp_ckpt_writer {
    FILE *f;
    char *path, *tmp;
    uint32_t crc;
    int failed;
    char msg[256];
    unsigned char *chunk; /* conversion buffer for big-endian hosts */
};

static void w_fail(kp_ckpt_writer *w, const char *what)
{
    if (w->failed) return;
    w->failed = 1;
    snprintf(w->msg, sizeof(w->msg), "checkpoint %s: %s", w->path, what);
}

static void w_bytes(kp_ckpt_writer *w, const void *p, size_t n)
{
    if (w->failed || n == 0) return;
    if (fwrite(p, 1, n, w->f) != n) {
        w_fail(w, strerror(errno ? errno : EIO));
        return;
    }
    w->crc = kp_crc32(w->crc, p, n);
}

static void w_int(kp_ckpt_writer *w, uint64_t v, int n)
{
    unsigned char b[8];
    put_le(b, v, n);
    w_bytes(w, b, (size_t)n);
}

static void writer_free(kp_ckpt_writer *w)
{
    if (!w) return;
    if (w->f) fclose(w->f);
    KP_FREE_ALL(w->path, w->tmp, w->chunk, w);
}

kp_ckpt_writer *kp_ckpt_writer_new(const char *path, const char *kind, char *err, size_t errlen)
{
    if (!path || !*path || !kind || !*kind || strlen(kind) > KP_CKPT_MAX_NAME) {
        kp_errf(err, errlen, "checkpoint: bad path or kind");
        return NULL;
    }
    kp_ckpt_writer *w = calloc(1, sizeof(*w));
    if (!w) goto oom;
    size_t pl = strlen(path);
    w->path = malloc(pl + 1);
    w->tmp = malloc(pl + 32);
    w->chunk = malloc(IO_CHUNK);
    if (!w->path || !w->tmp || !w->chunk) goto oom;
    memcpy(w->path, path, pl + 1);
    snprintf(w->tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        kp_errf(err, errlen, "checkpoint %s: cannot create %s: %s", path, w->tmp, strerror(errno));
        writer_free(w);
        return NULL;
    }
    w_bytes(w, KP_CKPT_MAGIC, MAGIC_LEN);
    w_int(w, KP_CKPT_FORMAT_VERSION, 4);
    w_int(w, strlen(kind), 2);
    w_bytes(w, kind, strlen(kind));
    return w;
oom:
    kp_errf(err, errlen, "checkpoint %s: out of memory", path);
    writer_free(w);
    return NULL;
}

/* The head of a record: its tag byte and its name (2-byte length, bytes). */
static void w_record(kp_ckpt_writer *w, unsigned char tag, const char *name)
{
    w_bytes(w, &tag, 1);
    w_int(w, strlen(name), 2);
    w_bytes(w, name, strlen(name));
}

int kp_ckpt_put(kp_ckpt_writer *w, const char *key, const char *value)
{
    if (!w) return -1;
    if (!key || !value || !*key || strlen(key) > KP_CKPT_MAX_NAME ||
        strlen(value) > KP_CKPT_MAX_VALUE) {
        w_fail(w, "bad key/value record");
        return -1;
    }
    w_record(w, 'K', key);
    w_int(w, strlen(value), 4);
    w_bytes(w, value, strlen(value));
    return w->failed ? -1 : 0;
}

int kp_ckpt_put_u64(kp_ckpt_writer *w, const char *key, uint64_t value)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%" PRIu64, value);
    return kp_ckpt_put(w, key, buf);
}

int kp_ckpt_put_tensor(kp_ckpt_writer *w, const char *name, const float *data, int ndim,
                       const uint64_t *dims)
{
    if (!w) return -1;
    if (!name || !*name || strlen(name) > KP_CKPT_MAX_NAME || ndim < 1 || ndim > KP_CKPT_MAX_DIMS ||
        !dims) {
        w_fail(w, "bad tensor record");
        return -1;
    }
    uint64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] != 0 && count > UINT64_MAX / 4 / dims[i]) {
            w_fail(w, "tensor too large");
            return -1;
        }
        count *= dims[i];
    }
    if (count > 0 && !data) {
        w_fail(w, "tensor without data");
        return -1;
    }
    w_record(w, 'T', name);
    w_int(w, (uint64_t)ndim, 4);
    for (int i = 0; i < ndim; i++)
        w_int(w, dims[i], 8);
    w_int(w, 0, 4); /* dtype f32 */
    const unsigned char *p = (const unsigned char *)data;
    uint64_t left = count * 4;
    while (left > 0 && !w->failed) {
        size_t n = left < IO_CHUNK ? (size_t)left : IO_CHUNK;
        if (host_is_le()) {
            w_bytes(w, p, n);
        } else {
            memcpy(w->chunk, p, n);
            floats_le(w->chunk, n / 4);
            w_bytes(w, w->chunk, n);
        }
        p += n;
        left -= n;
    }
    return w->failed ? -1 : 0;
}

void kp_ckpt_writer_abort(kp_ckpt_writer *w)
{
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        w->f = NULL;
    }
    remove(w->tmp);
    writer_free(w);
}

static void fsync_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) {
        snprintf(dir, sizeof(dir), ".");
    } else {
        size_t n = (size_t)(slash - path);
        if (n == 0) n = 1;
        if (n >= sizeof(dir)) return;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

int kp_ckpt_writer_commit(kp_ckpt_writer *w, char *err, size_t errlen)
{
    if (!w) {
        kp_errf(err, errlen, "checkpoint: no writer");
        return -1;
    }
    unsigned char tag = 'E';
    w_bytes(w, &tag, 1);
    if (!w->failed) {
        unsigned char b[4];
        put_le(b, w->crc, 4);
        if (fwrite(b, 1, 4, w->f) != 4) w_fail(w, "write failed");
    }
    if (!w->failed && (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0)) w_fail(w, strerror(errno));
    if (fclose(w->f) != 0) w_fail(w, strerror(errno));
    w->f = NULL;
    if (!w->failed && rename(w->tmp, w->path) != 0) w_fail(w, strerror(errno));
    if (w->failed) {
        kp_errf(err, errlen, "%s", w->msg);
        remove(w->tmp);
        writer_free(w);
        return -1;
    }
    fsync_dir_of(w->path);
    writer_free(w);
    return 0;
}

/* ---- reader ---------------------------------------------------------------------------------- */

typedef struct {
    char *name;
    int ndim;
    uint64_t dims[KP_CKPT_MAX_DIMS];
    uint64_t count;
    long long offset; /* of the data */
} tensor_info;

struct kp_ckpt_reader {
    FILE *f;
    char *path;
    char kind[KP_CKPT_MAX_NAME + 1];
    int n_kv, n_t, cap_kv, cap_t; /* the tables grow by doubling, up to KP_CKPT_MAX_RECORDS */
    char **keys, **vals;
    tensor_info *t;
    unsigned char *chunk; /* min(IO_CHUNK, file size) bytes, allocated on first use */
    size_t chunk_len;
};

typedef struct {
    kp_ckpt_reader *r;
    uint64_t pos, size;
    uint32_t crc;
    char *err;
    size_t errlen;
} rstate;

/* Reads exactly n bytes (into dst, or discarded when dst is NULL) updating the CRC. */
static int r_bytes(rstate *s, void *dst, uint64_t n, const char *what)
{
    if (n > s->size - s->pos) {
        kp_errf(s->err, s->errlen,
                "checkpoint %s: truncated (%s at byte %" PRIu64 " needs %" PRIu64
                " bytes, file has %" PRIu64 ")",
                s->r->path, what, s->pos, n, s->size);
        return -1;
    }
    unsigned char *d = dst;
    if (!d && n > 0 && !s->r->chunk) {
        size_t len = s->size < IO_CHUNK ? (size_t)s->size : IO_CHUNK;
        if (!(s->r->chunk = malloc(len))) {
            kp_errf(s->err, s->errlen, "checkpoint %s: out of memory", s->r->path);
            return -1;
        }
        s->r->chunk_len = len;
    }
    while (n > 0) {
        size_t k = n < IO_CHUNK ? (size_t)n : IO_CHUNK;
        if (!d && k > s->r->chunk_len) k = s->r->chunk_len;
        unsigned char *buf = d ? d : s->r->chunk;
        if (fread(buf, 1, k, s->r->f) != k) {
            kp_errf(s->err, s->errlen, "checkpoint %s: read error or truncated at byte %" PRIu64,
                    s->r->path, s->pos);
            return -1;
        }
        s->crc = kp_crc32(s->crc, buf, k);
        s->pos += k;
        n -= k;
        if (d) d += k;
    }
    return 0;
}

static int r_int(rstate *s, uint64_t *v, int n, const char *what)
{
    unsigned char b[8];
    if (r_bytes(s, b, (uint64_t)n, what) != 0) return -1;
    *v = get_le(b, n);
    return 0;
}

/* Reads a u16-length-prefixed name into a fresh string. */
static char *r_name(rstate *s, const char *what)
{
    uint64_t len;
    if (r_int(s, &len, 2, what) != 0) return NULL;
    if (len == 0 || len > KP_CKPT_MAX_NAME) {
        kp_errf(s->err, s->errlen, "checkpoint %s: bad %s length %" PRIu64 " at byte %" PRIu64,
                s->r->path, what, len, s->pos);
        return NULL;
    }
    char *p = malloc(len + 1);
    if (!p) {
        kp_errf(s->err, s->errlen, "checkpoint %s: out of memory", s->r->path);
        return NULL;
    }
    if (r_bytes(s, p, len, what) != 0) {
        free(p);
        return NULL;
    }
    p[len] = '\0';
    if (strlen(p) != len) {
        kp_errf(s->err, s->errlen, "checkpoint %s: %s contains a NUL byte", s->r->path, what);
        free(p);
        return NULL;
    }
    return p;
}

void kp_ckpt_close(kp_ckpt_reader *r)
{
    if (!r) return;
    if (r->f) fclose(r->f);
    for (int i = 0; i < r->n_kv; i++) {
        free(r->keys[i]);
        free(r->vals[i]);
    }
    for (int i = 0; i < r->n_t; i++)
        free(r->t[i].name);
    KP_FREE_ALL(r->keys, r->vals, r->t, r->chunk, r->path, r);
}

/* Makes room for one more key/value (kv) or tensor record; the caller has checked
 * KP_CKPT_MAX_RECORDS. Returns 0, or -1 (out of memory, err set). */
static int room_for(rstate *s, int kv)
{
    kp_ckpt_reader *r = s->r;
    int n = kv ? r->n_kv : r->n_t, *cap = kv ? &r->cap_kv : &r->cap_t;
    if (n < *cap) return 0;
    int nc = *cap ? *cap * 2 : 16;
    if (nc > KP_CKPT_MAX_RECORDS) nc = KP_CKPT_MAX_RECORDS;
    if (kv) {
        char **k = realloc(r->keys, sizeof *k * (size_t)nc);
        if (k) r->keys = k;
        char **v = k ? realloc(r->vals, sizeof *v * (size_t)nc) : NULL;
        if (v) r->vals = v;
        if (!k || !v) goto oom;
    } else {
        tensor_info *t = realloc(r->t, sizeof *t * (size_t)nc);
        if (!t) goto oom;
        r->t = t;
    }
    *cap = nc;
    return 0;
oom:
    kp_errf(s->err, s->errlen, "checkpoint %s: out of memory", r->path);
    return -1;
}

static int read_kv(rstate *s)
{
    kp_ckpt_reader *r = s->r;
    char *key = r_name(s, "key"), *val = NULL;
    uint64_t vlen;
    if (!key) return -1;
    if (r_int(s, &vlen, 4, "value length") != 0) goto err;
    if (vlen > KP_CKPT_MAX_VALUE) {
        kp_errf(s->err, s->errlen, "checkpoint %s: value of '%s' too long (%" PRIu64 " bytes)",
                r->path, key, vlen);
        goto err;
    }
    if (vlen > s->size - s->pos) { /* before allocating: the file must hold the value */
        kp_errf(s->err, s->errlen,
                "checkpoint %s: truncated (value of '%s' needs %" PRIu64 " bytes at byte %" PRIu64
                ", file has %" PRIu64 ")",
                r->path, key, vlen, s->pos, s->size);
        goto err;
    }
    val = malloc(vlen + 1);
    if (!val) {
        kp_errf(s->err, s->errlen, "checkpoint %s: out of memory", r->path);
        goto err;
    }
    if (r_bytes(s, val, vlen, "value") != 0) goto err;
    val[vlen] = '\0';
    if (kp_ckpt_get(r, key)) {
        kp_errf(s->err, s->errlen, "checkpoint %s: duplicate key '%s'", r->path, key);
        goto err;
    }
    if (room_for(s, 1) != 0) goto err;
    r->keys[r->n_kv] = key;
    r->vals[r->n_kv] = val;
    r->n_kv++;
    return 0;
err:
    free(key);
    free(val);
    return -1;
}

static int read_tensor_rec(rstate *s)
{
    kp_ckpt_reader *r = s->r;
    tensor_info ti;
    memset(&ti, 0, sizeof(ti));
    ti.name = r_name(s, "tensor name");
    if (!ti.name) return -1;
    uint64_t ndim, dtype;
    if (r_int(s, &ndim, 4, "tensor rank") != 0) goto err;
    if (ndim < 1 || ndim > KP_CKPT_MAX_DIMS) {
        kp_errf(s->err, s->errlen, "checkpoint %s: tensor '%s' has bad rank %" PRIu64, r->path,
                ti.name, ndim);
        goto err;
    }
    ti.ndim = (int)ndim;
    ti.count = 1;
    for (int i = 0; i < ti.ndim; i++) {
        if (r_int(s, &ti.dims[i], 8, "tensor dims") != 0) goto err;
        if (ti.dims[i] != 0 && ti.count > (UINT64_MAX / 4) / ti.dims[i]) {
            kp_errf(s->err, s->errlen, "checkpoint %s: tensor '%s' size overflows", r->path,
                    ti.name);
            goto err;
        }
        ti.count *= ti.dims[i];
    }
    if (r_int(s, &dtype, 4, "tensor dtype") != 0) goto err;
    if (dtype != 0) {
        kp_errf(s->err, s->errlen, "checkpoint %s: tensor '%s' has unknown dtype %" PRIu64, r->path,
                ti.name, dtype);
        goto err;
    }
    if (kp_ckpt_tensor_shape(r, ti.name, NULL, NULL) == 0) {
        kp_errf(s->err, s->errlen, "checkpoint %s: duplicate tensor '%s'", r->path, ti.name);
        goto err;
    }
    ti.offset = (long long)s->pos;
    if (r_bytes(s, NULL, ti.count * 4, "tensor data") != 0) goto err;
    if (room_for(s, 0) != 0) goto err;
    r->t[r->n_t++] = ti;
    return 0;
err:
    free(ti.name);
    return -1;
}

kp_ckpt_reader *kp_ckpt_open(const char *path, char *err, size_t errlen)
{
    if (!path) {
        kp_errf(err, errlen, "checkpoint: no path");
        return NULL;
    }
    kp_ckpt_reader *r = calloc(1, sizeof(*r));
    rstate s = {r, 0, 0, 0, err, errlen};
    if (!r) {
        kp_errf(err, errlen, "checkpoint %s: out of memory", path);
        return NULL;
    }
    r->path = strdup(path);
    if (!r->path) {
        kp_errf(err, errlen, "checkpoint %s: out of memory", path);
        goto err;
    }
    r->f = fopen(path, "rb");
    struct stat st;
    if (!r->f || fstat(fileno(r->f), &st) != 0) {
        kp_errf(err, errlen, "checkpoint %s: cannot open: %s", path, strerror(errno));
        goto err;
    }
    if (!S_ISREG(st.st_mode)) {
        kp_errf(err, errlen, "checkpoint %s: not a regular file", path);
        goto err;
    }
    s.size = (uint64_t)st.st_size;
    unsigned char magic[MAGIC_LEN];
    if (s.size < MAGIC_LEN || r_bytes(&s, magic, MAGIC_LEN, "magic") != 0 ||
        memcmp(magic, KP_CKPT_MAGIC, MAGIC_LEN) != 0) {
        kp_errf(err, errlen, "checkpoint %s: not a kprec checkpoint (bad magic)", path);
        goto err;
    }
    uint64_t ver, klen;
    if (r_int(&s, &ver, 4, "format version") != 0) goto err;
    if (ver != KP_CKPT_FORMAT_VERSION) {
        kp_errf(err, errlen, "checkpoint %s: unsupported format version %" PRIu64 " (expected %u)",
                path, ver, KP_CKPT_FORMAT_VERSION);
        goto err;
    }
    if (r_int(&s, &klen, 2, "kind length") != 0) goto err;
    if (klen == 0 || klen > KP_CKPT_MAX_NAME) {
        kp_errf(err, errlen, "checkpoint %s: bad kind length %" PRIu64, path, klen);
        goto err;
    }
    if (r_bytes(&s, r->kind, klen, "kind") != 0) goto err;
    r->kind[klen] = '\0';
    for (;;) {
        unsigned char tag;
        if (r_bytes(&s, &tag, 1, "record tag") != 0) goto err;
        if (tag == 'E') break;
        if (r->n_kv + r->n_t >= KP_CKPT_MAX_RECORDS) {
            kp_errf(err, errlen, "checkpoint %s: too many records", path);
            goto err;
        }
        if (tag == 'K') {
            if (read_kv(&s) != 0) goto err;
        } else if (tag == 'T') {
            if (read_tensor_rec(&s) != 0) goto err;
        } else {
            kp_errf(err, errlen,
                    "checkpoint %s: corrupted (unknown record tag 0x%02x at byte %" PRIu64 ")",
                    path, tag, s.pos - 1);
            goto err;
        }
    }
    uint32_t want = s.crc;
    uint64_t got;
    if (r_int(&s, &got, 4, "checksum") != 0) goto err;
    if ((uint32_t)got != want) {
        kp_errf(err, errlen, "checkpoint %s: checksum mismatch (file corrupted)", path);
        goto err;
    }
    if (s.pos != s.size) {
        kp_errf(err, errlen, "checkpoint %s: %" PRIu64 " unexpected bytes after the checksum", path,
                s.size - s.pos);
        goto err;
    }
    return r;
err:
    kp_ckpt_close(r);
    return NULL;
}

const char *kp_ckpt_kind(const kp_ckpt_reader *r)
{
    return r->kind;
}

const char *kp_ckpt_get(const kp_ckpt_reader *r, const char *key)
{
    for (int i = 0; i < r->n_kv; i++)
        if (strcmp(r->keys[i], key) == 0) return r->vals[i];
    return NULL;
}

int kp_ckpt_get_u64(const kp_ckpt_reader *r, const char *key, uint64_t *out)
{
    const char *v = kp_ckpt_get(r, key);
    if (!v || !*v) return -1;
    uint64_t x = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        unsigned d = (unsigned)(*p - '0');
        if (x > (UINT64_MAX - d) / 10) return -1;
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

int kp_ckpt_n_tensors(const kp_ckpt_reader *r)
{
    return r->n_t;
}

const char *kp_ckpt_tensor_name(const kp_ckpt_reader *r, int i)
{
    return (i >= 0 && i < r->n_t) ? r->t[i].name : NULL;
}

static const tensor_info *find_tensor(const kp_ckpt_reader *r, const char *name)
{
    for (int i = 0; i < r->n_t; i++)
        if (strcmp(r->t[i].name, name) == 0) return &r->t[i];
    return NULL;
}

int kp_ckpt_tensor_shape(const kp_ckpt_reader *r, const char *name, int *ndim,
                         uint64_t dims[KP_CKPT_MAX_DIMS])
{
    const tensor_info *t = find_tensor(r, name);
    if (!t) return -1;
    if (ndim) *ndim = t->ndim;
    if (dims) memcpy(dims, t->dims, sizeof(uint64_t) * (size_t)t->ndim);
    return 0;
}

static void shape_str(char *buf, size_t n, int ndim, const uint64_t *dims)
{
    size_t w = 0;
    w += (size_t)snprintf(buf + w, n - w, "[");
    for (int i = 0; i < ndim && w < n; i++)
        w += (size_t)snprintf(buf + w, n - w, "%s%" PRIu64, i ? " x " : "", dims[i]);
    if (w < n) snprintf(buf + w, n - w, "]");
}

int kp_ckpt_read_tensor(kp_ckpt_reader *r, const char *name, float *dst, int ndim,
                        const uint64_t *dims, char *err, size_t errlen)
{
    const tensor_info *t = find_tensor(r, name);
    if (!t) {
        kp_errf(err, errlen, "checkpoint %s: missing tensor '%s'", r->path, name);
        return -1;
    }
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->dims[i] == dims[i];
    if (!same) {
        char a[128], b[128];
        shape_str(a, sizeof(a), t->ndim, t->dims);
        shape_str(b, sizeof(b), ndim, dims);
        kp_errf(err, errlen, "checkpoint %s: tensor '%s' has shape %s, expected %s", r->path, name,
                a, b);
        return -1;
    }
    if (fseeko(r->f, (off_t)t->offset, SEEK_SET) != 0 ||
        fread(dst, 4, (size_t)t->count, r->f) != (size_t)t->count) {
        kp_errf(err, errlen, "checkpoint %s: cannot read tensor '%s'", r->path, name);
        return -1;
    }
    floats_le((unsigned char *)dst, (size_t)t->count);
    return 0;
}

/* ---- bi-encoder ------------------------------------------------------------------------------ */

static const char *tower_prefix[2] = {"item", "key"};

int kp_bienc_save(const kp_bienc *m, const char *path, char *err, size_t errlen)
{
    return kp_bienc_save_ext(m, path, NULL, NULL, err, errlen);
}

int kp_bienc_save_ext(const kp_bienc *m, const char *path, int (*extra)(kp_ckpt_writer *, void *),
                      void *ctx, char *err, size_t errlen)
{
    if (!m) {
        kp_errf(err, errlen, "checkpoint: no model");
        return -1;
    }
    const kp_bienc_config *c = kp_bienc_cfg(m);
    kp_ckpt_writer *w = kp_ckpt_writer_new(path, KP_CKPT_KIND_BIENC, err, errlen);
    if (!w) return -1;
    char pre[128];
    size_t pw = 0;
    pre[0] = '\0';
    for (int i = 0; i < c->n_prefix; i++)
        pw += (size_t)snprintf(pre + pw, sizeof(pre) - pw, "%s%d", i ? "," : "", c->prefix[i]);
    kp_ckpt_put_u64(w, "featurizer_version", KP_FEAT_VERSION);
    kp_ckpt_put_u64(w, "model_version", kp_bienc_version(m));
    kp_ckpt_put_u64(w, "n_buckets", c->n_buckets);
    kp_ckpt_put_u64(w, "emb_dim", (uint64_t)c->emb_dim);
    kp_ckpt_put_u64(w, "hidden_dim", (uint64_t)c->hidden_dim);
    kp_ckpt_put_u64(w, "out_dim", (uint64_t)c->out_dim);
    kp_ckpt_put_u64(w, "shared_towers", (uint64_t)c->shared_towers);
    kp_ckpt_put(w, "prefix", pre);
    for (int t = 0; t < kp_bienc_n_towers(m); t++) {
        for (int p = 0; p < KP_BIENC_NPARAM; p++) {
            size_t rows, cols;
            const float *d = kp_bienc_param_c(m, (kp_tower)t, (kp_bienc_param_id)p, &rows, &cols);
            char name[64];
            snprintf(name, sizeof(name), "%s.%s", tower_prefix[t],
                     kp_bienc_param_name((kp_bienc_param_id)p));
            uint64_t dims[2] = {rows, cols};
            if (rows == 1)
                kp_ckpt_put_tensor(w, name, d, 1, dims + 1);
            else
                kp_ckpt_put_tensor(w, name, d, 2, dims);
        }
    }
    if (extra && extra(w, ctx)) {
        kp_ckpt_writer_abort(w);
        kp_errf(err, errlen, "checkpoint %s: the extra records could not be written", path);
        return -1;
    }
    return kp_ckpt_writer_commit(w, err, errlen);
}

/* Shape of parameter p of a tower of config c, as kp_bienc_param_c gives it. */
static void param_shape(const kp_bienc_config *c, kp_bienc_param_id p, uint64_t *rows,
                        uint64_t *cols)
{
    uint64_t E = (uint64_t)c->emb_dim, H = (uint64_t)c->hidden_dim, D = (uint64_t)c->out_dim;
    *rows = 1;
    switch (p) {
    case KP_BIENC_EMB:
        *rows = c->n_buckets, *cols = E;
        break;
    case KP_BIENC_W1:
        *rows = H, *cols = E;
        break;
    case KP_BIENC_B1:
        *cols = H;
        break;
    case KP_BIENC_W2:
        *rows = D, *cols = H;
        break;
    default:
        *cols = D;
        break;
    }
}

int kp_ckpt_expect_tensor(const kp_ckpt_reader *r, const char *name, int ndim, const uint64_t *dims,
                          char *err, size_t errlen)
{
    const tensor_info *t = find_tensor(r, name);
    int same = t && t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->dims[i] == dims[i];
    if (same) return 0;
    char a[128] = "none", b[128];
    if (t) shape_str(a, sizeof a, t->ndim, t->dims);
    shape_str(b, sizeof b, ndim, dims);
    kp_errf(err, errlen,
            "checkpoint %s: header sizes do not match the tensors: '%s' should be %s, the file "
            "has %s",
            r->path, name, b, a);
    return -1;
}

/* Every tensor config c needs is in r with its shape: checked before the model is allocated, so
 * header sizes can only ask for memory the file's own tensors account for (the reader checked
 * those against the file size). 0, or -1 with err. */
static int check_bienc_tensors(const kp_ckpt_reader *r, const kp_bienc_config *c, char *err,
                               size_t errlen)
{
    for (int t = 0; t < (c->shared_towers ? 1 : 2); t++)
        for (int p = 0; p < KP_BIENC_NPARAM; p++) {
            char name[64];
            uint64_t dims[2];
            snprintf(name, sizeof name, "%s.%s", tower_prefix[t],
                     kp_bienc_param_name((kp_bienc_param_id)p));
            param_shape(c, (kp_bienc_param_id)p, &dims[0], &dims[1]);
            int rank1 = dims[0] == 1;
            if (kp_ckpt_expect_tensor(r, name, rank1 ? 1 : 2, rank1 ? dims + 1 : dims, err, errlen))
                return -1;
        }
    return 0;
}

static int get_int(kp_ckpt_reader *r, const char *key, uint64_t max, uint64_t *out, char *err,
                   size_t errlen)
{
    if (kp_ckpt_get_u64(r, key, out) != 0 || *out > max) {
        kp_errf(err, errlen, "checkpoint %s: missing or invalid '%s'", r->path, key);
        return -1;
    }
    return 0;
}

static int parse_prefix(const char *s, kp_bienc_config *c)
{
    c->n_prefix = 0;
    if (!s) return -1;
    const char *p = s;
    while (*p) {
        if (c->n_prefix == KP_BIENC_MAX_PREFIX) return -1;
        long v = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9' && v < 1000000)
            v = v * 10 + (*p++ - '0'), digits++;
        if (!digits) return -1;
        c->prefix[c->n_prefix++] = (int)v;
        if (*p == ',')
            p++;
        else if (*p)
            return -1;
    }
    return 0;
}

kp_bienc *kp_bienc_load(const char *path, char *err, size_t errlen)
{
    kp_bienc *m = NULL;
    kp_ckpt_reader *r = kp_ckpt_open(path, err, errlen);
    if (!r) return NULL;
    if (strcmp(kp_ckpt_kind(r), KP_CKPT_KIND_BIENC) != 0) {
        kp_errf(err, errlen, "checkpoint %s: holds a '%s' model, expected '%s'", path,
                kp_ckpt_kind(r), KP_CKPT_KIND_BIENC);
        goto err;
    }
    uint64_t fv, ver, nb, e, h, d, sh;
    if (get_int(r, "featurizer_version", UINT32_MAX, &fv, err, errlen) != 0) goto err;
    if (fv != KP_FEAT_VERSION) {
        kp_errf(err, errlen, "checkpoint %s: featurizer version %" PRIu64 ", this build has %d",
                path, fv, KP_FEAT_VERSION);
        goto err;
    }
    if (get_int(r, "model_version", UINT64_MAX, &ver, err, errlen) != 0 ||
        get_int(r, "n_buckets", UINT32_MAX, &nb, err, errlen) != 0 ||
        get_int(r, "emb_dim", KP_BIENC_MAX_DIM, &e, err, errlen) != 0 ||
        get_int(r, "hidden_dim", KP_BIENC_MAX_DIM, &h, err, errlen) != 0 ||
        get_int(r, "out_dim", KP_BIENC_MAX_DIM, &d, err, errlen) != 0 ||
        get_int(r, "shared_towers", 1, &sh, err, errlen) != 0)
        goto err;
    kp_bienc_config c;
    memset(&c, 0, sizeof(c));
    c.n_buckets = (uint32_t)nb;
    c.emb_dim = (int)e, c.hidden_dim = (int)h, c.out_dim = (int)d;
    c.shared_towers = (int)sh;
    if (parse_prefix(kp_ckpt_get(r, "prefix"), &c) != 0) {
        kp_errf(err, errlen, "checkpoint %s: missing or invalid 'prefix'", path);
        goto err;
    }
    char why[128];
    if (kp_bienc_config_check(&c, why, sizeof(why)) != 0) {
        kp_errf(err, errlen, "checkpoint %s: bad config: %s", path, why);
        goto err;
    }
    if (check_bienc_tensors(r, &c, err, errlen) != 0) goto err;
    m = kp_bienc_new_zero(&c);
    if (!m) {
        kp_errf(err, errlen, "checkpoint %s: out of memory for the model", path);
        goto err;
    }
    int expect = kp_bienc_n_towers(m) * KP_BIENC_NPARAM, have = 0;
    for (int i = 0; i < kp_ckpt_n_tensors(r); i++)
        have += strncmp(kp_ckpt_tensor_name(r, i), "opt.", 4) != 0;
    if (have != expect) {
        kp_errf(err, errlen, "checkpoint %s: %d tensors, expected %d", path, have, expect);
        goto err;
    }
    for (int t = 0; t < kp_bienc_n_towers(m); t++) {
        for (int p = 0; p < KP_BIENC_NPARAM; p++) {
            size_t rows, cols;
            float *dst = kp_bienc_param(m, (kp_tower)t, (kp_bienc_param_id)p, &rows, &cols);
            char name[64];
            snprintf(name, sizeof(name), "%s.%s", tower_prefix[t],
                     kp_bienc_param_name((kp_bienc_param_id)p));
            uint64_t dims[2] = {rows, cols};
            int rc = rows == 1 ? kp_ckpt_read_tensor(r, name, dst, 1, dims + 1, err, errlen)
                               : kp_ckpt_read_tensor(r, name, dst, 2, dims, err, errlen);
            if (rc != 0) goto err;
        }
    }
    kp_bienc_set_version(m, ver);
    kp_ckpt_close(r);
    return m;
err:
    kp_bienc_free(m);
    kp_ckpt_close(r);
    return NULL;
}
