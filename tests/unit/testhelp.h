/* testhelp.h - fixtures shared by the unit tests of model/ and offline/ (static inline, so a test
 * that uses none of them pays nothing). Include after <cmocka.h>.
 *
 *   th_rng                                        a seeded generator
 *   th_fill / th_fill_normal / th_fill_uniform   seeded random arrays
 *   th_wsum                                       sum of x[i] * w[i] (a scalar loss of an output)
 *   th_central_diff                               the central difference of a loss in x[i]
 *   th_assert_grad_close                          analytic vs central-difference gradient
 *   th_bienc_cfg                                  a small bi-encoder config with two prefixes
 *   th_bienc_new                                  th_bienc_cfg and a new bi-encoder of it
 *   th_bienc_same_params                          two bi-encoders' parameters bit-identical
 *   th_tmp_path                                   a per-process path under /tmp
 *   th_slurp                                      a whole file into memory
 *   TH_MAIN (th_main.h)                           the main() of a test file
 */
#ifndef KP_TESTHELP_H
#define KP_TESTHELP_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/bienc.h"
#include "model/rng.h"
#include "th_main.h"

/* A generator seeded with seed. */
static inline kp_rng th_rng(uint64_t seed)
{
    kp_rng r;
    kp_rng_seed(&r, seed);
    return r;
}

/* x[i] = scale * N(0, 1) from r. */
static inline void th_fill(kp_rng *r, float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * kp_rng_normal(r);
}

/* As th_fill, from a fresh generator seeded with seed. */
static inline void th_fill_normal(float *x, int n, uint64_t seed, float scale)
{
    kp_rng r = th_rng(seed);
    th_fill(&r, x, (size_t)(n > 0 ? n : 0), scale);
}

/* x[i] uniform in [0, 1), from a fresh generator seeded with seed. */
static inline void th_fill_uniform(float *x, int n, uint64_t seed)
{
    kp_rng r = th_rng(seed);
    for (int i = 0; i < n; i++)
        x[i] = kp_rng_uniform(&r);
}

/* sum_i x[i] * w[i] in double. */
static inline double th_wsum(const float *x, const float *w, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * w[i];
    return s;
}

/* Fails unless |analytic - numeric| <= abs_tol + 2e-2 * max(|analytic|, |numeric|) (float32
 * central differences); the message names what[i]. */
static inline void th_assert_grad_close(double analytic, double numeric, double abs_tol,
                                        const char *what, int i)
{
    double tol = abs_tol + 2e-2 * fmax(fabs(analytic), fabs(numeric));
    if (fabs(analytic - numeric) > tol)
        fail_msg("%s[%d]: analytic %.6g numeric %.6g", what, i, analytic, numeric);
}

/* A scalar loss of parameters the caller perturbs in place (th_central_diff). */
typedef double (*th_loss_fn)(void *ctx);

/* (loss(x[i] + h) - loss(x[i] - h)) / (2 h): the central difference of loss in x[i]; x[i] is
 * restored. */
static inline double th_central_diff(float *x, size_t i, float h, th_loss_fn loss, void *ctx)
{
    float keep = x[i];
    x[i] = keep + h;
    double lp = loss(ctx);
    x[i] = keep - h;
    double lm = loss(ctx);
    x[i] = keep;
    return (lp - lm) / (2.0 * h);
}

/* A small bi-encoder: n_buckets, emb_dim, hidden_dim, out_dim, towers shared or not, Matryoshka
 * prefixes {p0, out_dim}; every other field 0. */
static inline void th_bienc_cfg(kp_bienc_config *c, uint32_t n_buckets, int emb_dim, int hidden_dim,
                                int out_dim, int shared, int p0)
{
    memset(c, 0, sizeof(*c));
    c->n_buckets = n_buckets;
    c->emb_dim = emb_dim;
    c->hidden_dim = hidden_dim;
    c->out_dim = out_dim;
    c->shared_towers = shared;
    c->n_prefix = 2;
    c->prefix[0] = p0;
    c->prefix[1] = out_dim;
}

/* th_bienc_cfg(c, ...) and a new bi-encoder of that config seeded with seed (NULL on failure). */
static inline kp_bienc *th_bienc_new(kp_bienc_config *c, uint32_t n_buckets, int emb_dim,
                                     int hidden_dim, int out_dim, int shared, int p0, uint64_t seed)
{
    th_bienc_cfg(c, n_buckets, emb_dim, hidden_dim, out_dim, shared, p0);
    return kp_bienc_new(c, seed);
}

/* 1 if every parameter tensor of every tower of a and b has the same shape and bits, else 0. */
static inline int th_bienc_same_params(const kp_bienc *a, const kp_bienc *b)
{
    for (int t = 0; t < kp_bienc_n_towers(a); t++)
        for (int p = 0; p < KP_BIENC_NPARAM; p++) {
            size_t r, c, r2, c2;
            const float *x = kp_bienc_param_c(a, (kp_tower)t, (kp_bienc_param_id)p, &r, &c);
            const float *y = kp_bienc_param_c(b, (kp_tower)t, (kp_bienc_param_id)p, &r2, &c2);
            if (!x || !y || r != r2 || c != c2) return 0;
            if (memcmp(x, y, r * c * sizeof(float)) != 0) return 0;
        }
    return 1;
}

/* buf = "/tmp/kprec_test_<tag>_<pid>_<name>". */
static inline void th_tmp_path(char *buf, size_t n, const char *tag, const char *name)
{
    snprintf(buf, n, "/tmp/kprec_test_%s_%ld_%s", tag, (long)getpid(), name);
}

/* The whole file at path (malloc'ed, one spare byte; the caller frees it) and its size in *n, or
 * NULL if it cannot be read. */
static inline unsigned char *th_slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) *n = (size_t)sz;
    return b;
}

#endif
