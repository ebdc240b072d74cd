/* ce_train.h - training of the cross-encoder assistant on teacher judgments.
 *
 * Examples: every judged pair of a training item, target y = (relevance - 1) / 2 in 0..1, plus
 * `negatives` random keyphrases of the inventory per judged pair with y = 0 (resampled every
 * epoch; the judged pairs are mostly relevant). Loss: binary cross-entropy with soft targets on
 * the logit, the negatives weighted by neg_weight. Optimiser: AdamW on the dense weights, lazy
 * row-sparse AdamW on the embedding rows, linear learning-rate decay to 10%, global gradient-norm
 * clipping. Mini-batches are split over `threads` threads for the per-pair work (features, their
 * backward); the MLP runs batched. Deterministic: same data, options, seed and thread count ->
 * bit-identical model.
 *
 * Validation (after every epoch, on the items with role 2, never trained on):
 *   spearman / pearson of score vs relevance over their judged pairs,
 *   auc       relevant (rel >= 2.5) vs irrelevant (rel < 2) judged pairs,
 *   auc_rand  relevant judged pairs vs one random keyphrase per judged pair (fixed sample).
 */
#ifndef KP_CE_TRAIN_H
#define KP_CE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "model/ce.h"
#include "offline/datasets.h"

typedef struct {
    int epoch;   /* 1-based */
    double loss; /* mean training loss of the epoch */
    int n_train; /* examples of the epoch (judged + negatives) */
    int n_valid; /* judged validation pairs (0: no validation metrics, they are NAN) */
    double spearman, pearson, auc, auc_rand;
    double seconds; /* since the start of training */
    int best;       /* keep_best: this epoch is the best so far (its parameters were kept) */
    int best_epoch; /* in the last epoch's stats: the epoch whose parameters m holds (0: last) */
} kp_ce_epoch_stats;

typedef struct {
    int epochs, batch, negatives, threads;
    uint64_t seed;
    float lr, lr_emb, weight_decay, clip;
    float neg_weight; /* loss weight of the random negatives (judged pairs weigh 1) */
    int keep_best;    /* 1: m ends with the parameters of the epoch with the best validation
                       * Spearman (early stopping; needs validation items) */
    /* Optional callbacks (ctx is passed back): progress in examples over all epochs, and one
     * call per finished epoch. */
    void (*progress)(void *ctx, long done, long total);
    void (*on_epoch)(void *ctx, const kp_ce_epoch_stats *s);
    void *ctx;
} kp_ce_train_opts;

/* epochs 3, batch 128, negatives 1, threads 1, seed 1, lr 2e-3, lr_emb 1e-2, weight decay 0,
 * clip 5, neg_weight 1, keep_best 0. */
void kp_ce_train_opts_default(kp_ce_train_opts *o);

/* Trains m in place. role[i] for item row i of items: 0 = unused, 1 = train, 2 = validation.
 * *last (may be NULL) receives the stats of the last epoch. Returns 0, or -1 with a message in
 * err (bad options, no training pair, an index out of range, OOM, thread creation failure). */
int kp_ce_train(kp_ce *m, const kp_texts *items, const kp_texts *keys, const kp_judgments *j,
                const unsigned char *role, const kp_ce_train_opts *o, kp_ce_epoch_stats *last,
                char *err, size_t errlen);

#endif
