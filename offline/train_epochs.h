/* train_epochs.h - offline training of the bi-encoder: epochs over files (items, keyphrases,
 * click log, judgments, teacher). Builds the batches, precomputes the teacher's scores of the
 * distillation candidates once, and calls the online step of model/train_step.h, whose header
 * describes the loss and the optimiser. Not linked into the worker. */
#ifndef KP_TRAIN_EPOCHS_H
#define KP_TRAIN_EPOCHS_H

#include <stddef.h>

#include "model/train_step.h"
#include "offline/datasets.h"

typedef struct {
    const kp_texts *items, *keys;
    const unsigned char *train_items; /* [items->n] nonzero = train on it; NULL = all items */
    const kp_clicklog *clicks;        /* NULL: no CTR terms */
    const kp_judgments *sr;           /* SR labels; NULL: no SR term */
    kp_teacher_fn teacher;            /* NULL: no distillation term */
    void *teacher_ctx;
    /* Softmax negatives when distilling. An item's own distillation candidates are never its
     * negatives. 1: the other items' candidates are (random / BM25 / model keys of the batch);
     * 0: only the batch's clicked and judged keys are negatives (as in training without a
     * teacher). kprec train --pool-negatives; a zeroed struct gives 0. */
    int soft_pool_negatives;
    /* Called with every batch just before its step (inspection, tests). May be NULL. */
    void (*on_batch)(void *ctx, const kp_train_batch *b, const int *batch_items);
    void *on_batch_ctx;
    /* progress: stage ("teacher", "bm25", "retrieve", "train"), done/total units of the stage,
     * the recent loss terms (NULL outside "train"). May be NULL. */
    void (*progress)(void *ctx, const char *stage, long done, long total,
                     const kp_train_losses *recent);
    void *progress_ctx;
} kp_train_data;

typedef struct {
    int n_train_items; /* items with at least one training signal */
    long steps;
    long teacher_pairs;         /* pairs scored by the teacher */
    kp_train_losses last_epoch; /* mean loss terms of the last epoch */
} kp_train_stats;

/* Trains m in place for cfg->epochs epochs on data. Terms without data are switched off (no click
 * log: no CTR terms, ...). Errors: bad config or data (indices out of range), no training signal,
 * teacher failure, non-finite loss, OOM; m may then be partly trained. 0 or -1 with err. */
int kp_train_epochs(kp_bienc *m, const kp_train_config *cfg, const kp_train_data *data,
                    kp_train_stats *stats, char *err, size_t errlen);

#endif
