/* datasets: judgments and click logs, the offline data files. See datasets.h. */
#include "offline/datasets.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static const char *const CLICK_HEADER = "item_id\tkeyphrase_id\tkind\tposition\tts";

/* ------------------------------------------------------------------------------------------ */
/* judgments                                                                                  */

kp_grade_scale kp_grade_scale_default(void)
{
    kp_grade_scale s = {KP_GRADE_MIN_DEFAULT, KP_GRADE_MAX_DEFAULT};
    return s;
}

int kp_grade_scale_parse(const char *s, kp_grade_scale *out, char *err, size_t errlen)
{
    char buf[128];
    const char *colon = s ? strchr(s, ':') : NULL;
    double lo, hi;
    if (!s || !out || !colon || strlen(s) >= sizeof buf) goto bad;
    memcpy(buf, s, (size_t)(colon - s));
    buf[colon - s] = 0;
    if (kp_parse_double(buf, -FLT_MAX, FLT_MAX, &lo) != 0 ||
        kp_parse_double(colon + 1, -FLT_MAX, FLT_MAX, &hi) != 0 || !((float)lo < (float)hi))
        goto bad;
    out->min = (float)lo;
    out->max = (float)hi;
    return 0;
bad:
    kp_errf(err, errlen, "grades: '%s' is not MIN:MAX with finite MIN < MAX", s ? s : "(null)");
    return -1;
}

float kp_grade_unit(const kp_grade_scale *sc, float g)
{
    return (g - sc->min) / (sc->max - sc->min);
}

float kp_grade_canonical(const kp_grade_scale *sc, float g)
{
    return 1.0f + 2.0f * kp_grade_unit(sc, g);
}

float kp_grade_from_unit(const kp_grade_scale *sc, float u)
{
    return sc->min + u * (sc->max - sc->min);
}

int kp_judgments_load(const char *path, const kp_texts *items, const kp_texts *keys,
                      kp_judgments *out, int *n_skipped, char *err, size_t errlen)
{
    return kp_judgments_load_scaled(path, items, keys, NULL, out, n_skipped, err, errlen);
}

int kp_judgments_load_scaled(const char *path, const kp_texts *items, const kp_texts *keys,
                             const kp_grade_scale *scale, kp_judgments *out, int *n_skipped,
                             char *err, size_t errlen)
{
    kp_grade_scale sc = scale ? *scale : kp_grade_scale_default();
    char *buf = NULL;
    size_t len;
    kp_judgments j = {0};
    int skipped = 0;
    if (n_skipped) *n_skipped = 0;
    if (!(sc.min < sc.max) || !isfinite(sc.min) || !isfinite(sc.max)) {
        kp_errf(err, errlen, "kp_judgments_load: bad grade scale [%g, %g]", (double)sc.min,
                (double)sc.max);
        return -1;
    }
    if (!out) {
        kp_errf(err, errlen, "kp_judgments_load: NULL output");
        return -1;
    }
    memset(out, 0, sizeof(*out));
    if (!path || !items || !keys) {
        kp_errf(err, errlen, "kp_judgments_load: NULL argument");
        return -1;
    }
    if (kp_tsv_read_all(path, &buf, &len, err, errlen) != 0) return -1;
    int max_rows = kp_tsv_count_lines(buf, len);
    j.item = malloc((size_t)max_rows * sizeof(int));
    j.key = malloc((size_t)max_rows * sizeof(int));
    j.rel = malloc((size_t)max_rows * sizeof(float));
    if (!j.item || !j.key || !j.rel) {
        kp_errf(err, errlen, "%s: out of memory", path);
        goto err;
    }
    kp_tsv_lines it = {buf, buf + len, 0};
    if (kp_tsv_skip_header(&it, path, NULL, err, errlen) != 0) goto err;
    char *line;
    while ((line = kp_tsv_next_line(&it)) != NULL) {
        if (!*line) continue;
        char *f[4];
        int nf = kp_tsv_split(line, f, 4);
        if (nf != 4) {
            kp_errf(err, errlen,
                    "%s:%d: expected 4 columns (pair_id, keyphrase_id, item_id, "
                    "relevance), got %d",
                    path, it.lineno, nf);
            goto err;
        }
        double r;
        if (kp_parse_double(f[3], -DBL_MAX, DBL_MAX, &r) != 0) {
            kp_errf(err, errlen, "%s:%d: relevance \"%s\" is not a number", path, it.lineno, f[3]);
            goto err;
        }
        if (r < (double)sc.min || r > (double)sc.max) {
            kp_errf(err, errlen, "%s:%d: relevance %g outside [%g, %g] (--grades MIN:MAX)", path,
                    it.lineno, r, (double)sc.min, (double)sc.max);
            goto err;
        }
        int k = kp_texts_find(keys, f[1]), i = kp_texts_find(items, f[2]);
        if (k < 0 || i < 0) {
            skipped++;
            continue;
        }
        j.item[j.n] = i;
        j.key[j.n] = k;
        /* the default scale is the internal one: stored as read */
        j.rel[j.n] =
            (sc.min == 1.0f && sc.max == 3.0f) ? (float)r : kp_grade_canonical(&sc, (float)r);
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
        kp_errf(err, errlen, "kp_judgments_relevant_csr: bad arguments");
        return -1;
    }
    *off = NULL;
    *idx = NULL;
    o = calloc((size_t)n_items + 1, sizeof(int));
    fill = calloc((size_t)n_items + 1, sizeof(int));
    x = malloc(((size_t)j->n + 1) * sizeof(int));
    if (!o || !fill || !x) {
        kp_errf(err, errlen, "kp_judgments_relevant_csr: out of memory");
        goto err;
    }
    for (int p = 0; p < j->n; p++) {
        if (j->item[p] < 0 || j->item[p] >= n_items) {
            kp_errf(err, errlen,
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
        kp_errf(err, errlen, "kp_clicklog_write: NULL argument");
        return -1;
    }
    for (int i = 0; i < log->n; i++) {
        const kp_click_event *e = &log->ev[i];
        if (e->item < 0 || e->item >= items->n || e->key < 0 || e->key >= keys->n ||
            (e->kind != KP_EV_IMPRESSION && e->kind != KP_EV_CLICK) || e->position < 1) {
            kp_errf(err, errlen, "%s: event %d is invalid (item %d, key %d, kind %d, position %d)",
                    path, i, e->item, e->key, e->kind, e->position);
            return -1;
        }
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        kp_errf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
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
        kp_errf(err, errlen, "%s: write error", path);
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
        kp_errf(err, errlen, "kp_clicklog_load: NULL output");
        return -1;
    }
    memset(out, 0, sizeof(*out));
    if (!path || !keys) {
        kp_errf(err, errlen, "kp_clicklog_load: NULL argument");
        return -1;
    }
    if (kp_tsv_read_all(path, &buf, &len, err, errlen) != 0) return -1;
    kp_tsv_lines it = {buf, buf + len, 0};
    if (kp_tsv_skip_header(&it, path, &header, err, errlen) != 0) goto err;
    if (strcmp(header, CLICK_HEADER) != 0) {
        kp_errf(err, errlen,
                "%s:1: unexpected header (want item_id, keyphrase_id, kind, position, "
                "ts)",
                path);
        goto err;
    }
    char *line;
    while ((line = kp_tsv_next_line(&it)) != NULL) {
        if (!*line) continue;
        char *f[5];
        int nf = kp_tsv_split(line, f, 5);
        if (nf != 5) {
            kp_errf(err, errlen, "%s:%d: expected 5 columns, got %d", path, it.lineno, nf);
            goto err;
        }
        kp_click_event e;
        int64_t pos, ts;
        if (strcmp(f[2], "impression") == 0) {
            e.kind = KP_EV_IMPRESSION;
        } else if (strcmp(f[2], "click") == 0) {
            e.kind = KP_EV_CLICK;
        } else {
            kp_errf(err, errlen, "%s:%d: kind \"%s\" is neither impression nor click", path,
                    it.lineno, f[2]);
            goto err;
        }
        if (kp_parse_i64(f[3], INT64_MIN, INT64_MAX, &pos) != 0 || pos < 1 || pos > INT_MAX) {
            kp_errf(err, errlen, "%s:%d: position \"%s\" is not an integer >= 1", path, it.lineno,
                    f[3]);
            goto err;
        }
        if (kp_parse_i64(f[4], INT64_MIN, INT64_MAX, &ts) != 0 || ts < 0) {
            kp_errf(err, errlen, "%s:%d: ts \"%s\" is not an integer >= 0", path, it.lineno, f[4]);
            goto err;
        }
        e.item = items ? kp_texts_find(items, f[0]) : -1;
        e.key = kp_texts_find(keys, f[1]);
        if ((items && e.item < 0) || e.key < 0) {
            skipped++;
            continue;
        }
        e.position = (int)pos;
        e.ts = ts;
        if (kp_clicklog_push(&log, &e) != 0) {
            kp_errf(err, errlen, "%s:%d: out of memory", path, it.lineno);
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
