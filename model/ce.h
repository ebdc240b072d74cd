/* ce.h - the cross-encoder assistant (CE): scores an (item title, keyphrase) pair jointly.
 *
 * K-NRM-style interaction model. For one pair:
 *   tokens     normalised word tokens of both texts (same normalisation as featurize.h), at most
 *              KP_CE_MAX_TOK per text; each token hashes to its word-unigram bucket and the
 *              buckets of its letter trigrams of "#word#" (at most KP_CE_MAX_TRI of them).
 *   Ei [ni x E], Ek [nk x E]   token embedding = mean of emb rows of its buckets  emb [nb x E]
 *   Ein, Ekn                   rows L2-normalised
 *   M  [ni x nk]               M[i][j] = <Ein[i], Ekn[j]> (cosine of item token i, key token j)
 *   kern [K]                   kern[k] = 1/nk sum_j log1p(sum_i exp(-(M[i][j]-mu_k)^2 / 2s_k^2))
 *                              mu = 1.0 (s 0.001, exact match), 0.9, 0.7, ..., -0.9 (s 0.1)
 *   exact [X]                  exact-match features (fractions of keyphrase tokens / stems /
 *                              bigrams / letter trigrams found in the title, phrase match,
 *                              idf-weighted overlap, lengths; see ce.c), not trainable
 *   pool [4E]                  pi = mean(Ein), pk = mean(Ekn): [pi, pk, pi*pk, |pi-pk|]
 *   ext [KP_CE_N_EXT]          (version 2, config ext_features = 1) more interaction features:
 *                              kern over the title's tokens (kernels of M^T: the title's
 *                              coverage by the keyphrase), kern with idf-weighted pooling over
 *                              the keyphrase's tokens, max-similarity pooling (mean / idf-
 *                              weighted mean / min over keyphrase tokens of the best title
 *                              match, mean over title tokens of the best keyphrase match) and
 *                              8 more exact-match features (first match position, longest
 *                              matched run, idf of the rarest missing word, ...; see ce.c)
 *   x  [F] = [kern | exact | pool | ext],  F = K + X + 4E (+ KP_CE_N_EXT)
 *   h  [H] = tanh(x @ W1^T + b1)                               W1 [H x F], b1 [H]
 *   z      = h @ W2^T + b2,  score = sigmoid(z) in 0..1          W2 [1 x H], b2 [1]
 * The idf table (idf [n_idf], by word hash) is not trained: kp_ce_set_idf fills it from a corpus.
 *
 * Parameters live in three allocations: emb, the dense weights (W1 b1 W2 b2 back to back), idf.
 * Scoring (kp_ce_score) only reads the model: thread-safe. Training: offline/ce_train.h.
 */
#ifndef KP_CE_H
#define KP_CE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "model/nn.h"

#define KP_CE_KIND        "ce"
#define KP_CE_VERSION     2u /* tokenisation / feature layout; stored in checkpoints */
#define KP_CE_MAX_TOK     64
#define KP_CE_MAX_TRI     24
#define KP_CE_N_KERNELS   11
#define KP_CE_N_EXACT     14
#define KP_CE_N_MAXSIM    4
#define KP_CE_N_EXACT2    8
#define KP_CE_N_EXT       (2 * KP_CE_N_KERNELS + KP_CE_N_MAXSIM + KP_CE_N_EXACT2)
#define KP_CE_MAX_DIM     1024
#define KP_CE_MAX_BUCKETS (1u << 26)

typedef struct {
    uint32_t n_buckets; /* rows of the token embedding table */
    int emb_dim;        /* E */
    int hidden_dim;     /* H */
    uint32_t n_idf;     /* idf table size (word-hash buckets) */
    int ext_features;   /* 1: the version-2 features ext (default); 0: the version-1 layout */
} kp_ce_config;

typedef struct kp_ce kp_ce;

/* 2^17 buckets, E 32, H 64, 2^16 idf buckets, ext features on. */
void kp_ce_config_default(kp_ce_config *c);
/* 0 if usable, else -1 with the reason in err (may be NULL). */
int kp_ce_config_check(const kp_ce_config *c, char *err, size_t errlen);

/* New model: emb rows N(0,1), W1/W2 uniform(+-1/sqrt(fan_in)), biases 0, idf all 1 (no corpus
 * statistics yet), version 0. Same seed -> bit-identical model. NULL on bad config or OOM. */
kp_ce *kp_ce_new(const kp_ce_config *c, uint64_t seed);
/* Frees the model; accepts NULL. */
void kp_ce_free(kp_ce *m);

/* Ensembles: kp_ce_ensemble_add appends member (same config, not itself an ensemble; m takes
 * ownership on success) to m; kp_ce_score then averages the members' logits, and checkpoints
 * hold every member. The parameter accessors and the per-pair / head functions below act on m
 * itself (the first member). 0, or -1 (config mismatch, bad args). */
int kp_ce_ensemble_add(kp_ce *m, kp_ce *member);
int kp_ce_n_members(const kp_ce *m); /* 1 for a plain model */

const kp_ce_config *kp_ce_cfg(const kp_ce *m);
uint64_t kp_ce_version(const kp_ce *m);
void kp_ce_set_version(kp_ce *m, uint64_t v);
/* Input width F of the MLP. */
int kp_ce_n_features(const kp_ce *m);

/* Parameter groups (row-major, owned by m): emb [n_buckets x E]; dense = W1 [H x F], b1 [H],
 * W2 [H], b2 [1] back to back (kp_ce_dense_size floats); idf [n_idf]. */
float *kp_ce_emb(kp_ce *m);
float *kp_ce_dense(kp_ce *m);
size_t kp_ce_dense_size(const kp_ce *m);
float *kp_ce_idf(kp_ce *m);

/* Fills the idf table from n documents (titles and/or keyphrases; NULL counts as empty):
 * idf(w) = ln(1 + (N - df + 0.5) / (df + 0.5)) with df = documents containing the word hash
 * bucket; words never seen get the idf of df = 0. 0, or -1 on OOM / bad args (table unchanged). */
int kp_ce_set_idf(kp_ce *m, const char *const *docs, int n_docs);

/* Scores n pairs (items[i] = title, keys[i] = keyphrase; NUL-terminated, NULL = empty) into
 * out[n] in 0..1. Read-only on m, thread-safe (scratch is allocated per call). 0, or -1 on OOM
 * or bad args (m/out NULL with n > 0, n < 0). */
int kp_ce_score(const kp_ce *m, const char *const *items, const char *const *keys, int n,
                float *out);

/* Checkpoint (model/ckpt.h container, kind "ce"): config, KP_CE_VERSION, featurizer-independent.
 * Save: 0, or -1 with a message in err (written as version 2, or as version 1 when the model
 * has no ext features, so that older builds still read it). Load: versions 1 (ext_features 0)
 * and 2; NULL with a message in err (missing, corrupt, another kind or version, shape
 * mismatch). */
int kp_ce_save(const kp_ce *m, const char *path, char *err, size_t errlen);
kp_ce *kp_ce_load(const char *path, char *err, size_t errlen);

/* ---- tokens (exposed for training and tests) ------------------------------------------------- */

/* Tokens of one text. Views (pointers) into a kp_ce_tokbuf or into a packed cache. */
typedef struct {
    int n;               /* tokens */
    int n_tri;           /* letter trigrams (all tokens) */
    const uint64_t *wh;  /* [n] word hash */
    const uint64_t *sh;  /* [n] stem hash (word without a final 's' when longer than 3) */
    const int *off;      /* [n+1] token t uses ids[off[t] .. off[t+1]) */
    const uint32_t *ids; /* [off[n]] embedding rows (unigram first, then trigrams) */
    const uint64_t *tri; /* [n_tri] trigram hashes */
} kp_ce_text;

typedef struct {
    uint64_t wh[KP_CE_MAX_TOK], sh[KP_CE_MAX_TOK];
    int off[KP_CE_MAX_TOK + 1];
    uint32_t ids[KP_CE_MAX_TOK * (1 + KP_CE_MAX_TRI)];
    uint64_t tri[KP_CE_MAX_TOK * KP_CE_MAX_TRI];
} kp_ce_tokbuf;

/* Tokenises text (NUL-terminated; NULL = empty) into buf and returns a view of it. */
kp_ce_text kp_ce_tokenize(const char *text, uint32_t n_buckets, kp_ce_tokbuf *buf);

/* Per-pair scratch for kp_ce_pair_features / kp_ce_pair_backward (sized for m). NULL on OOM. */
typedef struct kp_ce_ws kp_ce_ws;
kp_ce_ws *kp_ce_ws_new(const kp_ce *m);
void kp_ce_ws_free(kp_ce_ws *w); /* accepts NULL */

/* x [F] = features of the pair (it, kp). */
void kp_ce_pair_features(const kp_ce *m, const kp_ce_text *it, const kp_ce_text *kp, float *x,
                         kp_ce_ws *w);
/* Backward of the features of the pair: accumulates d(emb) for dx [F] into g (a row-sparse
 * gradient of emb). Recomputes the forward in w. 0, -1 on OOM. */
int kp_ce_pair_backward(const kp_ce *m, const kp_ce_text *it, const kp_ce_text *kp, const float *dx,
                        kp_ce_ws *w, kp_rowgrad *g);

/* MLP head over a batch: x [B x F] -> h [B x H] (kept for the backward) -> z [B] (logits). */
void kp_ce_head_forward(const kp_ce *m, const float *x, int B, float *h, float *z);
/* dz [B] -> ddense (same layout as kp_ce_dense, accumulated), dx [B x F] (accumulated; NULL
 * skips). dh [B x H] is scratch. */
void kp_ce_head_backward(const kp_ce *m, const float *x, const float *h, const float *dz, int B,
                         float *dh, float *ddense, float *dx);

/* ---- layers (forward/backward over raw float arrays, as nn.h) -------------------------------- */

/* Kernel mu / sigma of the model (K = KP_CE_N_KERNELS). */
extern const float kp_ce_kernel_mu[KP_CE_N_KERNELS];
extern const float kp_ce_kernel_sigma[KP_CE_N_KERNELS];

/* Similarity matrix: M [ni x nk] = A [ni x E] @ B [nk x E]^T (plain loops, the matrices are
 * small). Backward: dA += dM @ B, dB += dM^T @ A. */
void kp_ce_simmat_forward(float *M, const float *A, const float *B, int ni, int nk, int E);
void kp_ce_simmat_backward(float *dA, float *dB, const float *dM, const float *A, const float *B,
                           int ni, int nk, int E);

/* Kernel pooling: feat[k] = 1/nk sum_j log1p(S[j][k]), S [nk x K] (kept for the backward) =
 * sum_i exp(-(M[i][j] - mu[k])^2 / (2 sigma[k]^2)). feat = 0 when ni or nk is 0.
 * Backward: dM [ni x nk] += dfeat through that. */
void kp_ce_kernel_forward(float *feat, float *S, const float *M, int ni, int nk, const float *mu,
                          const float *sigma, int K);
void kp_ce_kernel_backward(float *dM, const float *dfeat, const float *S, const float *M, int ni,
                           int nk, const float *mu, const float *sigma, int K);

/* Kernel pooling with per-column weights: feat[k] = sum_j wcol[j] log1p(S[j][k]) (S as above;
 * the caller normalises wcol, e.g. idf / sum idf). Backward: dM += dfeat through that. */
void kp_ce_wkernel_forward(float *feat, float *S, const float *M, int ni, int nk, const float *mu,
                           const float *sigma, int K, const float *wcol);
void kp_ce_wkernel_backward(float *dM, const float *dfeat, const float *S, const float *M, int ni,
                            int nk, const float *mu, const float *sigma, int K, const float *wcol);

/* The three kernel poolings of M in one pass over the exps (the fast path of kp_ce_pair_features
 * with ext features): feat = kp_ce_kernel_forward(M) (S [nk x K]), featT = the same on M^T
 * (S2 [ni x K]: sums over the keyphrase's tokens, pooled over the title's), featW =
 * kp_ce_wkernel_forward(M, wcol) (its S equals S). K <= 4 * KP_CE_N_KERNELS. */
void kp_ce_kernels3_forward(float *feat, float *featT, float *featW, float *S, float *S2,
                            const float *M, int ni, int nk, const float *mu, const float *sigma,
                            int K, const float *wcol);

/* Transpose: T [nk x ni] = M [ni x nk]^T; backward dM += dT^T. */
void kp_ce_transpose_forward(float *T, const float *M, int ni, int nk);
void kp_ce_transpose_backward(float *dM, const float *dT, int ni, int nk);

/* Max-similarity pooling of M [ni x nk], wcol [nk] (normalised weights):
 *   out[0] = 1/nk sum_j max_i M[i][j]      out[1] = sum_j wcol[j] max_i M[i][j]
 *   out[2] = min_j max_i M[i][j]            out[3] = 1/ni sum_i max_j M[i][j]
 * (all 0 when ni or nk is 0). am [nk + ni + 1] keeps the arg-max / arg-min positions for the
 * backward (first one on ties): dM += dout routed to them. */
void kp_ce_maxsim_forward(float *out, int *am, const float *M, int ni, int nk, const float *wcol);
void kp_ce_maxsim_backward(float *dM, const float *dout, const int *am, int ni, int nk,
                           const float *wcol);

/* Mean pooling of rows: out [E] = mean of X [n x E] (zeros for n = 0); dX[i] += dout / n. */
void kp_ce_meanpool_forward(float *out, const float *X, int n, int E);
void kp_ce_meanpool_backward(float *dX, const float *dout, int n, int E);

/* Interaction: out [4E] = [a, b, a*b, |a-b|]. Backward: da, db += (|.| has subgradient 0 at 0). */
void kp_ce_interact_forward(float *out, const float *a, const float *b, int E);
void kp_ce_interact_backward(float *da, float *db, const float *dout, const float *a,
                             const float *b, int E);

/* Binary cross-entropy with soft targets on logits: returns mean over B of
 * -(y log sigmoid(z) + (1-y) log(1-sigmoid(z))) (numerically stable); dz [B] += (sigmoid(z)-y)/B
 * (NULL skips). */
float kp_ce_bce_forward_backward(const float *z, const float *y, int B, float *dz);

static inline float kp_ce_sigmoid(float z)
{
    return z >= 0 ? 1.0f / (1.0f + expf(-z)) : expf(z) / (1.0f + expf(z));
}

#endif
