/* kprec eval: offline evaluation of a model (bi-encoder, cross-encoder or BM25) against graded
 * judgments: recall@k over the whole inventory, Spearman / Pearson of the pair scores, AUC. The
 * computation is model/eval.h; this file loads the inputs and prints the result. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/progress.h"
#include "model/bienc.h"
#include "offline/bm25.h"
#include "model/ce.h"
#include "model/ckpt.h"
#include "offline/eval.h"
#include "offline/datasets.h"

static void eval_usage(FILE *f)
{
    fprintf(f,
            "usage: kprec eval --model M --items I --keyphrases K --judgments J [--k 10,50,100]\n"
            "                  [--relevant 2.5] [--irrelevant 2] [--prefix P] [--threads T]\n"
            "                  [--json] [--quiet]\n"
            "Evaluates a model on the judged items of J (item_id, keyphrase_id columns resolved\n"
            "against I and K; unknown ids are counted and reported, not fatal):\n"
            "  recall@k   relevant keyphrases (relevance >= --relevant) of a judged item among\n"
            "             its top k retrieved from the whole inventory K, averaged over items\n"
            "  spearman, pearson   of the model's pair scores with the judged relevance\n"
            "  auc        relevant pairs vs irrelevant pairs (relevance < --irrelevant)\n"
            "M is a bi-encoder checkpoint, a cross-encoder checkpoint (judged-pair metrics only:\n"
            "it is too slow to scan the inventory), 'bm25' (lexical baseline) or 'random[:SEED]'\n"
            "(an untrained bi-encoder of the default configuration, seed 42 by default).\n"
            "--prefix P evaluates the Matryoshka prefix of size P (first P dims, re-normalised).\n"
            "--threads T (default: online CPUs) embedding / BM25 / cross-encoder threads.\n"
            "--json prints one JSON object; otherwise a table. Progress goes to stderr unless\n"
            "--quiet. Exit status: 0 ok, 1 unreadable or invalid input, 2 usage error.\n");
}

/* Parses "10,50,100" into c->k. 0, or -1 on a malformed list. */
static int parse_ks(const char *s, kp_eval_config *c)
{
    c->n_k = 0;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 1 || v > 100000 || c->n_k == KP_EVAL_MAX_K) return -1;
        c->k[c->n_k++] = (int)v;
        if (*end == ',')
            end++;
        else if (*end)
            return -1;
        s = end;
    }
    return c->n_k > 0 ? 0 : -1;
}

static int parse_float(const char *s, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v)) return -1;
    *out = (float)v;
    return 0;
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
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

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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
    printf("%-12s %8.1f s\n", "time", secs);
}

int kp_cmd_eval(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"items", required_argument, 0, 'i'},
                                         {"keyphrases", required_argument, 0, 'K'},
                                         {"judgments", required_argument, 0, 'j'},
                                         {"k", required_argument, 0, 'k'},
                                         {"relevant", required_argument, 0, 'r'},
                                         {"irrelevant", required_argument, 0, 'n'},
                                         {"prefix", required_argument, 0, 'p'},
                                         {"threads", required_argument, 0, 't'},
                                         {"json", no_argument, 0, 'J'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *model = NULL, *items_path = NULL, *keys_path = NULL, *judg_path = NULL;
    int json = 0, quiet = 0, ch;
    kp_eval_config c;
    kp_eval_config_default(&c);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    c.threads = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (int)ncpu;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "m:i:K:j:k:r:n:p:t:Jqh", opts, NULL)) != -1) {
        switch (ch) {
        case 'm':
            model = optarg;
            break;
        case 'i':
            items_path = optarg;
            break;
        case 'K':
            keys_path = optarg;
            break;
        case 'j':
            judg_path = optarg;
            break;
        case 'k':
            if (parse_ks(optarg, &c)) {
                fprintf(stderr,
                        "kprec eval: --k wants up to %d comma-separated integers in "
                        "1..100000, got '%s'\n",
                        KP_EVAL_MAX_K, optarg);
                return 2;
            }
            break;
        case 'r':
        case 'n':
            if (parse_float(optarg, ch == 'r' ? &c.relevant : &c.irrelevant)) {
                fprintf(stderr, "kprec eval: --%s wants a number, got '%s'\n",
                        ch == 'r' ? "relevant" : "irrelevant", optarg);
                return 2;
            }
            break;
        case 'p':
            if (parse_int(optarg, 0, KP_BIENC_MAX_DIM, &c.prefix)) {
                fprintf(stderr, "kprec eval: --prefix wants an integer in 0..%d, got '%s'\n",
                        KP_BIENC_MAX_DIM, optarg);
                return 2;
            }
            break;
        case 't':
            if (parse_int(optarg, 1, 64, &c.threads)) {
                fprintf(stderr, "kprec eval: --threads wants an integer in 1..64, got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'J':
            json = 1;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'h':
            eval_usage(stdout);
            return 0;
        default:
            eval_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kprec eval: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!model || !items_path || !keys_path || !judg_path) {
        fprintf(stderr, "kprec eval: --model, --items, --keyphrases and --judgments are "
                        "required (kprec eval --help)\n");
        return 2;
    }
    char err[512];
    if (kp_eval_config_check(&c, err, sizeof err)) {
        fprintf(stderr, "kprec eval: %s\n", err);
        return 2;
    }

    /* The model first: a bad path fails before the data is read. */
    kp_bienc *be = NULL;
    kp_ce *ce = NULL;
    kp_bm25 *bm = NULL;
    int is_bm25 = !strcmp(model, "bm25");
    int rc = 1;
    kp_texts items = {0}, keys = {0};
    kp_judgments j = {0};
    if (!strncmp(model, "random", 6) && (model[6] == 0 || model[6] == ':')) {
        unsigned long long seed = 42;
        if (model[6] == ':') {
            char *end;
            errno = 0;
            seed = strtoull(model + 7, &end, 10);
            if (end == model + 7 || *end || errno) {
                fprintf(stderr, "kprec eval: --model random:SEED wants an integer seed\n");
                return 2;
            }
        }
        kp_bienc_config bc;
        kp_bienc_config_default(&bc);
        if (!(be = kp_bienc_new(&bc, seed))) {
            fprintf(stderr, "kprec eval: out of memory creating the model\n");
            return 1;
        }
    } else if (!is_bm25) {
        kp_ckpt_reader *r = kp_ckpt_open(model, err, sizeof err);
        if (!r) {
            fprintf(stderr, "kprec eval: %s\n", err);
            return 1;
        }
        int is_ce = !strcmp(kp_ckpt_kind(r), KP_CE_KIND);
        int is_be = !strcmp(kp_ckpt_kind(r), KP_CKPT_KIND_BIENC);
        char kind[64];
        snprintf(kind, sizeof kind, "%s", kp_ckpt_kind(r));
        kp_ckpt_close(r);
        if (is_ce)
            ce = kp_ce_load(model, err, sizeof err);
        else if (is_be)
            be = kp_bienc_load(model, err, sizeof err);
        else
            snprintf(err, sizeof err, "%s: checkpoint kind '%s' is neither '%s' nor '%s'", model,
                     kind, KP_CKPT_KIND_BIENC, KP_CE_KIND);
        if (!ce && !be) {
            fprintf(stderr, "kprec eval: %s\n", err);
            return 1;
        }
        if (ce && c.prefix) {
            fprintf(stderr, "kprec eval: --prefix does not apply to a cross-encoder\n");
            kp_ce_free(ce);
            return 2;
        }
    } else if (c.prefix) {
        fprintf(stderr, "kprec eval: --prefix does not apply to bm25\n");
        return 2;
    }
    if (be && c.prefix > kp_bienc_cfg(be)->out_dim) {
        fprintf(stderr, "kprec eval: --prefix %d is larger than the model's embedding size %d\n",
                c.prefix, kp_bienc_cfg(be)->out_dim);
        kp_bienc_free(be);
        return 2;
    }

    double t0 = now_s();
    int skipped = 0;
    if (kp_texts_load(items_path, &items, err, sizeof err) ||
        kp_texts_load(keys_path, &keys, err, sizeof err) ||
        kp_judgments_load(judg_path, &items, &keys, &j, &skipped, err, sizeof err)) {
        fprintf(stderr, "kprec eval: %s\n", err);
        goto out;
    }
    if (skipped)
        fprintf(stderr, "kprec eval: %d judgment(s) skipped: unknown item or keyphrase id\n",
                skipped);

    stage_progress sp = {.quiet = quiet};
    c.progress = on_progress;
    c.progress_ctx = &sp;
    kp_eval_result res;
    int erc;
    if (is_bm25) {
        if (!(bm = kp_bm25_build((const char *const *)keys.text, keys.n, KP_BM25_K1, KP_BM25_B, err,
                                 sizeof err))) {
            fprintf(stderr, "kprec eval: %s\n", err);
            goto out;
        }
        erc = kp_eval_bm25(bm, &items, &keys, &j, &c, &res, err, sizeof err);
    } else if (ce) {
        /* the cross-encoder cannot scan the inventory: recall stays NAN (null / "-") */
        erc = kp_eval_pair_scorer(ce_scorer, ce, &items, &keys, &j, &c, &res, err, sizeof err);
    } else {
        erc = kp_eval_bienc(be, &items, &keys, &j, &c, &res, err, sizeof err);
    }
    progress_finish(&sp);
    if (erc) {
        fprintf(stderr, "kprec eval: %s\n", err);
        goto out;
    }
    double secs = now_s() - t0;
    if (json)
        print_json(model, &c, &res, secs);
    else
        print_table(model, &c, &res, secs);
    rc = 0;
out:
    kp_bienc_free(be);
    kp_ce_free(ce);
    kp_bm25_free(bm);
    kp_judgments_free(&j);
    kp_texts_free(&items);
    kp_texts_free(&keys);
    return rc;
}
