/* ce_layers.c - the cross-encoder's layers as forward/backward pairs over raw float arrays:
 * similarity matrix, RBF kernel pooling (plain, idf-weighted, fused), transpose, max-similarity,
 * mean pooling, interaction, BCE (see ce.h; every backward is finite-difference checked in
 * tests/unit/test_model_ce.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/ce.h"

/* ---- layers ---------------------------------------------------------------------------------- */

void kp_ce_simmat_forward(float *M, const float *A, const float *B, int ni, int nk, int E)
{
    for (int i = 0; i < ni; i++) {
        for (int j = 0; j < nk; j++) {
            const float *a = A + (size_t)i * E, *b = B + (size_t)j * E;
            float s = 0.0f;
            for (int e = 0; e < E; e++)
                s += a[e] * b[e];
            M[(size_t)i * nk + j] = s;
        }
    }
}

void kp_ce_simmat_backward(float *dA, float *dB, const float *dM, const float *A, const float *B,
                           int ni, int nk, int E)
{
    for (int i = 0; i < ni; i++) {
        for (int j = 0; j < nk; j++) {
            float d = dM[(size_t)i * nk + j];
            if (d == 0.0f) continue;
            const float *a = A + (size_t)i * E, *b = B + (size_t)j * E;
            float *da = dA + (size_t)i * E, *db = dB + (size_t)j * E;
            for (int e = 0; e < E; e++) {
                da[e] += d * b[e];
                db[e] += d * a[e];
            }
        }
    }
}

/* The kernel pooling of kp_ce_kernel_forward (wcol NULL: then the mean over the nk columns) and of
 * kp_ce_wkernel_forward (column j weighted by wcol[j], no mean). */
static void kernel_pool(float *feat, float *S, const float *M, int ni, int nk, const float *mu,
                        const float *sigma, int K, const float *wcol)
{
    for (int k = 0; k < K; k++)
        feat[k] = 0.0f;
    if (ni <= 0 || nk <= 0) return;
    for (int j = 0; j < nk; j++) {
        float *s = S + (size_t)j * K;
        for (int k = 0; k < K; k++) {
            float inv = 1.0f / (2.0f * sigma[k] * sigma[k]), acc = 0.0f;
            for (int i = 0; i < ni; i++) {
                float d = M[(size_t)i * nk + j] - mu[k];
                acc += expf(-d * d * inv);
            }
            s[k] = acc;
            feat[k] += wcol ? wcol[j] * log1pf(acc) : log1pf(acc);
        }
    }
    if (!wcol)
        for (int k = 0; k < K; k++)
            feat[k] /= (float)nk;
}

void kp_ce_kernel_forward(float *feat, float *S, const float *M, int ni, int nk, const float *mu,
                          const float *sigma, int K)
{
    kernel_pool(feat, S, M, ni, nk, mu, sigma, K, NULL);
}

/* The backward of kernel_pool: ds = dfeat[k] / nk / (1 + S[j][k]) (wcol NULL) or dfeat[k] *
 * wcol[j] / (1 + S[j][k]). */
static void kernel_pool_backward(float *dM, const float *dfeat, const float *S, const float *M,
                                 int ni, int nk, const float *mu, const float *sigma, int K,
                                 const float *wcol)
{
    if (ni <= 0 || nk <= 0) return;
    for (int j = 0; j < nk; j++) {
        const float *s = S + (size_t)j * K;
        for (int k = 0; k < K; k++) {
            float ds =
                wcol ? dfeat[k] * wcol[j] / (1.0f + s[k]) : dfeat[k] / (float)nk / (1.0f + s[k]);
            if (ds == 0.0f) continue;
            float inv = 1.0f / (2.0f * sigma[k] * sigma[k]);
            for (int i = 0; i < ni; i++) {
                float d = M[(size_t)i * nk + j] - mu[k];
                float e = expf(-d * d * inv);
                dM[(size_t)i * nk + j] += ds * e * (-2.0f * d * inv);
            }
        }
    }
}

void kp_ce_kernel_backward(float *dM, const float *dfeat, const float *S, const float *M, int ni,
                           int nk, const float *mu, const float *sigma, int K)
{
    kernel_pool_backward(dM, dfeat, S, M, ni, nk, mu, sigma, K, NULL);
}

void kp_ce_wkernel_forward(float *feat, float *S, const float *M, int ni, int nk, const float *mu,
                           const float *sigma, int K, const float *wcol)
{
    kernel_pool(feat, S, M, ni, nk, mu, sigma, K, wcol);
}

void kp_ce_wkernel_backward(float *dM, const float *dfeat, const float *S, const float *M, int ni,
                            int nk, const float *mu, const float *sigma, int K, const float *wcol)
{
    kernel_pool_backward(dM, dfeat, S, M, ni, nk, mu, sigma, K, wcol);
}

void kp_ce_kernels3_forward(float *feat, float *featT, float *featW, float *S, float *S2,
                            const float *M, int ni, int nk, const float *mu, const float *sigma,
                            int K, const float *wcol)
{
    for (int k = 0; k < K; k++)
        feat[k] = featT[k] = featW[k] = 0.0f;
    if (ni <= 0 || nk <= 0) return;
    float inv[KP_CE_N_KERNELS * 4];
    if (K > (int)(sizeof(inv) / sizeof(inv[0]))) return;
    for (int k = 0; k < K; k++)
        inv[k] = 1.0f / (2.0f * sigma[k] * sigma[k]);
    memset(S, 0, (size_t)nk * K * sizeof(float));
    memset(S2, 0, (size_t)ni * K * sizeof(float));
    /* every exp once; S sums over i (ascending) and S2 over j (ascending), the order of the
     * plain layers, so the sums are the same */
    for (int i = 0; i < ni; i++) {
        float *s2 = S2 + (size_t)i * K;
        for (int j = 0; j < nk; j++) {
            float m = M[(size_t)i * nk + j], *s = S + (size_t)j * K;
            for (int k = 0; k < K; k++) {
                float d = m - mu[k];
                float e = expf(-d * d * inv[k]);
                s[k] += e;
                s2[k] += e;
            }
        }
    }
    for (int j = 0; j < nk; j++) {
        for (int k = 0; k < K; k++) {
            float l = log1pf(S[(size_t)j * K + k]);
            feat[k] += l;
            featW[k] += wcol[j] * l;
        }
    }
    for (int i = 0; i < ni; i++)
        for (int k = 0; k < K; k++)
            featT[k] += log1pf(S2[(size_t)i * K + k]);
    for (int k = 0; k < K; k++) {
        feat[k] /= (float)nk;
        featT[k] /= (float)ni;
    }
}

void kp_ce_transpose_forward(float *T, const float *M, int ni, int nk)
{
    for (int i = 0; i < ni; i++)
        for (int j = 0; j < nk; j++)
            T[(size_t)j * ni + i] = M[(size_t)i * nk + j];
}

void kp_ce_transpose_backward(float *dM, const float *dT, int ni, int nk)
{
    for (int i = 0; i < ni; i++)
        for (int j = 0; j < nk; j++)
            dM[(size_t)i * nk + j] += dT[(size_t)j * ni + i];
}

void kp_ce_maxsim_forward(float *out, int *am, const float *M, int ni, int nk, const float *wcol)
{
    for (int f = 0; f < KP_CE_N_MAXSIM; f++)
        out[f] = 0.0f;
    if (ni <= 0 || nk <= 0) return;
    float mn = 0.0f;
    for (int j = 0; j < nk; j++) {
        int best = 0;
        for (int i = 1; i < ni; i++)
            if (M[(size_t)i * nk + j] > M[(size_t)best * nk + j]) best = i;
        am[j] = best;
        float v = M[(size_t)best * nk + j];
        out[0] += v;
        out[1] += wcol[j] * v;
        if (j == 0 || v < mn) mn = v, am[nk + ni] = j;
    }
    out[0] /= (float)nk;
    out[2] = mn;
    for (int i = 0; i < ni; i++) {
        const float *row = M + (size_t)i * nk;
        int best = 0;
        for (int j = 1; j < nk; j++)
            if (row[j] > row[best]) best = j;
        am[nk + i] = best;
        out[3] += row[best];
    }
    out[3] /= (float)ni;
}

void kp_ce_maxsim_backward(float *dM, const float *dout, const int *am, int ni, int nk,
                           const float *wcol)
{
    if (ni <= 0 || nk <= 0) return;
    for (int j = 0; j < nk; j++)
        dM[(size_t)am[j] * nk + j] += dout[0] / (float)nk + dout[1] * wcol[j];
    int jm = am[nk + ni];
    dM[(size_t)am[jm] * nk + jm] += dout[2];
    for (int i = 0; i < ni; i++)
        dM[(size_t)i * nk + am[nk + i]] += dout[3] / (float)ni;
}

void kp_ce_meanpool_forward(float *out, const float *X, int n, int E)
{
    for (int e = 0; e < E; e++)
        out[e] = 0.0f;
    if (n <= 0) return;
    for (int i = 0; i < n; i++)
        for (int e = 0; e < E; e++)
            out[e] += X[(size_t)i * E + e];
    float inv = 1.0f / (float)n;
    for (int e = 0; e < E; e++)
        out[e] *= inv;
}

void kp_ce_meanpool_backward(float *dX, const float *dout, int n, int E)
{
    if (n <= 0) return;
    float inv = 1.0f / (float)n;
    for (int i = 0; i < n; i++)
        for (int e = 0; e < E; e++)
            dX[(size_t)i * E + e] += dout[e] * inv;
}

void kp_ce_interact_forward(float *out, const float *a, const float *b, int E)
{
    for (int e = 0; e < E; e++) {
        out[e] = a[e];
        out[E + e] = b[e];
        out[2 * E + e] = a[e] * b[e];
        out[3 * E + e] = fabsf(a[e] - b[e]);
    }
}

void kp_ce_interact_backward(float *da, float *db, const float *dout, const float *a,
                             const float *b, int E)
{
    for (int e = 0; e < E; e++) {
        float diff = a[e] - b[e];
        float sg = diff > 0.0f ? 1.0f : (diff < 0.0f ? -1.0f : 0.0f);
        da[e] += dout[e] + dout[2 * E + e] * b[e] + dout[3 * E + e] * sg;
        db[e] += dout[E + e] + dout[2 * E + e] * a[e] - dout[3 * E + e] * sg;
    }
}

float kp_ce_bce_forward_backward(const float *z, const float *y, int B, float *dz)
{
    if (B <= 0) return 0.0f;
    double loss = 0.0;
    for (int b = 0; b < B; b++) {
        /* -(y log s + (1-y) log(1-s)) = max(z,0) - z*y + log1p(exp(-|z|)) */
        float zz = z[b];
        loss += (double)(fmaxf(zz, 0.0f) - zz * y[b] + log1pf(expf(-fabsf(zz))));
        if (dz) dz[b] += (kp_ce_sigmoid(zz) - y[b]) / (float)B;
    }
    return (float)(loss / B);
}
