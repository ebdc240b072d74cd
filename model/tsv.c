/* tsv: loaders for the tab-separated data files of kprec. See tsv.h. */
#include "model/tsv.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const CLICK_HEADER = "item_id\tkeyphrase_id\tkind\tposition\tts";

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------------------------ */
/* reading and splitting                                                                      */

/* Reads the whole file into a fresh NUL-terminated buffer (*buf, caller frees). */
static int read_all(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
    char *b = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (fseek(f, 0, SEEK_END) != 0) goto ioerr;
    long sz = ftell(f);
    if (sz < 0 || fseek(f, 0, SEEK_SET) != 0) goto ioerr;
    if ((unsigned long)sz >= (unsigned long)INT_MAX) {
        seterr(err, errlen, "%s: file too large (%ld bytes)", path, sz);
        goto err;
    }
    b = malloc((size_t)sz + 1);
    if (!b) {
        seterr(err, errlen, "%s: out of memory", path);
        goto err;
    }
    if (fread(b, 1, (size_t)sz, f) != (size_t)sz) goto ioerr;
    b[sz] = '\0';
    if (memchr(b, '\0', (size_t)sz)) {
        seterr(err, errlen, "%s: contains a NUL byte (not a text file)", path);
        goto err;
    }
    fclose(f);
    *buf = b;
    *len = (size_t)sz;
    return 0;
ioerr:
    seterr(err, errlen, "%s: read error: %s", path, strerror(errno));
err:
    free(b);
    fclose(f);
    return -1;
}

typedef struct {
    char *p, *end; /* unread part of the buffer */
    int lineno;    /* 1-based number of the line last returned */
} line_iter;

/* Next line, NUL-terminated in place without its "\n" / "\r\n", or NULL at the end. */
static char *next_line(line_iter *it)
{
    if (it->p >= it->end) return NULL;
    char *s = it->p;
    char *nl = memchr(s, '\n', (size_t)(it->end - s));
    if (nl) {
        *nl = '\0';
        it->p = nl + 1;
    } else {
        nl = it->end;
        it->p = it->end;
    }
    if (nl > s && nl[-1] == '\r') nl[-1] = '\0';
    it->lineno++;
    return s;
}

/* Splits line at tabs in place; stores up to maxf field pointers, returns the field count. */
static int split_tabs(char *line, char **f, int maxf)
{
    int n = 0;
    char *s = line;
    for (;;) {
        if (n < maxf) f[n] = s;
        n++;
        char *t = strchr(s, '\t');
        if (!t) break;
        *t = '\0';
        s = t + 1;
    }
    return n;
}

static int count_lines(const char *buf, size_t len)
{
    int n = 1;
    for (const char *p = buf; (p = memchr(p, '\n', len - (size_t)(p - buf))) != NULL; p++)
        n++;
    return n;
}

/* Parses a finite decimal number occupying the whole string. */
static int parse_double(const char *s, double *v)
{
    if (!*s || isspace((unsigned char)*s)) return -1;
    char *e;
    errno = 0;
    double x = strtod(s, &e);
    if (*e || errno == ERANGE || !isfinite(x)) return -1;
    *v = x;
    return 0;
}

/* Parses a base-10 integer occupying the whole string. */
static int parse_i64(const char *s, int64_t *v)
{
    if (!*s || isspace((unsigned char)*s)) return -1;
    char *e;
    errno = 0;
    long long x = strtoll(s, &e, 10);
    if (*e || errno == ERANGE) return -1;
    *v = (int64_t)x;
    return 0;
}

/* Reads the header line; errors if the file has none. */
static int skip_header(line_iter *it, const char *path, char **header, char *err, size_t errlen)
{
    char *h = next_line(it);
    if (!h) {
        seterr(err, errlen, "%s: empty file (no header row)", path);
        return -1;
    }
    if (header) *header = h;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* id -> row map                                                                              */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* Inserts row r of t; returns the row already holding the same id, or -1 if inserted. */
static int map_insert(kp_texts *t, int r)
{
    size_t mask = (size_t)t->cap - 1;
    size_t i = (size_t)fnv1a(t->id[r]) & mask;
    while (t->slot[i] >= 0) {
        if (strcmp(t->id[t->slot[i]], t->id[r]) == 0) return t->slot[i];
        i = (i + 1) & mask;
    }
    t->slot[i] = r;
    return -1;
}

int kp_texts_find(const kp_texts *t, const char *id)
{
    if (!t || !id || !t->slot || t->cap <= 0) return -1;
    size_t mask = (size_t)t->cap - 1;
    size_t i = (size_t)fnv1a(id) & mask;
    while (t->slot[i] >= 0) {
        if (strcmp(t->id[t->slot[i]], id) == 0) return t->slot[i];
        i = (i + 1) & mask;
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* texts                                                                                      */

/* Parses a 2-column buffer; takes ownership of buf (freed on error). */
static int texts_parse(char *buf, size_t len, const char *path, kp_texts *out, char *err,
                       size_t errlen)
{
    kp_texts t = {0};
    t.arena = buf;
    int max_rows = count_lines(buf, len);
    t.id = malloc((size_t)max_rows * sizeof(char *));
    t.text = malloc((size_t)max_rows * sizeof(char *));
    t.cap = 16;
    while ((long)t.cap < 2L * max_rows)
        t.cap *= 2;
    t.slot = malloc((size_t)t.cap * sizeof(int));
    if (!t.id || !t.text || !t.slot) {
        seterr(err, errlen, "%s: out of memory", path);
        goto err;
    }
    for (int i = 0; i < t.cap; i++)
        t.slot[i] = -1;

    line_iter it = {buf, buf + len, 0};
    if (skip_header(&it, path, NULL, err, errlen) != 0) goto err;
    char *line;
    while ((line = next_line(&it)) != NULL) {
        if (!*line) continue;
        char *f[2];
        int nf = split_tabs(line, f, 2);
        if (nf != 2) {
            seterr(err, errlen, "%s:%d: expected 2 columns, got %d", path, it.lineno, nf);
            goto err;
        }
        if (!*f[0]) {
            seterr(err, errlen, "%s:%d: empty id", path, it.lineno);
            goto err;
        }
        t.id[t.n] = f[0];
        t.text[t.n] = f[1];
        int prev = map_insert(&t, t.n);
        if (prev >= 0) {
            seterr(err, errlen, "%s:%d: duplicate id \"%s\" (first seen in data row %d)", path,
                   it.lineno, f[0], prev + 1);
            goto err;
        }
        t.n++;
    }
    *out = t;
    return 0;
err:
    kp_texts_free(&t);
    return -1;
}

int kp_texts_load(const char *path, kp_texts *out, char *err, size_t errlen)
{
    char *buf;
    size_t len;
    if (!out) {
        seterr(err, errlen, "kp_texts_load: NULL output");
        return -1;
    }
    memset(out, 0, sizeof(*out));
    if (!path) {
        seterr(err, errlen, "kp_texts_load: NULL path");
        return -1;
    }
    if (read_all(path, &buf, &len, err, errlen) != 0) return -1;
    return texts_parse(buf, len, path, out, err, errlen);
}

int kp_texts_build(const char *const *ids, const char *const *texts, int n, kp_texts *out,
                   char *err, size_t errlen)
{
    static const char *const label = "(memory)";
    if (!out) {
        seterr(err, errlen, "kp_texts_build: NULL output");
        return -1;
    }
    memset(out, 0, sizeof(*out));
    if (n < 0 || (n > 0 && (!ids || !texts))) {
        seterr(err, errlen, "kp_texts_build: bad arguments (n=%d)", n);
        return -1;
    }
    /* Serialise as a TSV buffer with a dummy header and parse it: one code path, one arena. */
    size_t len = 3; /* "h\t\n" */
    for (int i = 0; i < n; i++) {
        if (!ids[i] || !texts[i]) {
            seterr(err, errlen, "%s: row %d: NULL id or text", label, i);
            return -1;
        }
        if (strpbrk(ids[i], "\t\r\n") || strpbrk(texts[i], "\t\r\n")) {
            seterr(err, errlen, "%s: row %d: tab or line break inside a field", label, i);
            return -1;
        }
        size_t add = strlen(ids[i]) + strlen(texts[i]) + 2;
        if (len > (size_t)INT_MAX - add) {
            seterr(err, errlen, "%s: too much text", label);
            return -1;
        }
        len += add;
    }
    char *buf = malloc(len + 1), *p = buf;
    if (!buf) {
        seterr(err, errlen, "%s: out of memory", label);
        return -1;
    }
    memcpy(p, "h\t\n", 3);
    p += 3;
    for (int i = 0; i < n; i++) {
        size_t a = strlen(ids[i]), b = strlen(texts[i]);
        memcpy(p, ids[i], a);
        p += a;
        *p++ = '\t';
        memcpy(p, texts[i], b);
        p += b;
        *p++ = '\n';
    }
    *p = '\0';
    return texts_parse(buf, len, label, out, err, errlen);
}

void kp_texts_free(kp_texts *t)
{
    if (!t) return;
    free(t->id);
    free(t->text);
    free(t->arena);
    free(t->slot);
    memset(t, 0, sizeof(*t));
}

/* ------------------------------------------------------------------------------------------ */
/* judgments                                                                                  */

int kp_judgments_load(const char *path, const kp_texts *items, const kp_texts *keys,
                      kp_judgments *out, int *n_skipped, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t len;
    kp_judgments j = {0};
    int skipped = 0;
    if (n_skipped) *n_skipped = 0;
    if (!out) {
        seterr(err, errlen, "kp_judgments_load: NULL output");
        return -1;
    }
    memset(out, 0, sizeof(*out));
    if (!path || !items || !keys) {
        seterr(err, errlen, "kp_judgments_load: NULL argument");
        return -1;
    }
    if (read_all(path, &buf, &len, err, errlen) != 0) return -1;
    int max_rows = count_lines(buf, len);
    j.item = malloc((size_t)max_rows * sizeof(int));
    j.key = malloc((size_t)max_rows * sizeof(int));
    j.rel = malloc((size_t)max_rows * sizeof(float));
    if (!j.item || !j.key || !j.rel) {
        seterr(err, errlen, "%s: out of memory", path);
        goto err;
    }
    line_iter it = {buf, buf + len, 0};
    if (skip_header(&it, path, NULL, err, errlen) != 0) goto err;
    char *line;
    while ((line = next_line(&it)) != NULL) {
        if (!*line) continue;
        char *f[4];
        int nf = split_tabs(line, f, 4);
        if (nf != 4) {
            seterr(err, errlen,
                   "%s:%d: expected 4 columns (pair_id, keyphrase_id, item_id, "
                   "relevance), got %d",
                   path, it.lineno, nf);
            goto err;
        }
        double r;
        if (parse_double(f[3], &r) != 0) {
            seterr(err, errlen, "%s:%d: relevance \"%s\" is not a number", path, it.lineno, f[3]);
            goto err;
        }
        if (r < 1.0 || r > 3.0) {
            seterr(err, errlen, "%s:%d: relevance %g outside [1, 3]", path, it.lineno, r);
            goto err;
        }
        int k = kp_texts_find(keys, f[1]), i = kp_texts_find(items, f[2]);
        if (k < 0 || i < 0) {
            skipped++;
            continue;
        }
        j.item[j.n] = i;
        j.key[j.n] = k;
        j.rel[j.n] = (float)r;
        j.n++;
    }
    free(buf);
    *out = j;
    if (n_skipped) *n_skipped = skipped;
    return 0;
err:
    free(buf);
    kp_judgments_free(&j);
    return -1;
}

void kp_judgments_free(kp_judgments *j)
{
    if (!j) return;
    free(j->item);
    free(j->key);
    free(j->rel);
    memset(j, 0, sizeof(*j));
}

int kp_judgments_relevant_csr(const kp_judgments *j, int n_items, float min_rel, int **off,
                              int **idx, char *err, size_t errlen)
{
    int *o = NULL, *x = NULL, *fill = NULL;
    if (!j || !off || !idx || n_items < 0) {
        seterr(err, errlen, "kp_judgments_relevant_csr: bad arguments");
        return -1;
    }
    *off = NULL;
    *idx = NULL;
    o = calloc((size_t)n_items + 1, sizeof(int));
    fill = calloc((size_t)n_items + 1, sizeof(int));
    x = malloc(((size_t)j->n + 1) * sizeof(int));
    if (!o || !fill || !x) {
        seterr(err, errlen, "kp_judgments_relevant_csr: out of memory");
        goto err;
    }
    for (int p = 0; p < j->n; p++) {
        if (j->item[p] < 0 || j->item[p] >= n_items) {
            seterr(err, errlen,
                   "kp_judgments_relevant_csr: judgment %d has item %d outside [0, %d)", p,
                   j->item[p], n_items);
            goto err;
        }
        if (j->rel[p] >= min_rel) o[j->item[p] + 1]++;
    }
    for (int i = 0; i < n_items; i++)
        o[i + 1] += o[i];
    for (int p = 0; p < j->n; p++) {
        if (j->rel[p] < min_rel) continue;
        int i = j->item[p];
        x[o[i] + fill[i]++] = j->key[p];
    }
    free(fill);
    *off = o;
    *idx = x;
    return 0;
err:
    free(o);
    free(x);
    free(fill);
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* click log                                                                                  */

int kp_clicklog_push(kp_clicklog *log, const kp_click_event *e)
{
    if (!log || !e) return -1;
    if (log->n == log->cap) {
        if (log->cap > INT_MAX / 2) return -1;
        int cap = log->cap ? 2 * log->cap : 256;
        kp_click_event *ev = realloc(log->ev, (size_t)cap * sizeof(*ev));
        if (!ev) return -1;
        log->ev = ev;
        log->cap = cap;
    }
    log->ev[log->n++] = *e;
    return 0;
}

void kp_clicklog_free(kp_clicklog *log)
{
    if (!log) return;
    free(log->ev);
    memset(log, 0, sizeof(*log));
}

int kp_clicklog_write(const char *path, const kp_clicklog *log, const kp_texts *items,
                      const kp_texts *keys, char *err, size_t errlen)
{
    if (!path || !log || !items || !keys) {
        seterr(err, errlen, "kp_clicklog_write: NULL argument");
        return -1;
    }
    for (int i = 0; i < log->n; i++) {
        const kp_click_event *e = &log->ev[i];
        if (e->item < 0 || e->item >= items->n || e->key < 0 || e->key >= keys->n ||
            (e->kind != KP_EV_IMPRESSION && e->kind != KP_EV_CLICK) || e->position < 1) {
            seterr(err, errlen, "%s: event %d is invalid (item %d, key %d, kind %d, position %d)",
                   path, i, e->item, e->key, e->kind, e->position);
            return -1;
        }
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        seterr(err, errlen, "%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "%s\n", CLICK_HEADER);
    for (int i = 0; i < log->n; i++) {
        const kp_click_event *e = &log->ev[i];
        fprintf(f, "%s\t%s\t%s\t%d\t%" PRId64 "\n", items->id[e->item], keys->id[e->key],
                e->kind == KP_EV_CLICK ? "click" : "impression", e->position, e->ts);
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        seterr(err, errlen, "%s: write error", path);
        return -1;
    }
    return 0;
}

int kp_clicklog_load(const char *path, const kp_texts *items, const kp_texts *keys,
                     kp_clicklog *out, int *n_skipped, char *err, size_t errlen)
{
    char *buf = NULL, *header;
    size_t len;
    kp_clicklog log = {0};
    int skipped = 0;
    if (n_skipped) *n_skipped = 0;
    if (!out) {
        seterr(err, errlen, "kp_clicklog_load: NULL output");
        return -1;
    }
    memset(out, 0, sizeof(*out));
    if (!path || !items || !keys) {
        seterr(err, errlen, "kp_clicklog_load: NULL argument");
        return -1;
    }
    if (read_all(path, &buf, &len, err, errlen) != 0) return -1;
    line_iter it = {buf, buf + len, 0};
    if (skip_header(&it, path, &header, err, errlen) != 0) goto err;
    if (strcmp(header, CLICK_HEADER) != 0) {
        seterr(err, errlen,
               "%s:1: unexpected header (want item_id, keyphrase_id, kind, position, "
               "ts)",
               path);
        goto err;
    }
    char *line;
    while ((line = next_line(&it)) != NULL) {
        if (!*line) continue;
        char *f[5];
        int nf = split_tabs(line, f, 5);
        if (nf != 5) {
            seterr(err, errlen, "%s:%d: expected 5 columns, got %d", path, it.lineno, nf);
            goto err;
        }
        kp_click_event e;
        int64_t pos, ts;
        if (strcmp(f[2], "impression") == 0) {
            e.kind = KP_EV_IMPRESSION;
        } else if (strcmp(f[2], "click") == 0) {
            e.kind = KP_EV_CLICK;
        } else {
            seterr(err, errlen, "%s:%d: kind \"%s\" is neither impression nor click", path,
                   it.lineno, f[2]);
            goto err;
        }
        if (parse_i64(f[3], &pos) != 0 || pos < 1 || pos > INT_MAX) {
            seterr(err, errlen, "%s:%d: position \"%s\" is not an integer >= 1", path, it.lineno,
                   f[3]);
            goto err;
        }
        if (parse_i64(f[4], &ts) != 0 || ts < 0) {
            seterr(err, errlen, "%s:%d: ts \"%s\" is not an integer >= 0", path, it.lineno, f[4]);
            goto err;
        }
        e.item = kp_texts_find(items, f[0]);
        e.key = kp_texts_find(keys, f[1]);
        if (e.item < 0 || e.key < 0) {
            skipped++;
            continue;
        }
        e.position = (int)pos;
        e.ts = ts;
        if (kp_clicklog_push(&log, &e) != 0) {
            seterr(err, errlen, "%s:%d: out of memory", path, it.lineno);
            goto err;
        }
    }
    free(buf);
    *out = log;
    if (n_skipped) *n_skipped = skipped;
    return 0;
err:
    free(buf);
    kp_clicklog_free(&log);
    return -1;
}
