/* nn.h - neural-network layers as forward/backward pairs over raw float arrays.
 *
 * Conventions (as in llm.c): all tensors are row-major and batch-major; B = batch size. Every
 * backward *accumulates* (+=) into the parameter and input gradients it is given, so gradients
 * from several uses of one layer add up; zero them yourself before a step. Pointers never alias
 * unless a comment says in-place is fine. No function here allocates, except the row-sparse
 * gradient (kp_rowgrad) which grows its row list.
 *
 * Functions with a _ref suffix are plain-loop references of the BLAS paths, for tests.
 */
#ifndef KP_NN_H
#define KP_NN_H

#include <stddef.h>
#include <stdint.h>

#include "model/vmath.h"

/* ---- row-sparse gradient of an embedding table [n_rows x dim] --------------------------------
 * Holds the gradients of the rows touched since the last kp_rowgrad_zero, in first-touch order
 * (so updates are deterministic). slot[] maps a row to its position (-1 = untouched). */
typedef struct kp_rowgrad {
    uint32_t n_rows; /* rows of the table */
    int dim;         /* columns of the table */
    int32_t *slot;   /* [n_rows], -1 or index into rows/grad */
    uint32_t *rows;  /* [cap] touched rows */
    float *grad;     /* [cap x dim] their gradients */
    int n, cap;      /* touched rows, capacity */
} kp_rowgrad;

/* Initialises an empty gradient for a [n_rows x dim] table. 0 or -1 on OOM/bad size (then *g is
 * left safe to kp_rowgrad_free). */
int kp_rowgrad_init(kp_rowgrad *g, uint32_t n_rows, int dim);
/* Releases the buffers; accepts NULL and zero-initialised structs. */
void kp_rowgrad_free(kp_rowgrad *g);
/* Forgets all touched rows (O(touched)); keeps the capacity. */
void kp_rowgrad_zero(kp_rowgrad *g);
/* Gradient row of table row `row`, zero-initialised on first touch. NULL on OOM or row out of
 * range. The pointer is valid until the next kp_rowgrad_row / kp_rowgrad_zero call. */
float *kp_rowgrad_row(kp_rowgrad *g, uint32_t row);

/* ---- embedding bag (mean) --------------------------------------------------------------------
 * out[b,:] = mean over i in [offsets[b], offsets[b+1]) of table[ids[i], :]; zeros when the list
 * is empty. out [B x E], table [V x E], ids [offsets[B]] (each < V), offsets [B+1]. */
void kp_embbag_forward(float *out, const float *table, const uint32_t *ids, const int *offsets,
                       int B, int E);
/* The plain loop the fast path above (row prefetching, blocked adds) is tested against: the same
 * additions in the same order, so the results are bit-identical. */
void kp_embbag_forward_ref(float *out, const float *table, const uint32_t *ids, const int *offsets,
                           int B, int E);
/* Accumulates dtable rows: for each id of example b, += dout[b,:] / count_b.
 * Returns 0, -1 on OOM (gradient partially accumulated). */
int kp_embbag_backward(kp_rowgrad *dtable, const float *dout, const uint32_t *ids,
                       const int *offsets, int B, int E);
/* The same on `width` threads (1 or 2), bit for bit: first the rows' gradient slots are taken in
 * order on the calling thread (slots [offsets[B] - offsets[0]] receives them), then each thread
 * adds into its own range of slots, visiting the examples in order, so every row sums the same
 * terms in the same order as kp_embbag_backward. Returns as kp_embbag_backward. */
int kp_embbag_backward_split(kp_rowgrad *dtable, const float *dout, const uint32_t *ids,
                             const int *offsets, int B, int E, int32_t *slots, int width);

/* ---- linear ----------------------------------------------------------------------------------
 * out [B x OC] = inp [B x C] @ W^T + bias;  W [OC x C], bias [OC] or NULL. */
void kp_linear_forward(float *out, const float *inp, const float *W, const float *bias, int B,
                       int C, int OC);
/* kp_linear_forward, but one row (B == 1) by a GEMV, which does not pack W: without a small-matrix
 * GEMM kernel (OpenBLAS 0.3.21 on Zen) a one-row GEMM packs all of W on every call. The row's last
 * bits may differ from the same row in a batch, so it is for callers that promise no more than
 * rounding across batch sizes (the bi-encoder's towers; not the cross-encoder, whose pair scored
 * alone equals it in a batch bit for bit). */
void kp_linear_forward_gemv1(float *out, const float *inp, const float *W, const float *bias, int B,
                             int C, int OC);
void kp_linear_forward_ref(float *out, const float *inp, const float *W, const float *bias, int B,
                           int C, int OC);
/* dinp [B x C] += dout @ W;  dW [OC x C] += dout^T @ inp;  dbias [OC] += sum_b dout.
 * Any of dinp, dW, dbias may be NULL to skip it. */
void kp_linear_backward(float *dinp, float *dW, float *dbias, const float *dout, const float *inp,
                        const float *W, int B, int C, int OC);
void kp_linear_backward_ref(float *dinp, float *dW, float *dbias, const float *dout,
                            const float *inp, const float *W, int B, int C, int OC);
/* kp_linear_backward with dinp on one thread and dW, dbias on another when width >= 2 and B >= 64
 * (below, one thread): the same calls, so the same results bit for bit. */
void kp_linear_backward_split(float *dinp, float *dW, float *dbias, const float *dout,
                              const float *inp, const float *W, int B, int C, int OC, int width);

/* ---- tanh ------------------------------------------------------------------------------------
 * The forward is model/vmath.h's kp_tanh_forward. Backward uses the output:
 * dinp[i] += dout[i] * (1 - out[i]^2). */
void kp_tanh_backward(float *dinp, const float *dout, const float *out, size_t N);

/* ---- L2 normalisation of rows ----------------------------------------------------------------
 * out[b,:] = inp[b,:] / max(||inp[b,:]||, KP_L2_EPS); norm[b] = that divisor. inp, out [B x D].
 * In-place (out == inp) is fine. */
#define KP_L2_EPS 1e-12f
void kp_l2norm_forward(float *out, float *norm, const float *inp, int B, int D);
/* dinp[b,:] += (dout - out * <dout, out>) / norm[b]  (plain scaling when the norm was clamped). */
void kp_l2norm_backward(float *dinp, const float *dout, const float *out, const float *norm, int B,
                        int D);

/* ---- row-pair dot product and cosine ---------------------------------------------------------
 * out[b] = <a[b,:], x[b,:]>; backward: da += dout[b] * x, dx += dout[b] * a (NULL skips). */
void kp_rowdot_forward(float *out, const float *a, const float *x, int B, int D);
void kp_rowdot_backward(float *da, float *dx, const float *dout, const float *a, const float *x,
                        int B, int D);
/* out[b] = cos(a[b,:], x[b,:]) (norms clamped at KP_L2_EPS); backward accumulates like rowdot. */
void kp_cosine_forward(float *out, const float *a, const float *x, int B, int D);
void kp_cosine_backward(float *da, float *dx, const float *dout, const float *a, const float *x,
                        int B, int D);

/* ---- optimisers ------------------------------------------------------------------------------ */
typedef struct kp_adam_hp {
    float lr, beta1, beta2, eps;
    float weight_decay; /* decoupled (AdamW); 0 = plain Adam */
} kp_adam_hp;

/* Fills lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0. */
void kp_adam_hp_default(kp_adam_hp *hp);

/* One AdamW step on n dense parameters: t is the 1-based step number (bias correction). */
void kp_adamw_update(float *p, const float *g, float *m, float *v, size_t n, const kp_adam_hp *hp,
                     uint64_t t);
/* The plain loop the update above (blocked so that it vectorises) is tested against: the same
 * operations per element, so the results are bit-identical. */
void kp_adamw_update_ref(float *p, const float *g, float *m, float *v, size_t n,
                         const kp_adam_hp *hp, uint64_t t);

/* Lazy (row-sparse) AdamW on the rows touched in g: only those rows' moments move, and each row
 * has its own step counter row_t[row] (incremented here) for bias correction. table, m, v are
 * [g->n_rows x g->dim]. Rows are visited in first-touch order (deterministic). */
void kp_lazy_adamw_update(float *table, float *m, float *v, uint32_t *row_t, const kp_rowgrad *g,
                          const kp_adam_hp *hp);
/* The same with g's rows split over `width` threads: the rows are independent, so the result is
 * the same bit for bit whatever the width. */
void kp_lazy_adamw_update_split(float *table, float *m, float *v, uint32_t *row_t,
                                const kp_rowgrad *g, const kp_adam_hp *hp, int width);

#endif
