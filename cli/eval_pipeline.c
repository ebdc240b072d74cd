/* kprec eval --rerank CE [--hybrid M] [--calibration F] [--threshold P]: evaluates exactly what
 * the worker would publish, through kp_rec_suggest (model/recommender.h), the worker's code path:
 *   recall@k      of the final lists (k = --k, the worker's top_k), judged items with a relevant
 *                 keyphrase (relevance >= --relevant) over the whole inventory
 *   kept          share of relevant judged pairs (>= --relevant) whose p passes the gate
 *   dropped       share of irrelevant judged pairs (< --irrelevant) whose p does not
 *   in_list       share of relevant judged pairs in the item's final list
 *   list length   mean over the judged items, and the items left with none
 *   logloss/brier of p against relevant (>= --relevant) on the judged pairs (calibrated runs)
 *   items/s       the pipeline's throughput on the judged items (after loading)
 * --speed N [--rounds R] times the pipeline on the first N titles of --items instead (median of R
 * rounds): bench/pipeline.sh. */
#include "cli/eval_pipeline.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/data.h"
#include "cli/opts.h"
#include "common/util.h"
#include "model/bienc.h"
#include "model/blas.h"
#include "model/ckpt.h"
#include "offline/datasets.h"
#include "offline/ir_metrics.h"
#include "offline/report.h"

#define WHO "kprec eval"

int kp_eval_pipeline_wanted(int argc, char **argv)
{
    static const char *flags[] = {
        "--rerank", "--hybrid", "--candidates", "--threshold", "--calibration", "--speed", NULL};
    for (int i = 1; i < argc; i++)
        for (int f = 0; flags[f]; f++) {
            size_t l = strlen(flags[f]);
            if (!strncmp(argv[i], flags[f], l) && (argv[i][l] == 0 || argv[i][l] == '=')) return 1;
        }
    return 0;
}

void kp_cli_pipeline_free(kp_cli_pipeline *p)
{
    kp_rec_free(p->rec);
    kp_ce_free(p->ce);
    kp_calib_free(p->calib);
    kp_bm25_free(p->bm);
    memset(p, 0, sizeof *p);
}

int kp_cli_pipeline_open(const char *who, const char *be, const char *ce, const char *calib,
                         int candidates, int hybrid, float threshold, int threads,
                         const kp_texts *keys, kp_cli_pipeline *p)
{
    char err[1024];
    memset(p, 0, sizeof *p);
    kp_bienc *m = kp_bienc_load(be, err, sizeof err);
    if (!m) goto fail;
    if (ce && *ce && !(p->ce = kp_ce_load(ce, err, sizeof err))) {
        kp_bienc_free(m);
        goto fail;
    }
    if (calib && *calib && !(p->calib = kp_calib_load(calib, err, sizeof err))) {
        kp_bienc_free(m);
        goto fail;
    }
    if (hybrid > 0 && !(p->bm = kp_bm25_build((const char *const *)keys->text, keys->n, KP_BM25_K1,
                                              KP_BM25_B, err, sizeof err))) {
        kp_bienc_free(m);
        goto fail;
    }
    if (!(p->rec = kp_rec_new(m, (const char *const *)keys->id, (const char *const *)keys->text,
                              keys->n, 0, err, sizeof err)))
        goto fail;
    const kp_pipeline pl = {.ce = p->ce,
                            .bm25 = p->bm,
                            .calib = p->calib,
                            .candidates = candidates,
                            .hybrid = hybrid,
                            .threshold = threshold,
                            .ce_threads = threads};
    if (kp_rec_set_pipeline(p->rec, &pl, err, sizeof err)) goto fail;
    return 0;
fail:
    kp_cli_fail(who, err);
    return -1;
}

/* ---- options --------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kprec eval --model BE --items I --keyphrases K --judgments J\n"
            "                  [--rerank CE] [--candidates N] [--hybrid M] [--calibration F]\n"
            "                  [--threshold P] [--k K] [--relevant 2.5] [--irrelevant 2]\n"
            "                  [--batch 256] [--threads T] [--model-threads W]\n"
            "                  [--speed N [--rounds 5]] [--json]\n"
            "                  [--lists FILE] [--report DIR [--label NAME]] [--quiet]\n"
            "Evaluates the serving pipeline exactly as the worker runs it (BE top-N, + BM25\n"
            "top-M, -> CE re-rank -> calibrated p -> gate p >= P, at most K) on the judged items\n"
            "of J: recall@K of the final lists; on the judged pairs the share of relevant ones\n"
            "(>= --relevant) kept by the gate and of irrelevant ones (< --irrelevant) dropped;\n"
            "the share of relevant pairs in the final list; the mean list length and the items\n"
            "left with none; log-loss / Brier of p; items/s of the pipeline.\n"
            "  --rerank CE       cross-encoder re-ranking the candidates ([model] ce)\n"
            "  --candidates N    BE candidates ([model] candidates; default 50 with --rerank,\n"
            "                    else K)\n"
            "  --hybrid M        BM25 top-M candidates too ([model] hybrid; default 0)\n"
            "  --calibration F   kprec calibrate's file ([model] calibration)\n"
            "  --threshold P     the gate ([model] threshold; default 0 = none)\n"
            "  --k K             list length ([worker] top_k; default 10)\n"
            "  --threads T       cross-encoder and BLAS threads (default 1, as a worker)\n"
            "  --model-threads W the model's own fan-out, 1 or 2 ([model] threads; default 1)\n"
            "  --lists FILE      write every judged item's final list as a JSON line\n"
            "                    {item_id, suggestions: [{id, keyphrase, score, raw}]}\n"
            "  --report DIR      add this run to DIR/index.html (kprec eval --report): its\n"
            "                    metrics, the published p per relevance grade and, with\n"
            "                    --calibration, the calibration curve of p; --label NAME names\n"
            "                    it (default: the pipeline's parts)\n"
            "  --speed N         only time the pipeline on the first N titles of I (median of\n"
            "                    --rounds R, default 5), print items/s\n"
            "Exit status: 0 ok, 1 unreadable or invalid input, 2 usage error.\n"
            "Example:\n"
            "  kprec eval --model be.kpm --rerank ce.kpm --candidates 50 --calibration calib.kpm\n"
            "      --threshold 0.3 --items items.tsv --keyphrases keyphrases.tsv\n"
            "      --judgments valid_judgments.tsv\n");
}

typedef struct {
    const char *model, *rerank, *calibration, *lists, *report, *label;
    kp_cli_paths in;
    int candidates, hybrid, k, batch, threads, model_threads, speed, rounds, json, quiet, cand_seen;
    float threshold, relevant, irrelevant;
} args;

static int parse(int argc, char **argv, args *a)
{
    memset(a, 0, sizeof *a);
    a->k = 10, a->batch = 256, a->threads = 1, a->model_threads = 1, a->rounds = 5;
    a->relevant = 2.5f, a->irrelevant = 2.0f;
    const kp_opt opts[] = {
        {"model", 'm', KP_OPT_STR, &a->model, .required = 1},
        KP_CLI_DATA_OPTS(&a->in, 'K', 0),
        {"rerank", 'R', KP_OPT_STR, &a->rerank, .required = 0},
        {"candidates", 'N', KP_OPT_INT, &a->candidates, .lo = 1, .hi = 100000,
         .seen = &a->cand_seen},
        {"hybrid", 'H', KP_OPT_INT, &a->hybrid, .lo = 0, .hi = 100000},
        {"calibration", 'C', KP_OPT_STR, &a->calibration, .required = 0},
        {"lists", 'L', KP_OPT_STR, &a->lists, .required = 0},
        {"report", 0, KP_OPT_STR, &a->report, .required = 0},
        {"label", 0, KP_OPT_STR, &a->label, .required = 0},
        {"threshold", 'T', KP_OPT_FLOAT, &a->threshold, .lo = 0, .hi = 1},
        {"k", 'k', KP_OPT_INT, &a->k, .lo = 1, .hi = 1000},
        {"relevant", 'r', KP_OPT_FLOAT, &a->relevant, .lo = -FLT_MAX, .hi = FLT_MAX},
        {"irrelevant", 'n', KP_OPT_FLOAT, &a->irrelevant, .lo = -FLT_MAX, .hi = FLT_MAX},
        {"batch", 'b', KP_OPT_INT, &a->batch, .lo = 1, .hi = 100000},
        {"threads", 't', KP_OPT_INT, &a->threads, .lo = 1, .hi = 64},
        {"model-threads", 0, KP_OPT_INT, &a->model_threads, .lo = 1, .hi = 2},
        {"speed", 'S', KP_OPT_INT, &a->speed, .lo = 1, .hi = 100000000},
        {"rounds", 'o', KP_OPT_INT, &a->rounds, .lo = 1, .hi = 1000},
        {"json", 'J', KP_OPT_FLAG, .out = &a->json},
        {"quiet", 'q', KP_OPT_FLAG, .out = &a->quiet},
        {NULL}};
    int rc = kp_opts_parse(WHO, usage, opts, argc, argv, NULL);
    if (rc != KP_OPTS_GO) return rc;
    if (!a->cand_seen) a->candidates = a->rerank ? 50 : a->k;
    if ((a->label && !a->report) || (a->report && a->speed)) {
        fprintf(stderr, WHO ": %s\n",
                a->speed ? "--report does not apply to --speed" : "--label wants --report DIR");
        return 2;
    }
    if (!a->speed && !a->in.judgments) {
        fprintf(stderr, WHO ": --judgments is required (but with --speed)\n");
        return 2;
    }
    return KP_OPTS_GO;
}

/* ---- run ------------------------------------------------------------------------------------- */

/* The pipeline over titles[0..n) in batches: lists into out[i*k..], counts[i]. 0 / -1. */
static int run_lists(kp_recommender *rec, const char *const *titles, const size_t *lens, int n,
                     int k, int batch, kp_rec_suggestion *out, int *counts)
{
    for (int i = 0; i < n; i += batch) {
        int c = n - i < batch ? n - i : batch;
        if (kp_rec_suggest(rec, titles + i, lens + i, c, k, -1.0f, out + (size_t)i * k, counts + i))
            return -1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int run_speed(const args *a, kp_cli_pipeline *p, const kp_texts *items)
{
    int n = a->speed < items->n ? a->speed : items->n;
    size_t *lens = malloc(sizeof *lens * (size_t)(n + 1));
    int *counts = malloc(sizeof(int) * (size_t)(n + 1));
    kp_rec_suggestion *out = malloc(sizeof *out * ((size_t)n * a->k + 1));
    double *ips = malloc(sizeof(double) * (size_t)a->rounds);
    int rc = 1;
    if (!lens || !counts || !out || !ips) goto out;
    for (int i = 0; i < n; i++)
        lens[i] = strlen(items->text[i]);
    long total = 0;
    for (int r = 0; r < a->rounds; r++) {
        uint64_t t0 = kp_mono_us();
        if (run_lists(p->rec, (const char *const *)items->text, lens, n, a->k, a->batch, out,
                      counts))
            goto out;
        ips[r] = n / ((double)(kp_mono_us() - t0) / 1e6);
        if (r == 0)
            for (int i = 0; i < n; i++)
                total += counts[i];
    }
    qsort(ips, (size_t)a->rounds, sizeof *ips, cmp_double);
    double med =
        a->rounds % 2 ? ips[a->rounds / 2] : (ips[a->rounds / 2 - 1] + ips[a->rounds / 2]) / 2;
    if (a->json)
        printf("{\"items\":%d,\"rounds\":%d,\"items_per_s\":%.1f,\"min\":%.1f,\"max\":%.1f,"
               "\"mean_list\":%.3f}\n",
               n, a->rounds, med, ips[0], ips[a->rounds - 1], (double)total / n);
    else
        printf("%d titles, %d rounds: median %.1f items/s (min %.1f, max %.1f); mean list %.2f\n",
               n, a->rounds, med, ips[0], ips[a->rounds - 1], (double)total / n);
    rc = 0;
out:
    if (rc) kp_cli_fail(WHO, "out of memory or the pipeline failed");
    free(lens), free(counts), free(out), free(ips);
    return rc;
}

typedef struct {
    double recall, kept, dropped, in_list, mean_len, logloss, brier, items_per_s, secs;
    int items, recall_items, none, pos, neg, pairs;
    float *p, *y; /* with --report: the published p and the 0/1 label of every judged pair */
} result;

/* --lists: one JSON line per judged item. 0 / -1 (message printed). */
static int write_lists(const char *path, const kp_cli_data *d, const int *rows, int n, int k,
                       const kp_rec_suggestion *out, const int *counts)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, WHO ": %s: cannot create\n", path);
        return -1;
    }
    for (int v = 0; v < n; v++) {
        json_t *arr = json_array();
        for (int c = 0; c < counts[v]; c++) {
            const kp_rec_suggestion *s = &out[(size_t)v * k + c];
            json_array_append_new(arr, json_pack("{s:s, s:s, s:f, s:f}", "id", s->keyphrase_id,
                                                 "keyphrase", s->keyphrase, "score",
                                                 (double)s->score, "raw", (double)s->raw));
        }
        json_t *o = json_pack("{s:s, s:o}", "item_id", d->items.id[rows[v]], "suggestions", arr);
        char *js = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (js) fprintf(f, "%s\n", js);
        free(js);
        json_decref(o);
    }
    if (fclose(f)) {
        fprintf(stderr, WHO ": %s: write failed\n", path);
        return -1;
    }
    return 0;
}

static int evaluate(const args *a, kp_cli_pipeline *p, const kp_cli_data *d, result *res)
{
    const kp_judgments *j = &d->judg;
    int ni = d->items.n, k = a->k, rc = -1;
    memset(res, 0, sizeof *res);
    int *judged = calloc((size_t)ni + 1, sizeof(int)), *rows = malloc(sizeof(int) * (ni + 1));
    const char **titles = malloc(sizeof(char *) * ((size_t)ni + 1));
    size_t *lens = malloc(sizeof(size_t) * ((size_t)ni + 1));
    int *counts = malloc(sizeof(int) * ((size_t)ni + 1));
    kp_rec_suggestion *out = malloc(sizeof *out * ((size_t)ni * k + 1));
    int *retrieved = malloc(sizeof(int) * ((size_t)ni * k + 1));
    int *rel_off = NULL, *rel = NULL;
    const char **pt = malloc(sizeof(char *) * ((size_t)j->n + 1));
    size_t *pl = malloc(sizeof(size_t) * ((size_t)j->n + 1));
    float *raw = malloc(sizeof(float) * ((size_t)j->n + 1)),
          *pp = malloc(sizeof(float) * ((size_t)j->n + 1)),
          *yy = malloc(sizeof(float) * ((size_t)j->n + 1));
    if (!judged || !rows || !titles || !lens || !counts || !out || !retrieved || !pt || !pl ||
        !raw || !pp || !yy)
        goto oom;
    int n = 0;
    for (int i = 0; i < j->n; i++)
        judged[j->item[i]] = 1;
    for (int i = 0; i < ni; i++)
        if (judged[i]) {
            rows[n] = i;
            titles[n] = d->items.text[i];
            lens[n++] = strlen(d->items.text[i]);
        }
    /* the lists, as the worker publishes them */
    uint64_t t0 = kp_mono_us();
    if (run_lists(p->rec, titles, lens, n, k, a->batch, out, counts)) goto oom;
    res->secs = (double)(kp_mono_us() - t0) / 1e6;
    res->items_per_s = n / (res->secs > 0 ? res->secs : 1e-9);
    for (size_t i = 0; i < (size_t)ni * k; i++)
        retrieved[i] = -1;
    long total = 0;
    for (int v = 0; v < n; v++) {
        total += counts[v];
        if (!counts[v]) res->none++;
        for (int c = 0; c < counts[v]; c++)
            retrieved[(size_t)rows[v] * k + c] =
                kp_texts_find(&d->keys, out[(size_t)v * k + c].keyphrase_id);
    }
    res->items = n;
    res->mean_len = n ? (double)total / n : NAN;
    if (a->lists && write_lists(a->lists, d, rows, n, k, out, counts)) goto out;
    char err[512];
    if (kp_judgments_relevant_csr(j, ni, a->relevant, &rel_off, &rel, err, sizeof err)) goto oom;
    res->recall = kp_recall_at_k(ni, d->keys.n, k, retrieved, rel_off, rel, &res->recall_items);
    /* the gate on the judged pairs: the same scorer and calibration */
    for (int i = 0; i < j->n; i++) {
        pt[i] = d->items.text[j->item[i]];
        pl[i] = strlen(pt[i]);
    }
    for (int i = 0; i < j->n; i += 4096) {
        int c = j->n - i < 4096 ? j->n - i : 4096;
        if (kp_rec_pair_scores(p->rec, pt + i, pl + i, j->key + i, c, raw + i, pp + i)) goto oom;
    }
    int kept = 0, dropped = 0, inl = 0;
    for (int i = 0; i < j->n; i++) {
        int pass = a->threshold <= 0 || pp[i] >= a->threshold;
        yy[i] = j->rel[i] >= a->relevant ? 1.0f : 0.0f;
        if (j->rel[i] >= a->relevant) {
            res->pos++;
            kept += pass;
            const int *l = retrieved + (size_t)j->item[i] * k;
            for (int c = 0; c < k; c++)
                if (l[c] == j->key[i]) {
                    inl++;
                    break;
                }
        } else if (j->rel[i] < a->irrelevant) {
            res->neg++;
            dropped += !pass;
        }
    }
    res->pairs = j->n;
    res->kept = res->pos ? (double)kept / res->pos : NAN;
    res->dropped = res->neg ? (double)dropped / res->neg : NAN;
    res->in_list = res->pos ? (double)inl / res->pos : NAN;
    res->logloss = p->calib ? kp_calib_logloss(pp, yy, j->n) : NAN;
    res->brier = p->calib ? kp_calib_brier(pp, yy, j->n) : NAN;
    if (a->report) { /* handed over to the report */
        res->p = pp, res->y = yy;
        pp = yy = NULL;
    }
    rc = 0;
    goto out;
oom:
    kp_cli_fail(WHO, "out of memory or the pipeline failed");
out:
    free(judged), free(rows), free((void *)titles), free(lens), free(counts), free(out);
    free(retrieved), free(rel_off), free(rel), free((void *)pt), free(pl), free(raw), free(pp);
    free(yy);
    return rc;
}

static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static void report(const args *a, const result *r)
{
    char key[32];
    snprintf(key, sizeof key, "recall@%d", a->k);
    if (a->json) {
        json_t *o = json_object();
        json_object_set_new(o, "model", json_string(a->model));
        json_object_set_new(o, "rerank", a->rerank ? json_string(a->rerank) : json_null());
        json_object_set_new(o, "candidates", json_integer(a->candidates));
        json_object_set_new(o, "hybrid", json_integer(a->hybrid));
        json_object_set_new(o, "calibration",
                            a->calibration ? json_string(a->calibration) : json_null());
        json_object_set_new(o, "threshold", json_real(a->threshold));
        json_object_set_new(o, "k", json_integer(a->k));
        /* the metrics, in this order: a count is an integer, a rate num() */
        const struct {
            const char *name;
            double v;
            int count;
        } fields[] = {
            {key, r->recall, 0},
            {"kept", r->kept, 0},
            {"dropped", r->dropped, 0},
            {"in_list", r->in_list, 0},
            {"mean_list", r->mean_len, 0},
            {"items_none", r->none, 1},
            {"items", r->items, 1},
            {"recall_items", r->recall_items, 1},
            {"pairs", r->pairs, 1},
            {"relevant_pairs", r->pos, 1},
            {"irrelevant_pairs", r->neg, 1},
            {"logloss", r->logloss, 0},
            {"brier", r->brier, 0},
            {"items_per_s", r->items_per_s, 0},
        };
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
            json_object_set_new(o, fields[i].name,
                                fields[i].count ? json_integer((json_int_t)fields[i].v)
                                                : num(fields[i].v));
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        if (s) printf("%s\n", s);
        free(s);
        json_decref(o);
        return;
    }
    printf("%-14s %s%s%s\n", "pipeline", a->rerank ? "re-rank " : "BE",
           a->hybrid ? " + hybrid" : "", a->threshold > 0 ? " + gate" : "");
    printf("%-14s %8d   (%d with a relevant keyphrase)\n", "items", r->items, r->recall_items);
    printf("%-14s %8.4f\n", key, r->recall);
    printf("%-14s %8.4f   of %d relevant judged pairs (p >= %g)\n", "kept", r->kept, r->pos,
           a->threshold);
    printf("%-14s %8.4f   of %d irrelevant judged pairs\n", "dropped", r->dropped, r->neg);
    printf("%-14s %8.4f   relevant judged pairs in the final list\n", "in list", r->in_list);
    printf("%-14s %8.2f\n", "mean list", r->mean_len);
    printf("%-14s %8d\n", "items w/o any", r->none);
    if (isfinite(r->logloss))
        printf("%-14s %8.4f   (brier %.4f)\n", "log-loss", r->logloss, r->brier);
    printf("%-14s %8.1f   (%.1f s)\n", "items/s", r->items_per_s, r->secs);
}

/* --report: adds this run to the report in a->report. 0, or 1 with a message. */
static int pipeline_report(const args *a, const kp_cli_data *d, const result *r)
{
    char label[600], key[32], err[1024];
    const char *be = strrchr(a->model, '/') ? strrchr(a->model, '/') + 1 : a->model;
    const char *ce = !a->rerank                ? NULL
                     : strrchr(a->rerank, '/') ? strrchr(a->rerank, '/') + 1
                                               : a->rerank;
    if (a->label)
        snprintf(label, sizeof label, "%s", a->label);
    else
        snprintf(label, sizeof label, "pipeline %.200s%s%.200s%s%s", be, ce ? " + " : "",
                 ce ? ce : "", a->hybrid ? " + bm25" : "", a->calibration ? " + calibration" : "");
    snprintf(key, sizeof key, "recall@%d", a->k);
    const char *names[] = {"items",     "pairs",         key,        "kept", "dropped", "in list",
                           "mean list", "items w/o any", "log-loss", "brier"};
    const double val[] = {r->items,   r->pairs,    r->recall, r->kept,    r->dropped,
                          r->in_list, r->mean_len, r->none,   r->logloss, r->brier};
    const int cnt[] = {1, 1, 0, 0, 0, 0, 0, 1, 0, 0};
    float *grade = malloc(sizeof(float) * ((size_t)d->judg.n + 1));
    if (!grade) {
        kp_cli_fail(WHO, "out of memory");
        return 1;
    }
    kp_grade_scale sc = kp_cli_grades(&a->in);
    for (int i = 0; i < d->judg.n; i++)
        grade[i] = kp_grade_from_unit(&sc, (d->judg.rel[i] - 1.0f) / 2.0f);
    kp_report_model rm = {.label = label,
                          .kind = "pipeline",
                          .score = a->calibration ? "published p (calibrated)" : "published score",
                          .n_metrics = (int)(sizeof names / sizeof names[0]),
                          .metric_names = names,
                          .metric_values = val,
                          .metric_is_count = cnt,
                          .n_pairs = d->judg.n,
                          .pair_score = r->p,
                          .pair_grade = grade,
                          .n_calib = a->calibration ? d->judg.n : 0,
                          .calib_p = r->p,
                          .calib_y = r->y};
    int rc = kp_report_add(a->report, &rm, err, sizeof err);
    free(grade);
    if (rc) {
        kp_cli_fail(WHO, err);
        return 1;
    }
    if (!a->quiet) fprintf(stderr, WHO ": report: %s/index.html\n", a->report);
    return 0;
}

int kp_eval_pipeline(int argc, char **argv)
{
    args a;
    int rc = parse(argc, argv, &a);
    if (rc != KP_OPTS_GO) return rc;
    kp_blas_set_threads(a.threads);
    kp_par_set_threads(a.model_threads);
    kp_cli_data d = {0};
    kp_cli_pipeline p = {0};
    result r;
    rc = 1;
    if (kp_cli_data_load(WHO, &a.in, &d)) goto out;
    if (kp_cli_pipeline_open(WHO, a.model, a.rerank, a.calibration, a.candidates, a.hybrid,
                             a.threshold, a.threads, &d.keys, &p))
        goto out;
    if (a.speed) {
        rc = run_speed(&a, &p, &d.items);
        goto out;
    }
    if (evaluate(&a, &p, &d, &r)) goto out;
    report(&a, &r);
    fflush(stdout);
    rc = a.report ? pipeline_report(&a, &d, &r) : 0;
    free(r.p);
    free(r.y);
out:
    kp_cli_pipeline_free(&p);
    kp_cli_data_free(&d);
    return rc;
}
