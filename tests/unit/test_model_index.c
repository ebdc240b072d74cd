/* Tests for model/index: tiled GEMM path vs plain reference (tilings, block boundaries, ties,
 * rising scores), de-dup, min_score, prefix pass (also built concurrently). */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/blas.h"
#include "model/index.h"
#include "model/nn.h"
#include "model/rng.h"
#include "model/topk.h"
#include "th_main.h"
#include "testhelp.h"

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

/* n random unit keys (returned) and nq random unit queries (*q) of dimension d, from one generator
 * seeded with seed (keys first). */
static float *keys_and_queries(uint64_t seed, int n, int nq, int d, float **q)
{
    kp_rng r = th_rng(seed);
    float *keys = rand_unit(&r, n, d);
    *q = rand_unit(&r, nq, d);
    return keys;
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

/* The top k of every query by kp_index_topk into a and by kp_index_topk_ref into b (no minimum
 * score, no prefix pass), which must agree. */
static void topk_vs_ref(const kp_index *ix, const float *q, int nq, int k, res *a, res *b)
{
    assert_int_equal(kp_index_topk(ix, q, nq, k, -INFINITY, 0, a->ids, a->scores, a->counts), 0);
    assert_int_equal(kp_index_topk_ref(ix, q, nq, k, -INFINITY, 0, b->ids, b->scores, b->counts),
                     0);
    assert_same(a, b, nq, k);
}

/* The de-duplication keys dk[i] = (i * a % m) * b of n keys (malloc'ed). */
static uint64_t *dedup_keys(int n, int a, int m, uint64_t b)
{
    uint64_t *dk = malloc(sizeof(uint64_t) * n);
    for (int i = 0; i < n; i++)
        dk[i] = (uint64_t)(i * a % m) * b;
    return dk;
}

/* Frees what a test made: the index, the results a and b, the keys and the queries. */
static void run_free(kp_index *ix, res *a, res *b, float *keys, float *q)
{
    res_free(a), res_free(b);
    kp_index_free(ix);
    free(keys), free(q);
}

static void test_gemm_vs_ref(void **state)
{
    (void)state;
    const int n = 2000, d = 64, nq = 37, k = 10; /* 37 queries: crosses a query chunk */
    float *q, *keys = keys_and_queries(1, n, nq, d, &q);
    kp_index *ix = kp_index_new(keys, n, d, NULL);
    assert_non_null(ix);
    assert_int_equal(kp_index_size(ix), n);
    assert_int_equal(kp_index_dim(ix), d);
    assert_memory_equal(kp_index_row(ix, 5), keys + 5 * d, sizeof(float) * d);
    assert_null(kp_index_row(ix, n));
    res a = res_new(nq, k), b = res_new(nq, k);
    topk_vs_ref(ix, q, nq, k, &a, &b);
    /* the k-th result beats every key not returned (independent brute force) */
    for (int qi = 0; qi < nq; qi++) {
        assert_int_equal(a.counts[qi], k);
        float kth = a.scores[(size_t)qi * k + k - 1];
        int above = 0;
        for (int i = 0; i < n; i++)
            above += dotf(q + qi * d, keys + (size_t)i * d, d) > kth + 1e-5f;
        assert_true(above <= k - 1);
    }
    run_free(ix, &a, &b, keys, q);
}

static void test_dedup(void **state)
{
    (void)state;
    const int n = 1500, d = 32, nq = 20, k = 15;
    float *q, *keys = keys_and_queries(2, n, nq, d, &q);
    uint64_t *dk = dedup_keys(n, 1, 97, 1000003u); /* ~15 per key */
    kp_index *ix = kp_index_new(keys, n, d, dk);
    res a = res_new(nq, k), b = res_new(nq, k);
    topk_vs_ref(ix, q, nq, k, &a, &b);
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
    run_free(ix, &a, &b, keys, q);
    free(dk);
}

/* The exact pass de-dups late (the best k + margin without de-dup, then de-dup; a query with
 * more duplicates than the margin among its best is selected again with de-dup): light
 * duplicates (300 pairs in 3,000 keys), min_score, and one query whose 40 best keys are
 * near-copies of it sharing one key, all equal to the reference. */
static void test_late_dedup(void **state)
{
    (void)state;
    const int n = 3000, d = 32, nq = 64, k = 50;
    float *q, *keys = keys_and_queries(7, n, nq, d, &q);
    uint64_t *dk = dedup_keys(n, 1, n - 300, 11);
    for (int c = 0; c < 40; c++) { /* rows 1000..1039: query 3 plus a little, all key 5 */
        float *r = keys + (size_t)(1000 + c) * d, nrm = 0;
        for (int j = 0; j < d; j++)
            r[j] = q[3 * d + j] + 0.01f * (float)((c * 7 + j) % 5 - 2), nrm += r[j] * r[j];
        for (int j = 0; j < d; j++)
            r[j] /= sqrtf(nrm);
        dk[1000 + c] = 5;
    }
    kp_index *ix = kp_index_new(keys, n, d, dk);
    res a = res_new(nq, k), b = res_new(nq, k);
    topk_vs_ref(ix, q, nq, k, &a, &b);
    int pairs = 0;
    for (int qi = 0; qi < nq; qi++) {
        assert_int_equal(a.counts[qi], k);
        for (int i = 0; i < k; i++)
            pairs += a.ids[qi * k + i] < 300 || a.ids[qi * k + i] >= n - 300;
    }
    assert_true(pairs > 0);
    int key5 = 0;
    for (int i = 0; i < k; i++)
        key5 += dk[a.ids[3 * k + i]] == 5;
    assert_int_equal(key5, 1); /* 40 of query 3's best share key 5: one is kept */
    for (int kq = 1; kq <= 70; kq += 23) {
        res c = res_new(nq, kq), e = res_new(nq, kq);
        assert_int_equal(kp_index_topk(ix, q, nq, kq, 0.3f, 0, c.ids, c.scores, c.counts), 0);
        assert_int_equal(kp_index_topk_ref(ix, q, nq, kq, 0.3f, 0, e.ids, e.scores, e.counts), 0);
        assert_same(&c, &e, nq, kq);
        res_free(&c), res_free(&e);
    }
    run_free(ix, &a, &b, keys, q);
    free(dk);
}

static void test_min_score(void **state)
{
    (void)state;
    const int n = 800, d = 16, nq = 9, k = 50;
    const float ms = 0.45f;
    float *q, *keys = keys_and_queries(3, n, nq, d, &q);
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
    run_free(ix, &a, &b, keys, q);
}

static void test_prefix_pass(void **state)
{
    (void)state;
    const int n = 3000, d = 64, nq = 40, k = 8;
    float *q, *keys = keys_and_queries(4, n, nq, d, &q);
    uint64_t *dk = dedup_keys(n, 1, 1000, 1);
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

/* Runs fast and reference with the same arguments and asserts identical ids (and counts). */
static void check_vs_ref(kp_index *ix, const float *q, int nq, int k, float ms, int p)
{
    res a = res_new(nq, k), b = res_new(nq, k);
    assert_int_equal(kp_index_topk(ix, q, nq, k, ms, p, a.ids, a.scores, a.counts), 0);
    assert_int_equal(kp_index_topk_ref(ix, q, nq, k, ms, p, b.ids, b.scores, b.counts), 0);
    assert_same(&a, &b, nq, k);
    res_free(&a), res_free(&b);
}

/* Tiling must not change results: key blocks around the 16-score scan blocks (1, 15, 16, 17, ...),
 * blocks larger than n, query tiles of 1 to all, batch sizes, k > n, de-dup, min_score, prefix. */
static void test_tiles_vs_ref(void **state)
{
    (void)state;
    const int n = 481, d = 24, nq = 37; /* 481 = 30 * 16 + 1: a tail after full 16-blocks */
    float *q, *keys = keys_and_queries(5, n, nq, d, &q);
    uint64_t *dk = dedup_keys(n, 7, 61, 1); /* ~8 keys share each value, spread over all blocks */
    kp_index *ix = kp_index_new(keys, n, d, NULL), *ixd = kp_index_new(keys, n, d, dk);
    assert_non_null(ix);
    assert_non_null(ixd);
    const int blocks[] = {1, 7, 15, 16, 17, 32, 33, 160, 480, 481, 482, 4096};
    const int tiles[] = {1, 5, 36, 37, 256};
    const int ks[] = {1, 10, 50, 200, 600}; /* 600 > n: padded */
    for (size_t bi = 0; bi < sizeof(blocks) / sizeof(*blocks); bi++) {
        for (size_t ti = 0; ti < sizeof(tiles) / sizeof(*tiles); ti++) {
            kp_index_set_tiles(ix, tiles[ti], blocks[bi]);
            kp_index_set_tiles(ixd, tiles[ti], blocks[bi]);
            int k = ks[(bi + ti) % 5];
            check_vs_ref(ix, q, nq, k, -INFINITY, 0);
            check_vs_ref(ixd, q, nq, k, -INFINITY, 0);
            check_vs_ref(ixd, q, nq, k, 0.2f, 0);
            check_vs_ref(ixd, q, nq, k, 0.0f, 8);
            check_vs_ref(ix, q, 1, k, -0.1f, 12); /* batch of one */
        }
    }
    /* default tiles again, every batch size from 1 to nq on the de-dup index */
    kp_index_set_tiles(ixd, 0, 0);
    for (int b = 1; b <= nq; b += 6)
        check_vs_ref(ixd, q, b, 20, -INFINITY, 0);
    kp_index_free(ix), kp_index_free(ixd);
    free(keys), free(q), free(dk);
}

/* Worst case for the threshold: scores rise with the id (every key is a new top-k entry, the
 * candidate buffer fills and is reduced again and again), and exact ties everywhere. Entries
 * are small multiples of 1/4, so every dot product is exact in float and sgemm equals the plain
 * loop bit for bit: ids must match exactly, ties broken by the lower id. (Not the prefix pass: its
 * re-normalised scores are rounded, so which of two mathematically equal scores is larger may
 * differ between the paths; random data covers it.) */
static void test_rising_and_ties(void **state)
{
    (void)state;
    const int n = 3001, d = 4, nq = 3;
    float *keys = malloc(sizeof(float) * n * d), q[3 * 4] = {1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0};
    uint64_t *dk = malloc(sizeof(uint64_t) * n);
    for (int i = 0; i < n; i++) {
        keys[i * d + 0] = 0.25f * (float)(i / 3); /* rising for query 0, ties in threes */
        keys[i * d + 1] = 0.25f * (float)(i % 5); /* five values for query 1: massive ties */
        keys[i * d + 2] = 0.25f * (float)(i % 2);
        keys[i * d + 3] = 1.0f;
        dk[i] = (uint64_t)(i % 11);
    }
    kp_index *ix = kp_index_new(keys, n, d, NULL), *ixd = kp_index_new(keys, n, d, dk);
    const int ks[] = {1, 3, 16, 17, 100, 1000};
    for (size_t ki = 0; ki < sizeof(ks) / sizeof(*ks); ki++) {
        for (int kb = 16; kb <= 4096; kb *= 4) {
            kp_index_set_tiles(ix, 2, kb);
            kp_index_set_tiles(ixd, 2, kb);
            check_vs_ref(ix, q, nq, ks[ki], -INFINITY, 0);
            check_vs_ref(ix, q, nq, ks[ki], 100.0f, 0);
            check_vs_ref(ixd, q, nq, ks[ki], 1.5f, 0);
        }
    }
    /* query 0, k=4: key 3000 is alone at the top, then the group 2997..2999 (equal: by id) */
    int ids[4], cnt[1];
    float sc[4];
    assert_int_equal(kp_index_topk(ix, q, 1, 4, -INFINITY, 0, ids, sc, cnt), 0);
    assert_int_equal(ids[0], 3000); /* 3000 / 3 = 1000, alone in its group */
    assert_int_equal(ids[1], 2997);
    assert_int_equal(ids[2], 2998);
    assert_int_equal(ids[3], 2999);
    kp_index_free(ix), kp_index_free(ixd);
    free(keys), free(dk);
}

typedef struct {
    kp_index *ix;
    const float *q;
    int nq, k, p, rc;
    res out;
} prefix_job;

static void *prefix_worker(void *arg)
{
    prefix_job *j = arg;
    j->rc = kp_index_topk(j->ix, j->q, j->nq, j->k, -INFINITY, j->p, j->out.ids, j->out.scores,
                          j->out.counts);
    return NULL;
}

/* The prefix matrix is built by the first query that needs it, possibly from several threads at
 * once; every thread must see the same (reference) result, and later calls reuse it. */
static void test_prefix_threads(void **state)
{
    (void)state;
    const int n = 2000, d = 32, nq = 12, k = 7, nt = 4;
    float *q, *keys = keys_and_queries(6, n, nq, d, &q);
    kp_index *ix = kp_index_new(keys, n, d, NULL);
    res want = res_new(nq, k);
    assert_int_equal(
        kp_index_topk_ref(ix, q, nq, k, -INFINITY, 16, want.ids, want.scores, want.counts), 0);
    prefix_job jobs[4];
    pthread_t th[4];
    for (int t = 0; t < nt; t++) {
        jobs[t] = (prefix_job){ix, q, nq, k, 16, -1, res_new(nq, k)};
        assert_int_equal(pthread_create(&th[t], NULL, prefix_worker, &jobs[t]), 0);
    }
    for (int t = 0; t < nt; t++) {
        assert_int_equal(pthread_join(th[t], NULL), 0);
        assert_int_equal(jobs[t].rc, 0);
        assert_same(&jobs[t].out, &want, nq, k);
        res_free(&jobs[t].out);
    }
    check_vs_ref(ix, q, nq, k, -INFINITY, 16); /* cached matrix */
    check_vs_ref(ix, q, nq, k, -INFINITY, 5);  /* another size beside it */
    res_free(&want);
    kp_index_free(ix);
    free(keys), free(q);
}

/* Plain top-kk of row[0..len) with ids ids[i] (or i): NaN and < min_score dropped, sorted by
 * score desc then id, the first kk. Returns how many. */
static int plain_topk(const float *row, const int *ids, int len, int kk, float min_score,
                      kp_hit *out)
{
    int m = 0;
    for (int i = 0; i < len; i++)
        if (row[i] >= min_score) out[m].s = row[i], out[m++].id = ids ? ids[i] : i;
    qsort(out, (size_t)m, sizeof(kp_hit), kp_hit_cmp_desc);
    return m < kk ? m : kk;
}

/* The selector alone (kp_topk_scan / _scan_ids + finish) against a plain sort, at each kernel level
 * (kp_topk_set_simd: the AVX-512 and the AVX2 compaction and reduce where the CPU has them, and
 * the portable ones): scores from a handful of
 * values (massive ties at the kk-th place, where the starting lower bound lands) or distinct, NaN
 * sprinkled in, lengths off the 16-score and chunk boundaries, the row offered in one or several
 * scans. */
static void test_selector_vs_plain(void **state)
{
    (void)state;
    kp_rng r;
    kp_rng_seed(&r, 11);
    const int lens[] = {1, 15, 16, 17, 300, 1000, 1023, 5000};
    const int kks[] = {1, 5, 66, 200};
    float *row = malloc(sizeof(float) * 5000);
    int *ids = malloc(sizeof(int) * 5000), *got = malloc(sizeof(int) * 200);
    float *gs = malloc(sizeof(float) * 200);
    kp_hit *want = malloc(sizeof(kp_hit) * 5000);
    const int levels[] = {KP_TOPK_SIMD_BEST, KP_TOPK_SIMD_AVX2, KP_TOPK_SIMD_PLAIN};
    for (int lv = 0; lv < 3; lv++) {
        kp_topk_set_simd(levels[lv]);
        for (size_t li = 0; li < sizeof(lens) / sizeof(*lens); li++)
            for (size_t ki = 0; ki < sizeof(kks) / sizeof(*kks); ki++)
                /* mode 0: scan whole, 1: in pieces, 2: scan_ids, 3: whole with distinct scores
                 * (the reduce's deep selects rather than its ties) */
                for (int mode = 0; mode < 4; mode++) {
                    int len = lens[li], kk = kks[ki], cnt = -1;
                    for (int i = 0; i < len; i++) {
                        row[i] = mode == 3 ? (float)(kp_rng_next(&r) % 1000003) * 1e-6f
                                           : (float)(kp_rng_next(&r) % 7) * 0.5f;
                        if (kp_rng_next(&r) % 53 == 0) row[i] = NAN;
                        ids[i] = i;
                    }
                    for (int i = len - 1; mode == 2 && i > 0; i--) { /* shuffled ids */
                        int j = (int)(kp_rng_next(&r) % (uint64_t)(i + 1)), t = ids[i];
                        ids[i] = ids[j], ids[j] = t;
                    }
                    float min_score = mode == 1 ? 1.0f : -INFINITY;
                    kp_topk_cfg c = kp_topk_config(kk, 0, NULL);
                    void *mem = malloc(kp_topk_bytes(&c));
                    kp_topk s;
                    kp_topk_init(&s, &c, mem, min_score);
                    if (mode == 0 || mode == 3)
                        kp_topk_scan(&s, &c, row, len, 0);
                    else if (mode == 1)
                        for (int i0 = 0; i0 < len; i0 += 333)
                            kp_topk_scan(&s, &c, row + i0, len - i0 < 333 ? len - i0 : 333, i0);
                    else
                        kp_topk_scan_ids(&s, &c, row, len, ids);
                    kp_topk_finish(&s, &c, kk, got, gs, &cnt);
                    int nw = plain_topk(row, mode == 2 ? ids : NULL, len, kk, min_score, want);
                    assert_int_equal(cnt, nw);
                    for (int a = 0; a < nw; a++) {
                        assert_int_equal(got[a], want[a].id);
                        assert_true(gs[a] == want[a].s);
                    }
                    free(mem);
                }
    }
    kp_topk_set_simd(KP_TOPK_SIMD_BEST);
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512vl"))
        print_message("no AVX-512 (F + VL) here: the first level ran as the second\n");
    if (!__builtin_cpu_supports("avx2"))
        print_message("no AVX2 here: every level ran the portable compaction and reduce\n");
    free(row), free(ids), free(got), free(gs), free(want);
}

/* The index's exact pass with the AVX2 and with the portable kernels matches the reference too. */
static void test_portable_vs_ref(void **state)
{
    kp_topk_set_simd(KP_TOPK_SIMD_AVX2);
    test_rising_and_ties(state);
    test_tiles_vs_ref(state);
    kp_topk_set_simd(KP_TOPK_SIMD_PLAIN);
    test_rising_and_ties(state);
    test_tiles_vs_ref(state);
    kp_topk_set_simd(KP_TOPK_SIMD_BEST);
}

/* kp_index_topk of ix at width w (single-threaded BLAS) into a fresh result. */
static res topk_at(kp_index *ix, const float *q, int nq, int k, float ms, int p, int w)
{
    res r = res_new(nq, k);
    kp_par_set_threads(w);
    assert_int_equal(kp_index_topk(ix, q, nq, k, ms, p, r.ids, r.scores, r.counts), 0);
    kp_par_set_threads(1);
    return r;
}

/* The same ids and counts, and the same scores to 4 FLT_EPSILON relative (4 to 8 ulp: a BLAS may
 * compute an element differently by its row's place in a GEMM call; OpenBLAS 0.3.21's SkylakeX
 * kernels do not, its Zen kernels do, in the last bits). */
static void assert_split_equal(const res *a, const res *b, int nq, int k)
{
    assert_memory_equal(a->ids, b->ids, sizeof(int) * (size_t)nq * k);
    assert_memory_equal(a->counts, b->counts, sizeof(int) * (size_t)nq);
    for (size_t i = 0; i < (size_t)nq * k; i++)
        assert_true(fabsf(a->scores[i] - b->scores[i]) <= 4.0f * FLT_EPSILON * fabsf(b->scores[i]));
}

/* The model's split (kp_par_threads, model/blas.h; taken with single-threaded BLAS) runs the
 * queries in two halves: the same results as width 1 (each half tiles its queries differently, so
 * a score may differ in its last bits: assert_split_equal) and as the reference: exact, de-dup,
 * min_score, prefix (its matrix built lazily
 * by the two halves at once, on a fresh index), and massive ties on 40 queries (over the split's
 * minimum of 16). */
static void test_fanout(void **state)
{
    int blas = kp_blas_threads();
    kp_blas_set_threads(1);
    const int n = 3000, d = 32, nq = 301, k = 50;
    float *q, *keys = keys_and_queries(9, n, nq, d, &q);
    uint64_t *dk = dedup_keys(n, 7, 400, 3);
    kp_index *ix = kp_index_new(keys, n, d, NULL), *ixd = kp_index_new(keys, n, d, dk);
    struct {
        kp_index *ix;
        float ms;
        int p;
    } cases[] = {{ix, -INFINITY, 0}, {ixd, -INFINITY, 0}, {ixd, 0.1f, 0}, {ix, -INFINITY, 16}};
    for (size_t c = 0; c < sizeof(cases) / sizeof(*cases); c++) {
        kp_index *fresh = kp_index_new(keys, n, d, cases[c].ix == ixd ? dk : NULL);
        res b = topk_at(fresh, q, nq, k, cases[c].ms, cases[c].p, 2); /* width 2 first */
        res a = topk_at(cases[c].ix, q, nq, k, cases[c].ms, cases[c].p, 1);
        assert_split_equal(&a, &b, nq, k);
        kp_par_set_threads(2);
        check_vs_ref(fresh, q, nq, k, cases[c].ms, cases[c].p);
        kp_par_set_threads(1);
        res_free(&a), res_free(&b);
        kp_index_free(fresh);
    }
    /* ties: keys with few distinct scores, queries cycling over three directions */
    const int tn = 3001, td = 4, tq = 40;
    float *tk = malloc(sizeof(float) * tn * td), *tqv = malloc(sizeof(float) * tq * td);
    for (int i = 0; i < tn; i++) {
        tk[i * td + 0] = 0.25f * (float)(i / 3);
        tk[i * td + 1] = 0.25f * (float)(i % 5);
        tk[i * td + 2] = 0.25f * (float)(i % 2);
        tk[i * td + 3] = 1.0f;
    }
    for (int i = 0; i < tq; i++)
        for (int j = 0; j < td; j++)
            tqv[i * td + j] = (float)((j == i % 3) || (i % 3 == 2 && j == 0));
    kp_index *ti = kp_index_new(tk, tn, td, NULL);
    const int tks[] = {1, 17, 100};
    for (size_t ki = 0; ki < sizeof(tks) / sizeof(*tks); ki++) {
        res a = topk_at(ti, tqv, tq, tks[ki], -INFINITY, 0, 1);
        res b = topk_at(ti, tqv, tq, tks[ki], -INFINITY, 0, 2);
        assert_split_equal(&a, &b, tq, tks[ki]);
        kp_par_set_threads(2);
        check_vs_ref(ti, tqv, tq, tks[ki], -INFINITY, 0);
        kp_par_set_threads(1);
        res_free(&a), res_free(&b);
    }
    kp_par_set_threads(2);
    test_tiles_vs_ref(state); /* nq 37: split at batch sizes of 16 and more */
    kp_par_set_threads(1);
    kp_blas_set_threads(blas);
    kp_index_free(ix), kp_index_free(ixd), kp_index_free(ti);
    free(keys), free(q), free(dk), free(tk), free(tqv);
}

TH_MAIN(cmocka_unit_test(test_gemm_vs_ref), cmocka_unit_test(test_dedup),
        cmocka_unit_test(test_late_dedup), cmocka_unit_test(test_min_score),
        cmocka_unit_test(test_prefix_pass), cmocka_unit_test(test_edges),
        cmocka_unit_test(test_tiles_vs_ref), cmocka_unit_test(test_rising_and_ties),
        cmocka_unit_test(test_prefix_threads), cmocka_unit_test(test_selector_vs_plain),
        cmocka_unit_test(test_portable_vs_ref), cmocka_unit_test(test_fanout))
