/* kprec train-ce: trains the cross-encoder assistant on teacher judgments and saves it. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/progress.h"
#include "model/ce.h"
#include "offline/ce_train.h"
#include "offline/split.h"
#include "offline/datasets.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kprec train-ce --items FILE --keyphrases FILE --judgments FILE --out FILE\n"
            "                      [options]\n\n"
            "Trains the cross-encoder assistant (CE) on graded judgments (relevance 1..3) plus\n"
            "random negative keyphrases, and writes a \"ce\" checkpoint.\n\n"
            "  --items FILE        items TSV (item_id, title)\n"
            "  --keyphrases FILE   keyphrase inventory TSV (keyphrase_id, keyphrase)\n"
            "  --judgments FILE    judgments TSV (pair_id, keyphrase_id, item_id, relevance)\n"
            "  --out FILE          checkpoint to write\n"
            "  --epochs N          passes over the judged pairs (default 3)\n"
            "  --seed S            seed of the weights, negatives and shuffling (default 1)\n"
            "  --negatives N       random keyphrases (y = 0) per judged pair (default 1)\n"
            "  --threads T         threads for the per-pair work, 1..64 (default 2)\n"
            "  --valid-frac F      part of the training items held out for validation metrics\n"
            "                      after every epoch (default 0.1; 0 = none)\n"
            "  --bench-frac F      part of the items reserved for the benchmark (kprec eval),\n"
            "                      never trained on (default %.1f, the benchmark's; 0 = none)\n"
            "  --emb-dim E         token embedding size (default 32)\n"
            "  --hidden H          MLP hidden size (default 64)\n"
            "  --lr X              learning rate of the dense weights (default 2e-3)\n"
            "  --lr-emb X          learning rate of the embedding rows (default 1e-2)\n"
            "  --quiet             no progress line\n"
            "  --help              this text\n",
            KP_SPLIT_BENCH_FRAC);
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
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
            "kprec: train-ce: epoch %d: loss %.4f (%d examples)  valid: %d pairs, spearman %.4f "
            "pearson %.4f auc %.4f auc_rand %.4f  [%.1f s]\n",
            s->epoch, s->loss, s->n_train, s->n_valid, s->spearman, s->pearson, s->auc, s->auc_rand,
            s->seconds);
}

int kp_cmd_train_ce(int argc, char **argv)
{
    static const struct option opts[] = {{"items", required_argument, 0, 'i'},
                                         {"keyphrases", required_argument, 0, 'k'},
                                         {"judgments", required_argument, 0, 'j'},
                                         {"out", required_argument, 0, 'o'},
                                         {"epochs", required_argument, 0, 'e'},
                                         {"seed", required_argument, 0, 's'},
                                         {"negatives", required_argument, 0, 'n'},
                                         {"threads", required_argument, 0, 't'},
                                         {"valid-frac", required_argument, 0, 'v'},
                                         {"bench-frac", required_argument, 0, 'b'},
                                         {"emb-dim", required_argument, 0, 'E'},
                                         {"hidden", required_argument, 0, 'H'},
                                         {"lr", required_argument, 0, 'l'},
                                         {"lr-emb", required_argument, 0, 'L'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *items_path = NULL, *keys_path = NULL, *judg_path = NULL, *out_path = NULL;
    double valid_frac = 0.1, bench_frac = KP_SPLIT_BENCH_FRAC, dv = 0.0;
    long lv = 0;
    int quiet = 0, ch;
    kp_ce_train_opts o;
    kp_ce_train_opts_default(&o);
    o.epochs = 3;
    o.threads = 2;
    kp_ce_config c;
    kp_ce_config_default(&c);
    optind = 1;
    while ((ch = getopt_long(argc, argv, "i:k:j:o:e:s:n:t:v:b:E:H:l:L:qh", opts, NULL)) != -1) {
        const char *bad = NULL;
        switch (ch) {
        case 'i':
            items_path = optarg;
            break;
        case 'k':
            keys_path = optarg;
            break;
        case 'j':
            judg_path = optarg;
            break;
        case 'o':
            out_path = optarg;
            break;
        case 'e':
            if (parse_long(optarg, 1, 10000, &lv)) bad = "--epochs must be an integer 1..10000";
            o.epochs = (int)lv;
            break;
        case 's':
            if (parse_long(optarg, 0, 0x7fffffffL, &lv)) bad = "--seed must be an integer >= 0";
            o.seed = (uint64_t)lv;
            break;
        case 'n':
            if (parse_long(optarg, 0, 100, &lv)) bad = "--negatives must be an integer 0..100";
            o.negatives = (int)lv;
            break;
        case 't':
            if (parse_long(optarg, 1, 64, &lv)) bad = "--threads must be an integer 1..64";
            o.threads = (int)lv;
            break;
        case 'v':
            if (parse_double(optarg, 0.0, 0.9, &valid_frac)) bad = "--valid-frac must be in 0..0.9";
            break;
        case 'b':
            if (parse_double(optarg, 0.0, 0.9, &bench_frac)) bad = "--bench-frac must be in 0..0.9";
            break;
        case 'E':
            if (parse_long(optarg, 1, KP_CE_MAX_DIM, &lv)) bad = "--emb-dim must be in 1..1024";
            c.emb_dim = (int)lv;
            break;
        case 'H':
            if (parse_long(optarg, 1, KP_CE_MAX_DIM, &lv)) bad = "--hidden must be in 1..1024";
            c.hidden_dim = (int)lv;
            break;
        case 'l':
            if (parse_double(optarg, 1e-7, 1.0, &dv)) bad = "--lr must be in 1e-7..1";
            o.lr = (float)dv;
            break;
        case 'L':
            if (parse_double(optarg, 1e-7, 1.0, &dv)) bad = "--lr-emb must be in 1e-7..1";
            o.lr_emb = (float)dv;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "kprec: train-ce: %s (got '%s')\n", bad, optarg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kprec: train-ce: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!items_path || !keys_path || !judg_path || !out_path) {
        fprintf(stderr, "kprec: train-ce: --items, --keyphrases, --judgments and --out are "
                        "required (see kprec train-ce --help)\n");
        return 2;
    }

    int rc = 1;
    char err[512];
    kp_texts items, keys;
    kp_judgments j;
    memset(&items, 0, sizeof(items));
    memset(&keys, 0, sizeof(keys));
    memset(&j, 0, sizeof(j));
    unsigned char *role = NULL;
    const char **docs = NULL;
    kp_ce *m = NULL;
    int skipped = 0;
    if (kp_texts_load(items_path, &items, err, sizeof(err)) != 0 ||
        kp_texts_load(keys_path, &keys, err, sizeof(err)) != 0 ||
        kp_judgments_load(judg_path, &items, &keys, &j, &skipped, err, sizeof(err)) != 0) {
        fprintf(stderr, "kprec: train-ce: %s\n", err);
        goto out;
    }
    role = calloc((size_t)items.n + 1, 1);
    docs = malloc(((size_t)items.n + (size_t)keys.n + 1) * sizeof(*docs));
    if (!role || !docs) {
        fprintf(stderr, "kprec: train-ce: out of memory\n");
        goto out;
    }
    /* items: benchmark hold-out (never used), validation part of the rest, training part */
    int n_bench = 0, n_valid = 0, n_train = 0, nd = 0;
    for (int i = 0; i < keys.n; i++)
        docs[nd++] = keys.text[i];
    for (int i = 0; i < items.n; i++) {
        if (kp_split_is_valid(items.id[i], bench_frac, KP_SPLIT_BENCH_SEED)) {
            n_bench++;
            continue;
        }
        /* a seed of its own, so the validation part is independent of the benchmark split */
        role[i] = kp_split_is_valid(items.id[i], valid_frac, o.seed + 0x5EEDu) ? 2 : 1;
        if (role[i] == 1) {
            n_train++;
            docs[nd++] = items.text[i];
        } else {
            n_valid++;
        }
    }
    fprintf(stderr,
            "kprec: train-ce: %d items (%d train, %d validation, %d benchmark hold-out), %d "
            "keyphrases, %d judgments (%d skipped: unknown ids)\n",
            items.n, n_train, n_valid, n_bench, keys.n, j.n, skipped);
    m = kp_ce_new(&c, o.seed);
    if (!m || kp_ce_set_idf(m, docs, nd) != 0) {
        fprintf(stderr, "kprec: train-ce: out of memory for the model\n");
        goto out;
    }
    fprintf(stderr,
            "kprec: train-ce: buckets %u, emb %d, hidden %d, features %d; epochs %d, negatives "
            "%d, threads %d, seed %llu; loss: binary cross-entropy\n",
            c.n_buckets, c.emb_dim, c.hidden_dim, kp_ce_n_features(m), o.epochs, o.negatives,
            o.threads, (unsigned long long)o.seed);
    progress_ctx pc;
    memset(&pc, 0, sizeof(pc));
    pc.quiet = quiet;
    o.progress = on_progress;
    o.on_epoch = on_epoch;
    o.ctx = &pc;
    kp_ce_epoch_stats last;
    if (kp_ce_train(m, &items, &keys, &j, role, &o, &last, err, sizeof(err)) != 0) {
        fprintf(stderr, "kprec: train-ce: %s\n", err);
        goto out;
    }
    if (pc.started) kp_progress_done(&pc.p, pc.p.total);
    if (kp_ce_save(m, out_path, err, sizeof(err)) != 0) {
        fprintf(stderr, "kprec: train-ce: %s\n", err);
        goto out;
    }
    fprintf(stderr, "kprec: train-ce: wrote %s (model version %llu) in %.1f s\n", out_path,
            (unsigned long long)kp_ce_version(m), last.seconds);
    rc = 0;
out:
    kp_ce_free(m);
    free(docs);
    free(role);
    kp_judgments_free(&j);
    kp_texts_free(&keys);
    kp_texts_free(&items);
    return rc;
}
