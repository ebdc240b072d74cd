/* loss.c - training losses of the bi-encoder (see loss.h). */
#include "model/loss.h"

#include <cblas.h>
#include <math.h>
#include <stddef.h>

#include "common/util.h"
#include "model/vmath.h"

/* ---- score matrix ---------------------------------------------------------------------------- */

void kp_scores_forward(float *S, const float *A, const float *K, int R, int C, int D)
{
    if (R <= 0 || C <= 0) return;
    if (D <= 0) {
        for (size_t i = 0; i < (size_t)R * (size_t)C; i++)
            S[i] = 0.0f;
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, C, D, 1.0f, A, D, K, D, 0.0f, S, C);
}

void kp_scores_forward_ref(float *S, const float *A, const float *K, int R, int C, int D)
{
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float acc = 0.0f;
            for (int d = 0; d < D; d++)
                acc += A[(size_t)r * D + d] * K[(size_t)c * D + d];
            S[(size_t)r * C + c] = acc;
        }
}

void kp_scores_backward(float *dA, float *dK, const float *dS, const float *A, const float *K,
                        int R, int C, int D)
{
    if (R <= 0 || C <= 0 || D <= 0) return;
    /* dA [R x D] += dS [R x C] @ K [C x D] */
    if (dA)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, D, C, 1.0f, dS, C, K, D, 1.0f, dA,
                    D);
    /* dK [C x D] += dS^T [C x R] @ A [R x D] */
    if (dK)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, D, R, 1.0f, dS, C, A, D, 1.0f, dK,
                    D);
}

typedef struct {
    float *dA, *dK;
    const float *dS, *A, *K;
    int R, C, D;
} scores_bwd_job;

static int scores_bwd_task(void *ctx, int t, int lo, int hi)
{
    (void)lo, (void)hi;
    const scores_bwd_job *j = ctx;
    kp_scores_backward(t == 0 ? j->dA : NULL, t == 0 ? NULL : j->dK, j->dS, j->A, j->K, j->R, j->C,
                       j->D);
    return 0;
}

void kp_scores_backward_split(float *dA, float *dK, const float *dS, const float *A, const float *K,
                              int R, int C, int D, int width)
{
    if (width < 2 || !dA || !dK) {
        kp_scores_backward(dA, dK, dS, A, K, R, C, D);
        return;
    }
    scores_bwd_job j = {dA, dK, dS, A, K, R, C, D};
    kp_parallel_for(2, 2, scores_bwd_task, &j);
}

void kp_scores_backward_ref(float *dA, float *dK, const float *dS, const float *A, const float *K,
                            int R, int C, int D)
{
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float g = dS[(size_t)r * C + c];
            for (int d = 0; d < D; d++) {
                if (dA) dA[(size_t)r * D + d] += g * K[(size_t)c * D + d];
                if (dK) dK[(size_t)c * D + d] += g * A[(size_t)r * D + d];
            }
        }
}

/* ---- gathered pair scores -------------------------------------------------------------------- */

void kp_pairdot_forward(float *s, const float *A, const float *K, const int *ia, const int *ik,
                        int n, int D)
{
    for (int p = 0; p < n; p++) {
        const float *a = A + (size_t)ia[p] * D, *k = K + (size_t)ik[p] * D;
        float acc = 0.0f;
        for (int d = 0; d < D; d++)
            acc += a[d] * k[d];
        s[p] = acc;
    }
}

void kp_pairdot_backward(float *dA, float *dK, const float *ds, const float *A, const float *K,
                         const int *ia, const int *ik, int n, int D)
{
    for (int p = 0; p < n; p++) {
        float g = ds[p];
        if (g == 0.0f) continue;
        const float *a = A + (size_t)ia[p] * D, *k = K + (size_t)ik[p] * D;
        if (dA) {
            float *da = dA + (size_t)ia[p] * D;
            for (int d = 0; d < D; d++)
                da[d] += g * k[d];
        }
        if (dK) {
            float *dk = dK + (size_t)ik[p] * D;
            for (int d = 0; d < D; d++)
                dk[d] += g * a[d];
        }
    }
}

/* ---- in-batch softmax ------------------------------------------------------------------------ */

static int masked(const unsigned char *mask, const int *pos, int r, int C, int c)
{
    return mask && c != pos[r] && mask[(size_t)r * C + c];
}

/* Row r of the softmax into P; returns its cross-entropy. */
static double softmax_row(float *P, const float *S, const int *pos, const unsigned char *mask,
                          int r, int C, float tau)
{
    const float *s = S + (size_t)r * C;
    float *p = P + (size_t)r * C;
    float mx = -INFINITY;
    for (int c = 0; c < C; c++)
        if (!masked(mask, pos, r, C, c) && s[c] / tau > mx) mx = s[c] / tau;
    for (int c = 0; c < C; c++) /* a masked column's e^-inf is 0 */
        p[c] = masked(mask, pos, r, C, c) ? -INFINITY : s[c] / tau - mx;
    kp_exp_forward(p, p, (size_t)C); /* the exponentials of a row at once (model/vmath.h) */
    double z = 0.0;
    for (int c = 0; c < C; c++)
        z += p[c];
    for (int c = 0; c < C; c++)
        p[c] = (float)(p[c] / z);
    /* -log p[pos] = log z - (s_pos/tau - mx), computed without the rounding of p */
    return log(z) - ((double)(s[pos[r]] / tau) - mx);
}

float kp_loss_softmax_forward(float *P, const float *S, const int *pos, const unsigned char *mask,
                              int R, int C, float tau)
{
    if (R <= 0 || C <= 0) return 0.0f;
    double loss = 0.0;
    for (int r = 0; r < R; r++)
        loss += softmax_row(P, S, pos, mask, r, C, tau);
    return (float)(loss / R);
}

void kp_loss_softmax_forward_rows(float *P, const float *S, const int *pos,
                                  const unsigned char *mask, int r0, int r1, int C, float tau,
                                  double *row_loss)
{
    for (int r = r0; r < r1 && C > 0; r++)
        row_loss[r] = softmax_row(P, S, pos, mask, r, C, tau);
}

void kp_loss_softmax_backward(float *dS, const float *P, const int *pos, const unsigned char *mask,
                              int R, int C, float tau, float w)
{
    if (R <= 0 || C <= 0) return;
    float scale = w / (tau * (float)R);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            if (masked(mask, pos, r, C, c)) continue;
            float g = P[(size_t)r * C + c] - (c == pos[r] ? 1.0f : 0.0f);
            dS[(size_t)r * C + c] += scale * g;
        }
}

/* ---- BCE ------------------------------------------------------------------------------------- */

static double bce_logit(const float *s, const float *off, int i, float tau, float bias)
{
    return (double)s[i] / tau + (off ? off[i] : 0.0f) + bias;
}

float kp_loss_bce_forward(const float *s, const float *y, const float *wt, const float *off, int n,
                          float tau, float bias)
{
    double loss = 0.0, wsum = 0.0;
    for (int i = 0; i < n; i++) {
        double x = bce_logit(s, off, i, tau, bias), wi = wt ? wt[i] : 1.0;
        /* -y log sigmoid(x) - (1-y) log(1 - sigmoid(x)) = max(x,0) - x y + log(1 + e^-|x|) */
        double l = (x > 0 ? x : 0.0) - x * y[i] + log1p(exp(-fabs(x)));
        loss += wi * l;
        wsum += wi;
    }
    return wsum > 0.0 ? (float)(loss / wsum) : 0.0f;
}

void kp_loss_bce_backward(float *ds, float *doff, float *dbias, const float *s, const float *y,
                          const float *wt, const float *off, int n, float tau, float bias, float w)
{
    double wsum = 0.0, gb = 0.0;
    for (int i = 0; i < n; i++)
        wsum += wt ? wt[i] : 1.0;
    if (wsum <= 0.0) return;
    for (int i = 0; i < n; i++) {
        double x = bce_logit(s, off, i, tau, bias), wi = wt ? wt[i] : 1.0;
        double sig = x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
        double g = w * wi * (sig - y[i]) / wsum;
        if (ds) ds[i] += (float)(g / tau);
        if (doff) doff[i] += (float)g;
        gb += g;
    }
    if (dbias) *dbias += (float)gb;
}

/* ---- MSE ------------------------------------------------------------------------------------- */

float kp_loss_mse_forward(const float *s, const float *y, int n, float scale, float shift)
{
    if (n <= 0) return 0.0f;
    double acc = 0.0;
    for (int i = 0; i < n; i++) {
        double e = (double)scale * s[i] + shift - y[i];
        acc += e * e;
    }
    return (float)(acc / n);
}

void kp_loss_mse_backward(float *ds, const float *s, const float *y, int n, float scale,
                          float shift, float w)
{
    for (int i = 0; i < n; i++) {
        double e = (double)scale * s[i] + shift - y[i];
        ds[i] += (float)(w * 2.0 * scale * e / n);
    }
}

/* ---- Pearson --------------------------------------------------------------------------------- */

typedef struct {
    double ms, mt, sss, stt, sst;
} moments;

static moments centred(const float *s, const float *t, int n)
{
    moments m = {0, 0, 0, 0, 0};
    for (int i = 0; i < n; i++) {
        m.ms += s[i];
        m.mt += t[i];
    }
    m.ms /= n;
    m.mt /= n;
    for (int i = 0; i < n; i++) {
        double a = s[i] - m.ms, b = t[i] - m.mt;
        m.sss += a * a;
        m.stt += b * b;
        m.sst += a * b;
    }
    return m;
}

float kp_loss_pearson_forward(const float *s, const float *t, int n)
{
    if (n < 2) return 0.0f;
    moments m = centred(s, t, n);
    double r = m.sst / sqrt((m.sss + KP_PEARSON_EPS) * (m.stt + KP_PEARSON_EPS));
    return (float)(1.0 - r);
}

void kp_loss_pearson_backward(float *ds, const float *s, const float *t, int n, float w)
{
    if (n < 2) return;
    moments m = centred(s, t, n);
    double den = sqrt((m.sss + KP_PEARSON_EPS) * (m.stt + KP_PEARSON_EPS));
    double k = m.sst / (m.sss + KP_PEARSON_EPS);
    for (int i = 0; i < n; i++) {
        double dr = ((t[i] - m.mt) - k * (s[i] - m.ms)) / den;
        ds[i] += (float)(-w * dr);
    }
}
