/* recommender.h -- the serving side of the model: a bi-encoder plus its embedded keyphrase
 * inventory. recommend() = featurize -> item tower forward -> one GEMM against the keyphrase
 * matrix -> top-K (de-duplicated by token set, min score), for a whole micro-batch at once.
 *
 * suggest() runs the serving pipeline over the micro-batch (kp_rec_set_pipeline; without one it is
 * recommend() as suggestion lists):
 *   retrieve   candidates = BE top-N (one GEMM, the index above) united with BM25 top-M of the
 *              title (hybrid; de-duplicated by keyphrase and by token set, BE first)
 *   re-rank    the cross-encoder scores every candidate pair of the batch (one batched call,
 *              optionally on several threads); without a CE the cosine is the ranking score
 *   calibrate  p = calib(raw score) (model/calib.h); without a calibration p = raw
 *   gate       candidates ordered by raw score (desc; ties by lower keyphrase index), those with
 *              p >= threshold kept (threshold 0: all), at most K. An item may get fewer, or none.
 * The CE, BM25 index and calibration are borrowed: one set is shared by every recommender built
 * over the same inventory (the follower rebuilds recommenders, not these).
 *
 * Not thread-safe (it keeps scratch buffers): one recommender per serving thread.
 *
 * The inventory can change in place (kp_rec_upsert, kp_rec_remove): only the new or changed
 * keyphrases are embedded, with this recommender's model; a removal moves the last keyphrase into
 * the hole (indices are positions, not stable ids). A change drops the pipeline's BM25 index (it
 * indexes the old list) until the owner sets a pipeline with one built over the new list. */
#ifndef KP_RECOMMENDER_H
#define KP_RECOMMENDER_H

#include <stddef.h>
#include <stdint.h>

#include "model/bienc.h"
#include "model/bm25.h"
#include "model/calib.h"
#include "model/ce.h"
#include "model/tsv.h"

typedef struct kp_recommender kp_recommender;

/* One suggestion for an item. The strings are borrowed from the recommender (valid until it is
 * freed). This is the one list the serve path builds per item: the cache writes it as JSON, the
 * codec as Avro. */
typedef struct {
    const char *keyphrase_id;
    const char *keyphrase;
    float score; /* what is published: p(relevant) when calibrated, else the raw score */
    float raw;   /* the ranking score: the CE's when re-ranking, else the BE cosine */
} kp_rec_suggestion;

/* The serving pipeline's settings (pointers borrowed: they must outlive the recommender). */
typedef struct {
    const kp_ce *ce;       /* re-rank with this cross-encoder; NULL = no re-rank */
    const kp_bm25 *bm25;   /* built over the recommender's keyphrases, same order; NULL = none */
    const kp_calib *calib; /* NULL = publish the raw score */
    int candidates;        /* BE top-N (0 = K) */
    int hybrid;            /* BM25 top-M added to the candidates (0 = off; needs bm25) */
    float threshold;       /* gate: publish only p >= threshold (0 = no gate) */
    int ce_threads;        /* threads scoring the CE pairs of a batch (<= 1: the caller's) */
} kp_pipeline;

/* Builds a recommender over n keyphrases (ids[i], texts[i] are copied), embedding them with m's
 * keyphrase tower. Takes ownership of m (freed with the recommender, also on error).
 * prefix_dim: Matryoshka first-pass size (0 = full size only). NULL with err on failure. */
kp_recommender *kp_rec_new(kp_bienc *m, const char *const *ids, const char *const *texts, int n,
                           int prefix_dim, char *err, size_t errlen);

/* kp_rec_new over the rows of *t, which it frees (kp_texts_free: *t zeroed, also on error) as
 * soon as the rows are copied, before the embeddings are computed: the build then holds one copy
 * of the inventory's text, not two (at 1M keyphrases ~100 MB off the worker's peak RSS). */
kp_recommender *kp_rec_new_take(kp_bienc *m, kp_texts *t, int prefix_dim, char *err, size_t errlen);

/* Adds or replaces n keyphrases (ids[i] -> texts[i], copied; NULL entries skipped): a new id is
 * appended, a known id whose text differs is replaced (re-embedded), one whose text is the same is
 * left alone. Embeds what is new in chunks with r's keyphrase tower. The ids of one call should
 * be distinct. Returns how many were added or replaced, or -1 with err (OOM: r unchanged). */
int kp_rec_upsert(kp_recommender *r, const char *const *ids, const char *const *texts, int n,
                  char *err, size_t errlen);

/* Removes the keyphrases of ids[0..n) that r holds (unknown ids are ignored). Returns how many
 * were removed, or -1 on bad arguments. Never fails for memory. */
int kp_rec_remove(kp_recommender *r, const char *const *ids, int n);

/* The index of keyphrase id, or -1 when r does not hold it. */
int kp_rec_find(const kp_recommender *r, const char *id);

/* An owner-defined sequence number: the point of the inventory's change history this recommender
 * reflects (0 after kp_rec_new). */
uint64_t kp_rec_seq(const kp_recommender *r);
void kp_rec_set_seq(kp_recommender *r, uint64_t seq);

/* Serves recommend() / suggest() from an IVF index (model/ivf.h) of nlist lists (0: about
 * sqrt(n)), nprobe lists per item (nprobe >= nlist: exact), built now from the inventory's
 * embeddings with seed. 0, or -1 on OOM / bad args (r unchanged). */
int kp_rec_set_ivf(kp_recommender *r, int nlist, int nprobe, uint64_t seed);
/* The IVF's first pass: kind "fp32" (the default), "int8" or "bf16" (a reduced-precision copy of
 * the rows, its rescore x k best per item rescored exactly; model/index.h
 * kp_index_set_first_pass). Kept for every later kp_rec_set_ivf; set before it to build the copy
 * once. 0, or -1 on bad args / OOM. */
int kp_rec_set_first_pass(kp_recommender *r, const char *kind, int rescore);
/* Bytes of the IVF's reduced-precision copy (0 without one): memory beyond the embedding rows. */
size_t kp_rec_quant_bytes(const kp_recommender *r);

/* Frees everything, including the model. Accepts NULL. */
void kp_rec_free(kp_recommender *r);

/* The number of keyphrases indexed, the model's version, the model (owned by r). */
int kp_rec_size(const kp_recommender *r);
uint64_t kp_rec_version(const kp_recommender *r);
const kp_bienc *kp_rec_model(const kp_recommender *r);

/* The index recommend() searches (owned by r; valid until r changes or is freed): its key matrix
 * is kp_index_row(ix, 0), kp_rec_size(r) rows of the model's out_dim, for benchmarks. */
const struct kp_index *kp_rec_index(const kp_recommender *r);

/* Text and id of keyphrase i (owned by r), or NULL when i is out of range. */
const char *kp_rec_keyphrase(const kp_recommender *r, int i);
const char *kp_rec_keyphrase_id(const kp_recommender *r, int i);

/* For n item titles, writes up to k results per item: ids[i*k + j] (keyphrase index), scores[...],
 * counts[i]. Returns 0, or -1 on OOM / bad arguments. */
int kp_rec_recommend(kp_recommender *r, const char *const *titles, const size_t *lens, int n, int k,
                     float min_score, int *ids, float *scores, int *counts);

/* Sets the pipeline of kp_rec_suggest (copied; NULL = none: BE top-K only). Checks that bm25
 * indexes as many documents as r has keyphrases, that hybrid > 0 has a bm25, that a calibration's
 * input matches (a "ce" calibration needs ce, a "be" one must not have one) and that the numbers
 * are in range. 0, or -1 with a message in err (r unchanged). */
int kp_rec_set_pipeline(kp_recommender *r, const kp_pipeline *p, char *err, size_t errlen);
const kp_pipeline *kp_rec_pipeline(const kp_recommender *r); /* NULL when none */

/* Calls fn(arg) when r is freed (after everything else): lets the owner of shared pipeline parts
 * (a reference-counted BM25 index, ...) know that r no longer uses them. One hook per recommender:
 * a second call replaces the first and calls the first one's fn at once (its parts are no longer
 * used once a new pipeline was set). */
void kp_rec_set_release(kp_recommender *r, void (*fn)(void *), void *arg);

/* The pipeline's scores of n explicit pairs (title titles[i], keyphrase index keys[i]): raw[i]
 * (CE score when re-ranking, else the BE cosine) and p[i] (calibrated; = raw without calibration;
 * p may be NULL). The same scorer as kp_rec_suggest's, for evaluation and calibration fitting.
 * 0, or -1 on OOM / bad arguments. */
int kp_rec_pair_scores(kp_recommender *r, const char *const *titles, const size_t *lens,
                       const int *keys, int n, float *raw, float *p);

/* Dedup key (kp_feat_tokenset_key) of keyphrase i. */
uint64_t kp_rec_dedup_key(const kp_recommender *r, int i);

/* As kp_rec_recommend, through the pipeline (see the top of this file), as suggestion lists: item
 * i's are out[i*k + 0 .. i*k + counts[i] - 1], best first. Returns 0, or -1 on OOM / bad arguments
 * (out and counts then undefined). */
int kp_rec_suggest(kp_recommender *r, const char *const *titles, const size_t *lens, int n, int k,
                   float min_score, kp_rec_suggestion *out, int *counts);

/* Plain reference of kp_rec_suggest (brute-force cosine over the whole inventory in double, BM25
 * scored document by document, the CE pair by pair, full sorts), for tests. Item embeddings come
 * from the same batched forward. Same contract; slow. */
int kp_rec_suggest_ref(kp_recommender *r, const char *const *titles, const size_t *lens, int n,
                       int k, float min_score, kp_rec_suggestion *out, int *counts);

#endif
