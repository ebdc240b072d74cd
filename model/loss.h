/* loss.h - the bi-encoder's training losses as forward/backward pairs over raw float arrays.
 *
 * Scores are cosines of L2-normalised embeddings (dot products). Two ways to get them:
 *   kp_scores_*   S [R x C] = A [R x D] @ K [C x D]^T   (every item against every keyphrase of a
 *                 batch: the in-batch softmax), one sgemm, with a plain-loop reference;
 *   kp_pairdot_*  s[p] = <A[ia[p]], K[ik[p]]>           (gathered pairs: BCE, SR, distillation).
 * Losses, each a forward returning the loss and a backward that *accumulates* (+=) w * dL/d(input)
 * (w = the term's weight, so several terms add into one gradient buffer):
 *   in-batch softmax  mean_r -log softmax(S[r,:] / tau)[pos[r]]   (masked columns left out)
 *   BCE               sum_i wt_i * bce(sigmoid(s_i / tau + off_i + bias), y_i) / sum_i wt_i
 *   MSE               mean_i (scale * s_i + shift - y_i)^2        (SR regression, MSE distillation)
 *   Pearson           1 - corr(s, t)                              (distillation)
 * Nothing here allocates; every pointer argument of length 0 may be NULL. Losses of empty inputs
 * are 0 and their backwards add nothing.
 */
#ifndef KP_LOSS_H
#define KP_LOSS_H

/* ---- score matrix ----------------------------------------------------------------------------
 * S [R x C] = A [R x D] @ K [C x D]^T. */
void kp_scores_forward(float *S, const float *A, const float *K, int R, int C, int D);
void kp_scores_forward_ref(float *S, const float *A, const float *K, int R, int C, int D);
/* dA [R x D] += dS @ K;  dK [C x D] += dS^T @ A  (either may be NULL to skip it). */
void kp_scores_backward(float *dA, float *dK, const float *dS, const float *A, const float *K,
                        int R, int C, int D);
void kp_scores_backward_ref(float *dA, float *dK, const float *dS, const float *A, const float *K,
                            int R, int C, int D);
/* kp_scores_backward with its two products (dA, dK) on two threads when width >= 2: the same
 * calls, so the same results bit for bit. */
void kp_scores_backward_split(float *dA, float *dK, const float *dS, const float *A, const float *K,
                              int R, int C, int D, int width);

/* ---- gathered pair scores --------------------------------------------------------------------
 * s[p] = <A[ia[p],:], K[ik[p],:]> for p < n; A, K have D columns; indices are trusted. */
void kp_pairdot_forward(float *s, const float *A, const float *K, const int *ia, const int *ik,
                        int n, int D);
/* dA[ia[p],:] += ds[p] * K[ik[p],:];  dK[ik[p],:] += ds[p] * A[ia[p],:]  (NULL skips). */
void kp_pairdot_backward(float *dA, float *dK, const float *ds, const float *A, const float *K,
                         const int *ia, const int *ik, int n, int D);

/* ---- in-batch softmax (CTR) ------------------------------------------------------------------
 * Row r of S [R x C] is an item, column pos[r] (in [0, C)) its clicked keyphrase; the other
 * columns are negatives, except where mask[r*C + c] != 0 (mask may be NULL; the positive is never
 * masked). Writes the row softmaxes of S / tau into P [R x C] (masked entries 0) for the backward
 * and returns the mean cross-entropy over the R rows. tau > 0. */
float kp_loss_softmax_forward(float *P, const float *S, const int *pos, const unsigned char *mask,
                              int R, int C, float tau);
/* Rows [r0, r1) of the same (S, P, pos, mask as for all R rows): writes their P rows and their
 * cross-entropies into row_loss[r0 .. r1). kp_loss_softmax_forward is (float)(the sum of
 * row_loss[0 .. R) in order / R), so rows computed apart and summed in order give its result. */
void kp_loss_softmax_forward_rows(float *P, const float *S, const int *pos,
                                  const unsigned char *mask, int r0, int r1, int C, float tau,
                                  double *row_loss);
/* dS[r,c] += w * (P[r,c] - [c == pos[r]]) / (tau * R)  (masked entries untouched). */
void kp_loss_softmax_backward(float *dS, const float *P, const int *pos, const unsigned char *mask,
                              int R, int C, float tau, float w);

/* ---- binary cross-entropy of clicks (CTR) ----------------------------------------------------
 * logit_i = s_i / tau + off_i + bias (off NULL = 0; e.g. a learnt position offset), label y_i in
 * [0, 1] (soft labels allowed: an observed click rate), weight wt_i >= 0 (NULL = 1). Returns the
 * weighted mean BCE (0 when the weights sum to 0). Numerically stable for any logit. */
float kp_loss_bce_forward(const float *s, const float *y, const float *wt, const float *off, int n,
                          float tau, float bias);
/* ds[i] += w * g_i / tau, doff[i] += w * g_i, *dbias += w * sum g_i, where
 * g_i = wt_i (sigmoid(logit_i) - y_i) / sum wt. ds, doff, dbias may each be NULL. */
void kp_loss_bce_backward(float *ds, float *doff, float *dbias, const float *s, const float *y,
                          const float *wt, const float *off, int n, float tau, float bias, float w);

/* ---- mean squared error of a scaled score (SR regression, MSE distillation) -----------------
 * Returns mean_i (scale * s_i + shift - y_i)^2. */
float kp_loss_mse_forward(const float *s, const float *y, int n, float scale, float shift);
/* ds[i] += w * 2 scale (scale * s_i + shift - y_i) / n. */
void kp_loss_mse_backward(float *ds, const float *s, const float *y, int n, float scale,
                          float shift, float w);

/* ---- Pearson distillation --------------------------------------------------------------------
 * Returns 1 - r with r = Sst / sqrt((Sss + eps)(Stt + eps)), Sxy the centred sums of products
 * (double accumulation) and eps = KP_PEARSON_EPS, so a constant s or t gives r = 0 (loss 1, no
 * gradient through the constant side). n < 2: returns 0 (no correlation to learn). */
#define KP_PEARSON_EPS 1e-9
float kp_loss_pearson_forward(const float *s, const float *t, int n);
/* ds[i] += -w * dr/ds_i = -w * ((t_i - mean t) - Sst/(Sss + eps) (s_i - mean s)) /
 *                                sqrt((Sss + eps)(Stt + eps)).                 n < 2: nothing. */
void kp_loss_pearson_backward(float *ds, const float *s, const float *t, int n, float w);

#endif
