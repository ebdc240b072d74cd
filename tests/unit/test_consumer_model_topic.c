/* Tests for consumer/model_topic (named test_consumer_*: test_model_* link model/ alone):
 * HMAC-SHA-256 against RFC 4231's known answers; records that verify, and every way one must not
 * (wrong key, a changed value, header, key or topic, no MAC, impossible versions, lineage 0); the
 * reader's version and lineage rules; the checkpoint cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "consumer/model_topic.h"
#include "th_main.h"

static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

/* RFC 4231, test cases 1, 2 and 6 (HMAC-SHA-256). */
static void test_hmac_rfc4231(void **st)
{
    (void)st;
    unsigned char key1[20], out[32], key6[131];
    char h[65];
    memset(key1, 0x0b, sizeof key1);
    assert_int_equal(kp_hmac_sha256(key1, 20, "Hi There", 8, out), 0);
    hex(out, 32, h);
    assert_string_equal(h, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    assert_int_equal(kp_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, out), 0);
    hex(out, 32, h);
    assert_string_equal(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    memset(key6, 0xaa, sizeof key6);
    const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    assert_int_equal(kp_hmac_sha256(key6, 131, m6, strlen(m6), out), 0);
    hex(out, 32, h);
    assert_string_equal(h, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

static kp_model_meta delta_meta(uint64_t v, uint64_t lin, uint64_t blin)
{
    kp_model_meta m = {KP_MODEL_REC_DELTA, v, lin, v - 1, blin, 0, 2, 0, 1700000000000};
    return m;
}

static kp_model_reject verify(const char *key, const char *topic, const char *rkey,
                              rd_kafka_headers_t *h, const char *val, kp_model_meta *out)
{
    return kp_model_verify(key, topic, rkey, strlen(rkey), h, val, strlen(val), out);
}

static void test_mac_accept_reject(void **st)
{
    (void)st;
    const char *K = "secret", *T = "kprec.model", *V = "payload bytes";
    kp_model_meta m = delta_meta(8, 5ull << 32 | 7, 4ull << 32 | 9), got;
    rd_kafka_headers_t *h =
        kp_model_headers(&m, K, T, KP_MODEL_KEY, strlen(KP_MODEL_KEY), V, strlen(V));
    assert_non_null(h);
    assert_int_equal(verify(K, T, KP_MODEL_KEY, h, V, &got), KP_MODEL_OK);
    assert_int_equal(got.version, 8);
    assert_int_equal(got.base, 7);
    assert_int_equal(got.lineage, 5ull << 32 | 7);
    assert_int_equal(got.base_lineage, 4ull << 32 | 9);
    assert_int_equal(got.count, 2);
    /* another key, value, topic or record key: the MAC does not match */
    assert_int_equal(verify("Secret", T, KP_MODEL_KEY, h, V, NULL), KP_MODEL_REJ_MAC);
    assert_int_equal(verify("", T, KP_MODEL_KEY, h, V, NULL), KP_MODEL_REJ_MAC);
    assert_int_equal(verify(K, T, KP_MODEL_KEY, h, "payload byteS", NULL), KP_MODEL_REJ_MAC);
    assert_int_equal(verify(K, "other.topic", KP_MODEL_KEY, h, V, NULL), KP_MODEL_REJ_MAC);
    assert_int_equal(verify(K, T, "other", h, V, NULL), KP_MODEL_REJ_MALFORMED);
    /* a header changed after signing (an older version, another base) */
    rd_kafka_headers_t *h2 = rd_kafka_headers_copy(h);
    rd_kafka_header_remove(h2, KP_MODEL_HDR_VERSION);
    rd_kafka_header_add(h2, KP_MODEL_HDR_VERSION, -1, "5", -1);
    assert_int_equal(verify(K, T, KP_MODEL_KEY, h2, V, NULL), KP_MODEL_REJ_MAC);
    rd_kafka_headers_destroy(h2);
    /* no MAC at all (a record of the old format, or a forgery) */
    h2 = rd_kafka_headers_copy(h);
    rd_kafka_header_remove(h2, KP_MODEL_HDR_MAC);
    assert_int_equal(verify(K, T, KP_MODEL_KEY, h2, V, NULL), KP_MODEL_REJ_MAC);
    rd_kafka_headers_destroy(h2);
    assert_int_equal(verify(K, T, KP_MODEL_KEY, NULL, V, NULL), KP_MODEL_REJ_MAC);
    rd_kafka_headers_destroy(h);
}

static void test_version_rules_of_signed_records(void **st)
{
    (void)st;
    const char *K = "k", *T = "t", *V = "v";
    kp_model_meta bad[4];
    bad[0] = delta_meta(8, 1ull << 32, 1ull << 32);
    bad[0].base = 3; /* version != base + 1 */
    bad[1] = delta_meta(8, 1ull << 32, 1ull << 32);
    bad[1].version = UINT64_MAX, bad[1].base = UINT64_MAX - 1;
    kp_model_meta ck = {KP_MODEL_REC_CHECKPOINT, 0, 1ull << 32, 0, 0, 0, 1, 10, 1};
    bad[2] = ck; /* version 0 */
    bad[3] = ck;
    bad[3].version = 9, bad[3].lineage = 0;
    kp_model_reject want[4] = {KP_MODEL_REJ_VERSION, KP_MODEL_REJ_VERSION, KP_MODEL_REJ_VERSION,
                               KP_MODEL_REJ_LINEAGE};
    for (int i = 0; i < 4; i++) {
        rd_kafka_headers_t *h =
            kp_model_headers(&bad[i], K, T, KP_MODEL_KEY, strlen(KP_MODEL_KEY), V, 1);
        assert_non_null(h);
        assert_int_equal(verify(K, T, KP_MODEL_KEY, h, V, NULL), want[i]);
        rd_kafka_headers_destroy(h);
    }
    ck.version = 9; /* a good checkpoint */
    rd_kafka_headers_t *h = kp_model_headers(&ck, K, T, KP_MODEL_KEY, strlen(KP_MODEL_KEY), V, 1);
    kp_model_meta got;
    assert_int_equal(verify(K, T, KP_MODEL_KEY, h, V, &got), KP_MODEL_OK);
    assert_int_equal(got.type, KP_MODEL_REC_CHECKPOINT);
    assert_int_equal(got.size, 10);
    rd_kafka_headers_destroy(h);
}

static void test_decide(void **st)
{
    (void)st;
    uint64_t A = 1ull << 32 | 11, B = 2ull << 32 | 22;
    kp_model_meta d = delta_meta(11, B, A);
    assert_int_equal(kp_model_decide(10, A, &d), KP_MODEL_APPLY); /* continues the model */
    assert_int_equal(kp_model_decide(10, B, &d), KP_MODEL_GAP);   /* another lineage at 10 */
    assert_int_equal(kp_model_decide(10, 0, &d), KP_MODEL_GAP);   /* a bootstrap model at 10 */
    assert_int_equal(kp_model_decide(9, A, &d), KP_MODEL_GAP);    /* a missed delta */
    assert_int_equal(kp_model_decide(11, A, &d), KP_MODEL_OLD);   /* already there */
    assert_int_equal(kp_model_decide(50, B, &d), KP_MODEL_OLD);   /* never backwards */
    kp_model_meta c = {KP_MODEL_REC_CHECKPOINT, 5, A, 0, 0, 0, 1, 1, 1};
    assert_int_equal(kp_model_decide(50, B, &c), KP_MODEL_OLD); /* a v50 replica stays at 50 */
    assert_int_equal(kp_model_decide(4, B, &c), KP_MODEL_APPLY);
    assert_int_equal(kp_model_decide(5, 0, &c), KP_MODEL_APPLY); /* bootstrap joins a lineage */
    assert_int_equal(kp_model_decide(5, B, &c), KP_MODEL_OLD);
}

static void touch(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fclose(f);
}

static void test_cache(void **st)
{
    (void)st;
    char dir[128], path[512], p2[600];
    snprintf(dir, sizeof dir, "/tmp/kp-test-mt-%ld", (long)getpid());
    mkdir(dir, 0755);
    touch(dir, "be-v3-l7.kpm");
    touch(dir, "be-v12-l9.kpm");
    touch(dir, "be-v5-l8.kpm");
    touch(dir, "be-v99-l9.kpm.pending"); /* never committed: not a checkpoint */
    touch(dir, "be-v98.kpm");            /* the old naming: ignored */
    uint64_t lin = 0;
    assert_int_equal(kp_model_newest_checkpoint(dir, path, sizeof path, &lin), 12);
    assert_int_equal(lin, 9);
    assert_int_equal(kp_model_cache_prune(dir, 2), 1);
    snprintf(p2, sizeof p2, "%s/be-v3-l7.kpm", dir);
    assert_int_not_equal(access(p2, F_OK), 0);
    assert_int_equal(kp_model_checkpoint_path(dir, 4, 2, path, sizeof path), 0);
    snprintf(p2, sizeof p2, "%s/be-v4-l2.kpm", dir);
    assert_string_equal(path, p2);
    const char *left[] = {"be-v12-l9.kpm", "be-v5-l8.kpm", "be-v99-l9.kpm.pending", "be-v98.kpm"};
    for (int i = 0; i < 4; i++) {
        snprintf(p2, sizeof p2, "%s/%s", dir, left[i]);
        assert_int_equal(remove(p2), 0);
    }
    rmdir(dir);
}

TH_MAIN(cmocka_unit_test(test_hmac_rfc4231), cmocka_unit_test(test_mac_accept_reject),
        cmocka_unit_test(test_version_rules_of_signed_records), cmocka_unit_test(test_decide),
        cmocka_unit_test(test_cache))
