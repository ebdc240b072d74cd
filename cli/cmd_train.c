/* kprec train: offline multi-task training of the bi-encoder from files (offline/train_epochs.h):
 * CTR on a click log, SR on judgments, distillation from a cross-encoder teacher, Matryoshka sizes.
 */
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "common/progress.h"
#include "model/bienc.h"
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
            "the SR term (MSE of the cosine on (relevance-1)/2), --teacher the distillation term\n"
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
            "  --warmup F       fraction of steps of linear warmup (default %g)\n"
            "  --schedule S     cosine, linear or constant decay (default cosine)\n"
            "  --clip X         gradient norm clip, 0 = off (default %g)\n"
            "  --dim D          embedding size (default %d)        (new models only)\n"
            "  --emb-dim E      bucket embedding size (default %d)  (new models only)\n"
            "  --hidden H       hidden layer size (default %d)     (new models only)\n"
            "  --prefixes LIST  Matryoshka sizes, e.g. 32,64,128 (default: %d,%d,%d)\n"
            "  --buckets N      hashed feature buckets (default %u)  (new models only)\n"
            "  --seed S         seed of the weights, sampling and shuffling (default %llu)\n"
            "  --threads T      BLAS and teacher threads, 1..64 (default 1: bit-reproducible)\n"
            "  --quiet          no progress line\n\n"
            "The checkpoint gets version 1, or the --init model's version + 1. Exit status: 0 ok,\n"
            "1 unreadable or invalid input / training failure, 2 usage error.\n",
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
} teacher_ctx;

typedef struct {
    const kp_ce *ce;
    const char *const *items, *const *keys;
    int n;
    float *out;
    int rc;
} teacher_job;

static void *teacher_worker(void *arg)
{
    teacher_job *j = arg;
    j->rc = kp_ce_score(j->ce, j->items, j->keys, j->n, j->out);
    return NULL;
}

static int ce_teacher(void *vctx, const char *const *items, const char *const *keys, int n,
                      float *out)
{
    teacher_ctx *c = vctx;
    enum { MAXT = 64 };
    teacher_job jobs[MAXT];
    pthread_t th[MAXT];
    int T = c->threads < n ? c->threads : (n > 0 ? n : 1);
    int per = (n + T - 1) / T, rc = 0;
    int spawned[MAXT] = {0};
    for (int t = 0; t < T; t++) {
        int a = t * per, b = a + per < n ? a + per : n;
        jobs[t] = (teacher_job){c->ce, items + a, keys + a, b > a ? b - a : 0, out + a, 0};
        /* the last slice (and any slice whose thread cannot start) runs on this thread */
        if (t < T - 1 && pthread_create(&th[t], NULL, teacher_worker, &jobs[t]) == 0)
            spawned[t] = 1;
        else
            teacher_worker(&jobs[t]);
    }
    for (int t = 0; t < T; t++)
        if (spawned[t]) pthread_join(th[t], NULL);
    for (int t = 0; t < T; t++)
        if (jobs[t].rc != 0) rc = -1;
    return rc;
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

/* ---- option parsing helpers ------------------------------------------------------------------ */

static int parse_f(const char *opt, const char *s, float lo, float hi, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "kprec train: --%s wants a number in %g..%g, got '%s'\n", opt, (double)lo,
                (double)hi, s);
        return -1;
    }
    *out = (float)v;
    return 0;
}

static int parse_i(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "kprec train: --%s wants an integer in %ld..%ld, got '%s'\n", opt, lo, hi,
                s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_prefixes(const char *s, kp_bienc_config *c)
{
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
    fprintf(stderr,
            "kprec train: --prefixes wants up to %d ascending comma-separated sizes, got '%s'\n",
            KP_BIENC_MAX_PREFIX, s);
    return -1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum {
    O_LR_EMB = 1000,
    O_W_CTR,
    O_W_BCE,
    O_W_SR,
    O_W_DISTILL,
    O_W_KNOWN,
    O_DISTILL,
    O_TAU,
    O_RANDOM,
    O_HARD,
    O_MODEL_HARD,
    O_WARMUP,
    O_SCHEDULE,
    O_CLIP,
    O_EMB_DIM,
    O_HIDDEN,
    O_PREFIXES,
    O_BUCKETS,
    O_QUIET,
    O_INIT,
    O_TEACHER
};

int kp_cmd_train(int argc, char **argv)
{
    static const struct option opts[] = {{"items", required_argument, 0, 'i'},
                                         {"keyphrases", required_argument, 0, 'k'},
                                         {"clicks", required_argument, 0, 'c'},
                                         {"judgments", required_argument, 0, 'j'},
                                         {"teacher", required_argument, 0, O_TEACHER},
                                         {"out", required_argument, 0, 'o'},
                                         {"init", required_argument, 0, O_INIT},
                                         {"epochs", required_argument, 0, 'e'},
                                         {"batch", required_argument, 0, 'b'},
                                         {"lr", required_argument, 0, 'l'},
                                         {"lr-emb", required_argument, 0, O_LR_EMB},
                                         {"w-ctr", required_argument, 0, O_W_CTR},
                                         {"w-bce", required_argument, 0, O_W_BCE},
                                         {"w-sr", required_argument, 0, O_W_SR},
                                         {"w-distill", required_argument, 0, O_W_DISTILL},
                                         {"w-known", required_argument, 0, O_W_KNOWN},
                                         {"distill", required_argument, 0, O_DISTILL},
                                         {"tau", required_argument, 0, O_TAU},
                                         {"random", required_argument, 0, O_RANDOM},
                                         {"hard", required_argument, 0, O_HARD},
                                         {"model-hard", required_argument, 0, O_MODEL_HARD},
                                         {"warmup", required_argument, 0, O_WARMUP},
                                         {"schedule", required_argument, 0, O_SCHEDULE},
                                         {"clip", required_argument, 0, O_CLIP},
                                         {"dim", required_argument, 0, 'd'},
                                         {"emb-dim", required_argument, 0, O_EMB_DIM},
                                         {"hidden", required_argument, 0, O_HIDDEN},
                                         {"prefixes", required_argument, 0, O_PREFIXES},
                                         {"buckets", required_argument, 0, O_BUCKETS},
                                         {"seed", required_argument, 0, 's'},
                                         {"threads", required_argument, 0, 't'},
                                         {"quiet", no_argument, 0, O_QUIET},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *items_path = NULL, *keys_path = NULL, *clicks_path = NULL, *judg_path = NULL;
    const char *teacher_path = NULL, *out_path = NULL, *init_path = NULL;
    kp_train_config tc;
    kp_train_config_default(&tc);
    kp_bienc_config bc;
    kp_bienc_config_default(&bc);
    int arch_given = 0, prefixes_given = 0, quiet = 0, ch;
    long v, threads = 1;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "i:k:c:j:o:e:b:l:d:s:t:h", opts, NULL)) != -1) {
        int bad = 0;
        switch (ch) {
        case 'i':
            items_path = optarg;
            break;
        case 'k':
            keys_path = optarg;
            break;
        case 'c':
            clicks_path = optarg;
            break;
        case 'j':
            judg_path = optarg;
            break;
        case O_TEACHER:
            teacher_path = optarg;
            break;
        case 'o':
            out_path = optarg;
            break;
        case O_INIT:
            init_path = optarg;
            break;
        case 'e':
            bad = parse_i("epochs", optarg, 0, 100000, &v), tc.epochs = (int)v;
            break;
        case 'b':
            bad = parse_i("batch", optarg, 1, 65536, &v), tc.batch = (int)v;
            break;
        case 'l':
            bad = parse_f("lr", optarg, 0, 10, &tc.lr);
            break;
        case O_LR_EMB:
            bad = parse_f("lr-emb", optarg, 0, 100, &tc.lr_emb);
            break;
        case O_W_CTR:
            bad = parse_f("w-ctr", optarg, 0, 1e6f, &tc.w_softmax);
            break;
        case O_W_BCE:
            bad = parse_f("w-bce", optarg, 0, 1e6f, &tc.w_bce);
            break;
        case O_W_SR:
            bad = parse_f("w-sr", optarg, 0, 1e6f, &tc.w_sr);
            break;
        case O_W_DISTILL:
            bad = parse_f("w-distill", optarg, 0, 1e6f, &tc.w_distill);
            break;
        case O_W_KNOWN:
            bad = parse_f("w-known", optarg, 0, 1e6f, &tc.w_distill_known);
            break;
        case O_DISTILL:
            if (!strcmp(optarg, "pearson"))
                tc.distill = KP_DISTILL_PEARSON;
            else if (!strcmp(optarg, "mse"))
                tc.distill = KP_DISTILL_MSE;
            else {
                fprintf(stderr, "kprec train: --distill wants pearson or mse, got '%s'\n", optarg);
                bad = 1;
            }
            break;
        case O_TAU:
            bad = parse_f("tau", optarg, 1e-4f, 100, &tc.tau);
            break;
        case O_RANDOM:
            bad = parse_i("random", optarg, 0, 1024, &v), tc.n_random = (int)v;
            break;
        case O_HARD:
            bad = parse_i("hard", optarg, 0, 1024, &v), tc.n_hard = (int)v;
            break;
        case O_MODEL_HARD:
            bad = parse_i("model-hard", optarg, 0, 1024, &v), tc.n_model_hard = (int)v;
            break;
        case O_WARMUP:
            bad = parse_f("warmup", optarg, 0, 1, &tc.warmup);
            break;
        case O_SCHEDULE:
            if (!strcmp(optarg, "cosine"))
                tc.schedule = KP_LR_COSINE;
            else if (!strcmp(optarg, "linear"))
                tc.schedule = KP_LR_LINEAR;
            else if (!strcmp(optarg, "constant"))
                tc.schedule = KP_LR_CONSTANT;
            else {
                fprintf(stderr, "kprec train: --schedule wants cosine, linear or constant\n");
                bad = 1;
            }
            break;
        case O_CLIP:
            bad = parse_f("clip", optarg, 0, 1e6f, &tc.clip);
            break;
        case 'd':
            bad = parse_i("dim", optarg, 1, KP_BIENC_MAX_DIM, &v), bc.out_dim = (int)v;
            arch_given = 1;
            break;
        case O_EMB_DIM:
            bad = parse_i("emb-dim", optarg, 1, KP_BIENC_MAX_DIM, &v), bc.emb_dim = (int)v;
            arch_given = 1;
            break;
        case O_HIDDEN:
            bad = parse_i("hidden", optarg, 1, KP_BIENC_MAX_DIM, &v), bc.hidden_dim = (int)v;
            arch_given = 1;
            break;
        case O_PREFIXES:
            bad = parse_prefixes(optarg, &bc);
            arch_given = prefixes_given = 1;
            break;
        case O_BUCKETS:
            bad = parse_i("buckets", optarg, 1, 1L << 30, &v), bc.n_buckets = (uint32_t)v;
            arch_given = 1;
            break;
        case 's':
            bad = parse_i("seed", optarg, 0, 0x7fffffffL, &v), tc.seed = (uint64_t)v;
            break;
        case 't':
            bad = parse_i("threads", optarg, 1, 64, &threads);
            break;
        case O_QUIET:
            quiet = 1;
            break;
        case 'h':
            train_usage(stdout);
            return 0;
        default:
            train_usage(stderr);
            return 2;
        }
        if (bad) return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "kprec train: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!items_path || !keys_path || !out_path) {
        fprintf(stderr, "kprec train: --items, --keyphrases and --out are required "
                        "(kprec train --help)\n");
        return 2;
    }
    if (!clicks_path && !judg_path && !teacher_path) {
        fprintf(stderr, "kprec train: nothing to learn from: give --clicks, --judgments and/or "
                        "--teacher\n");
        return 2;
    }
    if (init_path && arch_given) {
        fprintf(stderr, "kprec train: --dim, --emb-dim, --hidden, --prefixes and --buckets "
                        "describe a new model; they cannot be combined with --init\n");
        return 2;
    }
    if (!prefixes_given) { /* default sizes, kept below the chosen dimension */
        int n = 0;
        for (int i = 0; i < bc.n_prefix; i++)
            if (bc.prefix[i] < bc.out_dim) bc.prefix[n++] = bc.prefix[i];
        bc.prefix[n++] = bc.out_dim;
        bc.n_prefix = n;
    }
    char err[512];
    if (!init_path && kp_bienc_config_check(&bc, err, sizeof(err)) != 0) {
        fprintf(stderr, "kprec train: %s\n", err);
        return 2;
    }
    if (kp_train_config_check(&tc, err, sizeof(err)) != 0) {
        fprintf(stderr, "kprec train: %s\n", err);
        return 2;
    }
    openblas_set_num_threads((int)threads);

    int rc = 1;
    kp_texts items = {0}, keys = {0};
    kp_clicklog clicks = {0};
    kp_judgments judg = {0};
    kp_ce *ce = NULL;
    kp_bienc *m = NULL;
    int skipped = 0;
    double t0 = now_s();
    if (kp_texts_load(items_path, &items, err, sizeof(err)) != 0 ||
        kp_texts_load(keys_path, &keys, err, sizeof(err)) != 0)
        goto fail;
    if (clicks_path) {
        if (kp_clicklog_load(clicks_path, &items, &keys, &clicks, &skipped, err, sizeof(err)) != 0)
            goto fail;
        if (skipped)
            fprintf(stderr, "kprec train: %s: %d events with unknown ids skipped\n", clicks_path,
                    skipped);
    }
    if (judg_path) {
        if (kp_judgments_load(judg_path, &items, &keys, &judg, &skipped, err, sizeof(err)) != 0)
            goto fail;
        if (skipped)
            fprintf(stderr, "kprec train: %s: %d judgments with unknown ids skipped\n", judg_path,
                    skipped);
    }
    if (teacher_path && !(ce = kp_ce_load(teacher_path, err, sizeof(err)))) goto fail;
    uint64_t version = 1;
    if (init_path) {
        if (!(m = kp_bienc_load(init_path, err, sizeof(err)))) goto fail;
        version = kp_bienc_version(m) + 1;
    } else if (!(m = kp_bienc_new(&bc, tc.seed))) {
        snprintf(err, sizeof(err), "out of memory creating the model");
        goto fail;
    }
    teacher_ctx tctx = {ce, (int)threads};
    train_progress tp;
    memset(&tp, 0, sizeof(tp));
    tp.quiet = quiet;
    kp_train_data d = {0};
    d.items = &items, d.keys = &keys;
    d.clicks = clicks_path ? &clicks : NULL;
    d.sr = judg_path ? &judg : NULL;
    d.teacher = ce ? ce_teacher : NULL;
    d.teacher_ctx = &tctx;
    d.progress = on_progress;
    d.progress_ctx = &tp;
    kp_train_stats st;
    if (kp_train_epochs(m, &tc, &d, &st, err, sizeof(err)) != 0) goto fail;
    if (tp.active) kp_progress_done(&tp.p, tp.p.total);
    kp_bienc_set_version(m, version);
    if (kp_bienc_save(m, out_path, err, sizeof(err)) != 0) goto fail;
    fprintf(stderr,
            "kprec train: %d items, %ld steps, %ld teacher pairs, %.1fs; last epoch: loss %.4f "
            "(ctr %.4f bce %.4f sr %.4f distill %.4f known %.4f); wrote %s (version %llu)\n",
            st.n_train_items, st.steps, st.teacher_pairs, now_s() - t0, st.last_epoch.total,
            st.last_epoch.softmax, st.last_epoch.bce, st.last_epoch.sr, st.last_epoch.distill,
            st.last_epoch.distill_known, out_path, (unsigned long long)version);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "kprec train: %s\n", err);
done:
    kp_bienc_free(m);
    kp_ce_free(ce);
    kp_judgments_free(&judg);
    kp_clicklog_free(&clicks);
    kp_texts_free(&items);
    kp_texts_free(&keys);
    return rc;
}
