/* Tests for offline/split: the hashed item split (deterministic, the asked fraction, nested
 * fractions, independent seeds) and kp_split_tsv (rows follow their item, errors). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "offline/split.h"
#include "testhelp.h"
#include "th_main.h"

/* ---- kp_split_is_valid
 * ----------------------------------------------------------------------------------- */

static void test_split(void **state)
{
    (void)state;
    char id[32];
    int n = 20000, v = 0, same = 0, v2 = 0;
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "%d", 100000 + i);
        int a = kp_split_is_valid(id, 0.2, 0);
        assert_int_equal(a, kp_split_is_valid(id, 0.2, 0)); /* deterministic */
        int b = kp_split_is_valid(id, 0.2, 7);
        v += a, v2 += b, same += a && b;
        assert_int_equal(kp_split_is_valid(id, 0.0, 0), 0);
        assert_int_equal(kp_split_is_valid(id, 1.0, 0), 1);
        if (a) assert_int_equal(kp_split_is_valid(id, 0.5, 0), 1); /* nested fractions */
    }
    assert_in_range(v, 3700, 4300);
    assert_in_range(v2, 3700, 4300);
    assert_in_range(same, 600, 1000); /* independent seeds: ~0.04 n */
    assert_int_equal(kp_split_is_valid(NULL, 0.5, 0), 0);
    assert_int_equal(kp_split_is_valid("x", NAN, 0), 0);
}

/* ---- kp_split_tsv ---------------------------------------------------------------------------- */

static void write_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fputs(content, f) >= 0, 1);
    fclose(f);
}

static void test_split_tsv(void **state)
{
    (void)state;
    char in[256], tr[256], va[256], err[256];
    th_tmp_path(in, sizeof in, "split", "in.tsv");
    th_tmp_path(tr, sizeof tr, "split", "train.tsv");
    th_tmp_path(va, sizeof va, "split", "valid.tsv");
    /* 40 rows keyed by item_id (2nd column), CR LF on one, an empty line, no final newline */
    char content[4096] = "pair\titem_id\tx\r\n";
    size_t len = strlen(content);
    int want_valid = 0;
    for (int i = 0; i < 40; i++) {
        char id[16];
        snprintf(id, sizeof id, "it%d", i % 13);
        want_valid += kp_split_is_valid(id, 0.4, 9);
        len += (size_t)snprintf(content + len, sizeof content - len, "p%d\t%s\t%d%s", i, id, i,
                                i == 39 ? "" : (i == 5 ? "\r\n\n" : "\n"));
    }
    write_file(in, content);
    kp_split_counts cn;
    assert_int_equal(kp_split_tsv(in, "item_id", 0.4, 9, tr, va, &cn, err, sizeof err), 0);
    assert_int_equal(cn.rows, 40);
    assert_int_equal(cn.valid, want_valid);
    assert_int_equal(cn.train + cn.valid, 40);
    /* every output row is an input row, in its part, after the header */
    const char *paths[2] = {tr, va};
    long seen = 0;
    for (int part = 0; part < 2; part++) {
        size_t n = 0;
        char *b = (char *)th_slurp(paths[part], &n);
        assert_non_null(b);
        b[n] = '\0';
        assert_memory_equal(b, "pair\titem_id\tx\n", 15);
        assert_int_equal(b[n - 1], '\n');
        assert_null(strchr(b, '\r'));
        for (char *line = strtok(b + 15, "\n"); line; line = strtok(NULL, "\n")) {
            char id[16];
            assert_int_equal(sscanf(line, "%*s %15s", id), 1);
            assert_int_equal(kp_split_is_valid(id, 0.4, 9), part);
            seen++;
        }
        free(b);
    }
    assert_int_equal(seen, 40);
    /* errors name the file */
    assert_int_equal(kp_split_tsv(in, "nope", 0.4, 9, tr, va, &cn, err, sizeof err), -1);
    assert_non_null(strstr(err, "no column named 'nope'"));
    write_file(in, "pair\titem_id\nonly-one-column\n");
    assert_int_equal(kp_split_tsv(in, "item_id", 0.4, 9, tr, va, &cn, err, sizeof err), -1);
    assert_non_null(strstr(err, ":2: no 'item_id' value"));
    write_file(in, "");
    assert_int_equal(kp_split_tsv(in, "item_id", 0.4, 9, tr, va, &cn, err, sizeof err), -1);
    assert_non_null(strstr(err, "empty file"));
    unlink(in), unlink(tr), unlink(va);
    assert_int_equal(kp_split_tsv(in, "item_id", 0.4, 9, tr, va, &cn, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open"));
}

TH_MAIN(cmocka_unit_test(test_split), cmocka_unit_test(test_split_tsv))
