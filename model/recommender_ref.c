/* recommender_ref: the plain reference of kp_rec_suggest's pipeline (see recommender.h). Brute
 * force from the public API only: every cosine in double, every BM25 score one by one, the CE one
 * pair at a time, full sorts. For tests. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/recommender.h"

typedef struct {
    int id;
    double s;
} scored;

static int by_score(const void *pa, const void *pb)
{
    const scored *a = pa, *b = pb;
    if (a->s != b->s) return a->s > b->s ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static int seen(const uint64_t *keys, int n, uint64_t k)
{
    for (int i = 0; i < n; i++)
        if (keys[i] == k) return 1;
    return 0;
}

int kp_rec_suggest_ref(kp_recommender *r, const char *const *titles, const size_t *lens, int n,
                       int k, float min_score, kp_rec_suggestion *out, int *counts)
{
    if (n <= 0 || k <= 0) return n == 0 ? 0 : -1;
    const kp_bienc *m = kp_rec_model(r);
    const kp_pipeline *p = kp_rec_pipeline(r);
    kp_pipeline none = {0};
    if (!p) p = &none;
    int nk = kp_rec_size(r), D = kp_bienc_cfg(m)->out_dim;
    int N = p->candidates > 0 ? p->candidates : k, M = p->bm25 ? p->hybrid : 0;
    float *q = malloc(sizeof(float) * (size_t)n * D);
    float *e = malloc(sizeof(float) * ((size_t)nk + 1) * D);
    size_t *kl = malloc(sizeof(size_t) * ((size_t)nk + 1));
    const char **kt = malloc(sizeof(char *) * ((size_t)nk + 1));
    scored *all = malloc(sizeof(scored) * ((size_t)nk + 1));
    scored *cand = malloc(sizeof(scored) * ((size_t)N + M + 1));
    uint64_t *ck = malloc(sizeof(uint64_t) * ((size_t)N + M + 1));
    float *pr = malloc(sizeof(float) * ((size_t)N + M + 1));
    int rc = -1;
    if (!q || !e || !kl || !kt || !all || !cand || !ck || !pr) goto out;
    for (int j = 0; j < nk; j++) {
        kt[j] = kp_rec_keyphrase(r, j);
        kl[j] = strlen(kt[j]);
    }
    if (kp_bienc_embed(m, KP_TOWER_ITEM, titles, lens, n, q)) goto out;
    if (nk && kp_bienc_embed(m, KP_TOWER_KEY, kt, kl, nk, e)) goto out;
    for (int i = 0; i < n; i++) {
        int nc = 0;
        /* BE: all cosines, sorted; first of each token set; >= min_score */
        for (int j = 0; j < nk; j++) {
            double s = 0;
            for (int d = 0; d < D; d++)
                s += (double)q[(size_t)i * D + d] * e[(size_t)j * D + d];
            all[j] = (scored){j, s};
        }
        qsort(all, (size_t)nk, sizeof *all, by_score);
        for (int j = 0; j < nk && nc < N; j++) {
            uint64_t key = kp_rec_dedup_key(r, all[j].id);
            if (!(all[j].s >= min_score) || seen(ck, nc, key)) continue;
            ck[nc] = key;
            cand[nc++] = all[j];
        }
        /* BM25: every document's score, sorted, the M best with a positive score */
        if (M > 0) {
            int nb = 0;
            for (int j = 0; j < nk; j++) {
                float s = kp_bm25_score(p->bm25, titles[i], j);
                if (s > 0) all[nb++] = (scored){j, s};
            }
            qsort(all, (size_t)nb, sizeof *all, by_score);
            for (int j = 0; j < nb && j < M; j++) {
                int id = all[j].id;
                uint64_t key = kp_rec_dedup_key(r, id);
                if (seen(ck, nc, key)) continue;
                double s = 0;
                for (int d = 0; d < D; d++)
                    s += (double)q[(size_t)i * D + d] * e[(size_t)id * D + d];
                if (!(s >= min_score)) continue;
                ck[nc] = key;
                cand[nc++] = (scored){id, s};
            }
        }
        /* re-rank, one pair at a time */
        if (p->ce)
            for (int j = 0; j < nc; j++) {
                const char *it = titles[i], *kp = kt[cand[j].id];
                float s;
                if (kp_ce_score(p->ce, &it, &kp, 1, &s)) goto out;
                cand[j].s = s;
            }
        /* scores are published as floats: order by the float value, as the fast path does */
        for (int j = 0; j < nc; j++)
            cand[j].s = (float)cand[j].s;
        qsort(cand, (size_t)nc, sizeof *cand, by_score);
        int cnt = 0;
        for (int j = 0; j < nc && cnt < k; j++) {
            float raw = (float)cand[j].s;
            float pp = p->calib ? kp_calib_apply(p->calib, raw) : raw;
            if (p->threshold > 0 && !(pp >= p->threshold)) continue;
            out[(size_t)i * k + cnt++] =
                (kp_rec_suggestion){kp_rec_keyphrase_id(r, cand[j].id), kt[cand[j].id], pp, raw};
        }
        counts[i] = cnt;
    }
    rc = 0;
out:
    free(q), free(e), free(kl), free((void *)kt), free(all), free(cand), free(ck), free(pr);
    return rc;
}
