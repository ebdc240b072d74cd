/* eval.h - offline evaluation of a keyphrase scorer against graded judgments.
 *
 * For the items that have at least one judgment ("judged items"):
 *   - recall@k: each judged item's relevant keyphrases (rel >= cfg.relevant) among the top-k
 *     retrieved from the WHOLE keyphrase inventory, averaged over the items with at least one
 *     relevant keyphrase (kp_recall_at_k);
 *   - spearman, pearson: correlation of the scorer's pair scores with the graded relevance over all
 *     judged pairs;
 *   - auc: ROC AUC of the pair scores, relevant pairs (rel >= cfg.relevant) against irrelevant ones
 *     (rel < cfg.irrelevant); pairs in between are left out.
 * Scorers: precomputed embeddings (exact top-K by model/index.h, pair score = dot product), a
 * bi-encoder (embeds the inventory with the keyphrase tower and the judged items with the item
 * tower), BM25 (model/bm25.h) and precomputed pair scores alone (for scorers that cannot scan the
 * inventory, e.g. the cross-encoder: recall is then NAN). cfg.prefix > 0 evaluates the Matryoshka
 * prefix: the first prefix dims of every embedding, re-normalised, for retrieval and pair scores.
 *
 * Metrics that are undefined (no relevant item, a single class, fewer than 2 pairs, ...) are NAN.
 * Nothing here allocates per pair or per item beyond O(n) scratch; inputs are never modified.
 */
#ifndef KP_EVAL_H
#define KP_EVAL_H

#include <stddef.h>

#include "model/bienc.h"
#include "model/bm25.h"
#include "offline/datasets.h"

#define KP_EVAL_MAX_K 8

typedef struct {
    int n_k;              /* number of cutoffs, 0..KP_EVAL_MAX_K */
    int k[KP_EVAL_MAX_K]; /* recall cutoffs, each >= 1 */
    float relevant;       /* rel >= relevant: relevant (recall ground truth, AUC positive) */
    float irrelevant;     /* rel < irrelevant: AUC negative */
    int prefix;           /* 0 = full embedding; else Matryoshka prefix size 1..dim */
    int threads;          /* worker threads for embedding / BM25 retrieval, >= 1 */
    /* Optional slice of the keyphrase inventory (e.g. the keyphrases the old engine never showed:
     * kp_eval_unseen_keys). When not NULL, [n_keys] with nonzero = in the slice, and the result's
     * `slice` holds the metrics restricted to the judged pairs whose keyphrase is in the slice:
     * recall@k of each item's relevant slice keyphrases among its top-k retrieved from the WHOLE
     * inventory (averaged over the items with >= 1 relevant slice keyphrase), and Spearman,
     * Pearson, AUC over the slice's judged pairs. */
    const unsigned char *slice_keys;
    /* Optional progress report: called with a stage name ("embed keyphrases", "embed items",
     * "retrieve", "score pairs") and done/total units of that stage. May be NULL. */
    void (*progress)(void *ctx, const char *stage, long done, long total);
    void *progress_ctx;
    /* Optional: when not NULL, [j->n] receiving the score of every judged pair (kprec eval
     * --report's score distributions). */
    float *pair_scores;
} kp_eval_config;

typedef struct {
    int n_k;
    int k[KP_EVAL_MAX_K];
    double recall[KP_EVAL_MAX_K]; /* recall@k[i]; NAN when not computed or undefined */
    int n_items;                  /* judged items (distinct items with >= 1 judgment) */
    int n_recall_items; /* judged items with >= 1 relevant keyphrase (recall denominator) */
    int n_pairs;        /* judged pairs */
    int n_pos, n_neg;   /* AUC positives (rel >= relevant) and negatives (rel < irrelevant) */
    double spearman, pearson, auc;
    int has_slice; /* cfg.slice_keys was given: slice below is filled */
    struct {
        double recall[KP_EVAL_MAX_K];                       /* NAN when not computed or undefined */
        int n_items, n_recall_items, n_pairs, n_pos, n_neg; /* as above, within the slice */
        double spearman, pearson, auc;
    } slice;
} kp_eval_result;

/* Marks the keyphrases that never appear in click log `log` (no impression, no click, for any
 * item) in out[n_keys] (1 = never shown, 0 = shown): the "never-shown" slice of kp_eval_config.
 * Errors: an event whose keyphrase is outside [0, n_keys). 0, or -1 with err. */
int kp_eval_unseen_keys(const kp_clicklog *log, int n_keys, unsigned char *out, char *err,
                        size_t errlen);

/* k = {10, 50, 100}, relevant 2.5, irrelevant 2, prefix 0, threads 1, no progress. */
void kp_eval_config_default(kp_eval_config *c);

/* 0 if c is usable, else -1 with the reason in err (may be NULL). */
int kp_eval_config_check(const kp_eval_config *c, char *err, size_t errlen);

/* Evaluates precomputed embeddings: item_emb [n_items x dim] (one row per items-table row; only
 * rows of judged items are read), key_emb [n_keys x dim], both L2-normalised (with cfg.prefix > 0
 * the prefixes are re-normalised here). j's indices must lie in [0, n_items) x [0, n_keys).
 * 0, or -1 with a message in err (bad config / arguments, prefix > dim, out of memory). */
int kp_eval_embeddings(const float *item_emb, int n_items, const float *key_emb, int n_keys,
                       int dim, const kp_judgments *j, const kp_eval_config *cfg,
                       kp_eval_result *out, char *err, size_t errlen);

/* Evaluates bi-encoder m: embeds all keyphrases (key tower) and the judged items (item tower),
 * using cfg.threads threads (kp_bienc_embed is read-only on m). Errors as above. */
int kp_eval_bienc(const kp_bienc *m, const kp_texts *items, const kp_texts *keys,
                  const kp_judgments *j, const kp_eval_config *cfg, kp_eval_result *out, char *err,
                  size_t errlen);

/* Matryoshka sweep of bi-encoder m: embeds once, then evaluates as kp_eval_bienc at each prefix
 * size prefixes[i] (0 = the full embedding; cfg.prefix is ignored) into out[i], i < n_prefixes.
 * cfg.pair_scores receives the scores at prefixes[0]. Errors as above (a prefix > dim too). */
int kp_eval_bienc_prefixes(const kp_bienc *m, const kp_texts *items, const kp_texts *keys,
                           const kp_judgments *j, const kp_eval_config *cfg, const int *prefixes,
                           int n_prefixes, kp_eval_result *out, char *err, size_t errlen);

/* Evaluates BM25 index bm, built over keys->text in row order (so document i = keyphrase row i):
 * queries are the judged items' titles; retrieval pads with -1 after the last document with a
 * positive score; pair scores are kp_bm25_score. cfg.prefix must be 0. Errors as above. */
int kp_eval_bm25(const kp_bm25 *bm, const kp_texts *items, const kp_texts *keys,
                 const kp_judgments *j, const kp_eval_config *cfg, kp_eval_result *out, char *err,
                 size_t errlen);

/* Scores n (item title, keyphrase) pairs into out[n]; returns 0 or -1. Must be safe to call from
 * several threads at once (e.g. a wrapper around kp_ce_score). */
typedef int (*kp_eval_pair_fn)(void *ctx, const char *const *items, const char *const *keys, int n,
                               float *out);

/* Judged-pair metrics of a pair scorer too slow to scan the inventory (the cross-encoder): scores
 * every judged pair with fn in batches on cfg.threads threads, then as kp_eval_pairs. Errors: bad
 * arguments, fn failing, out of memory. */
int kp_eval_pair_scorer(kp_eval_pair_fn fn, void *ctx, const kp_texts *items, const kp_texts *keys,
                        const kp_judgments *j, const kp_eval_config *cfg, kp_eval_result *out,
                        char *err, size_t errlen);

/* Judged-pair metrics only, from scores[j->n] (score of judged pair p). recall[] is NAN,
 * n_recall_items 0. Errors: bad arguments, out of memory. */
int kp_eval_pairs(const float *scores, int n_items, const kp_judgments *j,
                  const kp_eval_config *cfg, kp_eval_result *out, char *err, size_t errlen);

#endif
