#include "model/recommender.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/featurize.h"
#include "model/index.h"
#include "common/util.h"

struct kp_recommender {
    kp_bienc *model;
    kp_index *index;
    int n;
    char **ids, **texts; /* point into arena */
    char *arena;
    int prefix_dim;
    float *qbuf; /* scratch: item embeddings, qcap x D */
    int qcap;
    int *sbuf_ids; /* scratch of kp_rec_suggest: scap results */
    float *sbuf_scores;
    size_t scap;
};

kp_recommender *kp_rec_new(kp_bienc *m, const char *const *ids, const char *const *texts, int n,
                           int prefix_dim, char *err, size_t errlen)
{
    int D = kp_bienc_cfg(m)->out_dim;
    float *emb = NULL;
    uint64_t *keys = NULL;
    size_t *lens = NULL;
    kp_recommender *r = calloc(1, sizeof *r);
    if (!r || n < 0) goto oom;
    r->model = m;
    r->n = n;
    r->prefix_dim = prefix_dim;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += strlen(ids[i]) + strlen(texts[i]) + 2;
    r->arena = malloc(total + 1);
    r->ids = malloc(sizeof(char *) * (size_t)(n + 1));
    r->texts = malloc(sizeof(char *) * (size_t)(n + 1));
    lens = malloc(sizeof(size_t) * (size_t)(n + 1));
    keys = malloc(sizeof(uint64_t) * (size_t)(n + 1));
    emb = malloc(sizeof(float) * (size_t)(n + 1) * (size_t)D);
    if (!r->arena || !r->ids || !r->texts || !lens || !keys || !emb) goto oom;
    char *p = r->arena;
    for (int i = 0; i < n; i++) {
        size_t a = strlen(ids[i]), b = strlen(texts[i]);
        memcpy(p, ids[i], a + 1);
        r->ids[i] = p;
        p += a + 1;
        memcpy(p, texts[i], b + 1);
        r->texts[i] = p;
        p += b + 1;
        lens[i] = b;
        keys[i] = kp_feat_tokenset_key(texts[i], b);
    }
    /* Embed the inventory in chunks so the scratch memory of the tower stays small. */
    for (int i = 0; i < n; i += 1024) {
        int c = n - i < 1024 ? n - i : 1024;
        if (kp_bienc_embed(m, KP_TOWER_KEY, (const char *const *)r->texts + i, lens + i, c,
                           emb + (size_t)i * (size_t)D))
            goto oom;
    }
    r->index = kp_index_new(emb, n, D, keys);
    if (!r->index) goto oom;
    KP_FREE_ALL(emb, keys, lens);
    return r;
oom:
    snprintf(err, errlen, "recommender: out of memory building the index of %d keyphrases", n);
    KP_FREE_ALL(emb, keys, lens);
    if (r) {
        kp_rec_free(r);
    } else {
        kp_bienc_free(m);
    }
    return NULL;
}

void kp_rec_free(kp_recommender *r)
{
    if (!r) return;
    kp_bienc_free(r->model);
    kp_index_free(r->index);
    KP_FREE_ALL(r->ids, r->texts, r->arena, r->qbuf, r->sbuf_ids, r->sbuf_scores, r);
}

int kp_rec_size(const kp_recommender *r)
{
    return r->n;
}

uint64_t kp_rec_version(const kp_recommender *r)
{
    return kp_bienc_version(r->model);
}

const kp_bienc *kp_rec_model(const kp_recommender *r)
{
    return r->model;
}

const char *kp_rec_keyphrase(const kp_recommender *r, int i)
{
    return (i >= 0 && i < r->n) ? r->texts[i] : NULL;
}

const char *kp_rec_keyphrase_id(const kp_recommender *r, int i)
{
    return (i >= 0 && i < r->n) ? r->ids[i] : NULL;
}

int kp_rec_recommend(kp_recommender *r, const char *const *titles, const size_t *lens, int n, int k,
                     float min_score, int *ids, float *scores, int *counts)
{
    if (n <= 0) return n == 0 ? 0 : -1;
    int D = kp_bienc_cfg(r->model)->out_dim;
    if (n > r->qcap) {
        float *q = realloc(r->qbuf, sizeof(float) * (size_t)n * (size_t)D);
        if (!q) return -1;
        r->qbuf = q;
        r->qcap = n;
    }
    if (kp_bienc_embed(r->model, KP_TOWER_ITEM, titles, lens, n, r->qbuf)) return -1;
    return kp_index_topk(r->index, r->qbuf, n, k, min_score, r->prefix_dim, ids, scores, counts);
}

/* Grows the scratch of kp_rec_suggest to hold need results. 0 / -1 (OOM, nothing changed). */
static int grow_suggest_scratch(kp_recommender *r, size_t need)
{
    if (need <= r->scap) return 0;
    int *ids = realloc(r->sbuf_ids, sizeof *ids * need);
    if (!ids) return -1;
    r->sbuf_ids = ids;
    float *sc = realloc(r->sbuf_scores, sizeof *sc * need);
    if (!sc) return -1;
    r->sbuf_scores = sc;
    r->scap = need;
    return 0;
}

int kp_rec_suggest(kp_recommender *r, const char *const *titles, const size_t *lens, int n, int k,
                   float min_score, kp_rec_suggestion *out, int *counts)
{
    if (n <= 0 || k <= 0) return n == 0 ? 0 : -1;
    if (grow_suggest_scratch(r, (size_t)n * (size_t)k)) return -1;
    if (kp_rec_recommend(r, titles, lens, n, k, min_score, r->sbuf_ids, r->sbuf_scores, counts))
        return -1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < counts[i]; j++) {
            size_t at = (size_t)i * (size_t)k + (size_t)j;
            int id = r->sbuf_ids[at];
            out[at] = (kp_rec_suggestion){kp_rec_keyphrase_id(r, id), kp_rec_keyphrase(r, id),
                                          r->sbuf_scores[at]};
        }
    return 0;
}
