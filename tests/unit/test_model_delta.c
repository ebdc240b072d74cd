/* Tests for model/delta: build -> chunks -> reassemble -> apply gives bit-identical parameters;
 * gaps, corrupted/truncated/foreign chunks, interleaved versions, config mismatch, zero rows,
 * malformed payloads behind valid checksums. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/bienc.h"
#include "model/ckpt.h"
#include "model/delta.h"
#include "model/nn.h"
#include "model/rng.h"
#include "testhelp.h"

/* Number of rows of tower t's embedding table that differ bitwise between a and b. */
/* The bi-encoder of these tests in *c (4096 buckets, dims 8/16/8, prefixes {4, 8}), towers
 * shared or not, seeded with seed. */
static kp_bienc *delta_model(kp_bienc_config *c, int shared, uint64_t seed)
{
    return th_bienc_new(c, 4096, 8, 16, 8, shared, 4, seed);
}

static size_t diff_rows(kp_bienc *a, kp_bienc *b, int t)
{
    size_t r, c, n = 0;
    const float *x = kp_bienc_param(a, (kp_tower)t, KP_BIENC_EMB, &r, &c);
    const float *y = kp_bienc_param(b, (kp_tower)t, KP_BIENC_EMB, NULL, NULL);
    for (size_t i = 0; i < r; i++)
        n += memcmp(x + i * c, y + i * c, c * sizeof(float)) != 0;
    return n;
}

static kp_bienc *clone(const kp_bienc *m)
{
    kp_bienc *c = kp_bienc_new_zero(kp_bienc_cfg(m));
    assert_non_null(c);
    assert_int_equal(kp_bienc_copy(c, m), 0);
    return c;
}

/* Perturbs every dense tensor and n random rows of each table of m; the rows (with duplicates:
 * each row is listed twice) go to rows[t] [2n]. */
static void perturb(kp_bienc *m, kp_rng *r, uint32_t *rows[2], int n)
{
    size_t E = (size_t)kp_bienc_cfg(m)->emb_dim;
    for (int t = 0; t < kp_bienc_n_towers(m); t++) {
        float *emb = kp_bienc_param(m, (kp_tower)t, KP_BIENC_EMB, NULL, NULL);
        for (int i = 0; i < n; i++) {
            uint32_t id = (uint32_t)kp_rng_below(r, kp_bienc_cfg(m)->n_buckets);
            for (size_t j = 0; j < E; j++)
                emb[id * E + j] += 0.01f * kp_rng_normal(r);
            rows[t][2 * i] = id;
            rows[t][2 * i + 1] = id;
        }
        for (int p = KP_BIENC_W1; p < KP_BIENC_NPARAM; p++) {
            size_t rr, cc;
            float *w = kp_bienc_param(m, (kp_tower)t, (kp_bienc_param_id)p, &rr, &cc);
            for (size_t k = 0; k < rr * cc; k++)
                w[k] += 0.01f * kp_rng_normal(r);
        }
    }
}

/* Feeds chunks [0, n) in order; returns the last kp_delta_asm_add result (1 expected). */
static int feed_all(kp_delta_asm *a, void **ch, const size_t *len, int n)
{
    char err[256];
    int rc = -1;
    for (int i = 0; i < n; i++) {
        rc = kp_delta_asm_add(a, ch[i], len[i], err, sizeof(err));
        if (i < n - 1 && rc != 0) {
            print_error("chunk %d: rc %d (%s)\n", i, rc, rc < 0 ? err : "");
            return -2;
        }
    }
    return rc;
}

static void test_round_trip(void **state)
{
    (void)state;
    for (int shared = 0; shared < 2; shared++) {
        kp_bienc_config c;
        kp_bienc *orig = delta_model(&c, shared, 11);
        assert_non_null(orig);
        kp_bienc_set_version(orig, 7);
        kp_bienc *upd = clone(orig);
        kp_rng r = th_rng(99 + (uint64_t)shared);
        enum { N = 300 };
        uint32_t *rows[2] = {malloc(2 * N * sizeof(uint32_t)), malloc(2 * N * sizeof(uint32_t))};
        perturb(upd, &r, rows, N);
        /* a changed row that is not listed must not travel */
        float *emb = kp_bienc_param(upd, KP_TOWER_ITEM, KP_BIENC_EMB, NULL, NULL);
        uint32_t hidden = 0; /* the first row not listed */
        for (int i = 0; i < 2 * N; i++)
            if (rows[0][i] == hidden) hidden++, i = -1;
        emb[hidden * 8] += 1.0f;
        kp_bienc_set_version(upd, 9);
        assert_false(th_bienc_same_params(orig, upd));

        int nrows[2] = {2 * N, 2 * N};
        const size_t max_chunk = 512;
        void **ch = NULL;
        size_t *len = NULL;
        int nch = 0;
        char err[256] = "";
        assert_int_equal(kp_delta_build(upd, 7, (const uint32_t *const *)rows, nrows, max_chunk,
                                        &ch, &len, &nch, err, sizeof(err)),
                         0);
        assert_true(nch > 20);
        for (int i = 0; i < nch; i++) {
            assert_true(len[i] <= max_chunk);
            assert_true(len[i] > KP_DELTA_OVERHEAD);
            assert_memory_equal(ch[i], "KPDL", 4);
            uint64_t v = 0, b = 0;
            int idx = -1, cnt = -1;
            assert_int_equal(kp_delta_peek(ch[i], len[i], &v, &b, &idx, &cnt), 0);
            assert_int_equal(v, 9);
            assert_int_equal(b, 7);
            assert_int_equal(idx, i);
            assert_int_equal(cnt, nch);
        }

        kp_delta_asm *a = kp_delta_asm_new();
        assert_non_null(a);
        assert_int_equal(kp_delta_asm_version(a), 0);
        assert_int_equal(feed_all(a, ch, len, nch), 1);
        assert_int_equal(kp_delta_asm_version(a), 9);
        assert_int_equal(kp_delta_asm_base(a), 7);
        /* redelivered chunks change nothing once complete */
        assert_int_equal(kp_delta_asm_add(a, ch[0], len[0], err, sizeof(err)), 1);
        assert_int_equal(kp_delta_asm_add(a, ch[nch - 1], len[nch - 1], err, sizeof(err)), 1);

        assert_int_equal(kp_delta_asm_apply(a, orig, err, sizeof(err)), 0);
        assert_int_equal(kp_bienc_version(orig), 9);
        /* everything equal except the unlisted row */
        assert_int_equal(diff_rows(orig, upd, 0), 1);
        emb[hidden * 8] -= 1.0f;
        kp_bienc *chk = clone(upd);
        float *e2 = kp_bienc_param(chk, KP_TOWER_ITEM, KP_BIENC_EMB, NULL, NULL);
        float *e0 = kp_bienc_param(orig, KP_TOWER_ITEM, KP_BIENC_EMB, NULL, NULL);
        memcpy(e2 + hidden * 8, e0 + hidden * 8, 8 * sizeof(float));
        assert_true(th_bienc_same_params(orig, chk));

        /* applying twice: the model is past the base now */
        assert_int_equal(kp_delta_asm_apply(a, orig, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "gap"));

        kp_delta_asm_free(a);
        kp_delta_chunks_free(ch, len, nch);
        free(rows[0]);
        free(rows[1]);
        kp_bienc_free(chk);
        kp_bienc_free(upd);
        kp_bienc_free(orig);
    }
}

/* Real training steps (lazy Adam on touched rows): the rows from the gradients are exactly what
 * a delta needs; several steps, rows concatenated (duplicates across steps). */
static void test_training_steps(void **state)
{
    (void)state;
    for (int shared = 0; shared < 2; shared++) {
        kp_bienc_config c;
        kp_bienc *orig = delta_model(&c, shared, 5);
        kp_bienc *upd = clone(orig);
        kp_adam_hp hp;
        kp_adam_hp_default(&hp);
        hp.lr = 0.05f;
        kp_bienc_opt *o = kp_bienc_opt_new(upd, &hp, &hp);
        kp_bienc_grads *g = kp_bienc_grads_new(upd);
        kp_bienc_acts *ai = kp_bienc_acts_new(upd, 4), *ak = kp_bienc_acts_new(upd, 4);
        assert_true(o && g && ai && ak);
        const char *items[] = {"red cordless drill", "oak table", "garden hose 50ft", "led bulb"};
        const char *keys[] = {"drill", "dining table", "hose", "light bulbs"};
        uint32_t *rows[2] = {NULL, NULL};
        int nrows[2] = {0, 0};
        kp_rng r = th_rng(3);
        for (int step = 0; step < 3; step++) {
            kp_bienc_grads_zero(g);
            const float *ei = kp_bienc_forward(upd, KP_TOWER_ITEM, ai, items + step % 2, NULL, 2);
            const float *ek = kp_bienc_forward(upd, KP_TOWER_KEY, ak, keys + step, NULL, 2);
            assert_true(ei && ek);
            float di[2 * 8], dk[2 * 8];
            for (int k = 0; k < 16; k++) {
                di[k] = kp_rng_normal(&r);
                dk[k] = kp_rng_normal(&r);
            }
            assert_int_equal(kp_bienc_backward(upd, ai, di, g), 0);
            assert_int_equal(kp_bienc_backward(upd, ak, dk, g), 0);
            kp_bienc_opt_step(upd, o, g);
            for (int t = 0; t < kp_bienc_n_towers(upd); t++) {
                const kp_rowgrad *rg = kp_bienc_grads_emb(g, (kp_tower)t);
                rows[t] = realloc(rows[t], (size_t)(nrows[t] + rg->n) * sizeof(uint32_t));
                memcpy(rows[t] + nrows[t], rg->rows, (size_t)rg->n * sizeof(uint32_t));
                nrows[t] += rg->n;
            }
        }
        kp_bienc_set_version(upd, 3);
        size_t changed = diff_rows(orig, upd, 0);
        assert_true(changed > 10);
        assert_true(changed <= (size_t)nrows[0]);

        void **ch;
        size_t *len;
        int nch;
        char err[256];
        assert_int_equal(kp_delta_build(upd, 0, (const uint32_t *const *)rows, nrows, 1000, &ch,
                                        &len, &nch, err, sizeof(err)),
                         0);
        kp_delta_asm *a = kp_delta_asm_new();
        assert_int_equal(feed_all(a, ch, len, nch), 1);
        assert_int_equal(kp_delta_asm_apply(a, orig, err, sizeof(err)), 0);
        assert_true(th_bienc_same_params(orig, upd));
        assert_int_equal(kp_bienc_version(orig), 3);

        kp_delta_asm_free(a);
        kp_delta_chunks_free(ch, len, nch);
        free(rows[0]);
        free(rows[1]);
        kp_bienc_acts_free(ai);
        kp_bienc_acts_free(ak);
        kp_bienc_grads_free(g);
        kp_bienc_opt_free(o);
        kp_bienc_free(upd);
        kp_bienc_free(orig);
    }
}

/* Builds the delta of m over base with rows (n per tower); asserts success. */
static int build(const kp_bienc *m, uint64_t base, uint32_t *rows[2], int n, size_t max_chunk,
                 void ***ch, size_t **len)
{
    int nrows[2] = {n, n}, nch = 0;
    char err[256];
    assert_int_equal(kp_delta_build(m, base, (const uint32_t *const *)rows, nrows, max_chunk, ch,
                                    len, &nch, err, sizeof(err)),
                     0);
    return nch;
}

static void test_gap_and_chain(void **state)
{
    (void)state;
    kp_bienc_config c;
    th_bienc_cfg(&c, 4096, 8, 16, 8, 0, 4);
    kp_bienc *m0 = kp_bienc_new(&c, 1); /* version 0 */
    kp_bienc *m1 = clone(m0), *m2;
    kp_rng r = th_rng(8);
    uint32_t r1a[40], r1b[40], r2a[40], r2b[40];
    uint32_t *rows1[2] = {r1a, r1b}, *rows2[2] = {r2a, r2b};
    perturb(m1, &r, rows1, 20);
    kp_bienc_set_version(m1, 1);
    m2 = clone(m1);
    perturb(m2, &r, rows2, 20);
    kp_bienc_set_version(m2, 2);

    void **c1, **c2;
    size_t *l1, *l2;
    int n1 = build(m1, 0, rows1, 40, 400, &c1, &l1);
    int n2 = build(m2, 1, rows2, 40, 400, &c2, &l2);
    kp_delta_asm *a = kp_delta_asm_new();
    char err[256];

    /* v1->v2 on a model at v0: gap, model untouched */
    kp_bienc *replica = clone(m0);
    assert_int_equal(feed_all(a, c2, l2, n2), 1);
    assert_int_equal(kp_delta_asm_apply(a, replica, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "gap: model is at version 0, delta needs base 1"));
    assert_true(th_bienc_same_params(replica, m0));
    assert_int_equal(kp_bienc_version(replica), 0);

    /* in order: v0->v1 then v1->v2 */
    assert_int_equal(feed_all(a, c1, l1, n1), 1);
    assert_int_equal(kp_delta_asm_version(a), 1);
    assert_int_equal(kp_delta_asm_apply(a, replica, err, sizeof(err)), 0);
    assert_true(th_bienc_same_params(replica, m1));
    assert_int_equal(feed_all(a, c2, l2, n2), 1);
    assert_int_equal(kp_delta_asm_apply(a, replica, err, sizeof(err)), 0);
    assert_true(th_bienc_same_params(replica, m2));
    assert_int_equal(kp_bienc_version(replica), 2);
    /* the delta stays held: it can bring another replica at v1 along */
    kp_bienc *other = clone(m1);
    assert_int_equal(kp_delta_asm_apply(a, other, err, sizeof(err)), 0);
    assert_true(th_bienc_same_params(other, m2));

    /* no complete delta */
    kp_delta_asm *e = kp_delta_asm_new();
    assert_int_equal(kp_delta_asm_apply(e, replica, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no complete delta"));
    assert_int_equal(kp_delta_asm_add(e, c1[0], l1[0], err, sizeof(err)), 0);
    assert_int_equal(kp_delta_asm_apply(e, replica, err, sizeof(err)), -1);

    kp_delta_asm_free(e);
    kp_delta_asm_free(a);
    kp_delta_chunks_free(c1, l1, n1);
    kp_delta_chunks_free(c2, l2, n2);
    kp_bienc_free(other);
    kp_bienc_free(replica);
    kp_bienc_free(m2);
    kp_bienc_free(m1);
    kp_bienc_free(m0);
}

/* Every single flipped byte of a chunk is rejected, and the assembly goes on undisturbed. */
static void test_corrupted(void **state)
{
    (void)state;
    kp_bienc_config c;
    kp_bienc *m0 = delta_model(&c, 1, 2), *m1 = clone(m0);
    kp_rng r = th_rng(4);
    uint32_t ra[60], rb[60];
    uint32_t *rows[2] = {ra, rb};
    perturb(m1, &r, rows, 30);
    kp_bienc_set_version(m1, 1);
    void **ch;
    size_t *len;
    int nch = build(m1, 0, rows, 60, 300, &ch, &len);
    assert_true(nch >= 3);

    kp_delta_asm *a = kp_delta_asm_new();
    char err[256];
    assert_int_equal(kp_delta_asm_add(a, ch[0], len[0], err, sizeof(err)), 0);
    for (int which = 1; which <= 2; which++) {
        unsigned char *b = malloc(len[which]);
        for (size_t pos = 0; pos < len[which]; pos++) {
            memcpy(b, ch[which], len[which]);
            b[pos] ^= (unsigned char)(1u << (pos % 8));
            err[0] = 0;
            assert_int_equal(kp_delta_asm_add(a, b, len[which], err, sizeof(err)), -1);
            assert_int_equal(kp_delta_peek(b, len[which], NULL, NULL, NULL, NULL), -1);
            if (pos < 4)
                assert_non_null(strstr(err, "foreign"));
            else if (pos < 52 || pos >= 56)
                assert_non_null(strstr(err, "checksum"));
            else /* the slice length: checksum, or "truncated" if it now claims more bytes */
                assert_true(strstr(err, "checksum") || strstr(err, "truncated"));
        }
        free(b);
        assert_int_equal(kp_delta_asm_version(a), 1); /* still assembling */
        assert_int_equal(kp_delta_asm_add(a, ch[which], len[which], err, sizeof(err)), 0);
    }
    for (int i = 3; i < nch; i++)
        assert_int_equal(kp_delta_asm_add(a, ch[i], len[i], err, sizeof(err)), i == nch - 1);
    assert_int_equal(kp_delta_asm_apply(a, m0, err, sizeof(err)), 0);
    assert_true(th_bienc_same_params(m0, m1));

    /* foreign buffers */
    assert_int_equal(kp_delta_asm_add(a, "hello world", 11, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "foreign"));
    assert_int_equal(kp_delta_asm_add(a, NULL, 0, err, sizeof(err)), -1);
    assert_int_equal(kp_delta_peek(NULL, 100, NULL, NULL, NULL, NULL), -1);
    assert_int_equal(kp_delta_asm_version(a), 1); /* bad chunks change nothing */

    kp_delta_asm_free(a);
    kp_delta_chunks_free(ch, len, nch);
    kp_bienc_free(m1);
    kp_bienc_free(m0);
}

static void test_truncated(void **state)
{
    (void)state;
    kp_bienc_config c;
    kp_bienc *m0 = delta_model(&c, 0, 2), *m1 = clone(m0);
    kp_bienc_set_version(m1, 4);
    void **ch;
    size_t *len;
    int nch = build(m1, 3, (uint32_t *[2]){NULL, NULL}, 0, 700, &ch, &len);
    assert_true(nch >= 2);
    kp_delta_asm *a = kp_delta_asm_new();
    char err[256];
    for (size_t n = 0; n < len[0]; n++) {
        err[0] = 0;
        assert_int_equal(kp_delta_asm_add(a, ch[0], n, err, sizeof(err)), -1);
        assert_int_equal(kp_delta_peek(ch[0], n, NULL, NULL, NULL, NULL), -1);
        assert_non_null(strstr(err, n < 4 ? "foreign" : "truncated"));
    }
    /* one byte too many */
    unsigned char *big = malloc(len[0] + 1);
    memcpy(big, ch[0], len[0]);
    big[len[0]] = 0;
    assert_int_equal(kp_delta_asm_add(a, big, len[0] + 1, err, sizeof(err)), -1);
    free(big);
    assert_int_equal(kp_delta_asm_version(a), 0);
    assert_int_equal(feed_all(a, ch, len, nch), 1);
    kp_delta_asm_free(a);
    kp_delta_chunks_free(ch, len, nch);
    kp_bienc_free(m1);
    kp_bienc_free(m0);
}

/* Out of order, duplicates, and a new version arriving while another is half assembled. */
static void test_interleaved(void **state)
{
    (void)state;
    kp_bienc_config c;
    kp_bienc *m0 = delta_model(&c, 0, 6), *va = clone(m0), *vb = clone(m0);
    kp_rng r = th_rng(12);
    uint32_t a0[40], a1[40], b0[40], b1[40];
    uint32_t *ra[2] = {a0, a1}, *rb[2] = {b0, b1};
    perturb(va, &r, ra, 20);
    kp_bienc_set_version(va, 1);
    perturb(vb, &r, rb, 20); /* e.g. a restarted trainer publishing another delta over 0 */
    kp_bienc_set_version(vb, 2);
    void **ca, **cb;
    size_t *la, *lb;
    int na = build(va, 0, ra, 40, 256, &ca, &la);
    int nb = build(vb, 0, rb, 40, 256, &cb, &lb);
    assert_true(na >= 4 && nb >= 4);

    kp_delta_asm *a = kp_delta_asm_new();
    char err[256];
    assert_int_equal(kp_delta_asm_add(a, ca[0], la[0], err, sizeof(err)), 0);
    assert_int_equal(kp_delta_asm_add(a, ca[1], la[1], err, sizeof(err)), 0);
    /* skipped chunk 2 */
    assert_int_equal(kp_delta_asm_add(a, ca[3], la[3], err, sizeof(err)), -1);
    assert_non_null(strstr(err, "out of order"));
    /* duplicate */
    assert_int_equal(kp_delta_asm_add(a, ca[1], la[1], err, sizeof(err)), 0);
    assert_int_equal(kp_delta_asm_version(a), 1);
    /* version 2 starts: version 1 is dropped */
    assert_int_equal(kp_delta_asm_add(a, cb[0], lb[0], err, sizeof(err)), 0);
    assert_int_equal(kp_delta_asm_version(a), 2);
    assert_int_equal(kp_delta_asm_base(a), 0);
    /* a stray chunk of version 1 (not its start): out of order, nothing held */
    assert_int_equal(kp_delta_asm_add(a, ca[2], la[2], err, sizeof(err)), -1);
    assert_non_null(strstr(err, "out of order"));
    assert_int_equal(kp_delta_asm_version(a), 0);
    /* version 2 again from its start, with version-1 chunks in between that restart it */
    assert_int_equal(kp_delta_asm_add(a, cb[0], lb[0], err, sizeof(err)), 0);
    assert_int_equal(kp_delta_asm_add(a, ca[0], la[0], err, sizeof(err)), 0);
    assert_int_equal(kp_delta_asm_version(a), 1);
    assert_int_equal(feed_all(a, cb, lb, nb), 1);
    assert_int_equal(kp_delta_asm_version(a), 2);

    kp_bienc *rep = clone(m0);
    assert_int_equal(kp_delta_asm_apply(a, rep, err, sizeof(err)), 0);
    assert_true(th_bienc_same_params(rep, vb));
    assert_false(th_bienc_same_params(rep, va));

    kp_bienc_free(rep);
    kp_delta_asm_free(a);
    kp_delta_chunks_free(ca, la, na);
    kp_delta_chunks_free(cb, lb, nb);
    kp_bienc_free(vb);
    kp_bienc_free(va);
    kp_bienc_free(m0);
}

static void test_config_mismatch(void **state)
{
    (void)state;
    kp_bienc_config c;
    kp_bienc *m = delta_model(&c, 0, 1);
    kp_bienc_set_version(m, 1);
    uint32_t r0[] = {1, 2, 3}, r1[] = {4};
    uint32_t *rows[2] = {r0, r1};
    int nrows[2] = {3, 1}, nch;
    void **ch;
    size_t *len;
    char err[256];
    assert_int_equal(kp_delta_build(m, 0, (const uint32_t *const *)rows, nrows, 200, &ch, &len,
                                    &nch, err, sizeof(err)),
                     0);
    kp_delta_asm *a = kp_delta_asm_new();
    assert_int_equal(feed_all(a, ch, len, nch), 1);

    for (int variant = 0; variant < 5; variant++) {
        kp_bienc_config o;
        th_bienc_cfg(&o, 4096, 8, 16, 8, 0, 4);
        switch (variant) {
        case 0:
            o.n_buckets = 2048;
            break;
        case 1:
            o.emb_dim = 16;
            break;
        case 2:
            o.hidden_dim = 8;
            break;
        case 3:
            o.out_dim = 4, o.prefix[1] = 4, o.n_prefix = 1;
            break;
        default:
            o.shared_towers = 1;
            break;
        }
        kp_bienc *x = kp_bienc_new(&o, 3), *snap = kp_bienc_new(&o, 3);
        assert_non_null(x);
        err[0] = 0;
        assert_int_equal(kp_delta_asm_apply(a, x, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "config mismatch"));
        assert_true(th_bienc_same_params(x, snap));
        assert_int_equal(kp_bienc_version(x), 0);
        kp_bienc_free(snap);
        kp_bienc_free(x);
    }
    /* same config is fine */
    kp_bienc *y = kp_bienc_new(&c, 3);
    assert_int_equal(kp_delta_asm_apply(a, y, err, sizeof(err)), 0);
    kp_bienc_free(y);

    kp_delta_asm_free(a);
    kp_delta_chunks_free(ch, len, nch);
    kp_bienc_free(m);
}

static void test_zero_rows(void **state)
{
    (void)state;
    for (int shared = 0; shared < 2; shared++) {
        kp_bienc_config c;
        kp_bienc *m0 = delta_model(&c, shared, 21), *m1 = clone(m0);
        kp_rng r = th_rng(1);
        for (int t = 0; t < kp_bienc_n_towers(m1); t++) {
            size_t n, k;
            float *w = kp_bienc_param(m1, (kp_tower)t, KP_BIENC_B1, &n, &k);
            for (size_t i = 0; i < n * k; i++)
                w[i] = kp_rng_normal(&r);
        }
        kp_bienc_set_version(m1, 10);
        for (int form = 0; form < 2; form++) { /* NULL arrays, or zero counts */
            int zero[2] = {0, 0}, nch;
            void **ch;
            size_t *len;
            char err[256];
            assert_int_equal(kp_delta_build(m1, 0, NULL, form ? zero : NULL, 1 << 20, &ch, &len,
                                            &nch, err, sizeof(err)),
                             0);
            assert_int_equal(nch, 1); /* dense tensors fit in one large chunk */
            kp_bienc *rep = clone(m0);
            assert_false(th_bienc_same_params(rep, m1));
            kp_delta_asm *a = kp_delta_asm_new();
            assert_int_equal(feed_all(a, ch, len, nch), 1);
            assert_int_equal(kp_delta_asm_apply(a, rep, err, sizeof(err)), 0);
            assert_true(th_bienc_same_params(rep, m1));
            assert_int_equal(kp_bienc_version(rep), 10);
            kp_delta_asm_free(a);
            kp_bienc_free(rep);
            kp_delta_chunks_free(ch, len, nch);
        }
        kp_bienc_free(m1);
        kp_bienc_free(m0);
    }
}

static void test_build_errors(void **state)
{
    (void)state;
    kp_bienc_config c;
    kp_bienc *m = delta_model(&c, 0, 1);
    kp_bienc_set_version(m, 5);
    uint32_t good[] = {1, 2}, bad[] = {1, 4096};
    const uint32_t *rows[2] = {good, bad};
    int nrows[2] = {2, 2}, nch = 7;
    static void *dummy_ch[1];
    static size_t dummy_len[1];
    void **ch = dummy_ch;
    size_t *len = dummy_len;
    char err[256];
    assert_int_equal(kp_delta_build(m, 4, rows, nrows, 1000, &ch, &len, &nch, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "4096"));
    assert_null(ch);
    assert_null(len);
    assert_int_equal(nch, 0);
    rows[1] = good;
    assert_int_equal(kp_delta_build(m, 5, rows, nrows, 1000, &ch, &len, &nch, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "not after base"));
    assert_int_equal(
        kp_delta_build(m, 4, rows, nrows, KP_DELTA_OVERHEAD, &ch, &len, &nch, err, sizeof(err)),
        -1);
    assert_non_null(strstr(err, "max_chunk"));
    nrows[0] = -1;
    assert_int_equal(kp_delta_build(m, 4, rows, nrows, 1000, &ch, &len, &nch, err, sizeof(err)),
                     -1);
    nrows[0] = 2;
    rows[0] = NULL;
    assert_int_equal(kp_delta_build(m, 4, rows, nrows, 1000, &ch, &len, &nch, err, sizeof(err)),
                     -1);
    assert_int_equal(kp_delta_build(NULL, 4, rows, nrows, 1000, &ch, &len, &nch, err, sizeof(err)),
                     -1);
    /* smallest possible chunks: one payload byte each */
    rows[0] = good;
    assert_int_equal(
        kp_delta_build(m, 4, rows, nrows, KP_DELTA_OVERHEAD + 1, &ch, &len, &nch, err, sizeof(err)),
        0);
    kp_bienc *rep = kp_bienc_new(&c, 2);
    kp_bienc_set_version(rep, 4);
    kp_delta_asm *a = kp_delta_asm_new();
    assert_int_equal(feed_all(a, ch, len, nch), 1);
    assert_int_equal(kp_delta_asm_apply(a, rep, err, sizeof(err)), 0);
    for (int p = KP_BIENC_W1; p < KP_BIENC_NPARAM; p++) {
        size_t n, k;
        const float *x = kp_bienc_param(rep, KP_TOWER_KEY, (kp_bienc_param_id)p, &n, &k);
        const float *y = kp_bienc_param(m, KP_TOWER_KEY, (kp_bienc_param_id)p, NULL, NULL);
        assert_memory_equal(x, y, n * k * sizeof(float));
    }
    kp_delta_chunks_free(ch, len, nch);
    kp_delta_chunks_free(NULL, NULL, 0);
    kp_delta_asm_free(a);
    kp_delta_asm_free(NULL);
    kp_bienc_free(rep);
    kp_bienc_free(m);
}

/* ---- an independent writer of the documented chunk layout, for malformed payloads ------------ */

static void le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* One chunk holding all of payload [n]. */
static unsigned char *wrap(const unsigned char *payload, size_t n, uint64_t v, uint64_t base,
                           size_t *len)
{
    *len = 60 + n;
    unsigned char *b = malloc(*len);
    memcpy(b, "KPDL", 4);
    le32(b + 4, 1);
    le64(b + 8, v);
    le64(b + 16, base);
    le32(b + 24, 0);
    le32(b + 28, 1);
    le64(b + 32, n);
    le32(b + 40, kp_crc32(0, payload, n));
    le64(b + 44, 0);
    le32(b + 52, (uint32_t)n);
    memcpy(b + 56, payload, n);
    le32(b + 56 + n, kp_crc32(0, b, 56 + n));
    return b;
}

static void test_malformed_payload(void **state)
{
    (void)state;
    kp_bienc_config c;
    kp_bienc *m = delta_model(&c, 1, 1);
    kp_bienc_set_version(m, 2);
    uint32_t r0[] = {9, 3, 700};
    const uint32_t *rows[1] = {r0};
    int nrows[1] = {3}, nch;
    void **ch;
    size_t *len;
    char err[256];
    assert_int_equal(kp_delta_build(m, 1, rows, nrows, 100, &ch, &len, &nch, err, sizeof(err)), 0);
    /* reassemble the payload by the documented layout */
    size_t total = 0;
    for (int i = 0; i < nch; i++)
        total += len[i] - 60;
    unsigned char *pl = malloc(total + 8), *q = pl;
    for (int i = 0; i < nch; i++) {
        memcpy(q, (unsigned char *)ch[i] + 56, len[i] - 60);
        q += len[i] - 60;
    }
    const size_t dense = 16 * 8 + 16 + 8 * 16 + 8;
    assert_int_equal(total, 7 * 4 + 4 + 3 * 4 + 3 * 8 * 4 + dense * 4);
    assert_int_equal(rd32(pl), 4096);
    assert_int_equal(rd32(pl + 24), 1); /* one tower */
    assert_int_equal(rd32(pl + 28), 3); /* three rows */
    assert_int_equal(rd32(pl + 32), 3); /* sorted */
    assert_int_equal(rd32(pl + 36), 9);
    assert_int_equal(rd32(pl + 40), 700);
    const float *emb = kp_bienc_param(m, KP_TOWER_ITEM, KP_BIENC_EMB, NULL, NULL);
    uint32_t u;
    memcpy(&u, &emb[9 * 8 + 5], 4);
    assert_int_equal(rd32(pl + 44 + 8 * 4 + 5 * 4), u); /* row 9, column 5 */

    kp_delta_asm *a = kp_delta_asm_new();
    kp_bienc *rep = kp_bienc_new(&c, 7), *snap = kp_bienc_new(&c, 7);
    kp_bienc_set_version(rep, 1);
    size_t cl;
    unsigned char *one;

    /* the well-formed payload in a hand-written chunk is accepted */
    one = wrap(pl, total, 2, 1, &cl);
    assert_int_equal(kp_delta_asm_add(a, one, cl, err, sizeof(err)), 1);
    free(one);
    kp_bienc *ok = kp_bienc_new(&c, 7);
    kp_bienc_set_version(ok, 1);
    assert_int_equal(kp_delta_asm_apply(a, ok, err, sizeof(err)), 0);
    assert_int_equal(memcmp(kp_bienc_param(ok, KP_TOWER_ITEM, KP_BIENC_EMB, NULL, NULL) + 700 * 8,
                            emb + 700 * 8, 8 * sizeof(float)),
                     0);
    kp_bienc_free(ok);

    for (int variant = 0; variant < 5; variant++) {
        unsigned char *bad = calloc(1, total + 8);
        memcpy(bad, pl, total);
        size_t n = total;
        switch (variant) {
        case 0:
            le32(bad + 28, 4);
            break; /* more rows than present */
        case 1:
            le32(bad + 36, 3);
            break; /* duplicate row id */
        case 2:
            le32(bad + 40, 4096);
            break; /* row id out of range */
        case 3:
            n = total + 4;
            break; /* trailing bytes */
        default:
            n = total - 4;
            break; /* missing bytes */
        }
        one = wrap(bad, n, 2, 1, &cl);
        assert_int_equal(kp_delta_asm_add(a, one, cl, err, sizeof(err)), 1);
        err[0] = 0;
        assert_int_equal(kp_delta_asm_apply(a, rep, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "malformed"));
        assert_true(th_bienc_same_params(rep, snap));
        assert_int_equal(kp_bienc_version(rep), 1);
        free(one);
        free(bad);
    }
    /* inconsistent chunk headers behind a valid checksum */
    one = wrap(pl, total, 1, 1, &cl); /* version not after base */
    assert_int_equal(kp_delta_asm_add(a, one, cl, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "inconsistent"));
    free(one);
    one = wrap(pl, total, 2, 1, &cl);
    le32(one + 4, 2); /* future format */
    le32(one + cl - 4, kp_crc32(0, one, cl - 4));
    assert_int_equal(kp_delta_asm_add(a, one, cl, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "format version"));
    le32(one + 4, 1);
    le32(one + 40, rd32(one + 40) ^ 1); /* wrong payload CRC */
    le32(one + cl - 4, kp_crc32(0, one, cl - 4));
    assert_int_equal(kp_delta_peek(one, cl, NULL, NULL, NULL, NULL), 0);
    assert_int_equal(kp_delta_asm_add(a, one, cl, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "checksum"));
    assert_int_equal(kp_delta_asm_version(a), 0);
    free(one);

    free(pl);
    kp_bienc_free(snap);
    kp_bienc_free(rep);
    kp_delta_asm_free(a);
    kp_delta_chunks_free(ch, len, nch);
    kp_bienc_free(m);
}

TH_MAIN(cmocka_unit_test(test_round_trip), cmocka_unit_test(test_training_steps),
        cmocka_unit_test(test_gap_and_chain), cmocka_unit_test(test_corrupted),
        cmocka_unit_test(test_truncated), cmocka_unit_test(test_interleaved),
        cmocka_unit_test(test_config_mismatch), cmocka_unit_test(test_zero_rows),
        cmocka_unit_test(test_build_errors), cmocka_unit_test(test_malformed_payload))
