/* Tests for model/ivf (and model/topk's unordered scan): the list-major IVF search vs its plain
 * reference (probes, batch tiles, de-dup, min_score, exact ties), full probing = the exact
 * reference, the lists' partition, kp_index_set_ivf's dispatch, recall on clustered data. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/index.h"
#include "model/ivf.h"
#include "model/rng.h"
#include "testhelp.h"

/* n unit vectors of dimension d around nc random unit centres (noise sd sigma per dimension). */
static float *clustered(kp_rng *r, int n, int d, int nc, float sigma)
{
    float *c = malloc(sizeof(float) * (size_t)nc * d), *x = malloc(sizeof(float) * (size_t)n * d);
    th_fill(r, c, (size_t)nc * d, 1.0f / sqrtf((float)d));
    for (int i = 0; i < n; i++) {
        const float *ci = c + (size_t)kp_rng_below(r, (uint64_t)nc) * d;
        float *xi = x + (size_t)i * d;
        double s = 0;
        for (int j = 0; j < d; j++) {
            xi[j] = ci[j] + sigma * kp_rng_normal(r);
            s += (double)xi[j] * xi[j];
        }
        for (int j = 0; j < d; j++)
            xi[j] /= (float)sqrt(s);
    }
    free(c);
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

/* a and b agree: counts, scores position by position (1e-5), ids; with near set, an id may differ
 * where fp32 rounding reorders near-equal scores (sgemm vs the plain loop): the id must then be in
 * b's list with a score within 1e-5, or within 1e-5 of b's last score (swapped at the boundary).
 * Such swaps must be rare (at most 1 in 200 entries). */
static void assert_close(const res *a, const res *b, int nq, int k, int near)
{
    int swaps = 0, total = 0;
    for (int q = 0; q < nq; q++) {
        int c = a->counts[q];
        assert_int_equal(c, b->counts[q]);
        const int *ai = a->ids + (size_t)q * k, *bi = b->ids + (size_t)q * k;
        const float *as = a->scores + (size_t)q * k, *bs = b->scores + (size_t)q * k;
        for (int i = 0; i < k; i++) {
            total++;
            if (i >= c) {
                assert_int_equal(ai[i], -1);
                continue;
            }
            assert_true(fabsf(as[i] - bs[i]) < 1e-5f);
            if (i > 0) assert_true(as[i - 1] >= as[i]);
            if (ai[i] == bi[i]) continue;
            assert_true(near);
            int ok = fabsf(as[i] - bs[c - 1]) < 1e-5f;
            for (int j = 0; j < c && !ok; j++)
                ok = bi[j] == ai[i] && fabsf(bs[j] - as[i]) < 1e-5f;
            assert_true(ok);
            swaps++;
        }
    }
    assert_true(swaps * 200 <= total);
}

static void assert_same(const res *a, const res *b, int nq, int k)
{
    assert_close(a, b, nq, k, 1);
}

/* A copy of emb [n x d] in v's list order (malloc'ed). */
static float *list_order(const kp_ivf *v, const float *emb, int n, int d)
{
    float *x = malloc(sizeof(float) * (size_t)n * d);
    memcpy(x, emb, sizeof(float) * (size_t)n * d);
    assert_int_equal(kp_ivf_permute_rows(x, n, d, kp_ivf_ids(v)), 0);
    const int *ids = kp_ivf_ids(v);
    for (int p = 0; p < n; p += 97)
        assert_memory_equal(x + (size_t)p * d, emb + (size_t)ids[p] * d, sizeof(float) * d);
    return x;
}

static void ivf_vs_ref_x(const kp_ivf *v, const float *emb, const uint64_t *dk, const float *q,
                         int nq, int k, float ms, int np, int near)
{
    res a = res_new(nq, k), b = res_new(nq, k);
    assert_int_equal(kp_ivf_topk(v, emb, dk, q, nq, k, ms, np, a.ids, a.scores, a.counts), 0);
    assert_int_equal(kp_ivf_topk_ref(v, emb, dk, q, nq, k, ms, np, b.ids, b.scores, b.counts), 0);
    assert_close(&a, &b, nq, k, near);
    res_free(&a), res_free(&b);
}

static void ivf_vs_ref(const kp_ivf *v, const float *emb, const uint64_t *dk, const float *q,
                       int nq, int k, float ms, int np)
{
    ivf_vs_ref_x(v, emb, dk, q, nq, k, ms, np, 1);
}

static uint64_t *dedup_keys(int n, int m)
{
    uint64_t *dk = malloc(sizeof(uint64_t) * (size_t)n);
    for (int i = 0; i < n; i++)
        dk[i] = (uint64_t)((i * 7) % m) * 1000003u;
    return dk;
}

/* 300 queries cross the 256-query tile; probes 1..all, k 1..more than some lists hold. */
static void test_ivf_vs_ref(void **state)
{
    (void)state;
    const int n = 3000, d = 32, nq = 300, nlist = 40;
    kp_rng r = th_rng(11);
    float *emb = clustered(&r, n, d, 60, 0.08f), *q = clustered(&r, nq, d, 60, 0.1f);
    uint64_t *dk = dedup_keys(n, 700);
    kp_ivf *v = kp_ivf_build(emb, n, d, nlist, 5);
    float *rows = list_order(v, emb, n, d);
    assert_non_null(v);
    assert_int_equal(kp_ivf_nlist(v), nlist);
    const int probes[] = {1, 3, 8, 40, 99}, ks[] = {1, 10, 50, 130};
    for (int pi = 0; pi < 5; pi++)
        for (int ki = 0; ki < 4; ki++) {
            ivf_vs_ref(v, rows, NULL, q, nq, ks[ki], -INFINITY, probes[pi]);
            ivf_vs_ref(v, rows, dk, q, 37, ks[ki], -INFINITY, probes[pi]);
            ivf_vs_ref(v, rows, dk, q, 37, ks[ki], 0.5f, probes[pi]);
        }
    ivf_vs_ref(v, rows, dk, q, 1, 20, -INFINITY, 4); /* batch of one */
    kp_ivf_free(v);
    free(emb), free(q), free(dk), free(rows);
}

/* Every row is in exactly one list; probing every list is the exact search (index reference). */
static void test_ivf_full_probe_is_exact(void **state)
{
    (void)state;
    const int n = 2500, d = 24, nq = 50, k = 30, nlist = 25;
    kp_rng r = th_rng(12);
    float *emb = clustered(&r, n, d, 30, 0.1f), *q = clustered(&r, nq, d, 30, 0.1f);
    uint64_t *dk = dedup_keys(n, 300);
    kp_ivf *v = kp_ivf_build(emb, n, d, nlist, 6);
    float *rows = list_order(v, emb, n, d);
    int *seen = calloc((size_t)n, sizeof(int)), total = 0, used = 0;
    for (int l = 0; l < nlist; l++)
        total += kp_ivf_list_size(v, l), used += kp_ivf_list_size(v, l) > 0;
    assert_int_equal(total, n);
    assert_true(used > nlist / 2);
    assert_int_equal(kp_ivf_list_size(v, nlist), 0);
    res a = res_new(nq, k), b = res_new(nq, k);
    assert_int_equal(kp_ivf_topk(v, rows, NULL, q, nq, n, -INFINITY, nlist, NULL, NULL, NULL), -1);
    /* k = n with every list probed: each row comes back exactly once */
    res all = res_new(1, n);
    assert_int_equal(
        kp_ivf_topk(v, rows, NULL, q, 1, n, -INFINITY, nlist, all.ids, all.scores, all.counts), 0);
    assert_int_equal(all.counts[0], n);
    for (int i = 0; i < n; i++)
        seen[all.ids[i]]++;
    for (int i = 0; i < n; i++)
        assert_int_equal(seen[i], 1);
    res_free(&all);
    kp_index *ix = kp_index_new(emb, n, d, dk);
    assert_int_equal(kp_ivf_topk(v, rows, dk, q, nq, k, 0.1f, nlist, a.ids, a.scores, a.counts), 0);
    assert_int_equal(kp_index_topk_ref(ix, q, nq, k, 0.1f, 0, b.ids, b.scores, b.counts), 0);
    assert_same(&a, &b, nq, k);
    kp_index_free(ix);
    res_free(&a), res_free(&b);
    kp_ivf_free(v);
    free(emb), free(q), free(dk), free(seen), free(rows);
}

/* Exact ties everywhere (entries multiples of 1/4): the unordered per-list scans must still break
 * ties by the lower id, as the reference does. */
static void test_ivf_ties(void **state)
{
    (void)state;
    const int n = 2001, d = 4, nlist = 9;
    float *emb = malloc(sizeof(float) * n * d), q[3 * 4] = {1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0};
    uint64_t *dk = dedup_keys(n, 11);
    for (int i = 0; i < n; i++) {
        emb[i * d + 0] = 0.25f * (float)(i % 7);
        emb[i * d + 1] = 0.25f * (float)(i % 5);
        emb[i * d + 2] = 0.25f * (float)(i % 2);
        emb[i * d + 3] = 1.0f;
    }
    kp_ivf *v = kp_ivf_build(emb, n, d, nlist, 7);
    float *rows = list_order(v, emb, n, d);
    assert_non_null(v);
    const int ks[] = {1, 3, 16, 17, 100, 700};
    for (int ki = 0; ki < 6; ki++)
        for (int np = 1; np <= nlist; np += 4) {
            ivf_vs_ref_x(v, rows, NULL, q, 3, ks[ki], -INFINITY, np, 0);
            ivf_vs_ref_x(v, rows, dk, q, 3, ks[ki], 1.5f, np, 0);
        }
    kp_ivf_free(v);
    free(emb), free(dk), free(rows);
}

/* kp_index_set_ivf: nprobe < nlist goes through the ivf, nprobe >= nlist stays exact; on
 * clustered data a quarter of the lists finds most of the exact top 10. Edges and bad args. */
static void test_index_dispatch(void **state)
{
    (void)state;
    const int n = 4000, d = 32, nq = 64, k = 10, nlist = 64;
    kp_rng r = th_rng(13);
    float *emb = clustered(&r, n, d, 100, 0.05f), *q = clustered(&r, nq, d, 100, 0.08f);
    kp_index *ix = kp_index_new(emb, n, d, NULL);
    res ex = res_new(nq, k), a = res_new(nq, k), b = res_new(nq, k);
    assert_int_equal(kp_index_topk(ix, q, nq, k, -INFINITY, 0, ex.ids, ex.scores, ex.counts), 0);
    assert_null(kp_index_ivf(ix));
    assert_int_equal(kp_index_set_ivf(ix, -1, 4, 1), -1);
    assert_int_equal(kp_index_set_ivf(ix, nlist, 0, 1), -1);
    assert_int_equal(kp_index_set_ivf(ix, nlist, 16, 1), 0);
    const kp_ivf *v = kp_index_ivf(ix);
    assert_non_null(v);
    float *rows = list_order(v, emb, n, d);
    /* the rows were reordered in place: kp_index_row still takes the key id */
    for (int i = 0; i < n; i += 7)
        assert_memory_equal(kp_index_row(ix, i), emb + (size_t)i * d, sizeof(float) * d);
    assert_int_equal(kp_index_topk(ix, q, nq, k, -INFINITY, 0, a.ids, a.scores, a.counts), 0);
    assert_int_equal(
        kp_ivf_topk_ref(v, rows, NULL, q, nq, k, -INFINITY, 16, b.ids, b.scores, b.counts), 0);
    assert_same(&a, &b, nq, k);
    int hit = 0;
    for (int i = 0; i < nq * k; i++)
        for (int j = (i / k) * k; j < (i / k + 1) * k; j++)
            hit += a.ids[i] == ex.ids[j];
    assert_true(hit >= 0.9 * nq * k);
    /* nprobe >= nlist: the exact pass over the list-ordered rows, = the exact result before the
     * reordering; the reference and the prefix pass see the keys by id */
    kp_index_set_nprobe(ix, nlist);
    assert_int_equal(kp_index_topk(ix, q, nq, k, -INFINITY, 0, a.ids, a.scores, a.counts), 0);
    assert_same(&a, &ex, nq, k);
    assert_int_equal(kp_index_topk_ref(ix, q, nq, k, -INFINITY, 0, b.ids, b.scores, b.counts), 0);
    assert_same(&b, &ex, nq, k);
    assert_int_equal(kp_index_topk(ix, q, nq, k, 0.2f, 8, a.ids, a.scores, a.counts), 0);
    assert_int_equal(kp_index_topk_ref(ix, q, nq, k, 0.2f, 8, b.ids, b.scores, b.counts), 0);
    assert_same(&a, &b, nq, k);
    /* a rebuild (other lists) starts from the keys again */
    assert_int_equal(kp_index_set_ivf(ix, 10, 10, 2), 0);
    assert_int_equal(kp_ivf_nlist(kp_index_ivf(ix)), 10);
    assert_int_equal(kp_index_topk(ix, q, nq, k, -INFINITY, 0, a.ids, a.scores, a.counts), 0);
    assert_same(&a, &ex, nq, k);
    for (int i = 0; i < n; i += 7)
        assert_memory_equal(kp_index_row(ix, i), emb + (size_t)i * d, sizeof(float) * d);
    /* a NaN query probes nothing; nlist > n is clamped; k > n pads */
    float qn[32];
    for (int j = 0; j < d; j++)
        qn[j] = NAN;
    assert_int_equal(kp_index_set_ivf(ix, nlist, 2, 1), 0);
    assert_int_equal(kp_index_topk(ix, qn, 1, k, -INFINITY, 0, a.ids, a.scores, a.counts), 0);
    assert_int_equal(a.counts[0], 0);
    kp_ivf *tiny = kp_ivf_build(emb, 3, d, 50, 1);
    float *trows = list_order(tiny, emb, 3, d);
    assert_int_equal(kp_ivf_nlist(tiny), 3);
    res t = res_new(1, 5);
    assert_int_equal(
        kp_ivf_topk(tiny, trows, NULL, q, 1, 5, -INFINITY, 3, t.ids, t.scores, t.counts), 0);
    assert_int_equal(t.counts[0], 3);
    assert_int_equal(t.ids[3], -1);
    res_free(&t);
    kp_ivf_free(tiny);
    free(trows);
    assert_null(kp_ivf_build(NULL, 3, d, 1, 1));
    assert_null(kp_ivf_build(emb, 0, d, 1, 1));
    kp_ivf_free(NULL);
    kp_index *e = kp_index_new(NULL, 0, d, NULL);
    assert_int_equal(kp_index_set_ivf(e, 0, 4, 1), 0);
    assert_null(kp_index_ivf(e));
    kp_index_free(e);
    kp_index_free(ix);
    res_free(&ex), res_free(&a), res_free(&b);
    free(emb), free(q), free(rows);
}

/* kp_index_adopt: the same index as kp_index_new without the copy; owns emb on every path. */
static void test_adopt(void **state)
{
    (void)state;
    const int n = 500, d = 16, nq = 9, k = 12;
    kp_rng r = th_rng(14);
    float *emb = clustered(&r, n, d, 10, 0.1f), *q = clustered(&r, nq, d, 10, 0.1f);
    float *own = malloc(sizeof(float) * n * d);
    memcpy(own, emb, sizeof(float) * n * d);
    uint64_t *dk = dedup_keys(n, 50);
    kp_index *a = kp_index_new(emb, n, d, dk), *b = kp_index_adopt(own, n, d, dk);
    assert_non_null(b);
    assert_ptr_equal(kp_index_row(b, 0), own);
    res x = res_new(nq, k), y = res_new(nq, k);
    assert_int_equal(kp_index_topk(a, q, nq, k, -INFINITY, 0, x.ids, x.scores, x.counts), 0);
    assert_int_equal(kp_index_topk(b, q, nq, k, -INFINITY, 0, y.ids, y.scores, y.counts), 0);
    assert_close(&x, &y, nq, k, 0);
    kp_index *e = kp_index_adopt(malloc(4), 0, d, NULL);
    assert_int_equal(kp_index_size(e), 0);
    assert_null(kp_index_adopt(malloc(4), 3, 0, NULL)); /* freed on error */
    assert_null(kp_index_adopt(NULL, 3, d, NULL));
    kp_index_free(a), kp_index_free(b), kp_index_free(e);
    res_free(&x), res_free(&y);
    free(emb), free(q), free(dk);
}

/* Live changes after an IVF build (merge of the inventory's add/remove with the IVF): the
 * inverted file is dropped, the rows go back to key order, and the index answers exactly; an
 * adopted index grows past its adopted size (its capacity is the adopted row count), prefix
 * passes included. */
static void test_live_change_drops_ivf(void **state)
{
    (void)state;
    const int n = 600, m = 40, d = 16, nq = 12, k = 10;
    kp_rng r = th_rng(15);
    float *emb = clustered(&r, n + m, d, 20, 0.05f), *q = clustered(&r, nq, d, 20, 0.08f);
    float *own = malloc(sizeof(float) * n * d);
    memcpy(own, emb, sizeof(float) * n * d);
    kp_index *ix = kp_index_adopt(own, n, d, NULL);
    assert_non_null(ix);
    res a = res_new(nq, k), b = res_new(nq, k);
    /* a prefix matrix built before the growth */
    assert_int_equal(kp_index_topk(ix, q, nq, k, -INFINITY, 8, a.ids, a.scores, a.counts), 0);
    assert_int_equal(kp_index_set_ivf(ix, 16, 1, 3), 0);
    assert_non_null(kp_index_ivf(ix));
    assert_int_equal(kp_index_add(ix, emb + (size_t)n * d, m, NULL), 0);
    assert_null(kp_index_ivf(ix));
    assert_int_equal(kp_index_size(ix), n + m);
    for (int i = 0; i < n + m; i += 5)
        assert_memory_equal(kp_index_row(ix, i), emb + (size_t)i * d, sizeof(float) * d);
    kp_index *fresh = kp_index_new(emb, n + m, d, NULL);
    for (int p = 0; p <= 8; p += 8) {
        assert_int_equal(kp_index_topk(ix, q, nq, k, -INFINITY, p, a.ids, a.scores, a.counts), 0);
        assert_int_equal(
            kp_index_topk_ref(fresh, q, nq, k, -INFINITY, p, b.ids, b.scores, b.counts), 0);
        assert_close(&a, &b, nq, k, 0);
    }
    /* a removal after a rebuilt ivf: also exact again */
    assert_int_equal(kp_index_set_ivf(ix, 16, 1, 3), 0);
    assert_int_equal(kp_index_remove(ix, n + m - 1), n + m - 1);
    assert_null(kp_index_ivf(ix));
    kp_index_free(fresh);
    fresh = kp_index_new(emb, n + m - 1, d, NULL);
    assert_int_equal(kp_index_topk(ix, q, nq, k, -INFINITY, 0, a.ids, a.scores, a.counts), 0);
    assert_int_equal(kp_index_topk_ref(fresh, q, nq, k, -INFINITY, 0, b.ids, b.scores, b.counts),
                     0);
    assert_close(&a, &b, nq, k, 0);
    kp_index_free(ix), kp_index_free(fresh);
    res_free(&a), res_free(&b);
    free(emb), free(q);
}

TH_MAIN(cmocka_unit_test(test_ivf_vs_ref), cmocka_unit_test(test_adopt),
        cmocka_unit_test(test_ivf_full_probe_is_exact), cmocka_unit_test(test_ivf_ties),
        cmocka_unit_test(test_index_dispatch), cmocka_unit_test(test_live_change_drops_ivf))
