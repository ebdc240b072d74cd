/* train_step.h - multi-task training of the bi-encoder (CTR + SR + distillation, Matryoshka).
 *
 * Two levels:
 *   - kp_trainer: one optimisation step on one explicit batch (kp_train_batch: the batch's items
 *     and keyphrases as texts, and the pairs of each loss term by index into them). This is what an
 *     online trainer streams events through; after a step, kp_trainer_changed_rows() lists the
 *     embedding rows the step changed (for model deltas).
 *   - kp_train_epochs (offline/train_epochs.h): offline epochs over files (items, keyphrases, click
 * log, judgments, teacher): builds the batches, precomputes the teacher's scores of the
 * distillation candidates once, and calls the step.
 *
 * Loss of a step (every term with weight 0 is off), summed over the Matryoshka sizes P (the
 * model's prefix sizes, plus out_dim if it is not one of them) with weights w_prefix[i]:
 *   w_softmax * in-batch softmax over clicked pairs (negatives: the batch's other keyphrases,
 *               minus keyphrases known to be relevant to the row's item)
 * + w_bce     * BCE of sigmoid(cos / bce_tau + bias [+ position offset]) on click rates
 * + w_sr      * MSE of (sr_scale * cos + sr_shift) on SR labels in 0..1
 * + w_distill * (1 - pearson(cos, teacher))  or  MSE of (mse_scale * cos + mse_shift) on teacher
 *               over all candidate pairs of the batch (known, random, hard negatives)
 * + w_distill_known * the same distillation loss over the batch's known (shown/judged) pairs.
 * Optimiser: AdamW (dense) + lazy AdamW (embedding rows), global-norm gradient clipping, learning
 * rate warmup then constant / linear / cosine decay to min_lr_frac * lr.
 *
 * Determinism: seeded by cfg.seed; with one BLAS thread the same inputs give bit-identical
 * parameters, at split width 1 or 2 (kp_par_threads, model/blas.h: at 2 a step runs its rows,
 * independent products, gradient slots and Adam rows on two threads, each element computed as
 * one thread computes it; docs/DESIGN.md).
 */
#ifndef KP_TRAIN_STEP_H
#define KP_TRAIN_STEP_H

#include <stddef.h>
#include <stdint.h>

#include "model/bienc.h"
#include "model/ckpt.h"
#include "model/nn.h"

/* Teacher (e.g. the cross-encoder): scores n (item text, keyphrase text) pairs into out[n], in
 * 0..1. Returns 0, or -1 on failure (training then stops with an error). */
typedef int (*kp_teacher_fn)(void *ctx, const char *const *items, const char *const *keys, int n,
                             float *out);

typedef enum { KP_DISTILL_PEARSON = 0, KP_DISTILL_MSE = 1 } kp_distill_kind;
typedef enum { KP_LR_CONSTANT = 0, KP_LR_LINEAR = 1, KP_LR_COSINE = 2 } kp_lr_schedule;

#define KP_TRAIN_MAX_POS 16 /* position offsets of the BCE: positions >= 16 share one */

typedef struct {
    /* loss terms */
    float w_softmax, w_bce, w_sr, w_distill;
    float w_distill_known; /* the distillation loss once more over the batch's known pairs only
                              (shown or judged: where the fine ranking of relevance is learnt) */
    kp_distill_kind distill;
    float tau;                  /* in-batch softmax temperature, > 0 */
    float bce_tau;              /* BCE logit = cos / bce_tau + bias (+ offset), > 0 */
    int bce_positions;          /* 1: learn a logit offset per shown position */
    float sr_scale, sr_shift;   /* SR prediction = sr_scale * cos + sr_shift, label (rel-1)/2 */
    float mse_scale, mse_shift; /* MSE distillation prediction, label = teacher score */
    float w_prefix[KP_BIENC_MAX_PREFIX + 1]; /* weight of Matryoshka size i (see above) */
    /* data (kp_train_epochs) */
    int batch;        /* items per batch */
    int epochs;       /* passes over the training items */
    int n_random;     /* random keyphrases per item among the distillation candidates */
    int n_hard;       /* BM25 hard negatives per item among the candidates (computed once) */
    int n_model_hard; /* keyphrases retrieved by the current model, refreshed every epoch from
                         the second on (teacher-scored each time) */
    int max_bce;      /* at most this many (keyphrase, position) click groups per item & step */
    /* optimiser */
    float lr, lr_emb;   /* peak learning rates: dense weights, embedding rows */
    float weight_decay; /* AdamW decay of the dense weights */
    float warmup;       /* fraction of the steps spent in linear warmup, 0..1 */
    kp_lr_schedule schedule;
    float min_lr_frac; /* decay ends at min_lr_frac * peak */
    float clip;        /* global gradient norm clip, 0 = none */
    uint64_t seed;
} kp_train_config;

/* Defaults: softmax 1, bce 0, sr 1, distill 1 (pearson), distill_known 1, tau 0.05, bce_tau 0.1,
 * positions on, sr 1*cos+0, mse 1*cos+0, prefix weights 1, batch 256, epochs 5, 4 random, 4 hard, 0
 * model-hard, max_bce 16, lr 2e-3, lr_emb 2e-2, wd 0, warmup 0.05, cosine, min 0.05, clip 5,
 * seed 1. */
void kp_train_config_default(kp_train_config *c);

/* 0 if c is usable, else -1 with the reason in err (may be NULL). */
int kp_train_config_check(const kp_train_config *c, char *err, size_t errlen);

/* ---- step level ------------------------------------------------------------------------------ */

/* One batch. Items/keys are the batch's distinct texts; pair arrays index into them. Arrays of a
 * term with n == 0 may be NULL. */
typedef struct {
    int n_items;
    const char *const *items; /* [n_items] item texts (titles) */
    int n_keys;
    const char *const *keys; /* [n_keys] keyphrase texts */
    /* in-batch softmax: row r = item soft_item[r], positive column soft_key[r] */
    int n_soft;
    const int *soft_item, *soft_key;
    const unsigned char *soft_mask; /* [n_soft x n_keys] nonzero = not a negative (ignored at
                                       the row's positive); may be NULL */
    /* BCE: click rate bce_label in 0..1, weight (e.g. impressions; NULL = 1), position >= 1
     * (NULL = no position offset) */
    int n_bce;
    const int *bce_item, *bce_key, *bce_pos;
    const float *bce_label, *bce_weight;
    /* SR: label in 0..1 */
    int n_sr;
    const int *sr_item, *sr_key;
    const float *sr_label;
    /* distillation: teacher score */
    int n_dis;
    const int *dis_item, *dis_key;
    const float *dis_teacher;
    const unsigned char *dis_known; /* [n_dis] nonzero = a known (shown/judged) pair; may be NULL */
} kp_train_batch;

/* Loss terms of a step (means over the Matryoshka sizes, weighted by w_prefix; a term that is off
 * or has no pairs is 0), the objective actually minimised, gradient norm before clipping, lr. */
typedef struct {
    double total, softmax, bce, sr, distill, distill_known;
    double grad_norm;
    float lr;
} kp_train_losses;

typedef struct kp_trainer kp_trainer;

/* A trainer of model m (kept, not owned: it must outlive the trainer) for batches of at most
 * max_items items, max_keys keyphrases and max_pairs pairs per term. total_steps sets the
 * schedule's length (0: warmup over 100 steps, then constant: for online training). NULL with a
 * message in err on bad config or OOM. */
kp_trainer *kp_trainer_new(kp_bienc *m, const kp_train_config *c, int max_items, int max_keys,
                           int max_pairs, long total_steps, char *err, size_t errlen);
void kp_trainer_free(kp_trainer *t); /* accepts NULL */

/* One step on batch b: forward, losses, backward, clip, optimiser step; fills *out (may be NULL).
 * Errors (nothing is changed then): batch larger than the trainer's capacity, an index out of
 * range, a label outside its range or not finite, a non-finite loss. 0 or -1 with err. */
int kp_trainer_step(kp_trainer *t, const kp_train_batch *b, kp_train_losses *out, char *err,
                    size_t errlen);

/* Steps taken so far; learning rate of the next step. */
long kp_trainer_steps(const kp_trainer *t);
float kp_trainer_lr(const kp_trainer *t);

/* The optimiser state (Adam moments of the dense weights and of every embedding row ever updated,
 * the per-row and global step counters, the BCE scalars and their moments, the step count) as
 * records "opt.*" of checkpoint w: pass as kp_bienc_save_ext's extra with t as ctx. 0 or -1. */
int kp_trainer_save_state(kp_ckpt_writer *w, void *t);

/* Restores what kp_trainer_save_state wrote (the model's own tensors are not touched). 0, or -1
 * with err when r holds no optimiser state, or one of another shape (t is then unchanged only in
 * the first case; call kp_trainer_reset_state after a failure). */
int kp_trainer_load_state(kp_trainer *t, kp_ckpt_reader *r, char *err, size_t errlen);

/* Rows of tower tw's embedding table that the last step changed (owned by t, valid until the next
 * step). With shared towers both towers give the same list. */
const kp_rowgrad *kp_trainer_changed_rows(const kp_trainer *t, kp_tower tw);

#endif
