/* Unit tests for model/tsv: text tables, judgments, click logs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "offline/datasets.h"
#include "th_main.h"

#define assert_close(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))

/* Writes content to a fresh temp file; returns its path (static buffer per slot). */
static const char *write_tmp(int slot, const char *content)
{
    static char path[4][64];
    snprintf(path[slot], sizeof(path[slot]), "/tmp/kp_tsv_test_XXXXXX");
    int fd = mkstemp(path[slot]);
    assert_true(fd >= 0);
    size_t len = strlen(content);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    close(fd);
    return path[slot];
}

static void test_texts_load_ok(void **state)
{
    (void)state;
    const char *p = write_tmp(0, "item_id\ttitle\r\n"
                                 "a1\tHello World\r\n"
                                 "\n"
                                 "b2\t\n"
                                 "c3\tCaf\xc3\xa9 cr\xc3\xa8me"); /* no final newline */
    kp_texts t;
    char err[256] = "";
    assert_int_equal(kp_texts_load(p, &t, err, sizeof(err)), 0);
    assert_int_equal(t.n, 3);
    assert_string_equal(t.id[0], "a1");
    assert_string_equal(t.text[0], "Hello World");
    assert_string_equal(t.id[1], "b2");
    assert_string_equal(t.text[1], "");
    assert_string_equal(t.text[2], "Caf\xc3\xa9 cr\xc3\xa8me");
    assert_int_equal(kp_texts_find(&t, "a1"), 0);
    assert_int_equal(kp_texts_find(&t, "b2"), 1);
    assert_int_equal(kp_texts_find(&t, "c3"), 2);
    assert_int_equal(kp_texts_find(&t, "item_id"), -1); /* header skipped */
    assert_int_equal(kp_texts_find(&t, "a"), -1);
    assert_int_equal(kp_texts_find(&t, NULL), -1);
    kp_texts_free(&t);
    assert_null(t.id);
    kp_texts_free(&t); /* twice is fine */
    kp_texts_free(NULL);
    unlink(p);
}

static void expect_texts_error(const char *content, const char *what, const char *line_tag)
{
    const char *p = write_tmp(1, content);
    kp_texts t;
    char err[256] = "";
    assert_int_equal(kp_texts_load(p, &t, err, sizeof(err)), -1);
    assert_null(t.id);
    assert_int_equal(t.n, 0);
    assert_non_null(strstr(err, p));
    assert_non_null(strstr(err, what));
    if (line_tag) assert_non_null(strstr(err, line_tag));
    unlink(p);
}

static void test_texts_errors(void **state)
{
    (void)state;
    expect_texts_error("id\ttext\na\tx\nb\tx\ty\n", "expected 2 columns, got 3", ":3:");
    expect_texts_error("id\ttext\na\tx\nb\n", "expected 2 columns, got 1", ":3:");
    expect_texts_error("id\ttext\na\tx\n\ty\n", "empty id", ":3:");
    expect_texts_error("id\ttext\na\tx\nb\ty\na\tz\n", "duplicate id \"a\"", ":4:");
    expect_texts_error("", "no header", NULL);

    kp_texts t;
    char err[256] = "";
    assert_int_equal(kp_texts_load("/nonexistent/dir/x.tsv", &t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent/dir/x.tsv"));
    assert_int_equal(kp_texts_load(NULL, &t, err, sizeof(err)), -1);
    assert_int_equal(kp_texts_load("/nonexistent", NULL, NULL, 0), -1); /* no crash, no err */
}

static void test_texts_header_only(void **state)
{
    (void)state;
    const char *p = write_tmp(0, "id\ttext\n");
    kp_texts t;
    char err[256];
    assert_int_equal(kp_texts_load(p, &t, err, sizeof(err)), 0);
    assert_int_equal(t.n, 0);
    assert_int_equal(kp_texts_find(&t, "id"), -1);
    kp_texts_free(&t);
    unlink(p);
}

static void test_texts_build_and_map(void **state)
{
    (void)state;
    enum { N = 5000 };
    char **ids = malloc(N * sizeof(char *)), **txt = malloc(N * sizeof(char *));
    assert_non_null(ids);
    assert_non_null(txt);
    for (int i = 0; i < N; i++) {
        ids[i] = malloc(32);
        txt[i] = malloc(32);
        snprintf(ids[i], 32, "k%d", i * 7919 % 100003);
        snprintf(txt[i], 32, "text %d", i);
    }
    kp_texts t;
    char err[256];
    assert_int_equal(
        kp_texts_build((const char *const *)ids, (const char *const *)txt, N, &t, err, sizeof(err)),
        0);
    assert_int_equal(t.n, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(kp_texts_find(&t, ids[i]), i);
        assert_string_equal(t.text[i], txt[i]);
    }
    /* absent ids: compare with a linear scan */
    for (int v = 0; v < 2000; v++) {
        char q[32];
        snprintf(q, sizeof(q), "k%d", v);
        int lin = -1;
        for (int i = 0; i < N; i++)
            if (strcmp(ids[i], q) == 0) lin = i;
        assert_int_equal(kp_texts_find(&t, q), lin);
    }
    kp_texts_free(&t);

    /* validation */
    const char *bad_ids[] = {"a", "b"}, *bad_txt[] = {"x", "y\tz"};
    assert_int_equal(kp_texts_build(bad_ids, bad_txt, 2, &t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "tab or line break"));
    const char *dup_ids[] = {"a", "a"}, *ok_txt[] = {"x", "y"};
    assert_int_equal(kp_texts_build(dup_ids, ok_txt, 2, &t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "duplicate id"));
    assert_int_equal(kp_texts_build(NULL, NULL, 0, &t, err, sizeof(err)), 0);
    assert_int_equal(t.n, 0);
    kp_texts_free(&t);
    for (int i = 0; i < N; i++) {
        free(ids[i]);
        free(txt[i]);
    }
    free(ids);
    free(txt);
}

static void make_tables(kp_texts *items, kp_texts *keys)
{
    const char *iid[] = {"100", "200", "300"}, *itx[] = {"drill", "saw", "paint"};
    const char *kid[] = {"0", "1", "2", "3"},
               *ktx[] = {"cordless drill", "hand saw", "red paint", "blue paint"};
    char err[256];
    assert_int_equal(kp_texts_build(iid, itx, 3, items, err, sizeof(err)), 0);
    assert_int_equal(kp_texts_build(kid, ktx, 4, keys, err, sizeof(err)), 0);
}

static void test_judgments_load(void **state)
{
    (void)state;
    kp_texts items, keys;
    make_tables(&items, &keys);
    const char *p = write_tmp(0, "pair_id\tkeyphrase_id\titem_id\trelevance\n"
                                 "1\t0\t100\t3\n"
                                 "2\t1\t200\t2.33\n"
                                 "3\t9\t200\t2\n" /* unknown keyphrase */
                                 "4\t2\t999\t1\n" /* unknown item */
                                 "5\t3\t300\t1\n"
                                 "6\t2\t300\t2.67\n");
    kp_judgments j;
    int skipped = -1;
    char err[256];
    assert_int_equal(kp_judgments_load(p, &items, &keys, &j, &skipped, err, sizeof(err)), 0);
    assert_int_equal(skipped, 2);
    assert_int_equal(j.n, 4);
    int want_item[] = {0, 1, 2, 2}, want_key[] = {0, 1, 3, 2};
    float want_rel[] = {3.0f, 2.33f, 1.0f, 2.67f};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(j.item[i], want_item[i]);
        assert_int_equal(j.key[i], want_key[i]);
        assert_true(j.rel[i] == want_rel[i]);
    }

    int *off, *idx;
    assert_int_equal(kp_judgments_relevant_csr(&j, items.n, 2.0f, &off, &idx, err, sizeof(err)), 0);
    assert_int_equal(off[0], 0);
    assert_int_equal(off[1], 1); /* item 0: key 0 */
    assert_int_equal(off[2], 2); /* item 1: key 1 */
    assert_int_equal(off[3], 3); /* item 2: key 2 only (key 3 has rel 1) */
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    assert_int_equal(idx[2], 2);
    free(off);
    free(idx);
    assert_int_equal(kp_judgments_relevant_csr(&j, 2, 2.0f, &off, &idx, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "outside"));
    kp_judgments_free(&j);
    kp_judgments_free(&j);
    kp_judgments_free(NULL);
    unlink(p);

    static const struct {
        const char *content, *what, *line;
    } bad[] = {
        {"h\th\th\th\n1\t0\t100\t3\n2\t0\t100\n", "expected 4 columns", ":3:"},
        {"h\th\th\th\n1\t0\t100\tabc\n", "\"abc\" is not a number", ":2:"},
        {"h\th\th\th\n1\t0\t100\t\n", "is not a number", ":2:"},
        {"h\th\th\th\n1\t0\t100\t2x\n", "is not a number", ":2:"},
        {"h\th\th\th\n1\t0\t100\tnan\n", "is not a number", ":2:"},
        {"h\th\th\th\n1\t0\t100\t3\n1\t0\t100\t3.5\n", "outside [1, 3]", ":3:"},
    };
    for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
        p = write_tmp(1, bad[b].content);
        assert_int_equal(kp_judgments_load(p, &items, &keys, &j, NULL, err, sizeof(err)), -1);
        assert_non_null(strstr(err, p));
        assert_non_null(strstr(err, bad[b].what));
        assert_non_null(strstr(err, bad[b].line));
        assert_null(j.item);
        unlink(p);
    }
    kp_texts_free(&items);
    kp_texts_free(&keys);
}

static void test_clicklog_roundtrip(void **state)
{
    (void)state;
    kp_texts items, keys;
    make_tables(&items, &keys);
    kp_clicklog log = {0};
    for (int i = 0; i < 1000; i++) {
        kp_click_event e = {i % 3, (i * 7) % 4, (i % 5 == 0) ? KP_EV_CLICK : KP_EV_IMPRESSION,
                            1 + i % 9, 1700000000000LL + 37LL * i};
        assert_int_equal(kp_clicklog_push(&log, &e), 0);
    }
    char path[] = "/tmp/kp_clicklog_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char err[256];
    assert_int_equal(kp_clicklog_write(path, &log, &items, &keys, err, sizeof(err)), 0);

    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[256];
    assert_non_null(fgets(line, sizeof(line), f));
    assert_string_equal(line, "item_id\tkeyphrase_id\tkind\tposition\tts\n");
    assert_non_null(fgets(line, sizeof(line), f));
    assert_string_equal(line, "100\t0\tclick\t1\t1700000000000\n");
    fclose(f);

    kp_clicklog back;
    int skipped = -1;
    assert_int_equal(kp_clicklog_load(path, &items, &keys, &back, &skipped, err, sizeof(err)), 0);
    assert_int_equal(skipped, 0);
    assert_int_equal(back.n, log.n);
    for (int i = 0; i < log.n; i++) {
        assert_int_equal(back.ev[i].item, log.ev[i].item);
        assert_int_equal(back.ev[i].key, log.ev[i].key);
        assert_int_equal(back.ev[i].kind, log.ev[i].kind);
        assert_int_equal(back.ev[i].position, log.ev[i].position);
        assert_true(back.ev[i].ts == log.ev[i].ts);
    }
    kp_clicklog_free(&back);

    /* invalid events are refused by the writer */
    log.ev[5].position = 0;
    assert_int_equal(kp_clicklog_write(path, &log, &items, &keys, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "event 5"));
    log.ev[5].position = 1;
    log.ev[7].item = 3;
    assert_int_equal(kp_clicklog_write(path, &log, &items, &keys, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "event 7"));
    kp_clicklog_free(&log);
    kp_clicklog_free(NULL);
    unlink(path);

    /* loader: unknown ids skipped, malformed rows rejected with file:line */
    const char *hdr = "item_id\tkeyphrase_id\tkind\tposition\tts\n";
    char buf[512];
    snprintf(buf, sizeof(buf),
             "%s100\t0\timpression\t1\t5\n999\t0\tclick\t1\t5\n300\t3\tclick\t2\t6\n", hdr);
    const char *p = write_tmp(0, buf);
    assert_int_equal(kp_clicklog_load(p, &items, &keys, &back, &skipped, err, sizeof(err)), 0);
    assert_int_equal(back.n, 2);
    assert_int_equal(skipped, 1);
    assert_int_equal(back.ev[1].item, 2);
    assert_int_equal(back.ev[1].key, 3);
    assert_int_equal(back.ev[1].kind, KP_EV_CLICK);
    assert_int_equal(back.ev[1].position, 2);
    kp_clicklog_free(&back);
    /* items NULL: item ids are not resolved, only the unknown keyphrase would be skipped */
    assert_int_equal(kp_clicklog_load(p, NULL, &keys, &back, &skipped, err, sizeof(err)), 0);
    assert_int_equal(back.n, 3);
    assert_int_equal(skipped, 0);
    assert_int_equal(back.ev[1].item, -1);
    assert_int_equal(back.ev[1].key, 0);
    assert_int_equal(back.ev[2].key, 3);
    kp_clicklog_free(&back);
    unlink(p);

    static const struct {
        const char *rows, *what, *line;
    } bad[] = {
        {"100\t0\tview\t1\t5\n", "neither impression nor click", ":2:"},
        {"100\t0\tclick\t0\t5\n", "position \"0\"", ":2:"},
        {"100\t0\tclick\t1.5\t5\n", "position \"1.5\"", ":2:"},
        {"100\t0\tclick\t1\t-3\n", "ts \"-3\"", ":2:"},
        {"100\t0\tclick\t1\t5\n100\t0\tclick\t1\n", "expected 5 columns, got 4", ":3:"},
    };
    for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
        snprintf(buf, sizeof(buf), "%s%s", hdr, bad[b].rows);
        p = write_tmp(1, buf);
        assert_int_equal(kp_clicklog_load(p, &items, &keys, &back, NULL, err, sizeof(err)), -1);
        assert_non_null(strstr(err, p));
        assert_non_null(strstr(err, bad[b].what));
        assert_non_null(strstr(err, bad[b].line));
        assert_null(back.ev);
        unlink(p);
    }
    p = write_tmp(1, "item\tkey\tkind\tpos\tts\n");
    assert_int_equal(kp_clicklog_load(p, &items, &keys, &back, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unexpected header"));
    unlink(p);
    kp_texts_free(&items);
    kp_texts_free(&keys);
}

/* Data rows of a TSV file (non-empty lines after the header), counted independently. */
static int count_rows(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0, c, prev = '\n', first = 1, len = 0;
    while ((c = fgetc(f)) != EOF) {
        if (c == '\n') {
            if (!first && len > 0) n++;
            first = 0;
            len = 0;
        } else if (c != '\r') {
            len++;
        }
        prev = c;
    }
    if (prev != '\n' && !first && len > 0) n++;
    fclose(f);
    return n;
}

static void test_homedepot_if_present(void **state)
{
    (void)state;
    const char *ip = "/work/shared/data/homedepot/items.tsv";
    const char *kp = "/work/shared/data/homedepot/keyphrases.tsv";
    const char *jp = "/work/shared/data/homedepot/judgments.tsv";
    if (access(ip, R_OK) != 0 || access(kp, R_OK) != 0 || access(jp, R_OK) != 0) {
        skip();
        return;
    }
    kp_texts items, keys;
    kp_judgments j;
    char err[512];
    int skipped;
    assert_int_equal(kp_texts_load(ip, &items, err, sizeof(err)), 0);
    assert_int_equal(kp_texts_load(kp, &keys, err, sizeof(err)), 0);
    assert_int_equal(kp_judgments_load(jp, &items, &keys, &j, &skipped, err, sizeof(err)), 0);
    assert_int_equal(items.n, count_rows(ip));
    assert_int_equal(keys.n, count_rows(kp));
    assert_int_equal(j.n + skipped, count_rows(jp));
    for (int i = 0; i < j.n; i++) {
        assert_true(j.rel[i] >= 1.0f && j.rel[i] <= 3.0f);
        assert_true(j.item[i] >= 0 && j.item[i] < items.n);
        assert_true(j.key[i] >= 0 && j.key[i] < keys.n);
    }
    for (int i = 0; i < items.n; i += 97)
        assert_int_equal(kp_texts_find(&items, items.id[i]), i);
    kp_judgments_free(&j);
    kp_texts_free(&items);
    kp_texts_free(&keys);
}

/* Grade scales: 1..4 and 0..1 files are range-checked on their scale and mapped onto 1..3, so the
 * labels (rel - 1) / 2 are (g - MIN) / (MAX - MIN) and the thresholds follow the scale. */
static void test_grade_scales(void **state)
{
    (void)state;
    kp_texts items, keys;
    make_tables(&items, &keys);
    char err[256];
    kp_grade_scale s14, s01, d = kp_grade_scale_default();
    assert_true(d.min == 1.0f && d.max == 3.0f);
    assert_int_equal(kp_grade_scale_parse("1:4", &s14, err, sizeof err), 0);
    assert_int_equal(kp_grade_scale_parse("0:1", &s01, err, sizeof err), 0);
    assert_true(s14.min == 1.0f && s14.max == 4.0f && s01.min == 0.0f && s01.max == 1.0f);
    const char *badscales[] = {"", "1", "1:", ":3", "3:1", "2:2", "a:b", "1:3x", "nan:1", "0:inf"};
    for (size_t b = 0; b < sizeof badscales / sizeof badscales[0]; b++) {
        kp_grade_scale t = {7.0f, 8.0f};
        assert_int_equal(kp_grade_scale_parse(badscales[b], &t, err, sizeof err), -1);
        assert_true(t.min == 7.0f && t.max == 8.0f);
    }
    /* mapping: labels, canonical grades, thresholds, the 0..1 score of the Judgment topic */
    assert_close(kp_grade_unit(&s14, 4.0f), 1.0, 1e-7);
    assert_close(kp_grade_unit(&s14, 2.5f), 0.5, 1e-7);
    assert_close(kp_grade_canonical(&s14, 1.0f), 1.0, 1e-7);
    assert_close(kp_grade_canonical(&s14, 3.25f), 2.5, 1e-6); /* relevant threshold */
    assert_close(kp_grade_canonical(&s01, 0.5f), 2.0, 1e-7);  /* irrelevant threshold */
    assert_close(kp_grade_from_unit(&s14, 0.5f), 2.5, 1e-7);
    assert_close(kp_grade_from_unit(&s01, 0.3f), 0.3, 1e-7);
    for (float g = 1.0f; g <= 3.0f; g += 0.25f) /* the default scale is the identity */
        assert_true(kp_grade_canonical(&d, g) == g);

    const char *p = write_tmp(0, "pair_id\tkeyphrase_id\titem_id\trelevance\n"
                                 "1\t0\t100\t4\n"
                                 "2\t1\t200\t1\n"
                                 "3\t3\t300\t2.5\n"
                                 "4\t2\t300\t3.25\n");
    kp_judgments j;
    assert_int_equal(kp_judgments_load_scaled(p, &items, &keys, &s14, &j, NULL, err, sizeof err),
                     0);
    assert_int_equal(j.n, 4);
    float want14[] = {3.0f, 1.0f, 2.0f, 2.5f};
    for (int i = 0; i < 4; i++) {
        assert_close(j.rel[i], want14[i], 1e-6);
        /* the SR / CE label of the internal scale is the label of the file's scale */
        assert_close((j.rel[i] - 1.0f) / 2.0f,
                     kp_grade_unit(&s14, i == 0   ? 4.0f
                                         : i == 1 ? 1.0f
                                         : i == 2 ? 2.5f
                                                  : 3.25f),
                     1e-6);
    }
    kp_judgments_free(&j);
    /* the same file is out of range on the default scale (grade 4) and on 0..1 */
    assert_int_equal(kp_judgments_load(p, &items, &keys, &j, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "outside [1, 3]"));
    assert_int_equal(kp_judgments_load_scaled(p, &items, &keys, &s01, &j, NULL, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "outside [0, 1]"));
    unlink(p);

    p = write_tmp(0, "pair_id\tkeyphrase_id\titem_id\trelevance\n"
                     "1\t0\t100\t1\n"
                     "2\t1\t200\t0\n"
                     "3\t3\t300\t0.75\n");
    assert_int_equal(kp_judgments_load_scaled(p, &items, &keys, &s01, &j, NULL, err, sizeof err),
                     0);
    assert_int_equal(j.n, 3);
    assert_close(j.rel[0], 3.0, 1e-7);
    assert_close(j.rel[1], 1.0, 1e-7);
    assert_close(j.rel[2], 2.5, 1e-7); /* 0.75 on 0..1 is "relevant" (>= 2.5 internally) */
    kp_judgments_free(&j);
    /* 0..1 grades are below the default scale's minimum */
    assert_int_equal(kp_judgments_load(p, &items, &keys, &j, NULL, err, sizeof err), -1);
    unlink(p);
    kp_texts_free(&items);
    kp_texts_free(&keys);
}

TH_MAIN(cmocka_unit_test(test_texts_load_ok), cmocka_unit_test(test_texts_errors),
        cmocka_unit_test(test_texts_header_only), cmocka_unit_test(test_texts_build_and_map),
        cmocka_unit_test(test_judgments_load), cmocka_unit_test(test_grade_scales),
        cmocka_unit_test(test_clicklog_roundtrip), cmocka_unit_test(test_homedepot_if_present))
