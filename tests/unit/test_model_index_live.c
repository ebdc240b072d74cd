/* Tests for the live inventory: model/index's add/remove (capacity growth, prefix matrices kept
 * in step, de-dup keys) and model/recommender's upsert/remove, each against an index or a
 * recommender built from scratch over the same set of keyphrases. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/bienc.h"
#include "model/index.h"
#include "model/nn.h"
#include "model/recommender.h"
#include "model/rng.h"
#include "th_main.h"
#include "testhelp.h"

enum { POOL = 700, D = 24, NQ = 37, K = 9 };

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

/* The live index and which pool row each of its positions holds. */
typedef struct {
    kp_index *ix;
    int slot_pool[POOL]; /* position -> pool row */
    int where[POOL];     /* pool row -> position, -1 when absent */
    int n;
} live;

static void live_add(live *l, const float *pool, const uint64_t *pk, int row)
{
    assert_int_equal(kp_index_add(l->ix, pool + (size_t)row * D, 1, pk ? pk + row : NULL), 0);
    l->slot_pool[l->n] = row;
    l->where[row] = l->n++;
}

static void live_remove(live *l, int row)
{
    int i = l->where[row];
    int moved = kp_index_remove(l->ix, i);
    assert_int_equal(moved, l->n - 1);
    l->where[row] = -1;
    if (moved != i) {
        l->slot_pool[i] = l->slot_pool[moved];
        l->where[l->slot_pool[i]] = i;
    }
    l->n--;
}

/* The live index answers every query as an index built from scratch over its rows (in pool
 * order) does: same pool rows, same scores, same order, for the exact and the prefix pass, with
 * and without a minimum score. */
static void assert_as_rebuilt(const live *l, const float *pool, const uint64_t *pk, const float *q)
{
    assert_int_equal(kp_index_size(l->ix), l->n);
    float *emb = malloc(sizeof(float) * (size_t)(l->n + 1) * D);
    uint64_t *keys = malloc(sizeof(uint64_t) * (size_t)(l->n + 1));
    int *ref_pool = malloc(sizeof(int) * (size_t)(l->n + 1)), m = 0;
    for (int row = 0; row < POOL; row++)
        if (l->where[row] >= 0) {
            memcpy(emb + (size_t)m * D, pool + (size_t)row * D, sizeof(float) * D);
            if (pk) keys[m] = pk[row];
            ref_pool[m++] = row;
        }
    assert_int_equal(m, l->n);
    kp_index *ref = kp_index_new(emb, m, D, pk ? keys : NULL);
    assert_non_null(ref);
    int ia[NQ * K], ib[NQ * K], ca[NQ], cb[NQ];
    float sa[NQ * K], sb[NQ * K];
    const int prefix[] = {0, 8};
    const float mins[] = {-INFINITY, 0.2f};
    for (int pi = 0; pi < 2; pi++)
        for (int mi = 0; mi < 2; mi++) {
            assert_int_equal(kp_index_topk(l->ix, q, NQ, K, mins[mi], prefix[pi], ia, sa, ca), 0);
            assert_int_equal(kp_index_topk(ref, q, NQ, K, mins[mi], prefix[pi], ib, sb, cb), 0);
            for (int b = 0; b < NQ; b++) {
                assert_int_equal(ca[b], cb[b]);
                for (int j = 0; j < ca[b]; j++) {
                    int o = b * K + j;
                    assert_int_equal(l->slot_pool[ia[o]], ref_pool[ib[o]]);
                    assert_true(fabsf(sa[o] - sb[o]) < 1e-5f);
                }
            }
        }
    kp_index_free(ref);
    free(emb), free(keys), free(ref_pool);
}

/* Random adds (single rows and batches) and removes, checked against a rebuild every few steps. */
static void run_live(int with_keys)
{
    kp_rng r = th_rng(11 + (uint64_t)with_keys);
    float *pool = rand_unit(&r, POOL, D), *q = rand_unit(&r, NQ, D);
    uint64_t pk[POOL];
    for (int i = 0; i < POOL; i++)
        pk[i] = (uint64_t)(i * 7 % 450) + 1; /* collisions: de-dup must keep the best of each */
    live l = {.n = 0};
    for (int i = 0; i < POOL; i++)
        l.where[i] = -1;
    /* start from 200 rows of the pool, in a shuffled order */
    int init = 200;
    float *emb = malloc(sizeof(float) * (size_t)init * D);
    uint64_t keys[200];
    for (int i = 0; i < init; i++) {
        int row = (i * 37) % POOL;
        memcpy(emb + (size_t)i * D, pool + (size_t)row * D, sizeof(float) * D);
        keys[i] = pk[row];
        l.slot_pool[i] = row, l.where[row] = i;
    }
    l.n = init;
    l.ix = kp_index_new(emb, init, D, with_keys ? keys : NULL);
    assert_non_null(l.ix);
    /* build the prefix matrix first: adds and removes must keep it in step */
    assert_as_rebuilt(&l, pool, with_keys ? pk : NULL, q);
    for (int step = 0; step < 120; step++) {
        int op = (int)(kp_rng_next(&r) % 3);
        if (op < 2) { /* a batch of 1..40 rows not present (as one kp_index_add call, or singly) */
            int want = 1 + (int)(kp_rng_next(&r) % 40), got = 0;
            float batch[40 * D];
            uint64_t bk[40];
            int rows[40];
            for (int t = 0; t < 4 * POOL && got < want; t++) {
                int row = (int)(kp_rng_next(&r) % POOL);
                int dup = l.where[row] >= 0;
                for (int j = 0; j < got && !dup; j++)
                    dup = rows[j] == row;
                if (dup) continue;
                memcpy(batch + (size_t)got * D, pool + (size_t)row * D, sizeof(float) * D);
                bk[got] = pk[row];
                rows[got++] = row;
            }
            if (op == 0) {
                assert_int_equal(kp_index_add(l.ix, batch, got, with_keys ? bk : NULL), 0);
                for (int j = 0; j < got; j++)
                    l.slot_pool[l.n] = rows[j], l.where[rows[j]] = l.n++;
            } else {
                for (int j = 0; j < got; j++)
                    live_add(&l, pool, with_keys ? pk : NULL, rows[j]);
            }
        } else { /* remove 1..30 present rows, at random positions (the last one included) */
            int cnt = 1 + (int)(kp_rng_next(&r) % 30);
            for (int j = 0; j < cnt && l.n > 0; j++) {
                int at = j == 0 ? l.n - 1 : (int)(kp_rng_next(&r) % (uint64_t)l.n);
                live_remove(&l, l.slot_pool[at]);
            }
        }
        if (step % 10 == 9) assert_as_rebuilt(&l, pool, with_keys ? pk : NULL, q);
    }
    assert_as_rebuilt(&l, pool, with_keys ? pk : NULL, q);
    kp_index_free(l.ix);
    free(pool), free(q), free(emb);
}

static void test_index_live_vs_rebuild(void **state)
{
    (void)state;
    run_live(0);
}

static void test_index_live_vs_rebuild_dedup(void **state)
{
    (void)state;
    run_live(1);
}

/* An index created empty takes rows (and keys) from its first add; bad arguments are refused. */
static void test_index_add_edges(void **state)
{
    (void)state;
    kp_rng r = th_rng(5);
    float *pool = rand_unit(&r, 4, D), *q = rand_unit(&r, 1, D);
    uint64_t keys[4] = {1, 2, 3, 4};
    kp_index *ix = kp_index_new(NULL, 0, D, NULL);
    assert_non_null(ix);
    assert_int_equal(kp_index_remove(ix, 0), -1);
    assert_int_equal(kp_index_add(ix, NULL, 1, NULL), -1);
    assert_int_equal(kp_index_add(ix, pool, 0, NULL), 0);
    assert_int_equal(kp_index_add(ix, pool, 4, keys), 0);
    assert_int_equal(kp_index_size(ix), 4);
    assert_int_equal(kp_index_add(ix, pool, 1, NULL), -1); /* it has keys now */
    int ids[4], cnt;
    float sc[4];
    assert_int_equal(kp_index_topk(ix, q, 1, 4, -INFINITY, 0, ids, sc, &cnt), 0);
    assert_int_equal(cnt, 4);
    assert_int_equal(kp_index_remove(ix, 4), -1);
    assert_int_equal(kp_index_remove(ix, 3), 3); /* the last: nothing moves */
    assert_int_equal(kp_index_remove(ix, 0), 2); /* row 2 moves into 0 */
    assert_memory_equal(kp_index_row(ix, 0), pool + 2 * D, sizeof(float) * D);
    assert_int_equal(kp_index_size(ix), 2);
    kp_index_free(ix);
    kp_index *nk = kp_index_new(pool, 2, D, NULL);
    assert_int_equal(kp_index_add(nk, pool, 1, keys), -1); /* keys where there were none */
    assert_int_equal(kp_index_reserve(nk, 1000), 0);
    assert_int_equal(kp_index_size(nk), 2);
    kp_index_free(nk);
    free(pool), free(q);
}

/* ---- the recommender ------------------------------------------------------------------------- */

enum { NKP = 160 };

static const char *const words[] = {"red",   "blue",   "shoe",  "lamp",  "desk", "wool",
                                    "green", "cotton", "table", "chair", "kids", "summer",
                                    "large", "small",  "men",   "women"};

static void kp_text(int i, char *buf, size_t len)
{
    snprintf(buf, len, "%s %s %s", words[i % 16], words[(i / 3 + 5) % 16], words[(i / 7) % 16]);
}

/* suggest() of a equals that of a recommender built from scratch over a's keyphrases (same
 * model): same keyphrase ids with the same scores. */
static void assert_rec_as_rebuilt(kp_recommender *a, const kp_bienc *m)
{
    int n = kp_rec_size(a);
    const char **ids = malloc(sizeof(char *) * (size_t)(n + 1)),
               **texts = malloc(sizeof(char *) * (size_t)(n + 1));
    for (int i = 0; i < n; i++)
        ids[i] = kp_rec_keyphrase_id(a, i), texts[i] = kp_rec_keyphrase(a, i);
    kp_bienc *copy = kp_bienc_new_zero(kp_bienc_cfg(m));
    assert_int_equal(kp_bienc_copy(copy, m), 0);
    char err[256];
    kp_recommender *b = kp_rec_new(copy, ids, texts, n, 0, err, sizeof err);
    assert_non_null(b);
    const char *titles[] = {"red wool desk lamp", "summer shoe for kids", "large green table",
                            "women cotton chair"};
    size_t lens[4];
    for (int i = 0; i < 4; i++)
        lens[i] = strlen(titles[i]);
    kp_rec_suggestion sa[4 * 10], sb[4 * 10];
    int ca[4], cb[4];
    assert_int_equal(kp_rec_suggest(a, titles, lens, 4, 10, -1.0f, sa, ca), 0);
    assert_int_equal(kp_rec_suggest(b, titles, lens, 4, 10, -1.0f, sb, cb), 0);
    for (int t = 0; t < 4; t++) {
        assert_int_equal(ca[t], cb[t]);
        for (int j = 0; j < ca[t]; j++) {
            assert_string_equal(sa[t * 10 + j].keyphrase_id, sb[t * 10 + j].keyphrase_id);
            assert_true(fabsf(sa[t * 10 + j].score - sb[t * 10 + j].score) < 1e-5f);
        }
    }
    for (int i = 0; i < n; i++)
        assert_int_equal(kp_rec_find(a, ids[i]), i);
    kp_rec_free(b);
    free((void *)ids), free((void *)texts);
}

/* kp_rec_new_take: the rows of a kp_texts, which it frees (zeroed); the same keyphrases in the
 * same order, scoring as kp_rec_new over them does. */
static void test_rec_new_take(void **state)
{
    (void)state;
    kp_bienc_config bc;
    kp_bienc_config_default(&bc);
    kp_bienc *m = kp_bienc_new(&bc, 5);
    assert_non_null(m);
    kp_bienc *mine = kp_bienc_new_zero(kp_bienc_cfg(m));
    assert_int_equal(kp_bienc_copy(mine, m), 0);
    static char idb[NKP][16], txb[NKP][64];
    const char *ids[NKP], *texts[NKP];
    for (int i = 0; i < NKP; i++) {
        snprintf(idb[i], sizeof idb[i], "kp%d", i);
        kp_text(i, txb[i], sizeof txb[i]);
        ids[i] = idb[i], texts[i] = txb[i];
    }
    char err[256];
    kp_texts t;
    assert_int_equal(kp_texts_build(ids, texts, NKP, &t, err, sizeof err), 0);
    kp_recommender *r = kp_rec_new_take(mine, &t, 0, err, sizeof err);
    assert_non_null(r);
    assert_int_equal(t.n, 0);
    assert_null(t.arena), assert_null(t.id), assert_null(t.text);
    assert_int_equal(kp_rec_size(r), NKP);
    for (int i = 0; i < NKP; i++) {
        assert_string_equal(kp_rec_keyphrase_id(r, i), idb[i]);
        assert_string_equal(kp_rec_keyphrase(r, i), txb[i]);
    }
    assert_rec_as_rebuilt(r, m);
    kp_rec_free(r);
    kp_bienc_free(m);
}

static void test_rec_upsert_remove(void **state)
{
    (void)state;
    kp_bienc_config bc;
    kp_bienc_config_default(&bc);
    kp_bienc *m = kp_bienc_new(&bc, 9);
    assert_non_null(m);
    kp_bienc *mine = kp_bienc_new_zero(kp_bienc_cfg(m));
    assert_int_equal(kp_bienc_copy(mine, m), 0);
    static char idb[NKP][16], txb[NKP][64];
    const char *ids[NKP], *texts[NKP];
    for (int i = 0; i < NKP; i++) {
        snprintf(idb[i], sizeof idb[i], "kp%d", i);
        kp_text(i, txb[i], sizeof txb[i]);
        ids[i] = idb[i], texts[i] = txb[i];
    }
    char err[256];
    kp_recommender *r = kp_rec_new(mine, ids, texts, 60, 0, err, sizeof err);
    assert_non_null(r);
    assert_int_equal(kp_rec_find(r, "kp59"), 59);
    assert_int_equal(kp_rec_find(r, "kp60"), -1);
    /* add 100 new ones, with 10 already held (unchanged: not counted) */
    assert_int_equal(kp_rec_upsert(r, ids + 50, texts + 50, 110, err, sizeof err), 100);
    assert_int_equal(kp_rec_size(r), NKP);
    assert_rec_as_rebuilt(r, m);
    /* remove 50 (5 unknown ids among them) */
    const char *rm[55];
    for (int i = 0; i < 50; i++)
        rm[i] = ids[(i * 3) % NKP];
    for (int i = 50; i < 55; i++)
        rm[i] = "no-such-id";
    assert_int_equal(kp_rec_remove(r, rm, 55), 50);
    assert_int_equal(kp_rec_size(r), NKP - 50);
    for (int i = 0; i < 50; i++)
        assert_int_equal(kp_rec_find(r, rm[i]), -1);
    assert_rec_as_rebuilt(r, m);
    /* a changed text replaces the keyphrase; re-adding a removed one brings it back */
    const char *cid[2] = {"kp1", "kp0"}, *ctx[2] = {"blue wool lamp", "green summer chair"};
    assert_int_equal(kp_rec_upsert(r, cid, ctx, 2, err, sizeof err), 2);
    assert_string_equal(kp_rec_keyphrase(r, kp_rec_find(r, "kp1")), "blue wool lamp");
    assert_string_equal(kp_rec_keyphrase(r, kp_rec_find(r, "kp0")), "green summer chair");
    assert_int_equal(kp_rec_size(r), NKP - 49);
    assert_rec_as_rebuilt(r, m);
    /* remove everything, then add again */
    assert_int_equal(kp_rec_remove(r, ids, NKP), NKP - 49);
    assert_int_equal(kp_rec_size(r), 0);
    assert_int_equal(kp_rec_upsert(r, ids, texts, 20, err, sizeof err), 20);
    assert_rec_as_rebuilt(r, m);
    kp_rec_free(r);
    kp_bienc_free(m);
}

TH_MAIN(cmocka_unit_test(test_index_live_vs_rebuild),
        cmocka_unit_test(test_index_live_vs_rebuild_dedup), cmocka_unit_test(test_index_add_edges),
        cmocka_unit_test(test_rec_upsert_remove), cmocka_unit_test(test_rec_new_take))
