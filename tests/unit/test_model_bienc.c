/* Tests for model/bienc: config, seeded init, embedding contract, tower backward by finite
 * differences, Matryoshka prefix, optimiser step, thread safety. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/bienc.h"
#include "model/featurize.h"
#include "model/blas.h"
#include "model/rng.h"
#include "testhelp.h"

static const char *texts[] = {"red running shoes size 10", "cordless drill 18v", "shoes red",
                              "\xd0\xba\xd1\x80\xd0\xb0\xd1\x81\xd0\xbd\xd1\x8b\xd0\xb9 x"};
#define NT 4

static void test_config(void **state)
{
    (void)state;
    kp_bienc_config c;
    char err[128];
    kp_bienc_config_default(&c);
    assert_int_equal(kp_bienc_config_check(&c, err, sizeof(err)), 0);
    assert_int_equal(c.n_buckets, 1u << 18);
    assert_int_equal(c.prefix[c.n_prefix - 1], c.out_dim);
    kp_bienc_config b = c;
    b.prefix[0] = 200;
    assert_int_equal(kp_bienc_config_check(&b, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "prefix"));
    b = c;
    b.prefix[1] = b.prefix[0];
    assert_int_equal(kp_bienc_config_check(&b, err, sizeof(err)), -1);
    b = c;
    b.n_buckets = 0;
    assert_int_equal(kp_bienc_config_check(&b, err, sizeof(err)), -1);
    assert_null(kp_bienc_new(&b, 1));
    b = c;
    b.hidden_dim = -3;
    assert_null(kp_bienc_new(&b, 1));
    assert_null(kp_bienc_new(NULL, 1));
    kp_bienc_free(NULL);
}

static void test_seeded_init_and_embed(void **state)
{
    (void)state;
    kp_bienc_config c;
    kp_bienc *a = th_bienc_new(&c, 1024, 8, 16, 8, 0, 4, 42), *b = kp_bienc_new(&c, 42),
             *d = kp_bienc_new(&c, 43);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(d);
    float ea[NT * 8], eb[NT * 8], ed[NT * 8];
    assert_int_equal(kp_bienc_embed(a, KP_TOWER_ITEM, texts, NULL, NT, ea), 0);
    assert_int_equal(kp_bienc_embed(b, KP_TOWER_ITEM, texts, NULL, NT, eb), 0);
    assert_int_equal(kp_bienc_embed(d, KP_TOWER_ITEM, texts, NULL, NT, ed), 0);
    assert_memory_equal(ea, eb, sizeof(ea));
    assert_memory_not_equal(ea, ed, sizeof(ea));
    for (int i = 0; i < NT; i++) {
        double s = 0;
        for (int k = 0; k < 8; k++)
            s += (double)ea[i * 8 + k] * ea[i * 8 + k];
        assert_true(fabs(s - 1.0) < 1e-5);
    }
    /* one text alone == the same text inside the batch */
    float one[8];
    assert_int_equal(kp_bienc_embed(a, KP_TOWER_ITEM, texts + 2, NULL, 1, one), 0);
    for (int k = 0; k < 8; k++)
        assert_true(fabsf(one[k] - ea[2 * 8 + k]) < 1e-6f);
    /* separate towers give different embeddings */
    float ek[NT * 8];
    assert_int_equal(kp_bienc_embed(a, KP_TOWER_KEY, texts, NULL, NT, ek), 0);
    assert_memory_not_equal(ea, ek, sizeof(ea));
    /* explicit lengths: a prefix of the text */
    size_t lens[1] = {3};
    float red[8], red2[8];
    const char *r1[1] = {"red"};
    assert_int_equal(kp_bienc_embed(a, KP_TOWER_ITEM, texts, lens, 1, red), 0);
    assert_int_equal(kp_bienc_embed(a, KP_TOWER_ITEM, r1, NULL, 1, red2), 0);
    assert_memory_equal(red, red2, sizeof(red));
    /* embed_ids == embed with featurized ids */
    uint32_t ids[NT * KP_FEAT_MAX_IDS];
    int off[NT + 1] = {0};
    for (int i = 0; i < NT; i++)
        off[i + 1] = off[i] + kp_featurize(texts[i], strlen(texts[i]), c.n_buckets, ids + off[i],
                                           KP_FEAT_MAX_IDS);
    float ei[NT * 8];
    assert_int_equal(kp_bienc_embed_ids(a, KP_TOWER_ITEM, ids, off, NT, ei), 0);
    assert_memory_equal(ei, ea, sizeof(ea));
    ids[0] = c.n_buckets; /* out of range id is rejected */
    assert_int_equal(kp_bienc_embed_ids(a, KP_TOWER_ITEM, ids, off, NT, ei), -1);
    /* empty and NULL texts give finite unit vectors */
    const char *empty[2] = {"", NULL};
    float ee[16];
    assert_int_equal(kp_bienc_embed(a, KP_TOWER_KEY, empty, NULL, 2, ee), 0);
    for (int k = 0; k < 16; k++)
        assert_true(isfinite(ee[k]));
    assert_int_equal(kp_bienc_embed(a, KP_TOWER_KEY, texts, NULL, 0, ee), 0);
    assert_int_equal(kp_bienc_embed(a, KP_TOWER_KEY, NULL, NULL, 2, ee), -1);
    kp_bienc_free(a), kp_bienc_free(b), kp_bienc_free(d);
}

static void test_shared_towers(void **state)
{
    (void)state;
    kp_bienc_config c;
    kp_bienc *m = th_bienc_new(&c, 1024, 8, 16, 8, 1, 4, 5);
    assert_int_equal(kp_bienc_n_towers(m), 1);
    float ei[NT * 8], ek[NT * 8];
    kp_bienc_embed(m, KP_TOWER_ITEM, texts, NULL, NT, ei);
    kp_bienc_embed(m, KP_TOWER_KEY, texts, NULL, NT, ek);
    assert_memory_equal(ei, ek, sizeof(ei));
    assert_ptr_equal(kp_bienc_param(m, KP_TOWER_ITEM, KP_BIENC_W1, NULL, NULL),
                     kp_bienc_param(m, KP_TOWER_KEY, KP_BIENC_W1, NULL, NULL));
    size_t rows, cols;
    assert_non_null(kp_bienc_param(m, KP_TOWER_ITEM, KP_BIENC_EMB, &rows, &cols));
    assert_int_equal(rows, 1024);
    assert_int_equal(cols, 8);
    assert_null(kp_bienc_param(m, KP_TOWER_ITEM, KP_BIENC_NPARAM, NULL, NULL));
    kp_bienc_set_version(m, 77);
    assert_int_equal(kp_bienc_version(m), 77);
    kp_bienc_free(m);
}

/* Training forward == inference embed. */
static void test_forward_matches_embed(void **state)
{
    (void)state;
    kp_bienc_config c;
    kp_bienc *m = th_bienc_new(&c, 1024, 8, 16, 8, 0, 4, 9);
    kp_bienc_acts *a = kp_bienc_acts_new(m, NT);
    assert_non_null(a);
    float e[NT * 8];
    kp_bienc_embed(m, KP_TOWER_KEY, texts, NULL, NT, e);
    const float *o = kp_bienc_forward(m, KP_TOWER_KEY, a, texts, NULL, NT);
    assert_non_null(o);
    for (int i = 0; i < NT * 8; i++)
        assert_true(fabsf(o[i] - e[i]) < 1e-6f);
    assert_null(kp_bienc_forward(m, KP_TOWER_KEY, a, texts, NULL, NT + 1)); /* over capacity */
    kp_bienc_grads *g = kp_bienc_grads_new(m);
    float dz[NT * 8] = {0};
    assert_int_equal(kp_bienc_backward(m, a, dz, g), -1); /* failed forward: nothing to do */
    kp_bienc_grads_free(g);
    kp_bienc_acts_free(a);
    kp_bienc_acts_free(NULL);
    kp_bienc_free(m);
}

static double loss_of(const kp_bienc *m, kp_tower t, kp_bienc_acts *a, const float *R, int n)
{
    const float *o = kp_bienc_forward(m, t, a, texts, NULL, n);
    double s = 0;
    for (int i = 0; i < n * 8; i++)
        s += (double)o[i] * R[i];
    return s;
}

static void check_close(double an, double nu)
{
    double tol = 2e-3 + 3e-2 * fmax(fabs(an), fabs(nu));
    if (fabs(an - nu) > tol) fail_msg("analytic %.6g numeric %.6g", an, nu);
}

/* Whole-tower backward vs central differences on every dense weight and every touched
 * embedding entry (plus untouched rows having zero numeric gradient). */
static void tower_grad_check(int shared, kp_tower t)
{
    kp_bienc_config c;
    kp_bienc *m = th_bienc_new(&c, 1024, 8, 16, 8, shared, 4, 11);
    /* larger dense weights so tanh is not in its linear regime */
    size_t nw;
    float *W1 = kp_bienc_param(m, t, KP_BIENC_W1, &nw, NULL);
    for (size_t i = 0; i < 16 * 8; i++)
        W1[i] *= 3.0f;
    kp_bienc_acts *a = kp_bienc_acts_new(m, NT);
    kp_bienc_grads *g = kp_bienc_grads_new(m);
    kp_rng r = th_rng(12);
    float R[NT * 8];
    for (int i = 0; i < NT * 8; i++)
        R[i] = kp_rng_normal(&r);
    kp_bienc_grads_zero(g);
    loss_of(m, t, a, R, NT);
    assert_int_equal(kp_bienc_backward(m, a, R, g), 0);
    const float eps = 1e-2f;
    for (int p = KP_BIENC_W1; p <= KP_BIENC_B2; p++) {
        size_t rows, cols;
        float *w = kp_bienc_param(m, t, (kp_bienc_param_id)p, &rows, &cols);
        float *gw = kp_bienc_grads_dense(g, t, (kp_bienc_param_id)p);
        for (size_t i = 0; i < rows * cols; i++) {
            float keep = w[i];
            w[i] = keep + eps;
            double lp = loss_of(m, t, a, R, NT);
            w[i] = keep - eps;
            double lm = loss_of(m, t, a, R, NT);
            w[i] = keep;
            check_close(gw[i], (lp - lm) / (2.0 * eps));
        }
    }
    const kp_rowgrad *ge = kp_bienc_grads_emb(g, t);
    assert_true(ge->n > 20);
    float *emb = kp_bienc_param(m, t, KP_BIENC_EMB, NULL, NULL);
    for (int k = 0; k < ge->n; k++) {
        uint32_t row = ge->rows[k];
        for (int e = 0; e < 8; e++) {
            float *x = emb + (size_t)row * 8 + e;
            float keep = *x;
            *x = keep + eps;
            double lp = loss_of(m, t, a, R, NT);
            *x = keep - eps;
            double lm = loss_of(m, t, a, R, NT);
            *x = keep;
            check_close(ge->grad[(size_t)k * 8 + e], (lp - lm) / (2.0 * eps));
        }
    }
    /* an untouched row */
    for (uint32_t row = 0; row < c.n_buckets; row++) {
        if (ge->slot[row] >= 0) continue;
        float *x = emb + (size_t)row * 8;
        float keep = *x;
        *x = keep + eps;
        double lp = loss_of(m, t, a, R, NT);
        *x = keep;
        double l0 = loss_of(m, t, a, R, NT);
        assert_true(lp == l0);
        break;
    }
    /* gradients accumulate: a second backward doubles them */
    float before = kp_bienc_grads_dense(g, t, KP_BIENC_B2)[0];
    loss_of(m, t, a, R, NT);
    kp_bienc_backward(m, a, R, g);
    assert_true(fabsf(kp_bienc_grads_dense(g, t, KP_BIENC_B2)[0] - 2 * before) <=
                1e-5f * (1 + fabsf(before)));
    double n2 = kp_bienc_grads_norm(g);
    kp_bienc_grads_scale(g, 0.5f);
    assert_true(fabs(kp_bienc_grads_norm(g) - 0.5 * n2) < 1e-6 * (1 + n2));
    kp_bienc_grads_free(g);
    kp_bienc_acts_free(a);
    kp_bienc_free(m);
}

static void test_tower_grad_item_separate(void **state)
{
    (void)state;
    tower_grad_check(0, KP_TOWER_ITEM);
}

static void test_tower_grad_key_separate(void **state)
{
    (void)state;
    tower_grad_check(0, KP_TOWER_KEY);
}

static void test_tower_grad_shared(void **state)
{
    (void)state;
    tower_grad_check(1, KP_TOWER_KEY);
}

static void test_prefix_grad(void **state)
{
    (void)state;
    enum { N = 3, D = 8, P = 4 };
    kp_rng r = th_rng(13);
    float emb[N * D], out[N * P], nrm[N], R[N * P], demb[N * D] = {0};
    for (int i = 0; i < N * D; i++)
        emb[i] = kp_rng_normal(&r);
    for (int i = 0; i < N * P; i++)
        R[i] = kp_rng_normal(&r);
    kp_bienc_prefix(emb, N, D, P, out, nrm);
    for (int b = 0; b < N; b++) {
        double s = 0;
        for (int k = 0; k < P; k++) {
            s += (double)out[b * P + k] * out[b * P + k];
            assert_true(fabsf(out[b * P + k] * nrm[b] - emb[b * D + k]) < 1e-5f);
        }
        assert_true(fabs(s - 1.0) < 1e-5);
    }
    kp_bienc_prefix_backward(demb, R, out, nrm, N, D, P);
    const float eps = 1e-3f;
    for (int i = 0; i < N * D; i++) {
        double l[2];
        float keep = emb[i];
        for (int s = 0; s < 2; s++) {
            emb[i] = keep + (s ? -eps : eps);
            kp_bienc_prefix(emb, N, D, P, out, NULL);
            l[s] = 0;
            for (int k = 0; k < N * P; k++)
                l[s] += (double)out[k] * R[k];
        }
        emb[i] = keep;
        check_close(demb[i], (l[0] - l[1]) / (2.0 * eps));
        if (i % D >= P) assert_true(demb[i] == 0.0f);
    }
}

/* A few Adam steps on an in-batch contrastive toy task raise matched-pair cosines above
 * mismatched ones; only the touched embedding rows change. */
static void test_training_step(void **state)
{
    (void)state;
    kp_bienc_config c;
    th_bienc_cfg(&c, 1024, 8, 16, 8, 0, 4);
    c.n_buckets = 4096;
    kp_bienc *m = kp_bienc_new(&c, 21);
    const char *items[4] = {"red running shoes", "cordless drill", "oak dining table",
                            "garden hose 50ft"};
    const char *keys[4] = {"shoes", "drill", "table", "hose"};
    kp_bienc_acts *ai = kp_bienc_acts_new(m, 4), *ak = kp_bienc_acts_new(m, 4);
    kp_bienc_grads *g = kp_bienc_grads_new(m);
    kp_adam_hp hp;
    kp_adam_hp_default(&hp);
    hp.lr = 0.01f;
    kp_bienc_opt *o = kp_bienc_opt_new(m, &hp, &hp);
    assert_non_null(o);
    float *emb = kp_bienc_param(m, KP_TOWER_ITEM, KP_BIENC_EMB, NULL, NULL);
    float *snap = malloc(sizeof(float) * 4096 * 8);
    double first = 0, last = 0;
    for (int step = 0; step < 60; step++) {
        kp_bienc_grads_zero(g);
        const float *ei = kp_bienc_forward(m, KP_TOWER_ITEM, ai, items, NULL, 4);
        const float *ek = kp_bienc_forward(m, KP_TOWER_KEY, ak, keys, NULL, 4);
        /* loss = sum_ij s_ij * (i == j ? -1 : 1/3), s = <ei, ek> */
        float di[32] = {0}, dk[32] = {0};
        double loss = 0;
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) {
                float w = i == j ? -1.0f : 1.0f / 3.0f;
                double s = 0;
                for (int d = 0; d < 8; d++)
                    s += (double)ei[i * 8 + d] * ek[j * 8 + d];
                loss += w * s;
                for (int d = 0; d < 8; d++) {
                    di[i * 8 + d] += w * ek[j * 8 + d];
                    dk[j * 8 + d] += w * ei[i * 8 + d];
                }
            }
        if (step == 0) first = loss;
        last = loss;
        assert_int_equal(kp_bienc_backward(m, ai, di, g), 0);
        assert_int_equal(kp_bienc_backward(m, ak, dk, g), 0);
        memcpy(snap, emb, sizeof(float) * 4096 * 8);
        assert_int_equal(kp_bienc_opt_step(m, o, g), (uint64_t)step + 1);
        const kp_rowgrad *ge = kp_bienc_grads_emb(g, KP_TOWER_ITEM);
        for (uint32_t row = 0; row < 4096; row++) {
            int same = memcmp(snap + row * 8, emb + row * 8, sizeof(float) * 8) == 0;
            assert_int_equal(same, ge->slot[row] < 0);
        }
    }
    assert_true(last < first - 1.0);
    free(snap);
    kp_bienc_opt_free(o);
    kp_bienc_opt_free(NULL);
    kp_bienc_grads_free(g);
    kp_bienc_grads_free(NULL);
    kp_bienc_acts_free(ai);
    kp_bienc_acts_free(ak);
    kp_bienc_free(m);
}

typedef struct {
    const kp_bienc *m;
    float out[64 * 8];
    int rc;
} thr_arg;

static const char *many[64];

static void *embed_thread(void *p)
{
    thr_arg *t = p;
    t->rc = 0;
    for (int it = 0; it < 50 && t->rc == 0; it++)
        t->rc = kp_bienc_embed(t->m, KP_TOWER_ITEM, many, NULL, 64, t->out);
    return NULL;
}

static void test_embed_threads(void **state)
{
    (void)state;
    kp_bienc_config c;
    kp_bienc *m = th_bienc_new(&c, 1024, 8, 16, 8, 0, 4, 3);
    static char bufs[64][32];
    for (int i = 0; i < 64; i++) {
        snprintf(bufs[i], sizeof(bufs[i]), "item %d blue widget %d", i, i * 7);
        many[i] = bufs[i];
    }
    float want[64 * 8];
    assert_int_equal(kp_bienc_embed(m, KP_TOWER_ITEM, many, NULL, 64, want), 0);
    static thr_arg args[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        args[i].m = m;
        assert_int_equal(pthread_create(&th[i], NULL, embed_thread, &args[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].rc, 0);
        assert_memory_equal(args[i].out, want, sizeof(want));
    }
    kp_bienc_free(m);
}

/* The two-way fan-out (kp_par_threads, model/blas.h) gives the same embeddings bit for bit as width
 * 1, from texts and from ids, on batch sizes around the split and block boundaries (32, 256), with
 * a NULL text. */
static void test_embed_fanout(void **state)
{
    (void)state;
    kp_bienc_config c;
    kp_bienc *m = th_bienc_new(&c, 1 << 12, 16, 32, 16, 0, 4, 5);
    enum { N = 600, D = 16 };
    static char bufs[N][48];
    static const char *tx[N];
    for (int i = 0; i < N; i++) {
        snprintf(bufs[i], sizeof(bufs[i]), "widget %d in colour %d, pack of %d", i, i % 13, i % 7);
        tx[i] = bufs[i];
    }
    tx[40] = NULL;
    uint32_t *ids = malloc(sizeof(uint32_t) * (size_t)N * KP_FEAT_MAX_IDS);
    int *off = malloc(sizeof(int) * (N + 1));
    off[0] = 0;
    for (int i = 0; i < N; i++)
        off[i + 1] = off[i] + kp_featurize(tx[i], tx[i] ? strlen(tx[i]) : 0, c.n_buckets,
                                           ids + off[i], KP_FEAT_MAX_IDS);
    float *a = malloc(sizeof(float) * N * D), *b = malloc(sizeof(float) * N * D);
    const int ns[] = {1, 31, 32, 33, 255, 256, 257, 600};
    for (size_t k = 0; k < sizeof(ns) / sizeof(*ns); k++) {
        int n = ns[k];
        kp_par_set_threads(1);
        assert_int_equal(kp_par_threads(), 1);
        assert_int_equal(kp_bienc_embed(m, KP_TOWER_ITEM, tx, NULL, n, a), 0);
        kp_par_set_threads(2);
        assert_int_equal(kp_par_threads(), 2);
        assert_int_equal(kp_bienc_embed(m, KP_TOWER_ITEM, tx, NULL, n, b), 0);
        assert_memory_equal(a, b, sizeof(float) * (size_t)n * D);
        assert_int_equal(kp_bienc_embed_ids(m, KP_TOWER_ITEM, ids, off, n, b), 0);
        assert_memory_equal(a, b, sizeof(float) * (size_t)n * D);
    }
    kp_par_set_threads(1);
    free(ids), free(off), free(a), free(b);
    kp_bienc_free(m);
}

TH_MAIN(cmocka_unit_test(test_config), cmocka_unit_test(test_seeded_init_and_embed),
        cmocka_unit_test(test_shared_towers), cmocka_unit_test(test_forward_matches_embed),
        cmocka_unit_test(test_tower_grad_item_separate),
        cmocka_unit_test(test_tower_grad_key_separate), cmocka_unit_test(test_tower_grad_shared),
        cmocka_unit_test(test_prefix_grad), cmocka_unit_test(test_training_step),
        cmocka_unit_test(test_embed_threads), cmocka_unit_test(test_embed_fanout))
