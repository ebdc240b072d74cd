/* Unit tests for offline/report: HTML escaping, and the merge of runs into DIR/report.tsv by
 * label (with gnuplot kept off PATH: the data is written, the error names gnuplot). The page and
 * the PNGs themselves: tests/cli/test_report.sh. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "offline/report.h"
#include "th_main.h"

static void test_escape(void **state)
{
    (void)state;
    char out[64];
    assert_string_equal(kp_report_html_escape("a<b>&\"c'd", out, sizeof out),
                        "a&lt;b&gt;&amp;&quot;c&#39;d");
    assert_string_equal(kp_report_html_escape("plain", out, sizeof out), "plain");
    /* cut at an entity boundary, never inside one */
    assert_string_equal(kp_report_html_escape("ab&cd", out, 6), "ab");
    assert_string_equal(kp_report_html_escape(NULL, out, sizeof out), "");
}

/* Counts the rows of dir/report.tsv whose first field is label. */
static int rows_of(const char *dir, const char *label)
{
    char path[512], line[4096];
    snprintf(path, sizeof path, "%s/report.tsv", dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0;
    size_t l = strlen(label);
    while (fgets(line, sizeof line, f))
        n += !strncmp(line, label, l) && line[l] == '\t';
    fclose(f);
    return n;
}

static int file_has(const char *path, const char *needle)
{
    char buf[65536];
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

static void test_merge_by_label(void **state)
{
    (void)state;
    char dir[] = "/tmp/kp_report_test_XXXXXX", err[1024] = "";
    assert_non_null(mkdtemp(dir));
    const char *old_path = getenv("PATH");
    char *saved = old_path ? strdup(old_path) : NULL;
    setenv("PATH", "/nonexistent", 1); /* no gnuplot */
    const char *names[] = {"items", "recall@10", "auc"};
    const double vals[] = {5, 0.25, 0.75}, slice[] = {4, 0.125, NAN};
    const int cnt[] = {1, 0, 0}, ks[] = {1, 10};
    const double rec[] = {0.1, 0.25};
    const float score[] = {0.9f, 0.1f, 0.5f}, grade[] = {3, 1, 2};
    kp_report_model a = {.label = "alpha\tone", /* the tab is escaped, not a field separator */
                         .kind = "bi-encoder",
                         .score = "cosine",
                         .n_metrics = 3,
                         .metric_names = names,
                         .metric_values = vals,
                         .metric_slice = slice,
                         .metric_is_count = cnt,
                         .n_k = 2,
                         .k = ks,
                         .recall = rec,
                         .n_pairs = 3,
                         .pair_score = score,
                         .pair_grade = grade};
    kp_report_model b = a;
    b.label = "beta";
    b.n_pairs = 0;
    assert_int_equal(kp_report_add(dir, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "gnuplot is not installed"));
    int na = rows_of(dir, "alpha\\x09one");
    /* info + 3 metrics + 2 recall + 16 bins x 3 grades */
    assert_int_equal(na, 1 + 3 + 2 + 16 * 3);
    assert_int_equal(kp_report_add(dir, &b, err, sizeof err), -1);
    assert_int_equal(rows_of(dir, "beta"), 1 + 3 + 2);
    /* a rerun of alpha replaces its rows, beta's stay */
    assert_int_equal(kp_report_add(dir, &a, err, sizeof err), -1);
    assert_int_equal(rows_of(dir, "alpha\\x09one"), na);
    assert_int_equal(rows_of(dir, "beta"), 1 + 3 + 2);
    /* the data files and scripts are there without gnuplot */
    char path[512];
    snprintf(path, sizeof path, "%s/recall.gp", dir);
    assert_true(file_has(path, "set output 'recall.png'"));
    assert_true(file_has(path, "\"beta\""));
    snprintf(path, sizeof path, "%s/recall.tsv", dir);
    assert_true(file_has(path, "10\t0.25\tNaN"));
    snprintf(path, sizeof path, "%s/never_shown.tsv", dir);
    assert_true(file_has(path, "recall@10\t0.25\t0.125"));
    /* bad arguments */
    kp_report_model bad = a;
    bad.label = "";
    assert_int_equal(kp_report_add(dir, &bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "bad arguments"));
    if (saved) setenv("PATH", saved, 1);
    free(saved);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

TH_MAIN(cmocka_unit_test(test_escape), cmocka_unit_test(test_merge_by_label))
