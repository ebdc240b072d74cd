/* Tests for consumer/inventory's change log, without a broker (records are put into the reader's
 * set with kp_inventory_put; the reader thread itself runs, finding no broker): a recommender
 * built from a snapshot and then brought up to date with kp_inventory_apply, in bounded chunks,
 * holds exactly the set; one taken after the log was trimmed past its snapshot is re-synced,
 * embedding only what differs. The topic side is tests/integration/test_inventory.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "consumer/inventory.h"
#include "model/bienc.h"
#include "th_main.h"

enum { NID = 200 };

static char expect[NID][48]; /* the set as the test made it: "" = absent */

static void put(kp_inventory *inv, int i, const char *text)
{
    char id[16];
    snprintf(id, sizeof id, "k%d", i);
    int was = expect[i][0] != 0, same = was && text && strcmp(expect[i], text) == 0;
    assert_int_equal(kp_inventory_put(inv, id, text), (text ? !same : was) ? 1 : 0);
    snprintf(expect[i], sizeof expect[i], "%s", text ? text : "");
}

static void put_text(kp_inventory *inv, int i, int variant)
{
    static const char *const w[] = {"red", "lamp", "wool", "desk", "blue", "shoe", "kids", "oak"};
    char t[48];
    snprintf(t, sizeof t, "%s %s %d", w[i % 8], w[(i / 8 + variant) % 8], variant);
    put(inv, i, t);
}

/* r holds exactly the expected set. */
static void assert_holds_set(const kp_recommender *r)
{
    int n = 0;
    for (int i = 0; i < NID; i++) {
        char id[16];
        snprintf(id, sizeof id, "k%d", i);
        int at = kp_rec_find(r, id);
        if (!expect[i][0]) {
            assert_int_equal(at, -1);
            continue;
        }
        n++;
        assert_true(at >= 0);
        assert_string_equal(kp_rec_keyphrase(r, at), expect[i]);
    }
    assert_int_equal(kp_rec_size(r), n);
}

static kp_recommender *build(const kp_config *c, const kp_bienc *m)
{
    kp_texts t;
    uint64_t seq;
    char err[256];
    assert_int_equal(kp_inventory_load(c, &t, &seq, err, sizeof err), 0);
    kp_bienc *copy = kp_bienc_new_zero(kp_bienc_cfg(m));
    assert_int_equal(kp_bienc_copy(copy, m), 0);
    kp_recommender *r = kp_rec_new(copy, (const char *const *)t.id, (const char *const *)t.text,
                                   t.n, 0, err, sizeof err);
    assert_non_null(r);
    kp_rec_set_seq(r, seq);
    kp_texts_free(&t);
    return r;
}

/* Applies in chunks of max until nothing is left; returns the total changed. */
static int apply_all(const kp_config *c, kp_recommender *r, int max)
{
    char err[256];
    int total = 0, n;
    while ((n = kp_inventory_apply(c, r, max, err, sizeof err)) > 0)
        total += n;
    assert_int_equal(n, 0);
    return total;
}

static void test_snapshot_then_log(void **state)
{
    (void)state;
    kp_config c;
    char err[512];
    kp_config_defaults(&c);
    snprintf(c.topic_inventory, sizeof c.topic_inventory, "kprec-test-inventory");
    assert_int_equal(
        kp_config_set(&c, "kafka", "bootstrap.servers", "127.0.0.1:1", err, sizeof err), 0);
    kp_bienc_config bc;
    kp_bienc_config_default(&bc);
    kp_bienc *m = kp_bienc_new(&bc, 4);
    kp_inventory *inv = kp_inventory_start(&c, err, sizeof err);
    assert_non_null(inv);
    assert_null(kp_inventory_start(&c, err, sizeof err)); /* one per process */
    for (int i = 0; i < 100; i++)
        put_text(inv, i, 0);
    put(inv, 150, NULL); /* a tombstone of an unknown id changes nothing */
    kp_recommender *a = build(&c, m);
    assert_holds_set(a);
    /* 50 additions, 20 removals, 10 changed texts, 5 unchanged re-puts: applied in chunks of 32 */
    for (int i = 100; i < 150; i++)
        put_text(inv, i, 0);
    for (int i = 0; i < 20; i++)
        put(inv, i, NULL);
    for (int i = 20; i < 30; i++)
        put_text(inv, i, 1);
    for (int i = 30; i < 35; i++)
        put_text(inv, i, 0);
    assert_int_equal(kp_inventory_size(inv), 130);
    assert_int_equal(apply_all(&c, a, 32), 80);
    assert_holds_set(a);
    /* the same id changed twice in one chunk: the last text wins */
    put_text(inv, 40, 2);
    put_text(inv, 40, 3);
    put(inv, 41, NULL);
    put_text(inv, 41, 4); /* removed, then back */
    assert_int_equal(apply_all(&c, a, 512), 2);
    assert_holds_set(a);

    /* b is built from a snapshot; a moves on and a newer snapshot is taken: the log is trimmed
     * past b's point, and b, taken afterwards, is re-synced with the whole set */
    kp_recommender *b = build(&c, m);
    for (int i = 150; i < 160; i++)
        put_text(inv, i, 0);
    put(inv, 50, NULL);
    assert_int_equal(apply_all(&c, a, 512), 11);
    kp_recommender *fresh = build(&c, m);
    assert_holds_set(fresh);
    assert_int_equal(apply_all(&c, b, 512), 11); /* the 10 new and the removal: nothing else */
    assert_holds_set(b);
    assert_int_equal(kp_rec_seq(b), kp_rec_seq(a));
    assert_int_equal(apply_all(&c, fresh, 512), 0);

    kp_rec_free(a), kp_rec_free(b), kp_rec_free(fresh);
    kp_inventory_stop(inv);
    /* without a reader: the file, and none is configured */
    kp_texts t;
    uint64_t seq;
    assert_int_equal(kp_inventory_load(&c, &t, &seq, err, sizeof err), -1);
    kp_recommender *none = NULL;
    assert_int_equal(kp_inventory_apply(&c, none, 8, err, sizeof err), 0);
    kp_bienc_free(m);
    kp_config_free(&c);
}

TH_MAIN(cmocka_unit_test(test_snapshot_then_log))
