/* bienc.h - the bi-encoder student: item tower + keyphrase tower, cosine score.
 *
 * Each tower:  ids = kp_featurize(text)                       (variable-length id list)
 *              bag [B x E] = mean of emb[ids]                  emb [n_buckets x E]
 *              h   [B x H] = tanh(bag @ W1^T + b1)             W1 [H x E], b1 [H]
 *              z   [B x D] = h @ W2^T + b2                     W2 [D x H], b2 [D]
 *              out [B x D] = z / ||z||                         (score = <out_item, out_key>)
 * With shared_towers the two towers are one set of weights. Matryoshka: the first p dims of out,
 * re-normalised, are a valid smaller embedding (kp_bienc_prefix); the loss should be applied at
 * the config's prefix sizes so that they are.
 *
 * Inference (kp_bienc_embed) only reads the model and is thread-safe. Training uses three
 * objects around a model: kp_bienc_acts (activations of one forward of one tower, reused batch to
 * batch), kp_bienc_grads (accumulated parameter gradients, row-sparse for the embedding tables)
 * and kp_bienc_opt (Adam state). One training step looks like:
 *
 *     kp_bienc_grads_zero(g);
 *     const float *ei = kp_bienc_forward(m, KP_TOWER_ITEM, acts_item, titles, NULL, B);
 *     const float *ek = kp_bienc_forward(m, KP_TOWER_KEY, acts_key, keyphrases, NULL, B);
 *     ... loss(ei, ek) -> dei [B x D], dek [B x D] (dL/d normalised embeddings) ...
 *     kp_bienc_backward(m, acts_item, dei, g);
 *     kp_bienc_backward(m, acts_key, dek, g);
 *     kp_bienc_opt_step(m, opt, g);            (changed rows: kp_bienc_grads_emb(g, t)->rows)
 */
#ifndef KP_BIENC_H
#define KP_BIENC_H

#include <stddef.h>
#include <stdint.h>

#include "model/nn.h"

typedef enum { KP_TOWER_ITEM = 0, KP_TOWER_KEY = 1 } kp_tower;

#define KP_BIENC_MAX_PREFIX 8
#define KP_BIENC_MAX_DIM    4096

typedef struct {
    uint32_t n_buckets; /* hashed feature buckets (rows of each embedding table) */
    int emb_dim, hidden_dim, out_dim;
    int shared_towers; /* 1: item and keyphrase towers share all weights */
    int n_prefix;      /* Matryoshka prefix sizes, ascending, each <= out_dim */
    int prefix[KP_BIENC_MAX_PREFIX];
} kp_bienc_config;

/* Parameter tensors of one tower (row-major). */
typedef enum {
    KP_BIENC_EMB = 0, /* [n_buckets x E] */
    KP_BIENC_W1,      /* [H x E] */
    KP_BIENC_B1,      /* [H] */
    KP_BIENC_W2,      /* [D x H] */
    KP_BIENC_B2,      /* [D] */
    KP_BIENC_NPARAM
} kp_bienc_param_id;

typedef struct kp_bienc kp_bienc;

/* 2^18 buckets, E=128, H=256, D=128, shared towers, prefixes 32, 64, 128. */
void kp_bienc_config_default(kp_bienc_config *c);

/* 0 if c is usable, else -1 with the reason in err (may be NULL). */
int kp_bienc_config_check(const kp_bienc_config *c, char *err, size_t errlen);

/* New model with weights drawn from a seeded PRNG (same seed -> bit-identical weights): embedding
 * rows N(0,1), W1/W2 uniform(+-1/sqrt(fan_in)), biases 0; version 0. NULL on OOM or bad config. */
kp_bienc *kp_bienc_new(const kp_bienc_config *c, uint64_t seed);

/* Same, but parameters zero-filled (for loaders that overwrite every tensor). */
kp_bienc *kp_bienc_new_zero(const kp_bienc_config *c);

/* Frees the model; accepts NULL. */
void kp_bienc_free(kp_bienc *m);

const kp_bienc_config *kp_bienc_cfg(const kp_bienc *m);
uint64_t kp_bienc_version(const kp_bienc *m);
void kp_bienc_set_version(kp_bienc *m, uint64_t v);

/* 1 with shared towers, else 2. */
int kp_bienc_n_towers(const kp_bienc *m);

/* Parameter tensor p of tower t (with shared towers both names give the same tensor); shape in
 * *rows x *cols (either may be NULL; vectors have rows 1). Owned by m. NULL for a bad id. */
float *kp_bienc_param(kp_bienc *m, kp_tower t, kp_bienc_param_id p, size_t *rows, size_t *cols);
const float *kp_bienc_param_c(const kp_bienc *m, kp_tower t, kp_bienc_param_id p, size_t *rows,
                              size_t *cols);
/* Name of a parameter ("emb", "w1", "b1", "w2", "b2"); NULL for a bad id. */
const char *kp_bienc_param_name(kp_bienc_param_id p);

/* Copies all parameters and the version of src into dst (same config). 0, or -1 on mismatch. */
int kp_bienc_copy(kp_bienc *dst, const kp_bienc *src);

/* Embeds n texts with tower t: out is n x out_dim row-major, each row L2-normalised. lens may be
 * NULL (texts are then NUL-terminated); a NULL text is empty. Read-only on m: safe to call from
 * several threads at once. One scratch allocation per call. Returns 0, -1 on OOM/bad args. */
int kp_bienc_embed(const kp_bienc *m, kp_tower t, const char *const *texts, const size_t *lens,
                   int n, float *out);

/* Same from precomputed feature ids: example b uses ids[offsets[b] .. offsets[b+1]).
 * Returns -1 (out untouched for invalid input) if an id is >= n_buckets or offsets decrease. */
int kp_bienc_embed_ids(const kp_bienc *m, kp_tower t, const uint32_t *ids, const int *offsets,
                       int n, float *out);

/* Matryoshka prefix: out [n x p] = first p dims of emb [n x D], each row re-normalised; norms [n]
 * receives the divisors (needed by the backward; may be NULL for inference). */
void kp_bienc_prefix(const float *emb, int n, int D, int p, float *out, float *norms);
/* demb [n x D] (first p columns) += d(prefix)/d(emb)^T dout, given the forward's out and norms. */
void kp_bienc_prefix_backward(float *demb, const float *dout, const float *out, const float *norms,
                              int n, int D, int p);

/* ---- training -------------------------------------------------------------------------------- */

typedef struct kp_bienc_acts kp_bienc_acts;
typedef struct kp_bienc_grads kp_bienc_grads;
typedef struct kp_bienc_opt kp_bienc_opt;

/* Activation buffers for forwards of up to max_batch examples with m's config. NULL on OOM. */
kp_bienc_acts *kp_bienc_acts_new(const kp_bienc *m, int max_batch);
void kp_bienc_acts_free(kp_bienc_acts *a); /* accepts NULL */

/* Training forward of n <= max_batch texts through tower t; keeps what the backward needs in a.
 * Returns the n x out_dim normalised embeddings (owned by a, valid until the next forward on a),
 * or NULL on bad args. lens may be NULL (NUL-terminated texts). */
const float *kp_bienc_forward(const kp_bienc *m, kp_tower t, kp_bienc_acts *a,
                              const char *const *texts, const size_t *lens, int n);
/* Same from feature ids (offsets [n+1], at most KP_FEAT_MAX_IDS per example on average:
 * offsets[n] <= max_batch * KP_FEAT_MAX_IDS). NULL on bad args or ids >= n_buckets. */
const float *kp_bienc_forward_ids(const kp_bienc *m, kp_tower t, kp_bienc_acts *a,
                                  const uint32_t *ids, const int *offsets, int n);

/* Backward of the last forward on a: dout [n x out_dim] = dL/d(normalised embeddings).
 * Accumulates (+=) into g the gradients of that tower's parameters. 0, -1 on OOM or if a holds
 * no forward. m must be the model of the forward, unchanged since. */
int kp_bienc_backward(const kp_bienc *m, kp_bienc_acts *a, const float *dout, kp_bienc_grads *g);

/* Gradient accumulators for m's parameters, zeroed. NULL on OOM. */
kp_bienc_grads *kp_bienc_grads_new(const kp_bienc *m);
void kp_bienc_grads_free(kp_bienc_grads *g); /* accepts NULL */
void kp_bienc_grads_zero(kp_bienc_grads *g);
/* Dense gradient of p (W1..B2) of tower t, same shape as the parameter; NULL for KP_BIENC_EMB. */
float *kp_bienc_grads_dense(kp_bienc_grads *g, kp_tower t, kp_bienc_param_id p);
/* Row-sparse gradient of tower t's embedding table: ->rows[0..n) are the rows touched since the
 * last zero (the rows a step will change: use them for model deltas). */
const kp_rowgrad *kp_bienc_grads_emb(const kp_bienc_grads *g, kp_tower t);
/* Global L2 norm of all gradients, and in-place scaling (for clipping). */
double kp_bienc_grads_norm(const kp_bienc_grads *g);
void kp_bienc_grads_scale(kp_bienc_grads *g, float s);

/* Adam state: AdamW (hp_dense) for W1..B2, lazy row-sparse AdamW (hp_emb) for embedding rows with
 * a per-row step counter. The moment tables come from kp_big_alloc (zeroed, pages taken on first
 * use, huge pages). NULL on OOM. */
kp_bienc_opt *kp_bienc_opt_new(const kp_bienc *m, const kp_adam_hp *hp_dense,
                               const kp_adam_hp *hp_emb);
void kp_bienc_opt_free(kp_bienc_opt *o); /* accepts NULL */
/* Change the learning rates (schedules). */
void kp_bienc_opt_set_lr(kp_bienc_opt *o, float lr_dense, float lr_emb);
/* One step with the gradients in g (not zeroed here). Deterministic. Returns the step count. */
uint64_t kp_bienc_opt_step(kp_bienc *m, kp_bienc_opt *o, const kp_bienc_grads *g);

/* The Adam state of tower t (for the trainer's checkpoints; pointers owned by o): first and second
 * moments of the dense parameters [n_dense] and of the embedding table [n_emb], the step of each
 * row's last update [n_buckets] (0 = never), and the step counter. 0, or -1 if t is out of range.
 */
typedef struct {
    float *m_dense, *v_dense, *m_emb, *v_emb;
    uint32_t *row_t;
    size_t n_dense, n_emb, n_rows, row_dim;
    uint64_t *t;
} kp_bienc_opt_view;
int kp_bienc_opt_state(kp_bienc_opt *o, const kp_bienc *m, int t, kp_bienc_opt_view *v);

#endif
