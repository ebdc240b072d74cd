/* Tests for model/ckpt: round trip, corrupted/truncated/foreign files, generic container. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "model/bienc.h"
#include "model/ckpt.h"
#include "testhelp.h"
#include "th_main.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/kp_ckpt_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void path_of(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
}

static unsigned char *slurp(const char *p, size_t *n)
{
    unsigned char *b = th_slurp(p, n);
    assert_non_null(b);
    return b;
}

static void spit(const char *p, const void *b, size_t n)
{
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static const char *texts[] = {"red shoes", "cordless drill 18v", "\xc3\xa9t\xc3\xa9 hat"};

static void test_round_trip(void **state)
{
    (void)state;
    for (int shared = 0; shared < 2; shared++) {
        kp_bienc_config c;
        kp_bienc *m = th_bienc_new(&c, 2048, 8, 12, 6, shared, 3, 99);
        kp_bienc_set_version(m, 0xFFFFFFFF00000042ULL);
        char p[128], err[256] = "";
        path_of(p, sizeof(p), "m.ckpt");
        assert_int_equal(kp_bienc_save(m, p, err, sizeof(err)), 0);
        char tmp[160];
        snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", p, (long)getpid());
        assert_int_not_equal(access(tmp, F_OK), 0); /* temporary renamed away */
        kp_bienc *l = kp_bienc_load(p, err, sizeof(err));
        assert_non_null(l);
        assert_memory_equal(kp_bienc_cfg(l), kp_bienc_cfg(m), sizeof(kp_bienc_config));
        assert_true(kp_bienc_version(l) == 0xFFFFFFFF00000042ULL);
        for (int t = 0; t < 2; t++)
            for (int pi = 0; pi < KP_BIENC_NPARAM; pi++) {
                size_t rows, cols;
                const float *a =
                    kp_bienc_param_c(m, (kp_tower)t, (kp_bienc_param_id)pi, &rows, &cols);
                const float *b =
                    kp_bienc_param_c(l, (kp_tower)t, (kp_bienc_param_id)pi, NULL, NULL);
                assert_memory_equal(a, b, rows * cols * sizeof(float));
            }
        float e1[3 * 6], e2[3 * 6];
        for (int t = 0; t < 2; t++) {
            kp_bienc_embed(m, (kp_tower)t, texts, NULL, 3, e1);
            kp_bienc_embed(l, (kp_tower)t, texts, NULL, 3, e2);
            assert_memory_equal(e1, e2, sizeof(e1));
        }
        kp_bienc_free(l);
        kp_bienc_free(m);
    }
}

/* Saves a model and returns the file's bytes. */
static unsigned char *saved_bytes(char *p, size_t pn, size_t *n)
{
    kp_bienc_config c;
    kp_bienc *m = th_bienc_new(&c, 2048, 8, 12, 6, 0, 3, 5);
    path_of(p, pn, "good.ckpt");
    char err[256];
    assert_int_equal(kp_bienc_save(m, p, err, sizeof(err)), 0);
    kp_bienc_free(m);
    return slurp(p, n);
}

static void expect_fail(const char *p, const char *needle)
{
    char err[512] = "";
    kp_bienc *m = kp_bienc_load(p, err, sizeof(err));
    if (m) fail_msg("load of %s succeeded, expected a failure", p);
    assert_true(strlen(err) > 0);
    if (needle && !strstr(err, needle)) fail_msg("error '%s' lacks '%s'", err, needle);
}

static void test_truncated(void **state)
{
    (void)state;
    char p[128], bad[128];
    size_t n;
    unsigned char *b = saved_bytes(p, sizeof(p), &n);
    path_of(bad, sizeof(bad), "trunc.ckpt");
    size_t cuts[] = {0, 3, 8, 11, 13, 20, 40, n / 3, n / 2, n - 5, n - 4, n - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        spit(bad, b, cuts[i]);
        expect_fail(bad, NULL);
    }
    spit(bad, b, n / 2);
    expect_fail(bad, "truncated");
    free(b);
}

static void test_flipped_bytes(void **state)
{
    (void)state;
    char p[128], bad[128];
    size_t n;
    unsigned char *b = saved_bytes(p, sizeof(p), &n);
    path_of(bad, sizeof(bad), "flip.ckpt");
    size_t where[] = {30, 60, 100, n / 2, n - 3 * 4096, n - 6, n - 1};
    for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
        b[where[i]] ^= 0x10;
        spit(bad, b, n);
        expect_fail(bad, NULL);
        b[where[i]] ^= 0x10;
    }
    b[n / 2] ^= 0x01; /* inside the embedding data: only the checksum can tell */
    spit(bad, b, n);
    expect_fail(bad, "checksum");
    b[n / 2] ^= 0x01;
    /* trailing garbage */
    unsigned char *g = malloc(n + 3);
    memcpy(g, b, n);
    memcpy(g + n, "xyz", 3);
    spit(bad, g, n + 3);
    expect_fail(bad, "after the checksum");
    free(g);
    /* the untouched bytes still load */
    spit(bad, b, n);
    char err[256];
    kp_bienc *m = kp_bienc_load(bad, err, sizeof(err));
    assert_non_null(m);
    kp_bienc_free(m);
    free(b);
}

static void test_foreign_and_version(void **state)
{
    (void)state;
    char p[128], bad[128];
    size_t n;
    unsigned char *b = saved_bytes(p, sizeof(p), &n);
    path_of(bad, sizeof(bad), "foreign.ckpt");
    const char *txt = "item_id\ttitle\n1\tred shoes\n2\tblue hat\n";
    spit(bad, txt, strlen(txt));
    expect_fail(bad, "magic");
    /* format version 2 */
    b[8] = 2;
    spit(bad, b, n);
    expect_fail(bad, "version");
    b[8] = 1;
    path_of(bad, sizeof(bad), "missing.ckpt");
    expect_fail(bad, "cannot open");
    expect_fail(dir, "regular file");
    char err[64];
    assert_null(kp_bienc_load(NULL, err, sizeof(err)));
    free(b);
}

static void test_generic_container(void **state)
{
    (void)state;
    char p[128], err[256] = "";
    path_of(p, sizeof(p), "ce.ckpt");
    kp_ckpt_writer *w = kp_ckpt_writer_new(p, "ce", err, sizeof(err));
    assert_non_null(w);
    float t1[6] = {1, 2, 3, 4, 5, 6}, t2[4] = {-1, 0.5f, 1e-30f, 3e30f};
    uint64_t d1[2] = {2, 3}, d2[3] = {1, 2, 2};
    assert_int_equal(kp_ckpt_put(w, "name", "kernel pooling"), 0);
    assert_int_equal(kp_ckpt_put_u64(w, "steps", 123456789012ULL), 0);
    assert_int_equal(kp_ckpt_put_tensor(w, "mlp.w", t1, 2, d1), 0);
    assert_int_equal(kp_ckpt_put_tensor(w, "k", t2, 3, d2), 0);
    uint64_t d0[1] = {0};
    assert_int_equal(kp_ckpt_put_tensor(w, "empty", NULL, 1, d0), 0);
    assert_int_equal(kp_ckpt_writer_commit(w, err, sizeof(err)), 0);

    kp_ckpt_reader *r = kp_ckpt_open(p, err, sizeof(err));
    assert_non_null(r);
    assert_string_equal(kp_ckpt_kind(r), "ce");
    assert_string_equal(kp_ckpt_get(r, "name"), "kernel pooling");
    uint64_t s;
    assert_int_equal(kp_ckpt_get_u64(r, "steps", &s), 0);
    assert_true(s == 123456789012ULL);
    assert_int_equal(kp_ckpt_get_u64(r, "name", &s), -1);
    assert_null(kp_ckpt_get(r, "nope"));
    assert_int_equal(kp_ckpt_n_tensors(r), 3);
    assert_string_equal(kp_ckpt_tensor_name(r, 1), "k");
    assert_null(kp_ckpt_tensor_name(r, 3));
    int nd;
    uint64_t dims[KP_CKPT_MAX_DIMS];
    assert_int_equal(kp_ckpt_tensor_shape(r, "k", &nd, dims), 0);
    assert_int_equal(nd, 3);
    assert_true(dims[2] == 2);
    float o1[6], o2[4];
    assert_int_equal(kp_ckpt_read_tensor(r, "k", o2, 3, d2, err, sizeof(err)), 0);
    assert_memory_equal(o2, t2, sizeof(t2));
    assert_int_equal(kp_ckpt_read_tensor(r, "mlp.w", o1, 2, d1, err, sizeof(err)), 0);
    assert_memory_equal(o1, t1, sizeof(t1));
    uint64_t wrong[2] = {3, 2};
    assert_int_equal(kp_ckpt_read_tensor(r, "mlp.w", o1, 2, wrong, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "shape"));
    assert_int_equal(kp_ckpt_read_tensor(r, "zzz", o1, 2, d1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "missing"));
    kp_ckpt_close(r);
    kp_ckpt_close(NULL);
    /* a bi-encoder loader refuses another kind */
    expect_fail(p, "expected 'bienc'");
    /* abort leaves nothing behind; bad records make commit fail */
    char p2[128];
    path_of(p2, sizeof(p2), "aborted.ckpt");
    w = kp_ckpt_writer_new(p2, "x", err, sizeof(err));
    kp_ckpt_writer_abort(w);
    kp_ckpt_writer_abort(NULL);
    assert_int_not_equal(access(p2, F_OK), 0);
    w = kp_ckpt_writer_new(p2, "x", err, sizeof(err));
    assert_int_equal(kp_ckpt_put_tensor(w, "bad", t1, 0, d1), -1);
    assert_int_equal(kp_ckpt_writer_commit(w, err, sizeof(err)), -1);
    assert_int_not_equal(access(p2, F_OK), 0);
    /* unwritable location */
    assert_null(kp_ckpt_writer_new("/nonexistent-dir/x.ckpt", "x", err, sizeof(err)));
    assert_non_null(strstr(err, "cannot create"));
}

static void test_crc32(void **state)
{
    (void)state;
    /* the standard check value of CRC-32/IEEE */
    assert_true(kp_crc32(0, "123456789", 9) == 0xCBF43926u);
    /* incremental == one shot, for every split */
    const char *s = "the quick brown fox jumps over the lazy dog";
    size_t n = strlen(s);
    uint32_t whole = kp_crc32(0, s, n);
    for (size_t k = 0; k <= n; k++)
        assert_true(kp_crc32(kp_crc32(0, s, k), s + k, n - k) == whole);
}

TH_MAIN_GROUP(setup, teardown, cmocka_unit_test(test_round_trip), cmocka_unit_test(test_truncated),
              cmocka_unit_test(test_flipped_bytes), cmocka_unit_test(test_foreign_and_version),
              cmocka_unit_test(test_generic_container), cmocka_unit_test(test_crc32))
