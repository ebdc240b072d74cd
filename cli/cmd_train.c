/* kprec train: offline multi-task training of the bi-encoder from files (offline/train_epochs.h):
 * CTR on a click log, SR on judgments, distillation from a cross-encoder teacher, Matryoshka sizes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/data.h"
#include "cli/opts.h"
#include "common/progress.h"
#include "common/util.h"
#include "model/bienc.h"
#include "model/blas.h"
#include "model/ce.h"
#include "model/ckpt.h"
#include "offline/train_epochs.h"
#include "offline/datasets.h"

static void train_usage(FILE *f)
{
    kp_train_config d;
    kp_train_config_default(&d);
    kp_bienc_config b;
    kp_bienc_config_default(&b);
    fprintf(f,
            "usage: kprec train --items I --keyphrases K [--clicks C] [--judgments J]\n"
            "                   [--teacher ce.kpm] --out be.kpm [--init be.kpm] [options]\n\n"
            "Trains the bi-encoder. The loss terms follow the data given: --clicks adds the CTR\n"
            "term (in-batch softmax over clicked pairs, optional BCE on click rates), --judgments\n"
            "the SR term (MSE of the cosine on (g-MIN)/(MAX-MIN) for grade g on the --grades\n"
            "MIN:MAX scale, default 1:3), --teacher the distillation term\n"
            "(the cross-encoder scores each training item's shown/judged keyphrases, random ones\n"
            "and BM25 hard negatives once; --model-hard adds keyphrases retrieved by the current\n"
            "model every epoch). Every term is applied at each Matryoshka prefix size.\n\n"
            "  --epochs N       passes over the training items (default %d)\n"
            "  --batch B        items per step (default %d)\n"
            "  --lr X           peak learning rate of the dense weights (default %g)\n"
            "  --lr-emb X       peak learning rate of the embedding rows (default %g)\n"
            "  --w-ctr X        weight of the in-batch softmax CTR term (default %g)\n"
            "  --w-bce X        weight of the position-aware BCE CTR term (default %g)\n"
            "  --w-sr X         weight of the SR term (default %g)\n"
            "  --w-distill X    weight of the distillation term (default %g)\n"
            "  --w-known X      weight of the distillation term over known (shown/judged)\n"
            "                   pairs only (default %g)\n"
            "  --distill K      pearson (1 - corr) or mse (default pearson)\n"
            "  --tau X          softmax temperature (default %g)\n"
            "  --random N       random keyphrases per item for distillation (default %d)\n"
            "  --hard N         BM25 hard negatives per item for distillation (default %d)\n"
            "  --model-hard N   model-retrieved keyphrases per item, per epoch (default %d)\n"
            "  --pool-negatives 0|1  1: other items' distillation candidates are softmax\n"
            "                   negatives; 0: only clicked/judged keys are (default 0). An item's\n"
            "                   own candidates are never its negatives.\n"
            "  --warmup F       fraction of steps of linear warmup (default %g)\n"
            "  --schedule S     cosine, linear or constant decay (default cosine)\n"
            "  --clip X         gradient norm clip, 0 = off (default %g)\n"
            "  --dim D          embedding size (default %d)        (new models only)\n"
            "  --emb-dim E      bucket embedding size (default %d)  (new models only)\n"
            "  --hidden H       hidden layer size (default %d)     (new models only)\n"
            "  --prefixes LIST  Matryoshka sizes, e.g. 32,64,128 (default: %d,%d,%d)\n"
            "  --buckets N      hashed feature buckets (default %u)  (new models only)\n"
            "  --seed S         seed of the weights, sampling and shuffling (default %llu)\n"
            "  --threads T      threads, 1..64 (default 1). T >= 2: each step on the model's\n"
            "                   two-way split (the same parameters as T = 1, bit for bit),\n"
            "                   the teacher on T threads; T > 2: BLAS threads (not reproducible)\n"
            "  --quiet          no progress line\n\n"
            "The checkpoint gets version 1, or the --init model's version + 1. Exit status: 0 ok,\n"
            "1 unreadable or invalid input / training failure, 2 usage error.\n"
            "Example:\n"
            "  kprec train --items items.tsv --keyphrases keyphrases.tsv --clicks clicks.tsv \\\n"
            "      --judgments split/train_judgments.tsv --teacher ce.kpm --out be.kpm\n",
            d.epochs, d.batch, (double)d.lr, (double)d.lr_emb, (double)d.w_softmax, (double)d.w_bce,
            (double)d.w_sr, (double)d.w_distill, (double)d.w_distill_known, (double)d.tau,
            d.n_random, d.n_hard, d.n_model_hard, (double)d.warmup, (double)d.clip, b.out_dim,
            b.emb_dim, b.hidden_dim, b.prefix[0], b.prefix[1], b.prefix[2], b.n_buckets,
            (unsigned long long)d.seed);
}

/* ---- teacher: the cross-encoder, scored on T threads ----------------------------------------- */

typedef struct {
    const kp_ce *ce;
    int threads;
    const char *const *items, *const *keys;
    float *out;
} teacher_ctx;

static int teacher_range(void *vctx, int t, int lo, int hi)
{
    (void)t;
    teacher_ctx *c = vctx;
    return kp_ce_score(c->ce, c->items + lo, c->keys + lo, hi - lo, c->out + lo);
}

static int ce_teacher(void *vctx, const char *const *items, const char *const *keys, int n,
                      float *out)
{
    teacher_ctx *c = vctx;
    c->items = items, c->keys = keys, c->out = out;
    return kp_parallel_for(c->threads, n, teacher_range, c);
}

/* ---- progress -------------------------------------------------------------------------------- */

typedef struct {
    kp_progress p;
    int quiet, active;
    char stage[32];
    char what[256];
} train_progress;

static void on_progress(void *vctx, const char *stage, long done, long total,
                        const kp_train_losses *L)
{
    train_progress *tp = vctx;
    if (!tp->active || strcmp(tp->stage, stage) != 0) {
        if (tp->active) kp_progress_done(&tp->p, tp->p.total);
        snprintf(tp->stage, sizeof(tp->stage), "%s", stage);
        snprintf(tp->what, sizeof(tp->what), "train %s", stage);
        kp_progress_start(&tp->p, tp->what, total, tp->quiet);
        tp->active = 1;
    }
    if (L)
        snprintf(tp->what, sizeof(tp->what),
                 "train [loss %.4f: ctr %.4f bce %.4f sr %.4f distill %.4f/%.4f | lr %.2g]",
                 L->total, L->softmax, L->bce, L->sr, L->distill, L->distill_known, (double)L->lr);
    tp->p.total = total;
    if (done >= total)
        kp_progress_done(&tp->p, done), tp->active = 0;
    else
        kp_progress_update(&tp->p, done);
}

/* ---- options --------------------------------------------------------------------------------- */

#define WHO "kprec train"

typedef struct {
    kp_cli_paths in; /* items, keyphrases, clicks, judgments */
    const char *teacher, *out, *init;
    kp_train_config tc;
    kp_bienc_config bc;
    int arch_given, prefixes_given, quiet, threads;
    int pool_negatives;
} train_args;

static int parse_prefixes(const char *who, const char *s, void *out)
{
    kp_bienc_config *c = out;
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 1 || v > KP_BIENC_MAX_DIM || n >= KP_BIENC_MAX_PREFIX ||
            (*end && *end != ','))
            goto bad;
        c->prefix[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (n == 0) goto bad;
    c->n_prefix = n;
    return 0;
bad:
    fprintf(stderr, "%s: --prefixes wants up to %d ascending comma-separated sizes, got '%s'\n",
            who, KP_BIENC_MAX_PREFIX, s);
    return -1;
}

static const kp_opt_choice distill_kinds[] = {
    {"pearson", KP_DISTILL_PEARSON}, {"mse", KP_DISTILL_MSE}, {NULL, 0}};
static const kp_opt_choice schedules[] = {
    {"cosine", KP_LR_COSINE}, {"linear", KP_LR_LINEAR}, {"constant", KP_LR_CONSTANT}, {NULL, 0}};

/* Checks the combination of options and the configurations. KP_OPTS_GO, or 2 with a message. */
static int train_check(train_args *a)
{
    if (!a->in.clicks && !a->in.judgments && !a->teacher) {
        fprintf(stderr, WHO ": nothing to learn from: give --clicks, --judgments and/or "
                            "--teacher\n");
        return 2;
    }
    if (a->init && a->arch_given) {
        fprintf(stderr, WHO ": --dim, --emb-dim, --hidden, --prefixes and --buckets "
                            "describe a new model; they cannot be combined with --init\n");
        return 2;
    }
    kp_bienc_config *bc = &a->bc;
    if (!a->prefixes_given) { /* default sizes, kept below the chosen dimension */
        int n = 0;
        for (int i = 0; i < bc->n_prefix; i++)
            if (bc->prefix[i] < bc->out_dim) bc->prefix[n++] = bc->prefix[i];
        bc->prefix[n++] = bc->out_dim;
        bc->n_prefix = n;
    }
    char err[512];
    if ((!a->init && kp_bienc_config_check(bc, err, sizeof(err)) != 0) ||
        kp_train_config_check(&a->tc, err, sizeof(err)) != 0) {
        kp_cli_fail(WHO, err);
        return 2;
    }
    return KP_OPTS_GO;
}

/* Parses the command line into a (defaults first) and checks it. KP_OPTS_GO, or the exit status
 * (0 after --help, 2 after a usage error, message printed). */
static int train_parse(int argc, char **argv, train_args *a)
{
    memset(a, 0, sizeof *a);
    kp_train_config_default(&a->tc);
    kp_bienc_config_default(&a->bc);
    a->threads = 1;
    kp_train_config *tc = &a->tc;
    kp_bienc_config *bc = &a->bc;
    int distill = tc->distill, schedule = tc->schedule, *arch = &a->arch_given;
    const kp_opt opts[] = {
        KP_CLI_DATA_OPTS(&a->in, 'k', 0),
        KP_CLI_GRADES_OPT(&a->in),
        {"clicks", 'c', KP_OPT_STR, .out = &a->in.clicks},
        {"teacher", 0, KP_OPT_STR, .out = &a->teacher},
        {"out", 'o', KP_OPT_STR, &a->out, .required = 1},
        {"init", 0, KP_OPT_STR, .out = &a->init},
        {"epochs", 'e', KP_OPT_INT, &tc->epochs, .lo = 0, .hi = 100000},
        {"batch", 'b', KP_OPT_INT, &tc->batch, .lo = 1, .hi = 65536},
        {"lr", 'l', KP_OPT_FLOAT, &tc->lr, .lo = 0, .hi = 10},
        {"lr-emb", 0, KP_OPT_FLOAT, &tc->lr_emb, .lo = 0, .hi = 100},
        {"w-ctr", 0, KP_OPT_FLOAT, &tc->w_softmax, .lo = 0, .hi = 1e6},
        {"w-bce", 0, KP_OPT_FLOAT, &tc->w_bce, .lo = 0, .hi = 1e6},
        {"w-sr", 0, KP_OPT_FLOAT, &tc->w_sr, .lo = 0, .hi = 1e6},
        {"w-distill", 0, KP_OPT_FLOAT, &tc->w_distill, .lo = 0, .hi = 1e6},
        {"w-known", 0, KP_OPT_FLOAT, &tc->w_distill_known, .lo = 0, .hi = 1e6},
        {"distill", 0, KP_OPT_CHOICE, &distill, .choices = distill_kinds},
        {"tau", 0, KP_OPT_FLOAT, &tc->tau, .lo = 1e-4f, .hi = 100},
        {"random", 0, KP_OPT_INT, &tc->n_random, .lo = 0, .hi = 1024},
        {"hard", 0, KP_OPT_INT, &tc->n_hard, .lo = 0, .hi = 1024},
        {"model-hard", 0, KP_OPT_INT, &tc->n_model_hard, .lo = 0, .hi = 1024},
        {"pool-negatives", 0, KP_OPT_INT, &a->pool_negatives, .lo = 0, .hi = 1},
        {"warmup", 0, KP_OPT_FLOAT, &tc->warmup, .lo = 0, .hi = 1},
        {"schedule", 0, KP_OPT_CHOICE, &schedule, .choices = schedules},
        {"clip", 0, KP_OPT_FLOAT, &tc->clip, .lo = 0, .hi = 1e6},
        {"dim", 'd', KP_OPT_INT, &bc->out_dim, .lo = 1, .hi = KP_BIENC_MAX_DIM, .seen = arch},
        {"emb-dim", 0, KP_OPT_INT, &bc->emb_dim, .lo = 1, .hi = KP_BIENC_MAX_DIM, .seen = arch},
        {"hidden", 0, KP_OPT_INT, &bc->hidden_dim, .lo = 1, .hi = KP_BIENC_MAX_DIM, .seen = arch},
        {"prefixes", 0, KP_OPT_FN, bc, .seen = &a->prefixes_given, .fn = parse_prefixes},
        {"buckets", 0, KP_OPT_U32, &bc->n_buckets, .lo = 1, .hi = 1 << 30, .seen = arch},
        {"seed", 's', KP_OPT_U64, &tc->seed, .lo = 0, .hi = 0x7fffffff},
        {"threads", 't', KP_OPT_INT, &a->threads, .lo = 1, .hi = 64},
        {"quiet", 0, KP_OPT_FLAG, .out = &a->quiet},
        {NULL}};
    int rc = kp_opts_parse(WHO, train_usage, opts, argc, argv, NULL);
    if (rc != KP_OPTS_GO) return rc;
    tc->distill = (kp_distill_kind)distill;
    tc->schedule = (kp_lr_schedule)schedule;
    a->arch_given |= a->prefixes_given;
    return train_check(a);
}

/* ---- load, train, save ----------------------------------------------------------------------- */

typedef struct {
    kp_cli_data data;
    kp_ce *teacher; /* NULL without --teacher */
    kp_bienc *model;
    uint64_t version; /* of the checkpoint to write */
    uint64_t t0_us;   /* start of the loading: the report's time counts it */
} train_state;

/* Loads the data, the teacher and the model to train (--init, or a new one). 0, or -1 with a
 * message printed; s is released by train_free either way. */
static int train_load(const train_args *a, train_state *s)
{
    char err[512];
    s->t0_us = kp_mono_us();
    if (kp_cli_data_load(WHO, &a->in, &s->data)) return -1;
    if (a->teacher && !(s->teacher = kp_ce_load(a->teacher, err, sizeof(err)))) goto fail;
    s->version = 1;
    if (a->init) {
        if (!(s->model = kp_bienc_load(a->init, err, sizeof(err)))) goto fail;
        s->version = kp_bienc_version(s->model) + 1;
    } else if (!(s->model = kp_bienc_new(&a->bc, a->tc.seed))) {
        snprintf(err, sizeof(err), "out of memory creating the model");
        goto fail;
    }
    return 0;
fail:
    kp_cli_fail(WHO, err);
    return -1;
}

/* Trains s->model for the configured epochs and saves it to --out. 0, or -1 with a message. */
static int train_run(const train_args *a, train_state *s)
{
    char err[512];
    teacher_ctx tctx = {.ce = s->teacher, .threads = a->threads};
    train_progress tp;
    memset(&tp, 0, sizeof(tp));
    tp.quiet = a->quiet;
    kp_train_data d = {0};
    d.items = &s->data.items, d.keys = &s->data.keys;
    d.clicks = a->in.clicks ? &s->data.clicks : NULL;
    d.sr = a->in.judgments ? &s->data.judg : NULL;
    d.teacher = s->teacher ? ce_teacher : NULL;
    d.teacher_ctx = &tctx;
    d.soft_pool_negatives = a->pool_negatives;
    d.progress = on_progress;
    d.progress_ctx = &tp;
    kp_train_stats st;
    if (kp_train_epochs(s->model, &a->tc, &d, &st, err, sizeof(err)) != 0) goto fail;
    if (tp.active) kp_progress_done(&tp.p, tp.p.total);
    kp_bienc_set_version(s->model, s->version);
    if (kp_bienc_save(s->model, a->out, err, sizeof(err)) != 0) goto fail;
    fprintf(stderr,
            WHO ": %d items, %ld steps, %ld teacher pairs, %.1fs; last epoch: loss %.4f "
                "(ctr %.4f bce %.4f sr %.4f distill %.4f known %.4f); wrote %s (version %llu)\n",
            st.n_train_items, st.steps, st.teacher_pairs, (double)(kp_mono_us() - s->t0_us) / 1e6,
            st.last_epoch.total, st.last_epoch.softmax, st.last_epoch.bce, st.last_epoch.sr,
            st.last_epoch.distill, st.last_epoch.distill_known, a->out,
            (unsigned long long)s->version);
    return 0;
fail:
    kp_cli_fail(WHO, err);
    return -1;
}

static void train_free(train_state *s)
{
    kp_bienc_free(s->model);
    kp_ce_free(s->teacher);
    kp_cli_data_free(&s->data);
}

int kp_cmd_train(int argc, char **argv)
{
    train_args a;
    int rc = train_parse(argc, argv, &a);
    if (rc != KP_OPTS_GO) return rc;
    kp_par_set_threads(a.threads);
    kp_blas_set_threads(a.threads > 2 ? a.threads : 1);
    train_state s;
    memset(&s, 0, sizeof s);
    rc = train_load(&a, &s) == 0 && train_run(&a, &s) == 0 ? 0 : 1;
    train_free(&s);
    return rc;
}
