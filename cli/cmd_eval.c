/* kprec eval: offline evaluation of a model (bi-encoder, cross-encoder or BM25) against graded
 * judgments: recall@k over the whole inventory, Spearman / Pearson of the pair scores, AUC. The
 * computation is model/eval.h; this file loads the inputs and prints the result. */
#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/data.h"
#include "cli/eval_pipeline.h"
#include "cli/opts.h"
#include "common/progress.h"
#include "common/util.h"
#include "model/bienc.h"
#include "model/bm25.h"
#include "model/ce.h"
#include "model/ckpt.h"
#include "offline/eval.h"
#include "offline/datasets.h"
#include "offline/report.h"

static void eval_usage(FILE *f)
{
    fprintf(
        f,
        "usage: kprec eval --model M --items I --keyphrases K --judgments J [--k 10,50,100]\n"
        "                  [--relevant 2.5] [--irrelevant 2] [--prefix P] [--threads T]\n"
        "                  [--grades MIN:MAX] [--clicks LOG | --never-shown-from LOG]\n"
        "                  [--report DIR [--label NAME]] [--json] [--quiet]\n"
        "Evaluates a model on the judged items of J (item_id, keyphrase_id columns resolved\n"
        "against I and K; unknown ids are counted and reported, not fatal):\n"
        "  recall@k   relevant keyphrases (relevance >= --relevant) of a judged item among\n"
        "             its top k retrieved from the whole inventory K, averaged over items\n"
        "  spearman, pearson   of the model's pair scores with the judged relevance\n"
        "  auc        relevant pairs vs irrelevant pairs (relevance < --irrelevant)\n"
        "M is a bi-encoder checkpoint, a cross-encoder checkpoint (judged-pair metrics only:\n"
        "it is too slow to scan the inventory), 'bm25' (lexical baseline) or 'random[:SEED]'\n"
        "(an untrained bi-encoder of the default configuration, seed 42 by default).\n"
        "--grades MIN:MAX  the scale of J's grades (default 1:3); --relevant and --irrelevant\n"
        "             are on that scale, by default MIN + 0.75 (MAX-MIN) and MIN + 0.5 (MAX-MIN)\n"
        "             (2.5 and 2 on 1:3).\n"
        "--clicks LOG (or --never-shown-from LOG): the click log the model was trained on;\n"
        "             adds the never-shown slice: the same metrics over the judged pairs whose\n"
        "             keyphrase never appears in LOG (no impression, for any item), recall over\n"
        "             each item's relevant never-shown keyphrases (\"never_shown\" in --json).\n"
        "--prefix P evaluates the Matryoshka prefix of size P (first P dims, re-normalised).\n"
        "--threads T (default: online CPUs) embedding / BM25 / cross-encoder threads.\n"
        "--report DIR also writes DIR/index.html with PNG plots (gnuplot): recall@k curves,\n"
        "             Matryoshka size vs recall (bi-encoders), score distributions per grade,\n"
        "             the never-shown slice beside all pairs (with --clicks); DIR/report.tsv "
        "keeps\n"
        "             every run's rows by --label (default: the model's file name), so one DIR\n"
        "             given to several runs compares their models on one page.\n"
        "--json prints one JSON object; otherwise a table. Progress goes to stderr unless\n"
        "--quiet. Exit status: 0 ok, 1 unreadable or invalid input, 2 usage error.\n"
        "Example:\n"
        "  kprec eval --model be.kpm --items items.tsv --keyphrases keyphrases.tsv \\\n"
        "      --judgments split/valid_judgments.tsv --clicks clicks.tsv --json\n");
}

/* Parses "10,50,100" into the kp_eval_config at out. 0, or -1 with a message. */
static int parse_ks(const char *who, const char *s, void *out)
{
    kp_eval_config *c = out;
    const char *p = s;
    c->n_k = 0;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 1 || v > 100000 || c->n_k == KP_EVAL_MAX_K) goto bad;
        c->k[c->n_k++] = (int)v;
        if (*end == ',')
            end++;
        else if (*end)
            goto bad;
        p = end;
    }
    if (c->n_k > 0) return 0;
bad:
    fprintf(stderr, "%s: --k wants up to %d comma-separated integers in 1..100000, got '%s'\n", who,
            KP_EVAL_MAX_K, s);
    return -1;
}

/* Progress adapter: one kp_progress line per stage. */
typedef struct {
    kp_progress p;
    const char *stage;
    long last_done;
    int quiet;
} stage_progress;

static void on_progress(void *ctx, const char *stage, long done, long total)
{
    stage_progress *sp = ctx;
    if (sp->stage != stage) {
        if (sp->stage) kp_progress_done(&sp->p, sp->last_done);
        kp_progress_start(&sp->p, stage, total, sp->quiet);
        sp->stage = stage;
    }
    sp->last_done = done;
    kp_progress_update(&sp->p, done);
}

static void progress_finish(stage_progress *sp)
{
    if (sp->stage) kp_progress_done(&sp->p, sp->last_done);
    sp->stage = NULL;
}

static int ce_scorer(void *ctx, const char *const *items, const char *const *keys, int n,
                     float *out)
{
    return kp_ce_score(ctx, items, keys, n, out);
}

static json_t *num_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static void print_json(const char *model, const kp_eval_config *c, const kp_eval_result *r,
                       double secs)
{
    json_t *o = json_object();
    char key[32];
    json_object_set_new(o, "model", json_string(model));
    for (int i = 0; i < r->n_k; i++) {
        snprintf(key, sizeof key, "recall@%d", r->k[i]);
        json_object_set_new(o, key, num_or_null(r->recall[i]));
    }
    json_object_set_new(o, "spearman", num_or_null(r->spearman));
    json_object_set_new(o, "pearson", num_or_null(r->pearson));
    json_object_set_new(o, "auc", num_or_null(r->auc));
    json_object_set_new(o, "items", json_integer(r->n_items));
    json_object_set_new(o, "pairs", json_integer(r->n_pairs));
    if (r->n_recall_items > 0)
        json_object_set_new(o, "recall_items", json_integer(r->n_recall_items));
    json_object_set_new(o, "auc_pos", json_integer(r->n_pos));
    json_object_set_new(o, "auc_neg", json_integer(r->n_neg));
    if (r->has_slice) {
        json_t *ns = json_object();
        for (int i = 0; i < r->n_k; i++) {
            snprintf(key, sizeof key, "recall@%d", r->k[i]);
            json_object_set_new(ns, key, num_or_null(r->slice.recall[i]));
        }
        json_object_set_new(ns, "spearman", num_or_null(r->slice.spearman));
        json_object_set_new(ns, "pearson", num_or_null(r->slice.pearson));
        json_object_set_new(ns, "auc", num_or_null(r->slice.auc));
        json_object_set_new(ns, "items", json_integer(r->slice.n_items));
        json_object_set_new(ns, "pairs", json_integer(r->slice.n_pairs));
        json_object_set_new(ns, "recall_items", json_integer(r->slice.n_recall_items));
        json_object_set_new(ns, "auc_pos", json_integer(r->slice.n_pos));
        json_object_set_new(ns, "auc_neg", json_integer(r->slice.n_neg));
        json_object_set_new(o, "never_shown", ns);
    }
    json_object_set_new(o, "prefix", json_integer(c->prefix));
    json_object_set_new(o, "seconds", json_real(secs));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    if (s) printf("%s\n", s);
    free(s);
    json_decref(o);
}

static void print_row(const char *name, double v)
{
    if (isfinite(v))
        printf("%-12s %8.4f\n", name, v);
    else
        printf("%-12s %8s\n", name, "-");
}

static void print_table(const char *model, const kp_eval_config *c, const kp_eval_result *r,
                        double secs)
{
    char key[32];
    printf("%-12s %s\n", "model", model);
    if (c->prefix) printf("%-12s %8d\n", "prefix", c->prefix);
    if (r->n_recall_items > 0)
        printf("%-12s %8d   (%d with a relevant keyphrase)\n", "items", r->n_items,
               r->n_recall_items);
    else
        printf("%-12s %8d\n", "items", r->n_items);
    printf("%-12s %8d   (auc: %d relevant vs %d irrelevant)\n", "pairs", r->n_pairs, r->n_pos,
           r->n_neg);
    for (int i = 0; i < r->n_k; i++) {
        snprintf(key, sizeof key, "recall@%d", r->k[i]);
        print_row(key, r->recall[i]);
    }
    print_row("spearman", r->spearman);
    print_row("pearson", r->pearson);
    print_row("auc", r->auc);
    if (r->has_slice) {
        printf("never-shown slice (keyphrases absent from the click log):\n");
        printf("%-12s %8d   (%d with a relevant never-shown keyphrase)\n", "items",
               r->slice.n_items, r->slice.n_recall_items);
        printf("%-12s %8d   (auc: %d relevant vs %d irrelevant)\n", "pairs", r->slice.n_pairs,
               r->slice.n_pos, r->slice.n_neg);
        for (int i = 0; i < r->n_k; i++) {
            snprintf(key, sizeof key, "recall@%d", r->k[i]);
            print_row(key, r->slice.recall[i]);
        }
        print_row("spearman", r->slice.spearman);
        print_row("pearson", r->slice.pearson);
        print_row("auc", r->slice.auc);
    }
    printf("%-12s %8.1f s\n", "time", secs);
}

/* ---- options --------------------------------------------------------------------------------- */

/* --report: the recall curve's cutoffs: --k's, then 1, 5, 10, 20, ... up to KP_EVAL_MAX_K in
 * all, ascending (the table and --json still show --k's only: eval_user_ks). */
static void report_ks(kp_eval_config *c)
{
    static const int ladder[] = {1, 5, 10, 20, 50, 100, 200, 500, 2, 1000};
    for (size_t i = 0; i < sizeof ladder / sizeof *ladder && c->n_k < KP_EVAL_MAX_K; i++) {
        int seen = 0;
        for (int e = 0; e < c->n_k; e++)
            seen |= c->k[e] == ladder[i];
        if (!seen) c->k[c->n_k++] = ladder[i];
    }
    for (int i = 1; i < c->n_k; i++)
        for (int e = i; e > 0 && c->k[e - 1] > c->k[e]; e--) {
            int t = c->k[e];
            c->k[e] = c->k[e - 1];
            c->k[e - 1] = t;
        }
}

#define WHO "kprec eval"

typedef struct {
    const char *model;
    kp_cli_paths in; /* items, keyphrases, judgments */
    int json, quiet;
    kp_eval_config c;
    float relevant, irrelevant; /* on the --grades scale, when given */
    int relevant_given, irrelevant_given;
    const char *never_shown;             /* --never-shown-from (same as --clicks) */
    const char *report, *label;          /* --report DIR, --label NAME */
    int user_n_k, user_k[KP_EVAL_MAX_K]; /* --k as given (the report adds cutoffs) */
} eval_args;

/* Parses the command line into a. KP_OPTS_GO, or the exit status (message printed). */
static int eval_parse(int argc, char **argv, eval_args *a)
{
    memset(a, 0, sizeof *a);
    kp_eval_config *c = &a->c;
    kp_eval_config_default(c);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    c->threads = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (int)ncpu;
    const kp_opt opts[] = {{"model", 'm', KP_OPT_STR, &a->model, .required = 1},
                           KP_CLI_DATA_OPTS(&a->in, 'K', 1),
                           {"k", 'k', KP_OPT_FN, c, .fn = parse_ks},
                           KP_CLI_GRADES_OPT(&a->in),
                           {"clicks", 'c', KP_OPT_STR, .out = &a->in.clicks},
                           {"never-shown-from", 0, KP_OPT_STR, .out = &a->never_shown},
                           {"relevant", 'r', KP_OPT_FLOAT, &a->relevant, .lo = -FLT_MAX,
                            .hi = FLT_MAX, .seen = &a->relevant_given},
                           {"irrelevant", 'n', KP_OPT_FLOAT, &a->irrelevant, .lo = -FLT_MAX,
                            .hi = FLT_MAX, .seen = &a->irrelevant_given},
                           {"prefix", 'p', KP_OPT_INT, &c->prefix, .lo = 0, .hi = KP_BIENC_MAX_DIM},
                           {"threads", 't', KP_OPT_INT, &c->threads, .lo = 1, .hi = 64},
                           {"report", 0, KP_OPT_STR, .out = &a->report},
                           {"label", 0, KP_OPT_STR, .out = &a->label},
                           {"json", 'J', KP_OPT_FLAG, .out = &a->json},
                           {"quiet", 'q', KP_OPT_FLAG, .out = &a->quiet},
                           {NULL}};
    int rc = kp_opts_parse(WHO, eval_usage, opts, argc, argv, NULL);
    if (rc != KP_OPTS_GO) return rc;
    if (a->label && !a->report) {
        fprintf(stderr, WHO ": --label names a model in a --report; give --report DIR too\n");
        return 2;
    }
    if (a->never_shown && a->in.clicks && strcmp(a->never_shown, a->in.clicks) != 0) {
        fprintf(stderr, WHO ": --clicks and --never-shown-from name two different logs\n");
        return 2;
    }
    /* the log is read apart from the evaluated items (it is about other items): keyphrases only */
    if (a->in.clicks) a->never_shown = a->in.clicks;
    a->in.clicks = NULL;
    /* thresholds given on the file's scale -> the internal 1..3 scale of the loaded judgments */
    kp_grade_scale sc = kp_cli_grades(&a->in);
    if (a->relevant_given) c->relevant = kp_grade_canonical(&sc, a->relevant);
    if (a->irrelevant_given) c->irrelevant = kp_grade_canonical(&sc, a->irrelevant);
    char err[512];
    if (kp_eval_config_check(c, err, sizeof err)) {
        kp_cli_fail(WHO, err);
        return 2;
    }
    a->user_n_k = c->n_k;
    memcpy(a->user_k, c->k, sizeof a->user_k);
    if (a->report) report_ks(c);
    return KP_OPTS_GO;
}

/* ---- the model ------------------------------------------------------------------------------- */

/* One of the three kinds of model kprec eval scores with. */
typedef struct {
    kp_bienc *be;
    kp_ce *ce;
    kp_bm25 *bm;
    int is_bm25;
} eval_model;

static void eval_model_free(eval_model *m)
{
    kp_bienc_free(m->be);
    kp_ce_free(m->ce);
    kp_bm25_free(m->bm);
    memset(m, 0, sizeof *m);
}

/* "random[:SEED]": an untrained bi-encoder of the default configuration. 0, 1 or 2 (exit
 * status of an error, message printed). */
static int load_random(const char *model, eval_model *m)
{
    uint64_t seed = 42;
    if (model[6] == ':' && kp_opt_u64(WHO, "model random:SEED", model + 7, 0, UINT64_MAX, &seed))
        return 2;
    kp_bienc_config bc;
    kp_bienc_config_default(&bc);
    if (!(m->be = kp_bienc_new(&bc, seed))) {
        kp_cli_fail(WHO, "out of memory creating the model");
        return 1;
    }
    return 0;
}

/* A checkpoint: bi-encoder or cross-encoder, told apart by its kind. 0, or 1 with a message. */
static int load_checkpoint(const char *model, eval_model *m)
{
    char err[512], kind[64];
    kp_ckpt_reader *r = kp_ckpt_open(model, err, sizeof err);
    if (!r) {
        kp_cli_fail(WHO, err);
        return 1;
    }
    snprintf(kind, sizeof kind, "%s", kp_ckpt_kind(r));
    kp_ckpt_close(r);
    if (!strcmp(kind, KP_CE_KIND))
        m->ce = kp_ce_load(model, err, sizeof err);
    else if (!strcmp(kind, KP_CKPT_KIND_BIENC))
        m->be = kp_bienc_load(model, err, sizeof err);
    else
        snprintf(err, sizeof err, "%s: checkpoint kind '%s' is neither '%s' nor '%s'", model, kind,
                 KP_CKPT_KIND_BIENC, KP_CE_KIND);
    if (m->ce || m->be) return 0;
    kp_cli_fail(WHO, err);
    return 1;
}

/* Loads --model (before the data: a bad path fails fast) and checks --prefix against it. 0, or
 * the exit status (1: unreadable model, 2: usage error) with a message printed; m is released
 * by eval_model_free either way. */
static int eval_load_model(const eval_args *a, eval_model *m)
{
    const char *model = a->model;
    int prefix = a->c.prefix, rc;
    m->is_bm25 = !strcmp(model, "bm25");
    if (!strncmp(model, "random", 6) && (model[6] == 0 || model[6] == ':'))
        rc = load_random(model, m);
    else if (!m->is_bm25)
        rc = load_checkpoint(model, m);
    else
        rc = 0;
    if (rc) return rc;
    if (prefix && (m->is_bm25 || m->ce)) {
        fprintf(stderr, WHO ": --prefix does not apply to %s\n",
                m->is_bm25 ? "bm25" : "a cross-encoder");
        return 2;
    }
    if (m->be && prefix > kp_bienc_cfg(m->be)->out_dim) {
        fprintf(stderr, WHO ": --prefix %d is larger than the model's embedding size %d\n", prefix,
                kp_bienc_cfg(m->be)->out_dim);
        return 2;
    }
    return 0;
}

/* ---- run and report -------------------------------------------------------------------------- */

/* Scores the judged pairs (and the inventory, but for a cross-encoder) with m into *res; a
 * bi-encoder at each of prefixes[n_prefixes] into res[n_prefixes] (prefixes[0] = --prefix). 0, or
 * -1 with a message. */
static int eval_run(eval_args *a, eval_model *m, const kp_cli_data *d, const int *prefixes,
                    int n_prefixes, kp_eval_result *res)
{
    char err[512];
    stage_progress sp = {.quiet = a->quiet};
    kp_eval_config *c = &a->c;
    c->progress = on_progress;
    c->progress_ctx = &sp;
    int erc;
    unsigned char *unseen = NULL;
    if (a->never_shown) {
        kp_clicklog log = {0};
        int skipped = 0;
        unseen = malloc((size_t)d->keys.n + 1);
        if (!unseen)
            snprintf(err, sizeof err, "out of memory");
        else if (kp_clicklog_load(a->never_shown, NULL, &d->keys, &log, &skipped, err,
                                  sizeof err) == 0 &&
                 kp_eval_unseen_keys(&log, d->keys.n, unseen, err, sizeof err) == 0) {
            c->slice_keys = unseen;
            if (skipped)
                fprintf(stderr, WHO ": %s: %d click event(s) skipped: unknown keyphrase id\n",
                        a->never_shown, skipped);
        }
        kp_clicklog_free(&log);
        if (!c->slice_keys) {
            free(unseen);
            kp_cli_fail(WHO, err);
            return -1;
        }
    }
    if (m->is_bm25) {
        m->bm = kp_bm25_build((const char *const *)d->keys.text, d->keys.n, KP_BM25_K1, KP_BM25_B,
                              err, sizeof err);
        erc = m->bm ? kp_eval_bm25(m->bm, &d->items, &d->keys, &d->judg, c, res, err, sizeof err)
                    : -1;
    } else if (m->ce) {
        /* the cross-encoder cannot scan the inventory: recall stays NAN (null / "-") */
        erc = kp_eval_pair_scorer(ce_scorer, m->ce, &d->items, &d->keys, &d->judg, c, res, err,
                                  sizeof err);
    } else {
        erc = kp_eval_bienc_prefixes(m->be, &d->items, &d->keys, &d->judg, c, prefixes, n_prefixes,
                                     res, err, sizeof err);
    }
    progress_finish(&sp);
    c->slice_keys = NULL;
    free(unseen);
    if (erc) kp_cli_fail(WHO, err);
    return erc ? -1 : 0;
}

/* ---- --report ------------------------------------------------------------------------------- */

#define EVAL_MAX_PREFIXES 16

/* r with --k's cutoffs only (the report evaluates more: report_ks). */
static kp_eval_result eval_user_ks(const eval_args *a, const kp_eval_result *r)
{
    kp_eval_result o = *r;
    o.n_k = a->user_n_k;
    for (int i = 0; i < a->user_n_k; i++)
        for (int e = 0; e < r->n_k; e++)
            if (r->k[e] == a->user_k[i]) {
                o.k[i] = r->k[e];
                o.recall[i] = r->recall[e];
                o.slice.recall[i] = r->slice.recall[e];
            }
    return o;
}

/* The Matryoshka sweep of a bi-encoder of embedding size dim: out[0] = --prefix, then 8, 16, ...
 * and dim (the sizes other than out[0]'s). Returns the count. */
static int sweep_sizes(int prefix, int dim, int *out)
{
    int n = 0, main = prefix ? prefix : dim;
    out[n++] = prefix;
    for (int p = dim < 8 ? dim : 8; n < EVAL_MAX_PREFIXES; p *= 2) {
        if (p > dim) p = dim;
        if (p != main) out[n++] = p;
        if (p == dim) break;
    }
    return n;
}

/* Adds this run to --report's directory. 0, or 1 with a message. */
static int eval_report(const eval_args *a, const eval_model *m, const kp_cli_data *d,
                       const kp_eval_result *res, const int *prefixes, int n_prefixes,
                       const float *scores)
{
    const kp_eval_result pr = eval_user_ks(a, &res[0]), *r = &pr;
    char label[512], err[1024];
    const char *base = strrchr(a->model, '/') ? strrchr(a->model, '/') + 1 : a->model;
    if (a->label)
        snprintf(label, sizeof label, "%s", a->label);
    else if (a->c.prefix)
        snprintf(label, sizeof label, "%s prefix %d", base, a->c.prefix);
    else
        snprintf(label, sizeof label, "%s", base);
    /* the metrics of the table */
    char knames[KP_EVAL_MAX_K][32];
    const char *names[KP_EVAL_MAX_K + 5];
    double val[KP_EVAL_MAX_K + 5], sl[KP_EVAL_MAX_K + 5];
    int cnt[KP_EVAL_MAX_K + 5] = {1, 1}, n = 0;
    int has = r->has_slice;
    names[n] = "items", val[n] = r->n_items, sl[n++] = has ? r->slice.n_items : NAN;
    names[n] = "pairs", val[n] = r->n_pairs, sl[n++] = has ? r->slice.n_pairs : NAN;
    for (int i = 0; i < r->n_k; i++) {
        snprintf(knames[i], sizeof knames[i], "recall@%d", r->k[i]);
        names[n] = knames[i], val[n] = r->recall[i], sl[n++] = has ? r->slice.recall[i] : NAN;
    }
    names[n] = "spearman", val[n] = r->spearman, sl[n++] = has ? r->slice.spearman : NAN;
    names[n] = "pearson", val[n] = r->pearson, sl[n++] = has ? r->slice.pearson : NAN;
    names[n] = "auc", val[n] = r->auc, sl[n++] = has ? r->slice.auc : NAN;
    /* the curve (all of report_ks's cutoffs), the sweep sorted by size */
    const kp_eval_result *full = &res[0];
    double slice_recall[KP_EVAL_MAX_K], sweep[EVAL_MAX_PREFIXES * KP_EVAL_MAX_K];
    int sizes[EVAL_MAX_PREFIXES], order[EVAL_MAX_PREFIXES],
        dim = m->be ? kp_bienc_cfg(m->be)->out_dim : 0;
    for (int i = 0; i < full->n_k; i++)
        slice_recall[i] = full->slice.recall[i];
    for (int i = 0; i < n_prefixes; i++)
        order[i] = i;
    for (int i = 1; i < n_prefixes; i++) /* insertion sort of the sizes */
        for (int e = i; e > 0; e--) {
            int pa = prefixes[order[e - 1]] ? prefixes[order[e - 1]] : dim;
            int pb = prefixes[order[e]] ? prefixes[order[e]] : dim;
            if (pa <= pb) break;
            int t = order[e];
            order[e] = order[e - 1];
            order[e - 1] = t;
        }
    for (int i = 0; i < n_prefixes; i++) {
        sizes[i] = prefixes[order[i]] ? prefixes[order[i]] : dim;
        const kp_eval_result ri = eval_user_ks(a, &res[order[i]]);
        for (int e = 0; e < ri.n_k; e++)
            sweep[(size_t)i * ri.n_k + e] = ri.recall[e];
    }
    /* the grades on the judgments' own scale */
    kp_grade_scale sc = kp_cli_grades(&a->in);
    float *grade = malloc(sizeof(float) * ((size_t)d->judg.n + 1));
    if (!grade) {
        kp_cli_fail(WHO, "out of memory");
        return 1;
    }
    for (int p = 0; p < d->judg.n; p++)
        grade[p] = kp_grade_from_unit(&sc, (d->judg.rel[p] - 1.0f) / 2.0f);
    int any_recall = 0;
    for (int i = 0; i < full->n_k; i++)
        any_recall |= isfinite(full->recall[i]);
    kp_report_model rm = {
        .label = label,
        .kind = m->is_bm25 ? "bm25"
                : m->ce    ? "cross-encoder"
                           : "bi-encoder",
        .score = m->is_bm25 ? "BM25 score"
                 : m->ce    ? "cross-encoder score"
                            : "cosine",
        .n_metrics = n,
        .metric_names = names,
        .metric_values = val,
        .metric_slice = sl,
        .metric_is_count = cnt,
        .n_k = any_recall ? full->n_k : 0,
        .k = full->k,
        .recall = full->recall,
        .slice_recall = full->has_slice ? slice_recall : NULL,
        .n_prefix = m->be && n_prefixes > 1 ? n_prefixes : 0,
        .prefix = sizes,
        .n_prefix_k = r->n_k,
        .prefix_k = r->k,
        .prefix_recall = sweep,
        .n_pairs = d->judg.n,
        .pair_score = scores,
        .pair_grade = grade,
    };
    int rc = kp_report_add(a->report, &rm, err, sizeof err);
    free(grade);
    if (rc) {
        kp_cli_fail(WHO, err);
        return 1;
    }
    if (!a->quiet) fprintf(stderr, WHO ": report: %s/index.html\n", a->report);
    return 0;
}

int kp_cmd_eval(int argc, char **argv)
{
    /* the serving pipeline (re-rank, hybrid, calibration, gate): cli/eval_pipeline.c */
    if (kp_eval_pipeline_wanted(argc, argv)) return kp_eval_pipeline(argc, argv);
    eval_args a;
    int rc = eval_parse(argc, argv, &a);
    if (rc != KP_OPTS_GO) return rc;
    eval_model m = {0};
    kp_cli_data d = {0};
    kp_eval_result res[EVAL_MAX_PREFIXES];
    int prefixes[EVAL_MAX_PREFIXES] = {a.c.prefix}, n_prefixes = 1;
    float *scores = NULL;
    if ((rc = eval_load_model(&a, &m)) != 0) goto out;
    uint64_t t0 = kp_mono_us();
    rc = 1;
    if (kp_cli_data_load(WHO, &a.in, &d)) goto out;
    if (a.report) {
        if (!(scores = malloc(sizeof(float) * ((size_t)d.judg.n + 1)))) {
            kp_cli_fail(WHO, "out of memory");
            goto out;
        }
        a.c.pair_scores = scores;
        if (m.be) n_prefixes = sweep_sizes(a.c.prefix, kp_bienc_cfg(m.be)->out_dim, prefixes);
    }
    if (eval_run(&a, &m, &d, prefixes, n_prefixes, res)) goto out;
    double secs = (double)(kp_mono_us() - t0) / 1e6;
    kp_eval_result shown = eval_user_ks(&a, &res[0]);
    if (a.json)
        print_json(a.model, &a.c, &shown, secs);
    else
        print_table(a.model, &a.c, &shown, secs);
    fflush(stdout);
    rc = a.report ? eval_report(&a, &m, &d, res, prefixes, n_prefixes, scores) : 0;
out:
    free(scores);
    eval_model_free(&m);
    kp_cli_data_free(&d);
    return rc;
}
