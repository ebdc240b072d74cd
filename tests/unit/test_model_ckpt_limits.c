/* test_model_ckpt_limits.c - the checkpoint loaders check the sizes a header claims against the
 * tensors the file holds before they allocate from them (model/ckpt.c, model/ce.c). */
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
#include "model/ce.h"
#include "model/ckpt.h"
#include "model/featurize.h"
#include "testhelp.h"
#include "th_main.h"

static const float zeros[64];

/* A bienc checkpoint whose header claims n_buckets x emb_dim = 2^30 x 16 (a 64 GiB table) but
 * whose tensors are those of a 4-bucket model. */
static void write_lying_bienc(const char *path)
{
    char err[256];
    kp_ckpt_writer *w = kp_ckpt_writer_new(path, KP_CKPT_KIND_BIENC, err, sizeof err);
    assert_non_null(w);
    kp_ckpt_put_u64(w, "featurizer_version", KP_FEAT_VERSION);
    kp_ckpt_put_u64(w, "model_version", 1);
    kp_ckpt_put_u64(w, "n_buckets", 1u << 30);
    kp_ckpt_put_u64(w, "emb_dim", 16);
    kp_ckpt_put_u64(w, "hidden_dim", 2);
    kp_ckpt_put_u64(w, "out_dim", 2);
    kp_ckpt_put_u64(w, "shared_towers", 1);
    kp_ckpt_put(w, "prefix", "");
    uint64_t emb[2] = {4, 16}, w1[2] = {2, 16}, b[1] = {2}, w2[2] = {2, 2};
    assert_int_equal(kp_ckpt_put_tensor(w, "item.emb", zeros, 2, emb), 0);
    assert_int_equal(kp_ckpt_put_tensor(w, "item.w1", zeros, 2, w1), 0);
    assert_int_equal(kp_ckpt_put_tensor(w, "item.b1", zeros, 1, b), 0);
    assert_int_equal(kp_ckpt_put_tensor(w, "item.w2", zeros, 2, w2), 0);
    assert_int_equal(kp_ckpt_put_tensor(w, "item.b2", zeros, 1, b), 0);
    assert_int_equal(kp_ckpt_writer_commit(w, err, sizeof err), 0);
}

static void test_bienc_header_larger_than_tensors(void **state)
{
    (void)state;
    char path[256], err[512] = "";
    th_tmp_path(path, sizeof path, "ckptlim", "bienc.ckpt");
    write_lying_bienc(path);
    assert_null(kp_bienc_load(path, err, sizeof err));
    /* refused from the tensors, not after trying to allocate 64 GiB ("out of memory") */
    if (!strstr(err, "header sizes do not match the tensors")) print_error("%s\n", err);
    assert_non_null(strstr(err, "header sizes do not match the tensors"));
    assert_non_null(strstr(err, "'item.emb' should be [1073741824 x 16], the file has [4 x 16]"));
    remove(path);
}

static void test_bienc_missing_tensor(void **state)
{
    (void)state;
    char path[256], err[512] = "";
    th_tmp_path(path, sizeof path, "ckptlim", "missing.ckpt");
    kp_ckpt_writer *w = kp_ckpt_writer_new(path, KP_CKPT_KIND_BIENC, err, sizeof err);
    assert_non_null(w);
    kp_ckpt_put_u64(w, "featurizer_version", KP_FEAT_VERSION);
    kp_ckpt_put_u64(w, "model_version", 1);
    kp_ckpt_put_u64(w, "n_buckets", 1u << 28);
    kp_ckpt_put_u64(w, "emb_dim", 64);
    kp_ckpt_put_u64(w, "hidden_dim", 64);
    kp_ckpt_put_u64(w, "out_dim", 64);
    kp_ckpt_put_u64(w, "shared_towers", 0);
    kp_ckpt_put(w, "prefix", "");
    assert_int_equal(kp_ckpt_writer_commit(w, err, sizeof err), 0);
    assert_null(kp_bienc_load(path, err, sizeof err));
    assert_non_null(strstr(err, "'item.emb' should be [268435456 x 64], the file has none"));
    remove(path);
}

/* A well-formed model still loads (the check takes exactly the shapes the saver writes, rank 1
 * for one-row parameters). */
static void test_bienc_roundtrip_still_loads(void **state)
{
    (void)state;
    char path[256], err[512] = "";
    th_tmp_path(path, sizeof path, "ckptlim", "ok.ckpt");
    kp_bienc_config c;
    kp_bienc_config_default(&c);
    c.n_buckets = 64, c.emb_dim = 4, c.hidden_dim = 1, c.out_dim = 3, c.n_prefix = 0;
    kp_bienc *m = kp_bienc_new(&c, 7);
    assert_non_null(m);
    assert_int_equal(kp_bienc_save(m, path, err, sizeof err), 0);
    kp_bienc *m2 = kp_bienc_load(path, err, sizeof err);
    if (!m2) print_error("%s\n", err);
    assert_non_null(m2);
    assert_true(th_bienc_same_params(m, m2));
    kp_bienc_free(m);
    kp_bienc_free(m2);
    remove(path);
}

/* A key/value record that claims more bytes than the file has left is refused before its value
 * is allocated. */
static void test_kv_value_longer_than_file(void **state)
{
    (void)state;
    char path[256], err[512] = "";
    th_tmp_path(path, sizeof path, "ckptlim", "kv.ckpt");
    unsigned char b[64];
    size_t n = 0;
    memcpy(b, KP_CKPT_MAGIC, 8), n = 8;
    b[n++] = KP_CKPT_FORMAT_VERSION, b[n++] = 0, b[n++] = 0, b[n++] = 0;
    b[n++] = 5, b[n++] = 0, memcpy(b + n, "bienc", 5), n += 5;
    b[n++] = 'K', b[n++] = 1, b[n++] = 0, b[n++] = 'k';
    b[n++] = 0x60, b[n++] = 0xea, b[n++] = 0, b[n++] = 0; /* 60000 bytes */
    memcpy(b + n, "abc", 3), n += 3;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
    assert_null(kp_ckpt_open(path, err, sizeof err));
    if (!strstr(err, "value of 'k' needs 60000 bytes")) print_error("%s\n", err);
    assert_non_null(strstr(err, "value of 'k' needs 60000 bytes"));
    remove(path);
}

/* The cross-encoder loader: a header of 2^26 buckets x 1024 dims (256 GiB) over tiny tensors. */
static void test_ce_header_larger_than_tensors(void **state)
{
    (void)state;
    char path[256], err[512] = "";
    th_tmp_path(path, sizeof path, "ckptlim", "ce.ckpt");
    kp_ckpt_writer *w = kp_ckpt_writer_new(path, KP_CE_KIND, err, sizeof err);
    assert_non_null(w);
    kp_ckpt_put_u64(w, "ce_version", 1);
    kp_ckpt_put_u64(w, "model_version", 1);
    kp_ckpt_put_u64(w, "n_buckets", KP_CE_MAX_BUCKETS);
    kp_ckpt_put_u64(w, "emb_dim", KP_CE_MAX_DIM);
    kp_ckpt_put_u64(w, "hidden_dim", 2);
    kp_ckpt_put_u64(w, "n_idf", 4);
    kp_ckpt_put_u64(w, "n_kernels", KP_CE_N_KERNELS);
    kp_ckpt_put_u64(w, "n_exact", KP_CE_N_EXACT);
    uint64_t emb[2] = {4, 4}, idf[1] = {4};
    assert_int_equal(kp_ckpt_put_tensor(w, "emb", zeros, 2, emb), 0);
    assert_int_equal(kp_ckpt_put_tensor(w, "idf", zeros, 1, idf), 0);
    assert_int_equal(kp_ckpt_writer_commit(w, err, sizeof err), 0);
    assert_null(kp_ce_load(path, err, sizeof err));
    if (!strstr(err, "header sizes do not match the tensors")) print_error("%s\n", err);
    assert_non_null(strstr(err, "'emb' should be [67108864 x 1024], the file has [4 x 4]"));
    remove(path);
}

/* The reader's record tables grow with the file (they start small): 3,000 keys and 1,000 tensors
 * all read back. */
static void test_many_records(void **state)
{
    (void)state;
    char path[256], err[512] = "", key[32];
    th_tmp_path(path, sizeof path, "ckptlim", "many.ckpt");
    int nkv = 3000, nt = 1000;
    kp_ckpt_writer *w = kp_ckpt_writer_new(path, "many", err, sizeof err);
    assert_non_null(w);
    for (int i = 0; i < nkv; i++) {
        snprintf(key, sizeof key, "k%d", i);
        kp_ckpt_put_u64(w, key, (uint64_t)i * 7);
    }
    for (int i = 0; i < nt; i++) {
        snprintf(key, sizeof key, "t%d", i);
        uint64_t dims[1] = {(uint64_t)(i % 3 + 1)};
        assert_int_equal(kp_ckpt_put_tensor(w, key, zeros, 1, dims), 0);
    }
    assert_int_equal(kp_ckpt_writer_commit(w, err, sizeof err), 0);
    kp_ckpt_reader *r = kp_ckpt_open(path, err, sizeof err);
    if (!r) print_error("%s\n", err);
    assert_non_null(r);
    assert_int_equal(kp_ckpt_n_tensors(r), nt);
    for (int i = 0; i < nkv; i += 137) {
        uint64_t v = 0;
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(kp_ckpt_get_u64(r, key, &v), 0);
        assert_int_equal(v, (uint64_t)i * 7);
    }
    int nd;
    uint64_t dims[KP_CKPT_MAX_DIMS];
    assert_int_equal(kp_ckpt_tensor_shape(r, "t999", &nd, dims), 0);
    assert_int_equal(nd, 1);
    assert_int_equal(dims[0], 999 % 3 + 1);
    float x[3] = {1, 1, 1};
    dims[0] = 3; /* t997 is [2] */
    assert_int_not_equal(kp_ckpt_read_tensor(r, "t997", x, 1, dims, err, sizeof err), 0);
    dims[0] = 2;
    assert_int_equal(kp_ckpt_read_tensor(r, "t997", x, 1, dims, err, sizeof err), 0);
    assert_true(x[0] == 0.0f && x[1] == 0.0f && x[2] == 1.0f);
    kp_ckpt_close(r);
    remove(path);
}

/* A hand-made file of KP_CKPT_MAX_RECORDS + 1 distinct empty key/value records (the writer
 * would not write it) is refused: "too many records". */
static void test_too_many_records(void **state)
{
    (void)state;
    char path[256], err[512] = "";
    th_tmp_path(path, sizeof path, "ckptlim", "toomany.ckpt");
    size_t cap = 64 + (size_t)(KP_CKPT_MAX_RECORDS + 1) * 12, n = 0;
    unsigned char *b = malloc(cap);
    assert_non_null(b);
    memcpy(b, KP_CKPT_MAGIC, 8), n = 8;
    b[n++] = KP_CKPT_FORMAT_VERSION, b[n++] = 0, b[n++] = 0, b[n++] = 0;
    b[n++] = 4, b[n++] = 0, memcpy(b + n, "many", 4), n += 4;
    for (int i = 0; i <= KP_CKPT_MAX_RECORDS; i++) {
        char k[8];
        int kl = snprintf(k, sizeof k, "%d", i);
        b[n++] = 'K', b[n++] = (unsigned char)kl, b[n++] = 0;
        memcpy(b + n, k, (size_t)kl), n += (size_t)kl;
        memset(b + n, 0, 4), n += 4; /* empty value */
    }
    b[n++] = 'E';
    uint32_t crc = kp_crc32(0, b, n);
    for (int i = 0; i < 4; i++)
        b[n++] = (unsigned char)(crc >> (8 * i));
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
    free(b);
    assert_null(kp_ckpt_open(path, err, sizeof err));
    if (!strstr(err, "too many records")) print_error("%s\n", err);
    assert_non_null(strstr(err, "too many records"));
    remove(path);
}

TH_MAIN(cmocka_unit_test(test_bienc_header_larger_than_tensors),
        cmocka_unit_test(test_many_records), cmocka_unit_test(test_too_many_records),
        cmocka_unit_test(test_bienc_missing_tensor),
        cmocka_unit_test(test_bienc_roundtrip_still_loads),
        cmocka_unit_test(test_kv_value_longer_than_file),
        cmocka_unit_test(test_ce_header_larger_than_tensors))
