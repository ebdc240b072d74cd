/* clicksim: biased click log from judged pairs. See clicksim.h. */
#include "offline/clicksim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* ------------------------------------------------------------------------------------------ */
/* splitmix64                                                                                 */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* uniform in [0, 1) with 53 random bits */
static double uniform01(uint64_t *state)
{
    return (double)(splitmix64(state) >> 11) * (1.0 / 9007199254740992.0);
}

/* standard normal (Box-Muller, one of the pair) */
static double normal01(uint64_t *state)
{
    double u1 = 1.0 - uniform01(state); /* (0, 1] */
    double u2 = uniform01(state);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ------------------------------------------------------------------------------------------ */

void kp_clicksim_config_default(kp_clicksim_config *c)
{
    if (!c) return;
    c->sessions_per_item = 20;
    c->max_shown = 0;
    c->noise_sd = 0.5f;
    c->eta = 1.0f;
    c->eps = 0.05f;
    c->gamma = 1.0f;
    c->seed = 42;
    c->t0_ms = 1700000000000LL;
    c->session_gap_ms = 60000;
}

double kp_clicksim_exam_prob(const kp_clicksim_config *c, int position)
{
    if (!c || position < 1) return 0.0;
    return pow((double)position, -(double)c->eta);
}

double kp_clicksim_click_prob(const kp_clicksim_config *c, float rel)
{
    if (!c) return 0.0;
    double r = rel < 1.0f ? 1.0 : rel > 3.0f ? 3.0 : (double)rel;
    return c->eps + (1.0 - c->eps) * pow((r - 1.0) / 2.0, (double)c->gamma);
}

static int config_ok(const kp_clicksim_config *c, char *err, size_t errlen)
{
    const char *bad = NULL;
    if (c->sessions_per_item < 1)
        bad = "sessions_per_item must be >= 1";
    else if (c->max_shown < 0)
        bad = "max_shown must be >= 0";
    else if (!(c->noise_sd >= 0.0f) || isinf(c->noise_sd))
        bad = "noise_sd must be finite, >= 0";
    else if (!(c->eta >= 0.0f) || isinf(c->eta))
        bad = "eta must be finite, >= 0";
    else if (!(c->eps >= 0.0f && c->eps <= 1.0f))
        bad = "eps must be in [0, 1]";
    else if (!(c->gamma >= 0.0f) || isinf(c->gamma))
        bad = "gamma must be finite, >= 0";
    else if (c->t0_ms < 0 || c->session_gap_ms < 0)
        bad = "t0_ms and session_gap_ms must be >= 0";
    if (bad) kp_errf(err, errlen, "clicksim: bad config: %s", bad);
    return bad == NULL;
}

typedef struct {
    double score;
    int pair; /* judgment index */
} ranked;

static int cmp_ranked(const void *a, const void *b)
{
    const ranked *p = a, *q = b;
    if (p->score > q->score) return -1;
    if (p->score < q->score) return 1;
    return (p->pair > q->pair) - (p->pair < q->pair);
}

int kp_clicksim_run(const kp_judgments *j, int n_items, int n_keys, const kp_clicksim_config *c,
                    kp_clicklog *out, char *err, size_t errlen)
{
    int *off = NULL, *pairs = NULL, *fill = NULL;
    ranked *rk = NULL;
    if (!j || !c || !out || n_items < 0 || n_keys < 0) {
        kp_errf(err, errlen, "clicksim: bad arguments");
        return -1;
    }
    if (!config_ok(c, err, errlen)) return -1;
    for (int p = 0; p < j->n; p++) {
        if (j->item[p] < 0 || j->item[p] >= n_items || j->key[p] < 0 || j->key[p] >= n_keys ||
            !isfinite(j->rel[p])) {
            kp_errf(err, errlen, "clicksim: judgment %d is invalid (item %d, key %d, rel %g)", p,
                    j->item[p], j->key[p], (double)j->rel[p]);
            return -1;
        }
    }

    /* group the judgments by item (CSR, judgment order within an item) */
    off = calloc((size_t)n_items + 1, sizeof(int));
    fill = calloc((size_t)n_items + 1, sizeof(int));
    pairs = malloc(((size_t)j->n + 1) * sizeof(int));
    rk = malloc(((size_t)j->n + 1) * sizeof(ranked));
    if (!off || !fill || !pairs || !rk) goto oom;
    for (int p = 0; p < j->n; p++)
        off[j->item[p] + 1]++;
    for (int i = 0; i < n_items; i++)
        off[i + 1] += off[i];
    for (int p = 0; p < j->n; p++)
        pairs[off[j->item[p]] + fill[j->item[p]]++] = p;

    int64_t session = 0;
    for (int i = 0; i < n_items; i++) {
        int n = off[i + 1] - off[i];
        if (n == 0) continue;
        uint64_t st = c->seed ^ (0xD1B54A32D192ED03ULL * ((uint64_t)i + 1));
        splitmix64(&st);
        int shown = (c->max_shown > 0 && c->max_shown < n) ? c->max_shown : n;
        for (int s = 0; s < c->sessions_per_item; s++, session++) {
            int64_t ts = c->t0_ms + session * c->session_gap_ms;
            for (int q = 0; q < n; q++) {
                int p = pairs[off[i] + q];
                rk[q].pair = p;
                rk[q].score = j->rel[p] + c->noise_sd * normal01(&st);
            }
            qsort(rk, (size_t)n, sizeof(ranked), cmp_ranked);
            for (int r = 0; r < shown; r++) {
                kp_click_event e = {i, j->key[rk[r].pair], KP_EV_IMPRESSION, r + 1, ts};
                if (kp_clicklog_push(out, &e) != 0) goto oom;
            }
            for (int r = 0; r < shown; r++) {
                /* draw both uniforms for every position so the stream layout is fixed */
                double u_exam = uniform01(&st), u_click = uniform01(&st);
                if (u_exam >= kp_clicksim_exam_prob(c, r + 1)) continue;
                if (u_click >= kp_clicksim_click_prob(c, j->rel[rk[r].pair])) continue;
                kp_click_event e = {i, j->key[rk[r].pair], KP_EV_CLICK, r + 1, ts + 1000};
                if (kp_clicklog_push(out, &e) != 0) goto oom;
            }
        }
    }
    free(off);
    free(fill);
    free(pairs);
    free(rk);
    return 0;
oom:
    kp_errf(err, errlen, "clicksim: out of memory");
    free(off);
    free(fill);
    free(pairs);
    free(rk);
    return -1;
}

int kp_clicksim_lexical(const kp_judgments *j, const kp_bm25 *bm, const kp_texts *items, int top_n,
                        kp_judgments *out, int *n_dropped, char *err, size_t errlen)
{
    if (!out) return kp_errf(err, errlen, "clicksim: bad arguments"), -1;
    memset(out, 0, sizeof *out);
    if (n_dropped) *n_dropped = 0;
    if (!j || !bm || !items || top_n < 1 || j->n < 0) {
        kp_errf(err, errlen, "clicksim: bad arguments (lexical engine)");
        return -1;
    }
    int n_docs = kp_bm25_n_docs(bm);
    for (int p = 0; p < j->n; p++)
        if (j->item[p] < 0 || j->item[p] >= items->n || j->key[p] < 0 || j->key[p] >= n_docs) {
            kp_errf(err, errlen, "clicksim: judgment %d is invalid (item %d, key %d)", p,
                    j->item[p], j->key[p]);
            return -1;
        }
    int *ids = malloc(sizeof(int) * (size_t)top_n);
    float *sc = malloc(sizeof(float) * (size_t)top_n);
    /* the item whose top N is in `mark` */
    int *mark = malloc(sizeof(int) * ((size_t)n_docs + 1));
    int *off = calloc((size_t)items->n + 2, sizeof(int));
    int *pairs = malloc(sizeof(int) * ((size_t)j->n + 1));
    unsigned char *keep = calloc((size_t)j->n + 1, 1);
    out->item = malloc(sizeof(int) * ((size_t)j->n + 1));
    out->key = malloc(sizeof(int) * ((size_t)j->n + 1));
    out->rel = malloc(sizeof(float) * ((size_t)j->n + 1));
    int rc = -1;
    if (!ids || !sc || !mark || !off || !pairs || !keep || !out->item || !out->key || !out->rel) {
        kp_errf(err, errlen, "clicksim: out of memory");
        goto end;
    }
    for (int d = 0; d < n_docs; d++)
        mark[d] = -1;
    /* judgments grouped by item (counting sort); each item's BM25 list is computed once */
    for (int p = 0; p < j->n; p++)
        off[j->item[p] + 2]++;
    for (int i = 0; i < items->n; i++)
        off[i + 2] += off[i + 1];
    for (int p = 0; p < j->n; p++)
        pairs[off[j->item[p] + 1]++] = p;
    for (int i = 0; i < items->n; i++) {
        if (off[i + 1] == off[i]) continue;
        int got = kp_bm25_topk(bm, items->text[i], top_n, ids, sc);
        if (got < 0) {
            kp_errf(err, errlen, "clicksim: BM25 retrieval failed");
            goto end;
        }
        for (int h = 0; h < got; h++)
            mark[ids[h]] = i;
        for (int e = off[i]; e < off[i + 1]; e++)
            if (mark[j->key[pairs[e]]] == i) keep[pairs[e]] = 1;
    }
    for (int p = 0; p < j->n; p++) {
        if (!keep[p]) continue;
        out->item[out->n] = j->item[p];
        out->key[out->n] = j->key[p];
        out->rel[out->n++] = j->rel[p];
    }
    if (n_dropped) *n_dropped = j->n - out->n;
    rc = 0;
end:
    free(ids);
    free(sc);
    free(mark);
    free(off);
    free(pairs);
    free(keep);
    if (rc) kp_judgments_free(out);
    return rc;
}
