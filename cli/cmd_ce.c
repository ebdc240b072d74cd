/* kprec train-ce: trains the cross-encoder assistant on teacher judgments and saves it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/data.h"
#include "cli/opts.h"
#include "common/progress.h"
#include "model/ce.h"
#include "offline/ce_train.h"
#include "offline/split.h"
#include "offline/datasets.h"

#define WHO "kprec train-ce"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kprec train-ce --items FILE --keyphrases FILE --judgments FILE --out FILE\n"
            "                      [options]\n\n"
            "Trains the cross-encoder assistant (CE) on graded judgments (--grades scale) plus\n"
            "random negative keyphrases, and writes a \"ce\" checkpoint.\n\n"
            "  --items FILE        items TSV (item_id, title)\n"
            "  --keyphrases FILE   keyphrase inventory TSV (keyphrase_id, keyphrase)\n"
            "  --judgments FILE    judgments TSV (pair_id, keyphrase_id, item_id, relevance)\n"
            "  --grades MIN:MAX    the judgments' grade scale (default 1:3); the CE's target of\n"
            "                      grade g is (g-MIN)/(MAX-MIN)\n"
            "  --out FILE          checkpoint to write\n"
            "  --epochs N          passes over the judged pairs (default 4)\n"
            "  --seed S            seed of the weights, negatives and shuffling (default 1)\n"
            "  --negatives N       random keyphrases (y = 0) per judged pair (default 1)\n"
            "  --threads T         threads for the per-pair work, 1..64 (default 2)\n"
            "  --valid-frac F      part of the training items held out for validation metrics\n"
            "                      after every epoch (default 0.1; 0 = none)\n"
            "  --bench-frac F      part of the items reserved for the benchmark (kprec eval),\n"
            "                      never trained on (default %.1f, the benchmark's; 0 = none)\n"
            "  --emb-dim E         token embedding size (default 64)\n"
            "  --hidden H          MLP hidden size (default 64)\n"
            "  --lr X              learning rate of the dense weights (default 2e-3)\n"
            "  --lr-emb X          learning rate of the embedding rows (default 2e-2)\n"
            "  --neg-weight W      loss weight of the random negatives (default 0.05)\n"
            "  --batch N           mini-batch size (default 128)\n"
            "  --weight-decay X    AdamW weight decay of the dense weights (default 0)\n"
            "  --keep-best 0|1     end with the epoch of the best validation Spearman (default 1;\n"
            "                      needs --valid-frac > 0)\n"
            "  --v1-features       version-1 feature layout (no ext features)\n"
            "  --ensemble N        train N models (seeds S, S+1, ...) and average their logits\n"
            "                      (default 3; scoring is N times slower)\n"
            "  --quiet             no progress line\n"
            "  --help              this text\n"
            "Example:\n"
            "  kprec train-ce --items items.tsv --keyphrases keyphrases.tsv \\\n"
            "      --judgments split/train_judgments.tsv --out ce.kpm\n",
            KP_SPLIT_BENCH_FRAC);
}

typedef struct {
    kp_progress p;
    int started, quiet;
} progress_ctx;

static void on_progress(void *ctx, long done, long total)
{
    progress_ctx *pc = ctx;
    if (!pc->started) {
        kp_progress_start(&pc->p, "train-ce examples", total, pc->quiet);
        pc->started = 1;
    }
    kp_progress_update(&pc->p, done);
}

static void on_epoch(void *ctx, const kp_ce_epoch_stats *s)
{
    progress_ctx *pc = ctx;
    if (pc->started && !pc->quiet && pc->p.tty) fprintf(stderr, "\n");
    fprintf(stderr,
            WHO ": epoch %d: loss %.4f (%d examples)  valid: %d pairs, spearman %.4f "
                "pearson %.4f auc %.4f auc_rand %.4f%s  [%.1f s]\n",
            s->epoch, s->loss, s->n_train, s->n_valid, s->spearman, s->pearson, s->auc, s->auc_rand,
            s->best ? " (best)" : "", s->seconds);
}

typedef struct {
    kp_cli_paths in; /* items, keyphrases, judgments */
    const char *out;
    double valid_frac, bench_frac;
    int quiet, v1, ensemble;
    kp_ce_train_opts o;
    kp_ce_config c;
} ce_args;

/* Parses the command line into a. KP_OPTS_GO, or the exit status (message printed). */
static int ce_parse(int argc, char **argv, ce_args *a)
{
    memset(a, 0, sizeof *a);
    a->valid_frac = 0.1;
    a->bench_frac = KP_SPLIT_BENCH_FRAC;
    a->ensemble = 3;
    kp_ce_train_opts *o = &a->o;
    kp_ce_train_opts_default(o);
    /* the settings of the tuning log in BENCHMARKS.md ("Cross-encoder assistant") */
    o->epochs = 4;
    o->threads = 2;
    o->neg_weight = 0.05f;
    o->lr_emb = 2e-2f;
    o->keep_best = 1;
    kp_ce_config_default(&a->c);
    a->c.emb_dim = 64;
    const kp_opt opts[] = {
        KP_CLI_DATA_OPTS(&a->in, 'k', 1),
        KP_CLI_GRADES_OPT(&a->in),
        {"out", 'o', KP_OPT_STR, &a->out, .required = 1},
        {"epochs", 'e', KP_OPT_INT, &o->epochs, .lo = 1, .hi = 10000},
        {"seed", 's', KP_OPT_U64, &o->seed, .lo = 0, .hi = 0x7fffffff},
        {"negatives", 'n', KP_OPT_INT, &o->negatives, .lo = 0, .hi = 100},
        {"threads", 't', KP_OPT_INT, &o->threads, .lo = 1, .hi = 64},
        {"valid-frac", 'v', KP_OPT_DOUBLE, &a->valid_frac, .lo = 0.0, .hi = 0.9},
        {"bench-frac", 'b', KP_OPT_DOUBLE, &a->bench_frac, .lo = 0.0, .hi = 0.9},
        {"emb-dim", 'E', KP_OPT_INT, &a->c.emb_dim, .lo = 1, .hi = KP_CE_MAX_DIM},
        {"hidden", 'H', KP_OPT_INT, &a->c.hidden_dim, .lo = 1, .hi = KP_CE_MAX_DIM},
        {"lr", 'l', KP_OPT_FLOAT, &o->lr, .lo = 1e-7, .hi = 1.0},
        {"lr-emb", 'L', KP_OPT_FLOAT, &o->lr_emb, .lo = 1e-7, .hi = 1.0},
        {"neg-weight", 0, KP_OPT_FLOAT, &o->neg_weight, .lo = 0.0, .hi = 100.0},
        {"batch", 0, KP_OPT_INT, &o->batch, .lo = 1, .hi = 65536},
        {"weight-decay", 0, KP_OPT_FLOAT, &o->weight_decay, .lo = 0.0, .hi = 10.0},
        {"keep-best", 0, KP_OPT_INT, &o->keep_best, .lo = 0, .hi = 1},
        {"v1-features", 0, KP_OPT_FLAG, .out = &a->v1},
        {"ensemble", 0, KP_OPT_INT, &a->ensemble, .lo = 1, .hi = 32},
        {"quiet", 'q', KP_OPT_FLAG, .out = &a->quiet},
        {NULL}};
    int rc = kp_opts_parse(WHO, usage, opts, argc, argv, NULL);
    if (a->v1) a->c.ext_features = 0;
    return rc;
}

/* Splits the items into benchmark hold-out (never used), validation and training parts:
 * role[i] = 0, 2 or 1. docs gets the texts the IDF is computed on (keyphrases and training items),
 * *nd their number. Prints the summary line. */
static void ce_split(const ce_args *a, const kp_cli_data *d, unsigned char *role, const char **docs,
                     int *nd)
{
    int n_bench = 0, n_valid = 0, n_train = 0;
    *nd = 0;
    for (int i = 0; i < d->keys.n; i++)
        docs[(*nd)++] = d->keys.text[i];
    for (int i = 0; i < d->items.n; i++) {
        if (kp_split_is_valid(d->items.id[i], a->bench_frac, KP_SPLIT_BENCH_SEED)) {
            n_bench++;
            continue;
        }
        /* a seed of its own, so the validation part is independent of the benchmark split */
        role[i] = kp_split_is_valid(d->items.id[i], a->valid_frac, a->o.seed + 0x5EEDu) ? 2 : 1;
        if (role[i] == 1) {
            n_train++;
            docs[(*nd)++] = d->items.text[i];
        } else {
            n_valid++;
        }
    }
    fprintf(stderr,
            WHO ": %d items (%d train, %d validation, %d benchmark hold-out), %d "
                "keyphrases, %d judgments (%d skipped: unknown ids)\n",
            d->items.n, n_train, n_valid, n_bench, d->keys.n, d->judg.n, d->judgments_skipped);
}

/* Builds, trains and saves the model on d. 0, or -1 with a message printed. */
static int ce_run(ce_args *a, const kp_cli_data *d, const unsigned char *role, const char **docs,
                  int nd)
{
    char err[512];
    kp_ce_train_opts *o = &a->o;
    kp_ce *m = NULL;
    kp_ce_epoch_stats last;
    int rc = -1;
    uint64_t seed0 = o->seed;
    progress_ctx pc;
    for (int e = 0; e < a->ensemble; e++) {
        kp_ce_train_opts oe = *o;
        oe.seed = seed0 + (uint64_t)e;
        kp_ce *me = kp_ce_new(&a->c, oe.seed);
        if (!me || kp_ce_set_idf(me, docs, nd) != 0) {
            kp_ce_free(me);
            kp_ce_free(m);
            kp_cli_fail(WHO, "out of memory for the model");
            return -1;
        }
        fprintf(stderr,
                WHO ": buckets %u, emb %d, hidden %d, features %d; epochs %d, negatives "
                    "%d (weight %g), threads %d, seed %llu (member %d of %d); loss: binary "
                    "cross-entropy\n",
                a->c.n_buckets, a->c.emb_dim, a->c.hidden_dim, kp_ce_n_features(me), oe.epochs,
                oe.negatives, (double)oe.neg_weight, oe.threads, (unsigned long long)oe.seed, e + 1,
                a->ensemble);
        memset(&pc, 0, sizeof(pc));
        pc.quiet = a->quiet;
        oe.progress = on_progress;
        oe.on_epoch = on_epoch;
        oe.ctx = &pc;
        if (kp_ce_train(me, &d->items, &d->keys, &d->judg, role, &oe, &last, err, sizeof(err)) !=
            0) {
            kp_ce_free(me);
            goto out;
        }
        if (pc.started) kp_progress_done(&pc.p, pc.p.total);
        if (last.best_epoch > 0)
            fprintf(stderr, WHO ": kept the parameters of epoch %d (best validation Spearman)\n",
                    last.best_epoch);
        if (!m) {
            m = me;
        } else if (kp_ce_ensemble_add(m, me) != 0) {
            kp_ce_free(me);
            snprintf(err, sizeof err, "cannot add an ensemble member");
            goto out;
        }
    }
    if (kp_ce_save(m, a->out, err, sizeof(err)) != 0) goto out;
    fprintf(stderr, WHO ": wrote %s (model version %llu) in %.1f s\n", a->out,
            (unsigned long long)kp_ce_version(m), last.seconds);
    rc = 0;
out:
    if (rc) kp_cli_fail(WHO, err);
    kp_ce_free(m);
    return rc;
}

int kp_cmd_train_ce(int argc, char **argv)
{
    ce_args a;
    int rc = ce_parse(argc, argv, &a);
    if (rc != KP_OPTS_GO) return rc;
    kp_cli_data d;
    unsigned char *role = NULL;
    const char **docs = NULL;
    int nd = 0;
    rc = 1;
    if (kp_cli_data_load(WHO, &a.in, &d)) goto out;
    role = calloc((size_t)d.items.n + 1, 1);
    docs = malloc(((size_t)d.items.n + (size_t)d.keys.n + 1) * sizeof(*docs));
    if (!role || !docs) {
        kp_cli_fail(WHO, "out of memory");
        goto out;
    }
    ce_split(&a, &d, role, docs, &nd);
    if (ce_run(&a, &d, role, docs, nd) == 0) rc = 0;
out:
    free(docs);
    free(role);
    kp_cli_data_free(&d);
    return rc;
}
