/* Tests for model/quant (int8 / bf16 list-ordered copy of the IVF rows) and the IVF's
 * reduced-precision first pass (kp_ivf_topk_quant): the SIMD kernels vs the plain ones (int8
 * bit-identical, bf16 within fp32 rounding) over list sizes that are not multiples of 16, query
 * counts that cross the 8-query tile and dims that are not multiples of 4; the scores' error
 * against the fp32 dot; the search vs its plain reference (de-dup, min_score, tiles); recall
 * against the fp32 IVF; kp_index_set_first_pass's dispatch and determinism. */
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
#include "model/quant.h"
#include "model/rng.h"
#include "testhelp.h"

static float *unit_rows(kp_rng *r, int n, int d, int nc, float sigma)
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

static void test_parse(void **state)
{
    (void)state;
    assert_int_equal(kp_quant_parse("fp32"), KP_QUANT_FP32);
    assert_int_equal(kp_quant_parse("int8"), KP_QUANT_INT8);
    assert_int_equal(kp_quant_parse("bf16"), KP_QUANT_BF16);
    assert_int_equal(kp_quant_parse("int4"), -1);
    assert_int_equal(kp_quant_parse(NULL), -1);
    assert_string_equal(kp_quant_name(KP_QUANT_BF16), "bf16");
    float x[8] = {0};
    int off[3] = {0, 3, 8}, bad[3] = {0, 3, 7};
    assert_null(kp_quant_build(x, 2, 4, off, 2, KP_QUANT_FP32, 1));
    assert_null(kp_quant_build(x, 2, 4, bad, 2, KP_QUANT_INT8, 1));
    assert_null(kp_quant_build(NULL, 2, 4, off, 2, KP_QUANT_INT8, 1));
    kp_quant_free(NULL);
}

/* Kernel vs plain kernel, and both vs the fp32 dot, for one kind and dim. */
static void kernels(int kind, int d, int simd)
{
    const int lens[] = {0, 1, 15, 16, 17, 40, 3, 100}, nl = 8, nq = 11;
    int off[9] = {0};
    for (int l = 0; l < nl; l++)
        off[l + 1] = off[l] + lens[l];
    int n = off[nl];
    kp_rng r = th_rng(21 + (uint64_t)d);
    float *x = unit_rows(&r, n, d, 5, 0.3f), *q = unit_rows(&r, nq, d, 5, 0.3f);
    x[3] = 0.9f; /* one large coordinate: that row's scale */
    for (int j = 0; j < d; j++)
        x[(size_t)5 * d + j] = 0.0f; /* an all-zero row: scale 0 */
    kp_quant *z = kp_quant_build(x, n, d, off, nl, kind, simd), *zp;
    zp = kp_quant_build(x, n, d, off, nl, kind, 0);
    assert_non_null(z);
    assert_non_null(zp);
    assert_string_equal(kp_quant_kernel(zp), "plain");
    if (d == 128)
        print_message("%s kernel (simd %d): %s\n", kp_quant_name(kind), simd, kp_quant_kernel(z));
    assert_true(kp_quant_bytes(z) >= (size_t)n * d * (kind == KP_QUANT_INT8 ? 1 : 2));
    size_t qb = kp_quant_qbytes(z);
    unsigned char *qp = malloc(qb * nq);
    for (int j = 0; j < nq; j++)
        kp_quant_prep(z, q + (size_t)j * d, qp + j * qb);
    float *a = malloc(sizeof(float) * nq * 101), *b = malloc(sizeof(float) * nq * 101);
    double worst = 0;
    for (int l = 0; l < nl; l++)
        for (int m = 1; m <= nq; m += (m < 9 ? 1 : 2)) {
            int ld = lens[l] + 1;
            memset(a, 0xff, sizeof(float) * nq * 101); /* NaN: the kernel must write each slot */
            kp_quant_scan(z, l, qp, m, a, ld);
            kp_quant_scan_ref(zp, l, qp, m, b, ld);
            for (int j = 0; j < m; j++) {
                assert_true(isnan(a[(size_t)j * ld + lens[l]])); /* nothing past the list */
                for (int i = 0; i < lens[l]; i++) {
                    float fa = a[(size_t)j * ld + i], fb = b[(size_t)j * ld + i];
                    if (kind == KP_QUANT_INT8)
                        assert_memory_equal(&fa, &fb, sizeof(float));
                    else
                        assert_true(fabsf(fa - fb) <= 1e-5f);
                    const float *xr = x + ((size_t)off[l] + i) * d, *qj = q + (size_t)j * d;
                    double e = 0;
                    for (int t = 0; t < d; t++)
                        e += (double)xr[t] * qj[t];
                    worst = fabs(fa - e) > worst ? fabs(fa - e) : worst;
                }
            }
        }
    /* the error bound of the format: int8 ~ (s_q + s_r) / 2 * sqrt(d) / sqrt(3) worst-ish */
    assert_true(worst < (kind == KP_QUANT_INT8 ? 0.03 : 0.01));
    kp_quant_free(z), kp_quant_free(zp);
    free(x), free(q), free(qp), free(a), free(b);
}

static void test_kernels(void **state)
{
    (void)state;
    const int dims[] = {128, 37, 4, 1};
    for (int di = 0; di < 4; di++) {
        kernels(KP_QUANT_INT8, dims[di], 1);
        kernels(KP_QUANT_INT8, dims[di], 2); /* AVX2 where VNNI would be picked */
        kernels(KP_QUANT_BF16, dims[di], 1);
    }
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

/* Fraction of b's ids (per query) that a holds too. */
static double overlap(const res *a, const res *b, int nq, int k)
{
    long hit = 0, tot = 0;
    for (int i = 0; i < nq; i++)
        for (int x = 0; x < b->counts[i]; x++, tot++)
            for (int y = 0; y < a->counts[i]; y++)
                hit += a->ids[(size_t)i * k + y] == b->ids[(size_t)i * k + x];
    return tot ? (double)hit / tot : 1.0;
}

/* fast vs reference: same counts, scores sorted and within 1e-5 of the reference's position by
 * position, ids the same but for rare swaps of near-equal scores (the probes' and rescoring's
 * sums differ in rounding from the plain loops). */
static void assert_close(const res *a, const res *b, int nq, int k)
{
    int swaps = 0, total = 0;
    for (int q = 0; q < nq; q++) {
        assert_int_equal(a->counts[q], b->counts[q]);
        for (int i = 0; i < a->counts[q]; i++, total++) {
            size_t o = (size_t)q * k + i;
            assert_true(fabsf(a->scores[o] - b->scores[o]) < 1e-5f);
            if (i > 0) assert_true(a->scores[o - 1] >= a->scores[o]);
            swaps += a->ids[o] != b->ids[o];
        }
        for (int i = a->counts[q]; i < k; i++)
            assert_int_equal(a->ids[(size_t)q * k + i], -1);
    }
    assert_true(swaps * 100 <= total);
}

static void test_search_vs_ref(void **state)
{
    (void)state;
    const int n = 4000, d = 32, nq = 300, nlist = 40;
    kp_rng r = th_rng(31);
    float *emb = unit_rows(&r, n, d, 60, 0.08f), *q = unit_rows(&r, nq, d, 60, 0.1f);
    uint64_t *dk = malloc(sizeof(uint64_t) * n);
    for (int i = 0; i < n; i++)
        dk[i] = (uint64_t)((i * 7) % 900) * 1000003u;
    kp_ivf *v = kp_ivf_build(emb, n, d, nlist, 5);
    assert_non_null(v);
    float *rows = malloc(sizeof(float) * n * d);
    memcpy(rows, emb, sizeof(float) * n * d);
    assert_int_equal(kp_ivf_permute_rows(rows, n, d, kp_ivf_ids(v)), 0);
    const int kinds[] = {KP_QUANT_INT8, KP_QUANT_BF16}, ks[] = {1, 10, 50}, probes[] = {1, 4, 40};
    for (int ki = 0; ki < 2; ki++) {
        kp_quant *z = kp_quant_build(rows, n, d, kp_ivf_offsets(v), nlist, kinds[ki], 1);
        assert_non_null(z);
        for (int a = 0; a < 3; a++)
            for (int p = 0; p < 3; p++)
                for (int c = 1; c <= 4; c += 3) {
                    int k = ks[a], np = probes[p];
                    res f = res_new(nq, k), g = res_new(nq, k);
                    assert_int_equal(kp_ivf_topk_quant(v, z, rows, NULL, q, nq, k, -INFINITY, np, c,
                                                       f.ids, f.scores, f.counts),
                                     0);
                    assert_int_equal(kp_ivf_topk_quant_ref(v, z, rows, NULL, q, nq, k, -INFINITY,
                                                           np, c, g.ids, g.scores, g.counts),
                                     0);
                    assert_close(&f, &g, nq, k);
                    assert_int_equal(kp_ivf_topk_quant(v, z, rows, dk, q, 37, k, 0.6f, np, c, f.ids,
                                                       f.scores, f.counts),
                                     0);
                    assert_int_equal(kp_ivf_topk_quant_ref(v, z, rows, dk, q, 37, k, 0.6f, np, c,
                                                           g.ids, g.scores, g.counts),
                                     0);
                    assert_close(&f, &g, 37, k);
                    for (int i = 0; i < 37; i++)
                        for (int j = 0; j < f.counts[i]; j++) {
                            assert_true(f.scores[i * k + j] >= 0.6f);
                            for (int j2 = 0; j2 < j; j2++)
                                assert_true(dk[f.ids[i * k + j]] != dk[f.ids[i * k + j2]]);
                        }
                    res_free(&f), res_free(&g);
                }
        int ids[4];
        float sc[4];
        int cnt[1];
        assert_int_equal(
            kp_ivf_topk_quant(v, z, rows, NULL, q, 1, 4, -INFINITY, 4, 0, ids, sc, cnt), -1);
        assert_int_equal(
            kp_ivf_topk_quant(v, NULL, rows, NULL, q, 1, 4, -INFINITY, 4, 2, ids, sc, cnt), -1);
        kp_quant_free(z);
    }
    kp_ivf_free(v);
    free(emb), free(q), free(dk), free(rows);
}

/* Recall of the quantized pass against the fp32 IVF at the same probes (what it can lose is a
 * key the approximate scores pushed out of the rescore x k candidates), through kp_index; and a
 * second index built with the same seed answers the same. */
static void test_index_recall_determinism(void **state)
{
    (void)state;
    const int n = 20000, d = 64, nq = 200, k = 50, nlist = 100, np = 8;
    kp_rng r = th_rng(41);
    float *emb = unit_rows(&r, n, d, 400, 0.1f), *q = unit_rows(&r, nq, d, 400, 0.12f);
    kp_index *ix = kp_index_new(emb, n, d, NULL), *iy = kp_index_new(emb, n, d, NULL);
    assert_int_equal(kp_index_set_ivf(ix, nlist, np, 7), 0);
    assert_int_equal(kp_index_set_ivf(iy, nlist, np, 7), 0);
    res e = res_new(nq, k), a = res_new(nq, k), b = res_new(nq, k);
    assert_null(kp_index_quant(ix));
    assert_int_equal(kp_index_topk(ix, q, nq, k, -INFINITY, 0, e.ids, e.scores, e.counts), 0);
    assert_int_equal(kp_index_set_first_pass(ix, 7, 2), -1);
    assert_int_equal(kp_index_set_first_pass(ix, KP_QUANT_INT8, 0), -1);
    const int kinds[] = {KP_QUANT_INT8, KP_QUANT_BF16};
    for (int ki = 0; ki < 2; ki++) {
        assert_int_equal(kp_index_set_first_pass(ix, kinds[ki], 1), 0);
        assert_int_equal(kp_index_set_first_pass(iy, kinds[ki], 1), 0);
        assert_int_equal(kp_quant_kind_of(kp_index_quant(ix)), kinds[ki]);
        assert_int_equal(kp_index_topk(ix, q, nq, k, -INFINITY, 0, a.ids, a.scores, a.counts), 0);
        double r1 = overlap(&a, &e, nq, k);
        assert_int_equal(kp_index_set_first_pass(ix, kinds[ki], 4), 0);
        assert_int_equal(kp_index_set_first_pass(iy, kinds[ki], 4), 0);
        assert_int_equal(kp_index_topk(ix, q, nq, k, -INFINITY, 0, a.ids, a.scores, a.counts), 0);
        assert_int_equal(kp_index_topk(iy, q, nq, k, -INFINITY, 0, b.ids, b.scores, b.counts), 0);
        assert_memory_equal(a.ids, b.ids, sizeof(int) * nq * k);
        assert_memory_equal(a.scores, b.scores, sizeof(float) * nq * k);
        double r4 = overlap(&a, &e, nq, k);
        print_message("%s: recall vs fp32 IVF %.4f (rescore 1), %.4f (rescore 4)\n",
                      kp_quant_name(kinds[ki]), r1, r4);
        assert_true(r4 >= 0.99);
        assert_true(r4 >= r1);
        /* the scores are the exact ones: equal to the fp32 pass's wherever the id agrees */
        for (int i = 0; i < nq; i++)
            for (int j = 0; j < a.counts[i]; j++)
                for (int t = 0; t < e.counts[i]; t++)
                    if (e.ids[i * k + t] == a.ids[i * k + j])
                        assert_true(fabsf(e.scores[i * k + t] - a.scores[i * k + j]) < 1e-5f);
    }
    /* back to fp32: the copy goes and the fp32 results come back */
    assert_int_equal(kp_index_set_first_pass(ix, KP_QUANT_FP32, 4), 0);
    assert_null(kp_index_quant(ix));
    assert_int_equal(kp_index_topk(ix, q, nq, k, -INFINITY, 0, a.ids, a.scores, a.counts), 0);
    assert_memory_equal(a.ids, e.ids, sizeof(int) * nq * k);
    /* a rebuild of the ivf rebuilds the copy */
    assert_int_equal(kp_index_set_ivf(iy, 50, 4, 9), 0);
    assert_non_null(kp_index_quant(iy));
    assert_int_equal(kp_index_topk(iy, q, nq, k, -INFINITY, 0, b.ids, b.scores, b.counts), 0);
    kp_index_free(ix), kp_index_free(iy);
    res_free(&e), res_free(&a), res_free(&b);
    free(emb), free(q);
}

TH_MAIN(cmocka_unit_test(test_parse), cmocka_unit_test(test_kernels),
        cmocka_unit_test(test_search_vs_ref), cmocka_unit_test(test_index_recall_determinism))
