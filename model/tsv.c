/* tsv: reading tab-separated files, and the id -> text table. See tsv.h. */
#include "model/tsv.h"

#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* reading and splitting                                                                      */

/* Reads the whole file into a fresh NUL-terminated buffer (*buf, caller frees). */
int kp_tsv_read_all(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
    char *b = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        kp_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (fseek(f, 0, SEEK_END) != 0) goto ioerr;
    long sz = ftell(f);
    if (sz < 0 || fseek(f, 0, SEEK_SET) != 0) goto ioerr;
    if ((unsigned long)sz >= (unsigned long)INT_MAX) {
        kp_errf(err, errlen, "%s: file too large (%ld bytes)", path, sz);
        goto err;
    }
    b = malloc((size_t)sz + 1);
    if (!b) {
        kp_errf(err, errlen, "%s: out of memory", path);
        goto err;
    }
    if (fread(b, 1, (size_t)sz, f) != (size_t)sz) goto ioerr;
    b[sz] = '\0';
    if (memchr(b, '\0', (size_t)sz)) {
        kp_errf(err, errlen, "%s: contains a NUL byte (not a text file)", path);
        goto err;
    }
    fclose(f);
    *buf = b;
    *len = (size_t)sz;
    return 0;
ioerr:
    kp_errf(err, errlen, "%s: read error: %s", path, strerror(errno));
err:
    free(b);
    fclose(f);
    return -1;
}

/* Next line, NUL-terminated in place without its "\n" / "\r\n", or NULL at the end. */
char *kp_tsv_next_line(kp_tsv_lines *it)
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
int kp_tsv_split(char *line, char **f, int maxf)
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

int kp_tsv_count_lines(const char *buf, size_t len)
{
    int n = 1;
    for (const char *p = buf; (p = memchr(p, '\n', len - (size_t)(p - buf))) != NULL; p++)
        n++;
    return n;
}

/* Reads the header line; errors if the file has none. */
int kp_tsv_skip_header(kp_tsv_lines *it, const char *path, char **header, char *err, size_t errlen)
{
    char *h = kp_tsv_next_line(it);
    if (!h) {
        kp_errf(err, errlen, "%s: empty file (no header row)", path);
        return -1;
    }
    if (header) *header = h;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* id -> row map                                                                              */

/* Inserts row r of t; returns the row already holding the same id, or -1 if inserted. */
static int map_insert(kp_texts *t, int r)
{
    size_t mask = (size_t)t->cap - 1;
    size_t i = (size_t)kp_fnv1a_str(t->id[r]) & mask;
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
    size_t i = (size_t)kp_fnv1a_str(id) & mask;
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
    int max_rows = kp_tsv_count_lines(buf, len);
    t.id = malloc((size_t)max_rows * sizeof(char *));
    t.text = malloc((size_t)max_rows * sizeof(char *));
    t.cap = 16;
    while ((long)t.cap < 2L * max_rows)
        t.cap *= 2;
    t.slot = malloc((size_t)t.cap * sizeof(int));
    if (!t.id || !t.text || !t.slot) {
        kp_errf(err, errlen, "%s: out of memory", path);
        goto err;
    }
    for (int i = 0; i < t.cap; i++)
        t.slot[i] = -1;

    kp_tsv_lines it = {buf, buf + len, 0};
    if (kp_tsv_skip_header(&it, path, NULL, err, errlen) != 0) goto err;
    char *line;
    while ((line = kp_tsv_next_line(&it)) != NULL) {
        if (!*line) continue;
        char *f[2];
        int nf = kp_tsv_split(line, f, 2);
        if (nf != 2) {
            kp_errf(err, errlen, "%s:%d: expected 2 columns, got %d", path, it.lineno, nf);
            goto err;
        }
        if (!*f[0]) {
            kp_errf(err, errlen, "%s:%d: empty id", path, it.lineno);
            goto err;
        }
        t.id[t.n] = f[0];
        t.text[t.n] = f[1];
        int prev = map_insert(&t, t.n);
        if (prev >= 0) {
            kp_errf(err, errlen, "%s:%d: duplicate id \"%s\" (first seen in data row %d)", path,
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
        kp_errf(err, errlen, "kp_texts_load: NULL output");
        return -1;
    }
    memset(out, 0, sizeof(*out));
    if (!path) {
        kp_errf(err, errlen, "kp_texts_load: NULL path");
        return -1;
    }
    if (kp_tsv_read_all(path, &buf, &len, err, errlen) != 0) return -1;
    return texts_parse(buf, len, path, out, err, errlen);
}

int kp_texts_build(const char *const *ids, const char *const *texts, int n, kp_texts *out,
                   char *err, size_t errlen)
{
    static const char *const label = "(memory)";
    if (!out) {
        kp_errf(err, errlen, "kp_texts_build: NULL output");
        return -1;
    }
    memset(out, 0, sizeof(*out));
    if (n < 0 || (n > 0 && (!ids || !texts))) {
        kp_errf(err, errlen, "kp_texts_build: bad arguments (n=%d)", n);
        return -1;
    }
    /* Serialise as a TSV buffer with a dummy header and parse it: one code path, one arena. */
    size_t len = 3; /* "h\t\n" */
    for (int i = 0; i < n; i++) {
        if (!ids[i] || !texts[i]) {
            kp_errf(err, errlen, "%s: row %d: NULL id or text", label, i);
            return -1;
        }
        if (strpbrk(ids[i], "\t\r\n") || strpbrk(texts[i], "\t\r\n")) {
            kp_errf(err, errlen, "%s: row %d: tab or line break inside a field", label, i);
            return -1;
        }
        size_t add = strlen(ids[i]) + strlen(texts[i]) + 2;
        if (len > (size_t)INT_MAX - add) {
            kp_errf(err, errlen, "%s: too much text", label);
            return -1;
        }
        len += add;
    }
    char *buf = malloc(len + 1), *p = buf;
    if (!buf) {
        kp_errf(err, errlen, "%s: out of memory", label);
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
    KP_FREE_ALL(t->id, t->text, t->arena, t->slot);
    memset(t, 0, sizeof(*t));
}
