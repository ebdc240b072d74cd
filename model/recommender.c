#include "model/recommender.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/featurize.h"
#include "model/index.h"
#include "model/quant.h"

struct kp_recommender {
    kp_bienc *model;
    kp_index *index;
    int n, cap;          /* keyphrases, room in ids / texts / keys */
    char **ids, **texts; /* [cap]: ids[i] is one allocation "id\0text\0", texts[i] points into it */
    int *map;            /* id -> slot: open addressing over mapcap slots (MAP_EMPTY, MAP_GONE) */
    int mapcap, mapgone;
    uint64_t seq;
    int prefix_dim;
    float *qbuf; /* scratch: item embeddings, qcap x D */
    int qcap;
    int *sbuf_ids; /* scratch of kp_rec_suggest: scap results */
    float *sbuf_scores;
    size_t scap;
    uint64_t *keys; /* [n] dedup keys */
    int has_pipe;
    kp_pipeline pipe;
    /* pipeline scratch, grown: pcap pairs (items x candidates), bcap BM25 results */
    int *c_id, *c_cnt, *b_id, *b_cnt;
    float *c_raw, *c_p, *b_sc;
    const char **c_item, **c_key;
    size_t pcap, bcap;
    int ccap;     /* items of c_cnt / b_cnt */
    int *ord;     /* [C] per-item order */
    uint64_t *hs; /* dedup set, hcap slots */
    int hcap;
    void (*release)(void *);
    void *release_arg;
};

/* ---- the id map: keyphrase_id -> slot (linear probing; a removed id leaves MAP_GONE) ----------
 */

#define MAP_EMPTY (-1)
#define MAP_GONE  (-2)

static size_t map_home(const char *id, int mapcap)
{
    return (size_t)(kp_fnv1a(id, strlen(id)) * 0x9e3779b97f4a7c15ull >> 17) & (size_t)(mapcap - 1);
}

/* The map slot holding id, or -1. */
static long map_find(const kp_recommender *r, const char *id)
{
    if (!r->mapcap) return -1;
    for (size_t h = map_home(id, r->mapcap), m = (size_t)r->mapcap - 1;; h = (h + 1) & m) {
        int v = r->map[h];
        if (v == MAP_EMPTY) return -1;
        if (v >= 0 && strcmp(r->ids[v], id) == 0) return (long)h;
    }
}

/* Points id (not in the map) at slot i. Needs a free slot (map_reserve). */
static void map_put(kp_recommender *r, const char *id, int i)
{
    size_t h = map_home(id, r->mapcap), m = (size_t)r->mapcap - 1;
    while (r->map[h] >= 0)
        h = (h + 1) & m;
    if (r->map[h] == MAP_GONE) r->mapgone--;
    r->map[h] = i;
}

/* Makes room for n ids in the map (rehashing without the MAP_GONE marks). 0 / -1 (OOM). */
static int map_reserve(kp_recommender *r, int n)
{
    if ((int64_t)(n + r->mapgone) * 2 <= r->mapcap) return 0;
    int nc = 16;
    while (nc < 2 * n)
        nc *= 2;
    int *nm = malloc(sizeof *nm * (size_t)nc);
    if (!nm) return -1;
    for (int j = 0; j < nc; j++)
        nm[j] = MAP_EMPTY;
    free(r->map);
    r->map = nm, r->mapcap = nc, r->mapgone = 0;
    for (int i = 0; i < r->n; i++)
        if (map_find(r, r->ids[i]) < 0) map_put(r, r->ids[i], i); /* a duplicate id: the first */
    return 0;
}

/* One entry "id\0text\0". NULL on OOM. */
static char *entry_new(const char *id, const char *text)
{
    size_t a = strlen(id), b = strlen(text);
    char *e = malloc(a + b + 2);
    if (e) memcpy(e, id, a + 1), memcpy(e + a + 1, text, b + 1);
    return e;
}

/* Grows ids / texts / keys to hold n entries. 0 / -1 (OOM; what was grown stays valid). */
static int grow_entries(kp_recommender *r, int n)
{
    if (n <= r->cap) return 0;
    int nc = r->cap > 16 ? r->cap : 16;
    while (nc < n)
        nc *= 2;
    char **a = realloc(r->ids, sizeof *a * (size_t)nc);
    if (!a) return -1;
    r->ids = a;
    char **b = realloc(r->texts, sizeof *b * (size_t)nc);
    if (!b) return -1;
    r->texts = b;
    uint64_t *k = realloc(r->keys, sizeof *k * (size_t)nc);
    if (!k) return -1;
    r->keys = k;
    r->cap = nc;
    return 0;
}

/* Embeds n texts with the keyphrase tower into out [n x D], in chunks so the tower's scratch memory
 * stays small. 0 / -1. */
static int embed_keys(kp_bienc *m, const char *const *texts, const size_t *lens, int n, float *out)
{
    int D = kp_bienc_cfg(m)->out_dim;
    for (int i = 0; i < n; i += 1024) {
        int c = n - i < 1024 ? n - i : 1024;
        if (kp_bienc_embed(m, KP_TOWER_KEY, texts + i, lens + i, c, out + (size_t)i * (size_t)D))
            return -1;
    }
    return 0;
}

/* kp_rec_new; release (NULL: none), which ids and texts may point into, is freed once the rows
 * are copied, or on error. */
static kp_recommender *rec_build(kp_bienc *m, const char *const *ids, const char *const *texts,
                                 int n, int prefix_dim, kp_texts *release, char *err, size_t errlen)
{
    int D = kp_bienc_cfg(m)->out_dim;
    float *emb = NULL;
    size_t *lens = NULL;
    kp_recommender *r = calloc(1, sizeof *r);
    if (!r || n < 0) goto oom;
    r->model = m;
    r->prefix_dim = prefix_dim;
    lens = malloc(sizeof(size_t) * (size_t)(n + 1));
    emb = malloc(sizeof(float) * (size_t)(n + 1) * (size_t)D);
    if (!lens || !emb || grow_entries(r, n > 0 ? n : 1)) goto oom;
    for (; r->n < n; r->n++) {
        int i = r->n;
        if (!(r->ids[i] = entry_new(ids[i], texts[i]))) goto oom;
        r->texts[i] = r->ids[i] + strlen(ids[i]) + 1;
        lens[i] = strlen(texts[i]);
        r->keys[i] = kp_feat_tokenset_key(texts[i], lens[i]);
    }
    kp_texts_free(release); /* ids and texts are not read past here */
    release = NULL;
    if (map_reserve(r, n) || embed_keys(m, (const char *const *)r->texts, lens, n, emb)) goto oom;
    r->index = kp_index_adopt(emb, n, D, r->keys); /* emb is the index's now, also on error */
    emb = NULL;
    if (!r->index) goto oom;
    free(lens);
    return r;
oom:
    snprintf(err, errlen, "recommender: out of memory building the index of %d keyphrases", n);
    kp_texts_free(release);
    KP_FREE_ALL(emb, lens);
    if (r) {
        kp_rec_free(r);
    } else {
        kp_bienc_free(m);
    }
    return NULL;
}

kp_recommender *kp_rec_new(kp_bienc *m, const char *const *ids, const char *const *texts, int n,
                           int prefix_dim, char *err, size_t errlen)
{
    return rec_build(m, ids, texts, n, prefix_dim, NULL, err, errlen);
}

kp_recommender *kp_rec_new_take(kp_bienc *m, kp_texts *t, int prefix_dim, char *err, size_t errlen)
{
    return rec_build(m, (const char *const *)t->id, (const char *const *)t->text, t->n, prefix_dim,
                     t, err, errlen);
}

int kp_rec_set_ivf(kp_recommender *r, int nlist, int nprobe, uint64_t seed)
{
    return r ? kp_index_set_ivf(r->index, nlist, nprobe, seed) : -1;
}

int kp_rec_set_first_pass(kp_recommender *r, const char *kind, int rescore)
{
    int q = kp_quant_parse(kind);
    return r && q >= 0 ? kp_index_set_first_pass(r->index, q, rescore) : -1;
}

void kp_rec_free(kp_recommender *r)
{
    if (!r) return;
    kp_bienc_free(r->model);
    kp_index_free(r->index);
    for (int i = 0; i < r->n; i++)
        free(r->ids[i]);
    KP_FREE_ALL(r->ids, r->texts, r->map, r->qbuf, r->sbuf_ids, r->sbuf_scores, r->keys, r->c_id,
                r->c_cnt, r->b_id, r->b_cnt, r->c_raw, r->c_p, r->b_sc, (void *)r->c_item,
                (void *)r->c_key, r->ord, r->hs);
    void (*fn)(void *) = r->release;
    void *arg = r->release_arg;
    free(r);
    if (fn) fn(arg);
}

/* ---- the live inventory: upsert, remove --------------------------------------------------------
 */

/* The BM25 index of the pipeline indexes the old keyphrase list: drop it (and its hybrid
 * candidates) until the owner attaches one over the new list. */
static void inventory_changed(kp_recommender *r)
{
    if (r->has_pipe && r->pipe.bm25) r->pipe.bm25 = NULL, r->pipe.hybrid = 0;
}

/* Removes slot i: the last entry moves into it (index, tables and map in step). */
static void remove_slot(kp_recommender *r, int i, long h)
{
    r->map[h] = MAP_GONE;
    r->mapgone++;
    free(r->ids[i]);
    int last = kp_index_remove(r->index, i);
    r->n--;
    if (last != i) {
        r->ids[i] = r->ids[last], r->texts[i] = r->texts[last], r->keys[i] = r->keys[last];
        long hm = map_find(r, r->ids[i]);
        if (hm >= 0 && r->map[hm] == last) r->map[hm] = i;
    }
}

int kp_rec_find(const kp_recommender *r, const char *id)
{
    long h = id ? map_find(r, id) : -1;
    return h >= 0 ? r->map[h] : -1;
}

int kp_rec_remove(kp_recommender *r, const char *const *ids, int n)
{
    if (!r || n < 0 || (n > 0 && !ids)) return -1;
    int removed = 0;
    for (int j = 0; j < n; j++) {
        long h = ids[j] ? map_find(r, ids[j]) : -1;
        if (h < 0) continue;
        remove_slot(r, r->map[h], h);
        removed++;
    }
    if (removed) inventory_changed(r);
    if (r->mapgone > r->mapcap / 4) (void)map_reserve(r, r->n); /* OOM: keep the marks */
    return removed;
}

int kp_rec_upsert(kp_recommender *r, const char *const *ids, const char *const *texts, int n,
                  char *err, size_t errlen)
{
    if (!r || n < 0 || (n > 0 && (!ids || !texts))) {
        kp_errf(err, errlen, "recommender: bad arguments");
        return -1;
    }
    int D = kp_bienc_cfg(r->model)->out_dim, m = 0, rc = -1;
    int *pick = malloc(sizeof *pick * (size_t)(n + 1));
    size_t *lens = malloc(sizeof *lens * (size_t)(n + 1));
    char **ent = calloc((size_t)n + 1, sizeof *ent);
    uint64_t *keys = malloc(sizeof *keys * (size_t)(n + 1));
    float *emb = NULL;
    if (!pick || !lens || !ent || !keys) goto oom;
    /* what is new or changed (an unchanged keyphrase is not re-embedded) */
    for (int j = 0; j < n; j++) {
        if (!ids[j] || !texts[j]) continue;
        int at = kp_rec_find(r, ids[j]);
        if (at >= 0 && strcmp(r->texts[at], texts[j]) == 0) continue;
        if (!(ent[m] = entry_new(ids[j], texts[j]))) goto oom;
        lens[m] = strlen(texts[j]);
        keys[m] = kp_feat_tokenset_key(texts[j], lens[m]);
        pick[m++] = j;
    }
    if (!m) {
        rc = 0;
        goto out;
    }
    /* everything that can fail happens before r changes: embedding and room */
    if (!(emb = malloc(sizeof *emb * (size_t)m * (size_t)D))) goto oom;
    const char **tx = malloc(sizeof *tx * (size_t)m);
    if (!tx) goto oom;
    for (int j = 0; j < m; j++)
        tx[j] = ent[j] + strlen(ent[j]) + 1;
    int er = embed_keys(r->model, tx, lens, m, emb);
    free((void *)tx);
    if (er || grow_entries(r, r->n + m) || kp_index_reserve(r->index, r->n + m) ||
        map_reserve(r, r->n + 2 * m))
        goto oom;
    for (int j = 0; j < m; j++) {
        long h = map_find(r, ids[pick[j]]);
        if (h >= 0) remove_slot(r, r->map[h], h);
        int i = r->n;
        /* cannot fail: the room was reserved above */
        if (kp_index_add(r->index, emb + (size_t)j * (size_t)D, 1, keys + j)) goto oom;
        r->ids[i] = ent[j], ent[j] = NULL;
        r->texts[i] = r->ids[i] + strlen(r->ids[i]) + 1;
        r->keys[i] = keys[j];
        map_put(r, r->ids[i], i);
        r->n++;
    }
    inventory_changed(r);
    rc = m;
    goto out;
oom:
    kp_errf(err, errlen, "recommender: out of memory adding %d keyphrases", n);
out:
    if (ent)
        for (int j = 0; j < n; j++)
            free(ent[j]);
    KP_FREE_ALL(pick, lens, ent, keys, emb);
    return rc;
}

uint64_t kp_rec_seq(const kp_recommender *r)
{
    return r ? r->seq : 0;
}

void kp_rec_set_seq(kp_recommender *r, uint64_t seq)
{
    if (r) r->seq = seq;
}

void kp_rec_set_release(kp_recommender *r, void (*fn)(void *), void *arg)
{
    void (*old)(void *) = r->release;
    void *old_arg = r->release_arg;
    r->release = fn;
    r->release_arg = arg;
    if (old) old(old_arg); /* r no longer uses what the previous hook guarded */
}

int kp_rec_size(const kp_recommender *r)
{
    return r->n;
}

size_t kp_rec_quant_bytes(const kp_recommender *r)
{
    return r ? kp_quant_bytes(kp_index_quant(r->index)) : 0;
}

uint64_t kp_rec_version(const kp_recommender *r)
{
    return kp_bienc_version(r->model);
}

const kp_bienc *kp_rec_model(const kp_recommender *r)
{
    return r->model;
}

const struct kp_index *kp_rec_index(const kp_recommender *r)
{
    return r ? r->index : NULL;
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

int kp_rec_set_pipeline(kp_recommender *r, const kp_pipeline *p, char *err, size_t errlen)
{
    if (!p) {
        r->has_pipe = 0;
        return 0;
    }
    if (p->candidates < 0 || p->candidates > 100000 || p->hybrid < 0 || p->hybrid > 100000) {
        kp_errf(err, errlen, "pipeline: candidates and hybrid must be in 0..100000");
        return -1;
    }
    if (!(p->threshold >= 0 && p->threshold <= 1)) {
        kp_errf(err, errlen, "pipeline: threshold must be in [0, 1]");
        return -1;
    }
    if (p->hybrid > 0 && !p->bm25) {
        kp_errf(err, errlen, "pipeline: hybrid %d needs a BM25 index", p->hybrid);
        return -1;
    }
    if (p->bm25 && kp_bm25_n_docs(p->bm25) != r->n) {
        kp_errf(err, errlen, "pipeline: the BM25 index has %d documents, the inventory %d",
                kp_bm25_n_docs(p->bm25), r->n);
        return -1;
    }
    if (p->calib) {
        kp_calib_input in = kp_calib_get_input(p->calib);
        if (in == KP_CALIB_INPUT_CE && !p->ce) {
            kp_errf(err, errlen,
                    "pipeline: the calibration is of cross-encoder scores, but no "
                    "cross-encoder re-ranks");
            return -1;
        }
        if (in == KP_CALIB_INPUT_BE && p->ce) {
            kp_errf(err, errlen,
                    "pipeline: the calibration is of bi-encoder cosines, but a "
                    "cross-encoder re-ranks (fit one on its scores)");
            return -1;
        }
    }
    r->pipe = *p;
    r->has_pipe = 1;
    return 0;
}

const kp_pipeline *kp_rec_pipeline(const kp_recommender *r)
{
    return r->has_pipe ? &r->pipe : NULL;
}

uint64_t kp_rec_dedup_key(const kp_recommender *r, int i)
{
    return (i >= 0 && i < r->n) ? r->keys[i] : 0;
}

/* Grows the pipeline scratch for n items of C candidates and M BM25 results. 0 / -1. */
static int grow_pipe_scratch(kp_recommender *r, int n, int C, int M)
{
    size_t np = (size_t)n * (size_t)C, nb = (size_t)n * (size_t)(M > 0 ? M : 1);
#define GROWP(f, cnt)                                                                              \
    do {                                                                                           \
        void *q_ = realloc((void *)(f), sizeof *(f) * (cnt));                                      \
        if (!q_) return -1;                                                                        \
        (f) = q_;                                                                                  \
    } while (0)
    if (np > r->pcap) {
        GROWP(r->c_id, np);
        GROWP(r->c_raw, np);
        GROWP(r->c_p, np);
        GROWP(r->c_item, np);
        GROWP(r->c_key, np);
        r->pcap = np;
    }
    if (nb > r->bcap) {
        GROWP(r->b_id, nb);
        GROWP(r->b_sc, nb);
        r->bcap = nb;
    }
    if (n > r->ccap) {
        GROWP(r->c_cnt, (size_t)n);
        GROWP(r->b_cnt, (size_t)n);
        r->ccap = n;
    }
    int hc = 16;
    while (hc < 2 * C)
        hc *= 2;
    if (hc > r->hcap) {
        GROWP(r->hs, (size_t)hc);
        GROWP(r->ord, (size_t)hc);
        r->hcap = hc;
    }
#undef GROWP
    return 0;
}

/* CE scoring of pairs [lo, hi) of the batch (kp_parallel_for range). */
typedef struct {
    const kp_ce *ce;
    const char *const *items, *const *keys;
    float *out;
} ce_job;

static int ce_range(void *ctx, int t, int lo, int hi)
{
    (void)t;
    ce_job *j = ctx;
    return kp_ce_score(j->ce, j->items + lo, j->keys + lo, hi - lo, j->out + lo);
}

static int score_ce(const kp_pipeline *p, const char *const *items, const char *const *keys, int n,
                    float *out)
{
    if (n <= 0) return 0;
    ce_job j = {p->ce, items, keys, out};
    int T = p->ce_threads > 1 ? p->ce_threads : 1;
    if (T > 1 && n >= 256) return kp_parallel_for(T, n, ce_range, &j);
    return kp_ce_score(p->ce, items, keys, n, out);
}

static float dotf(const float *a, const float *b, int D)
{
    float s = 0;
    for (int d = 0; d < D; d++)
        s += a[d] * b[d];
    return s;
}

/* Inserts key into the open-addressing set hs[hcap] (0 is stored as ~0 + ... : keys are
 * remapped so that 0 means empty). Returns 1 if it was new. */
static int set_add(uint64_t *hs, int hcap, uint64_t key)
{
    uint64_t k = key ? key : 0x9e3779b97f4a7c15ull;
    size_t m = (size_t)hcap - 1, i = (size_t)(k * 0x9e3779b97f4a7c15ull >> 17) & m;
    while (hs[i]) {
        if (hs[i] == k) return 0;
        i = (i + 1) & m;
    }
    hs[i] = k;
    return 1;
}

/* Order of candidates: raw score desc, ties by lower keyphrase index. */
static int cand_before(const float *raw, const int *id, int a, int b)
{
    if (raw[a] != raw[b]) return raw[a] > raw[b];
    return id[a] < id[b];
}

/* Insertion sort of ord[0..n) (n is small: N + M). */
static void sort_cands(int *ord, int n, const float *raw, const int *id)
{
    for (int i = 1; i < n; i++) {
        int v = ord[i], j = i - 1;
        while (j >= 0 && cand_before(raw, id, v, ord[j])) {
            ord[j + 1] = ord[j];
            j--;
        }
        ord[j + 1] = v;
    }
}

/* The gate over item i's candidates (row of C): fills out[0..k) and returns the count. */
static int gate_item(kp_recommender *r, int C, int i, int k, kp_rec_suggestion *out)
{
    const kp_pipeline *p = &r->pipe;
    int nc = r->c_cnt[i];
    const float *raw = r->c_raw + (size_t)i * (size_t)C, *pp = r->c_p + (size_t)i * (size_t)C;
    const int *id = r->c_id + (size_t)i * (size_t)C;
    for (int j = 0; j < nc; j++)
        r->ord[j] = j;
    sort_cands(r->ord, nc, raw, id);
    int cnt = 0;
    for (int j = 0; j < nc && cnt < k; j++) {
        int c = r->ord[j];
        if (!isfinite(pp[c]) || !isfinite(raw[c])) continue;
        if (p->threshold > 0 && !(pp[c] >= p->threshold)) continue;
        out[cnt++] = (kp_rec_suggestion){kp_rec_keyphrase_id(r, id[c]), kp_rec_keyphrase(r, id[c]),
                                         pp[c], raw[c]};
    }
    return cnt;
}

static int suggest_pipeline(kp_recommender *r, const char *const *titles, const size_t *lens, int n,
                            int k, float min_score, kp_rec_suggestion *out, int *counts)
{
    const kp_pipeline *p = &r->pipe;
    int D = kp_bienc_cfg(r->model)->out_dim;
    int N = p->candidates > 0 ? p->candidates : k;
    int M = p->bm25 ? p->hybrid : 0;
    int C = N + M;
    if (grow_pipe_scratch(r, n, C, M)) return -1;
    /* 1. BE top-N: one forward, one GEMM per tile; results land at stride C */
    if (grow_suggest_scratch(r, (size_t)n * (size_t)N)) return -1;
    if (kp_rec_recommend(r, titles, lens, n, N, min_score, r->sbuf_ids, r->sbuf_scores, r->c_cnt))
        return -1;
    for (int i = 0; i < n; i++) {
        memcpy(r->c_id + (size_t)i * C, r->sbuf_ids + (size_t)i * N, sizeof(int) * (size_t)N);
        memcpy(r->c_raw + (size_t)i * C, r->sbuf_scores + (size_t)i * N, sizeof(float) * (size_t)N);
    }
    /* 2. BM25 top-M, united (new keyphrases only, by token set), cosine as their BE score */
    if (M > 0) {
        if (kp_bm25_topk_batch(p->bm25, titles, n, M, r->b_id, r->b_sc, r->b_cnt)) return -1;
        for (int i = 0; i < n; i++) {
            int *cid = r->c_id + (size_t)i * C;
            float *craw = r->c_raw + (size_t)i * C;
            memset(r->hs, 0, sizeof *r->hs * (size_t)r->hcap);
            for (int j = 0; j < r->c_cnt[i]; j++)
                set_add(r->hs, r->hcap, r->keys[cid[j]]);
            const float *q = r->qbuf + (size_t)i * (size_t)D;
            for (int j = 0; j < r->b_cnt[i]; j++) {
                int d = r->b_id[(size_t)i * M + j];
                if (!set_add(r->hs, r->hcap, r->keys[d])) continue;
                float cs = dotf(q, kp_index_row(r->index, d), D);
                if (!(cs >= min_score)) continue;
                cid[r->c_cnt[i]] = d;
                craw[r->c_cnt[i]++] = cs;
            }
        }
    }
    /* 3. re-rank: every pair of the batch in one (threaded) CE call */
    if (p->ce) {
        int np = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < r->c_cnt[i]; j++) {
                r->c_item[np] = titles[i];
                r->c_key[np++] = r->texts[r->c_id[(size_t)i * C + j]];
            }
        if (score_ce(p, r->c_item, r->c_key, np, r->c_p)) return -1;
        np = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < r->c_cnt[i]; j++)
                r->c_raw[(size_t)i * C + j] = r->c_p[np++];
    }
    /* 4. calibrate, 5. order + gate */
    for (int i = 0; i < n; i++) {
        float *raw = r->c_raw + (size_t)i * C, *pp = r->c_p + (size_t)i * C;
        if (p->calib)
            kp_calib_apply_n(p->calib, raw, r->c_cnt[i], pp);
        else
            memcpy(pp, raw, sizeof(float) * (size_t)r->c_cnt[i]);
        counts[i] = gate_item(r, C, i, k, out + (size_t)i * (size_t)k);
    }
    return 0;
}

int kp_rec_suggest(kp_recommender *r, const char *const *titles, const size_t *lens, int n, int k,
                   float min_score, kp_rec_suggestion *out, int *counts)
{
    if (n <= 0 || k <= 0) return n == 0 ? 0 : -1;
    if (r->has_pipe) return suggest_pipeline(r, titles, lens, n, k, min_score, out, counts);
    if (grow_suggest_scratch(r, (size_t)n * (size_t)k)) return -1;
    if (kp_rec_recommend(r, titles, lens, n, k, min_score, r->sbuf_ids, r->sbuf_scores, counts))
        return -1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < counts[i]; j++) {
            size_t at = (size_t)i * (size_t)k + (size_t)j;
            int id = r->sbuf_ids[at];
            out[at] = (kp_rec_suggestion){kp_rec_keyphrase_id(r, id), kp_rec_keyphrase(r, id),
                                          r->sbuf_scores[at], r->sbuf_scores[at]};
        }
    return 0;
}

int kp_rec_pair_scores(kp_recommender *r, const char *const *titles, const size_t *lens,
                       const int *keys, int n, float *raw, float *p)
{
    if (n < 0 || (n > 0 && (!titles || !lens || !keys || !raw))) return -1;
    if (n == 0) return 0;
    for (int i = 0; i < n; i++)
        if (keys[i] < 0 || keys[i] >= r->n) return -1;
    const kp_pipeline *pl = r->has_pipe ? &r->pipe : NULL;
    if (pl && pl->ce) {
        const char **kt = malloc(sizeof *kt * (size_t)n);
        if (!kt) return -1;
        for (int i = 0; i < n; i++)
            kt[i] = r->texts[keys[i]];
        int rc = score_ce(pl, titles, kt, n, raw);
        free((void *)kt);
        if (rc) return -1;
    } else { /* item embeddings in chunks, so the scratch stays small */
        int D = kp_bienc_cfg(r->model)->out_dim, B = n < 1024 ? n : 1024;
        float *q = malloc(sizeof(float) * (size_t)B * (size_t)D);
        if (!q) return -1;
        for (int i0 = 0; i0 < n; i0 += B) {
            int c = n - i0 < B ? n - i0 : B;
            if (kp_bienc_embed(r->model, KP_TOWER_ITEM, titles + i0, lens + i0, c, q)) {
                free(q);
                return -1;
            }
            for (int i = 0; i < c; i++)
                raw[i0 + i] = dotf(q + (size_t)i * D, kp_index_row(r->index, keys[i0 + i]), D);
        }
        free(q);
    }
    if (p) {
        if (pl && pl->calib)
            kp_calib_apply_n(pl->calib, raw, n, p);
        else
            memcpy(p, raw, sizeof(float) * (size_t)n);
    }
    return 0;
}
