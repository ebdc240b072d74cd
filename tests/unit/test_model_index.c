/* Tests for model/index: GEMM path vs plain reference, de-dup, min_score, prefix pass. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/index.h"
#include "model/nn.h"
#include "model/rng.h"

static float *rand_unit(kp_rng *r, int n, int d)
{
    float *x = malloc(sizeof(float) * (size_t)n * d);
    float *nrm = malloc(sizeof(float) * (size_t)n);
    for (size_t i = 0; i < (size_t)n * d; i++)
        x[i] = kp_rng_normal(r);
    kp_l2norm_forward(x, nrm, x, n, d);
    free(nrm);
    return x;
}

typedef struct {
    int *ids, *counts;
    float *scores;
} res;

static res res_new(int nq, int k)
{
    res r = {malloc(sizeof(int) * (size_t)nq * k), malloc(sizeof(int) * (size_t)nq),
             malloc(sizeof(float) * (size_t)nq * k)};
    return r;
}

static void res_free(res *r)
{
    free(r->ids), free(r->counts), free(r->scores);
}

static void assert_same(const res *a, const res *b, int nq, int k)
{
    for (int q = 0; q < nq; q++) {
        assert_int_equal(a->counts[q], b->counts[q]);
        for (int i = 0; i < a->counts[q]; i++) {
            size_t o = (size_t)q * k + i;
            assert_int_equal(a->ids[o], b->ids[o]);
            assert_true(fabsf(a->scores[o] - b->scores[o]) < 1e-5f);
            if (i > 0) assert_true(a->scores[o - 1] >= a->scores[o]);
        }
        for (int i = a->counts[q]; i < k; i++)
            assert_int_equal(a->ids[(size_t)q * k + i], -1);
    }
}

static float dotf(const float *a, const float *b, int d)
{
    double s = 0;
    for (int i = 0; i < d; i++)
        s += (double)a[i] * b[i];
    return (float)s;
}

static void test_gemm_vs_ref(void **state)
{
    (void)state;
    kp_rng r;
    kp_rng_seed(&r, 1);
    const int n = 2000, d = 64, nq = 37, k = 10; /* 37 queries: crosses a query chunk */
    float *keys = rand_unit(&r, n, d), *q = rand_unit(&r, nq, d);
    kp_index *ix = kp_index_new(keys, n, d, NULL);
    assert_non_null(ix);
    assert_int_equal(kp_index_size(ix), n);
    assert_int_equal(kp_index_dim(ix), d);
    assert_memory_equal(kp_index_row(ix, 5), keys + 5 * d, sizeof(float) * d);
    assert_null(kp_index_row(ix, n));
    res a = res_new(nq, k), b = res_new(nq, k);
    assert_int_equal(kp_index_topk(ix, q, nq, k, -INFINITY, 0, a.ids, a.scores, a.counts), 0);
    assert_int_equal(kp_index_topk_ref(ix, q, nq, k, -INFINITY, 0, b.ids, b.scores, b.counts), 0);
    assert_same(&a, &b, nq, k);
    /* the k-th result beats every key not returned (independent brute force) */
    for (int qi = 0; qi < nq; qi++) {
        assert_int_equal(a.counts[qi], k);
        float kth = a.scores[(size_t)qi * k + k - 1];
        int above = 0;
        for (int i = 0; i < n; i++)
            above += dotf(q + qi * d, keys + (size_t)i * d, d) > kth + 1e-5f;
        assert_true(above <= k - 1);
    }
    res_free(&a), res_free(&b);
    kp_index_free(ix);
    free(keys), free(q);
}

static void test_dedup(void **state)
{
    (void)state;
    kp_rng r;
    kp_rng_seed(&r, 2);
    const int n = 1500, d = 32, nq = 20, k = 15;
    float *keys = rand_unit(&r, n, d), *q = rand_unit(&r, nq, d);
    uint64_t *dk = malloc(sizeof(uint64_t) * n);
    for (int i = 0; i < n; i++)
        dk[i] = (uint64_t)(i % 97) * 1000003u; /* ~15 per key */
    kp_index *ix = kp_index_new(keys, n, d, dk);
    res a = res_new(nq, k), b = res_new(nq, k);
    assert_int_equal(kp_index_topk(ix, q, nq, k, -INFINITY, 0, a.ids, a.scores, a.counts), 0);
    assert_int_equal(kp_index_topk_ref(ix, q, nq, k, -INFINITY, 0, b.ids, b.scores, b.counts), 0);
    assert_same(&a, &b, nq, k);
    for (int qi = 0; qi < nq; qi++) {
        assert_int_equal(a.counts[qi], k);
        for (int i = 0; i < k; i++) {
            int id = a.ids[qi * k + i];
            for (int j = 0; j < i; j++)
                assert_true(dk[a.ids[qi * k + j]] != dk[id]);
            /* the best member of that key was kept */
            for (int o = 0; o < n; o++)
                if (dk[o] == dk[id])
                    assert_true(dotf(q + qi * d, keys + (size_t)o * d, d) <=
                                a.scores[qi * k + i] + 1e-5f);
        }
    }
    /* all keys equal: one result */
    for (int i = 0; i < n; i++)
        dk[i] = 7;
    kp_index *one = kp_index_new(keys, n, d, dk);
    assert_int_equal(kp_index_topk(one, q, nq, k, -INFINITY, 0, a.ids, a.scores, a.counts), 0);
    for (int qi = 0; qi < nq; qi++)
        assert_int_equal(a.counts[qi], 1);
    kp_index_free(one);
    res_free(&a), res_free(&b);
    kp_index_free(ix);
    free(keys), free(q), free(dk);
}

static void test_min_score(void **state)
{
    (void)state;
    kp_rng r;
    kp_rng_seed(&r, 3);
    const int n = 800, d = 16, nq = 9, k = 50;
    const float ms = 0.45f;
    float *keys = rand_unit(&r, n, d), *q = rand_unit(&r, nq, d);
    kp_index *ix = kp_index_new(keys, n, d, NULL);
    res a = res_new(nq, k), b = res_new(nq, k);
    assert_int_equal(kp_index_topk(ix, q, nq, k, ms, 0, a.ids, a.scores, a.counts), 0);
    assert_int_equal(kp_index_topk_ref(ix, q, nq, k, ms, 0, b.ids, b.scores, b.counts), 0);
    assert_same(&a, &b, nq, k);
    int some_partial = 0;
    for (int qi = 0; qi < nq; qi++) {
        int want = 0;
        for (int i = 0; i < n; i++)
            want += dotf(q + qi * d, keys + (size_t)i * d, d) >= ms;
        if (want > k) want = k;
        assert_true(abs(a.counts[qi] - want) <= 1); /* float rounding at the threshold */
        for (int i = 0; i < a.counts[qi]; i++)
            assert_true(a.scores[qi * k + i] >= ms);
        some_partial |= a.counts[qi] < k;
    }
    assert_true(some_partial);
    res_free(&a), res_free(&b);
    kp_index_free(ix);
    free(keys), free(q);
}

static void test_prefix_pass(void **state)
{
    (void)state;
    kp_rng r;
    kp_rng_seed(&r, 4);
    const int n = 3000, d = 64, nq = 40, k = 8;
    float *keys = rand_unit(&r, n, d), *q = rand_unit(&r, nq, d);
    uint64_t *dk = malloc(sizeof(uint64_t) * n);
    for (int i = 0; i < n; i++)
        dk[i] = (uint64_t)(i % 1000);
    kp_index *ix = kp_index_new(keys, n, d, dk);
    res a = res_new(nq, k), b = res_new(nq, k), full = res_new(nq, k);
    for (int p = 8; p <= 32; p *= 2) {
        assert_int_equal(kp_index_topk(ix, q, nq, k, 0.1f, p, a.ids, a.scores, a.counts), 0);
        assert_int_equal(kp_index_topk_ref(ix, q, nq, k, 0.1f, p, b.ids, b.scores, b.counts), 0);
        assert_same(&a, &b, nq, k);
    }
    /* with every key a candidate, the prefix pass returns the full-size result */
    kp_index_set_cand_factor(ix, n);
    assert_int_equal(kp_index_topk(ix, q, nq, k, 0.1f, 16, a.ids, a.scores, a.counts), 0);
    assert_int_equal(kp_index_topk(ix, q, nq, k, 0.1f, 0, full.ids, full.scores, full.counts), 0);
    assert_same(&a, &full, nq, k);
    /* prefix_dim == dim is the plain pass */
    kp_index_set_cand_factor(ix, 1);
    assert_int_equal(kp_index_topk(ix, q, nq, k, 0.1f, d, a.ids, a.scores, a.counts), 0);
    assert_same(&a, &full, nq, k);
    res_free(&a), res_free(&b), res_free(&full);
    kp_index_free(ix);
    free(keys), free(q), free(dk);
}

static void test_edges(void **state)
{
    (void)state;
    /* duplicate rows tie: lower id first; k > n pads with -1 */
    float keys[4 * 2] = {1, 0, 0, 1, 1, 0, 0.6f, 0.8f};
    float q[2] = {1, 0};
    kp_index *ix = kp_index_new(keys, 4, 2, NULL);
    int ids[6], cnt;
    float sc[6];
    assert_int_equal(kp_index_topk(ix, q, 1, 6, -INFINITY, 0, ids, sc, &cnt), 0);
    assert_int_equal(cnt, 4);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 2);
    assert_int_equal(ids[2], 3);
    assert_int_equal(ids[3], 1);
    assert_int_equal(ids[4], -1);
    assert_int_equal(ids[5], -1);
    assert_int_equal(kp_index_topk_ref(ix, q, 1, 6, -INFINITY, 0, ids, sc, &cnt), 0);
    assert_int_equal(ids[1], 2);
    /* NaN in a query: nothing returned, no crash */
    float qn[2] = {NAN, 0};
    assert_int_equal(kp_index_topk(ix, qn, 1, 3, -INFINITY, 0, ids, sc, &cnt), 0);
    assert_int_equal(cnt, 0);
    /* bad args */
    assert_int_equal(kp_index_topk(ix, q, 1, 0, 0, 0, ids, sc, &cnt), -1);
    assert_int_equal(kp_index_topk(ix, q, -1, 3, 0, 0, ids, sc, &cnt), -1);
    assert_int_equal(kp_index_topk(ix, q, 1, 3, 0, 3, ids, sc, &cnt), -1);
    assert_int_equal(kp_index_topk(ix, NULL, 1, 3, 0, 0, ids, sc, &cnt), -1);
    assert_int_equal(kp_index_topk(NULL, q, 1, 3, 0, 0, ids, sc, &cnt), -1);
    assert_int_equal(kp_index_topk_ref(ix, q, 1, 3, 0, -1, ids, sc, &cnt), -1);
    kp_index_free(ix);
    /* empty index */
    kp_index *e = kp_index_new(NULL, 0, 2, NULL);
    assert_non_null(e);
    cnt = 9;
    assert_int_equal(kp_index_topk(e, q, 1, 3, 0, 0, ids, sc, &cnt), 0);
    assert_int_equal(cnt, 0);
    assert_int_equal(kp_index_topk(e, q, 1, 3, 0, 1, ids, sc, &cnt), 0);
    assert_int_equal(cnt, 0);
    kp_index_free(e);
    assert_null(kp_index_new(NULL, 3, 2, NULL));
    assert_null(kp_index_new(keys, 3, 0, NULL));
    kp_index_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_vs_ref), cmocka_unit_test(test_dedup),
        cmocka_unit_test(test_min_score),   cmocka_unit_test(test_prefix_pass),
        cmocka_unit_test(test_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
