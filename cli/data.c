/* data.c -- loading the offline verbs' input files (see data.h). */
#include "cli/data.h"

#include <stdio.h>
#include <string.h>

void kp_cli_fail(const char *who, const char *message)
{
    fprintf(stderr, "%s: %s\n", who, message);
}

static void report_skipped(const char *who, const char *path, int n, const char *what)
{
    if (n)
        fprintf(stderr, "%s: %s: %d %s(s) skipped: unknown item or keyphrase id\n", who, path, n,
                what);
}

int kp_cli_parse_grades(const char *who, const char *value, void *out)
{
    char err[256];
    if (kp_grade_scale_parse(value, out, err, sizeof err) == 0) return 0;
    fprintf(stderr,
            "%s: bad value '%s' for --grades (wants MIN:MAX, finite, MIN < MAX, e.g. 1:3 "
            "or 0:1)\n",
            who, value);
    return -1;
}

kp_grade_scale kp_cli_grades(const kp_cli_paths *p)
{
    if (p->grades.min == 0.0f && p->grades.max == 0.0f) return kp_grade_scale_default();
    return p->grades;
}

int kp_cli_data_load(const char *who, const kp_cli_paths *p, kp_cli_data *d)
{
    char err[512];
    memset(d, 0, sizeof *d);
    if (kp_texts_load(p->items, &d->items, err, sizeof err) ||
        kp_texts_load(p->keys, &d->keys, err, sizeof err))
        goto fail;
    if (p->clicks) {
        if (kp_clicklog_load(p->clicks, &d->items, &d->keys, &d->clicks, &d->clicks_skipped, err,
                             sizeof err))
            goto fail;
        report_skipped(who, p->clicks, d->clicks_skipped, "click event");
    }
    if (p->judgments) {
        kp_grade_scale sc = kp_cli_grades(p);
        if (kp_judgments_load_scaled(p->judgments, &d->items, &d->keys, &sc, &d->judg,
                                     &d->judgments_skipped, err, sizeof err))
            goto fail;
        report_skipped(who, p->judgments, d->judgments_skipped, "judgment");
    }
    return 0;
fail:
    kp_cli_fail(who, err);
    return -1;
}

void kp_cli_data_free(kp_cli_data *d)
{
    kp_judgments_free(&d->judg);
    kp_clicklog_free(&d->clicks);
    kp_texts_free(&d->items);
    kp_texts_free(&d->keys);
    memset(d, 0, sizeof *d);
}
