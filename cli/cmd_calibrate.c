/* kprec calibrate: fits p(relevant | score) of the pipeline's ranking score (the CE's with --ce,
 * else the BE cosine) on held-out judgments, choosing isotonic (PAV) or Platt by the log-loss of
 * a 2-fold cross-fit (folds by a hash of item_id), and writes the calibration file the worker
 * reads ([model] calibration). Also suggests the gate's threshold: the largest t whose
 * out-of-fold p keeps --keep of the relevant pairs. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/data.h"
#include "cli/eval_pipeline.h"
#include "cli/opts.h"
#include "common/util.h"
#include "model/blas.h"
#include "model/calib.h"
#include "model/rng.h"

#define WHO "kprec calibrate"

static void usage(FILE *f)
{
    fprintf(
        f, "usage: kprec calibrate --model BE [--ce CE] --items I --keyphrases K\n"
           "                       --judgments HELD_OUT --out calib.kpm\n"
           "                       [--method auto|isotonic|platt] [--relevant 2.5] [--keep 0.9]\n"
           "                       [--irrelevant 2] [--negatives R] [--seed S] [--threads T]\n"
           "Fits the calibration of the serving pipeline's ranking score into p(relevant):\n"
           "the cross-encoder's score with --ce (the worker's [model] ce), else the bi-encoder's\n"
           "cosine. Relevant = relevance >= --relevant (2.5); every other judged pair counts as\n"
           "not relevant, so p is the probability of the event 'relevant'. HELD_OUT must be\n"
           "judgments the models were not trained on (e.g. a split of the train judgments; never\n"
           "the evaluation items). --method auto (default) fits both isotonic regression (PAV)\n"
           "and Platt scaling on two folds of the items, keeps the lower out-of-fold log-loss\n"
           "and refits it on all pairs. Prints the measurements and a suggested [model]\n"
           "threshold: the largest t whose out-of-fold p keeps --keep of the relevant pairs\n"
           "(and the share of irrelevant pairs, < --irrelevant, it drops).\n"
           "--negatives R adds R random inventory keyphrases per judged pair of an item as\n"
           "not relevant (seeded by --seed, default 1): judged pairs are the old engine's\n"
           "results, mostly relevant, while the worker scores arbitrary candidates, so without\n"
           "them p is too high for unjudged pairs. The suggested threshold is unaffected (it\n"
           "depends on the relevant pairs' scores only).\n"
           "Exit status: 0 ok, 1 unreadable or invalid input, 2 usage error.\n"
           "Example:\n"
           "  kprec calibrate --model be.kpm --ce ce.kpm --items items.tsv\n"
           "      --keyphrases keyphrases.tsv --judgments heldout_judgments.tsv --out calib.kpm\n");
}

enum { M_AUTO, M_ISO, M_PLATT };

typedef struct {
    double logloss, brier;
} fit_score;

/* Out-of-fold probabilities of one method into oof[n]. 0 / -1. */
static int cross_fit(int method, const float *s, const float *y, const int *fold, int n,
                     kp_calib_input in, float *oof)
{
    float *fs = malloc(sizeof(float) * (size_t)n), *fy = malloc(sizeof(float) * (size_t)n);
    int rc = -1;
    if (!fs || !fy) goto out;
    for (int f = 0; f < 2; f++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (fold[i] != f) fs[m] = s[i], fy[m++] = y[i];
        if (m == 0) goto out;
        kp_calib *c = method == M_ISO ? kp_calib_fit_isotonic(fs, fy, m, in)
                                      : kp_calib_fit_platt(fs, fy, m, in);
        if (!c) goto out;
        for (int i = 0; i < n; i++)
            if (fold[i] == f) oof[i] = kp_calib_apply(c, s[i]);
        kp_calib_free(c);
    }
    rc = 0;
out:
    free(fs), free(fy);
    return rc;
}

int kp_cmd_calibrate(int argc, char **argv)
{
    const char *model = NULL, *ce = NULL, *outp = NULL;
    kp_cli_paths in = {0};
    int method = M_AUTO, threads = 1, negs = 0;
    uint64_t seed = 1;
    float relevant = 2.5f, irrelevant = 2.0f, keep = 0.9f;
    static const kp_opt_choice methods[] = {
        {"auto", M_AUTO}, {"isotonic", M_ISO}, {"platt", M_PLATT}, {NULL, 0}};
    const kp_opt opts[] = {
        {"model", 'm', KP_OPT_STR, &model, .required = 1},
        KP_CLI_DATA_OPTS(&in, 'K', 1),
        {"ce", 'c', KP_OPT_STR, &ce, .required = 0},
        {"out", 'o', KP_OPT_STR, &outp, .required = 1},
        {"method", 'M', KP_OPT_CHOICE, &method, .choices = methods},
        {"relevant", 'r', KP_OPT_FLOAT, &relevant, .lo = -FLT_MAX, .hi = FLT_MAX},
        {"irrelevant", 'n', KP_OPT_FLOAT, &irrelevant, .lo = -FLT_MAX, .hi = FLT_MAX},
        {"keep", 'k', KP_OPT_FLOAT, &keep, .lo = 0, .hi = 1},
        {"threads", 't', KP_OPT_INT, &threads, .lo = 1, .hi = 64},
        {"negatives", 'N', KP_OPT_INT, &negs, .lo = 0, .hi = 100},
        {"seed", 's', KP_OPT_U64, &seed, .lo = 0, .hi = -1},
        {NULL}};
    int rc = kp_opts_parse(WHO, usage, opts, argc, argv, NULL);
    if (rc != KP_OPTS_GO) return rc;
    kp_blas_set_threads(threads);
    kp_cli_data d = {0};
    kp_cli_pipeline p = {0};
    float *s = NULL, *y = NULL, *oi = NULL, *op = NULL;
    int *fold = NULL, *keys = NULL;
    const char **t = NULL;
    size_t *l = NULL;
    kp_calib *fit = NULL;
    rc = 1;
    if (kp_cli_data_load(WHO, &in, &d)) goto out;
    if (kp_cli_pipeline_open(WHO, model, ce, NULL, 0, 0, 0, threads, &d.keys, &p)) goto out;
    const kp_judgments *j = &d.judg;
    int nj = j->n, n = nj * (1 + negs);
    if (nj < 2) {
        kp_cli_fail(WHO, "fewer than 2 judged pairs");
        goto out;
    }
    s = malloc(sizeof(float) * n), y = malloc(sizeof(float) * n);
    oi = malloc(sizeof(float) * n), op = malloc(sizeof(float) * n);
    fold = malloc(sizeof(int) * n), keys = malloc(sizeof(int) * n);
    t = malloc(sizeof(char *) * n), l = malloc(sizeof(size_t) * n);
    if (!s || !y || !oi || !op || !fold || !keys || !t || !l) goto oom;
    int npos = 0, nneg = 0, nf1 = 0;
    for (int i = 0; i < nj; i++) {
        t[i] = d.items.text[j->item[i]];
        l[i] = strlen(t[i]);
        keys[i] = j->key[i];
        y[i] = j->rel[i] >= relevant ? 1.0f : 0.0f;
        npos += j->rel[i] >= relevant;
        nneg += j->rel[i] < irrelevant;
        fold[i] = (int)(kp_fnv1a_str(d.items.id[j->item[i]]) >> 7 & 1);
        nf1 += fold[i];
    }
    if (nf1 == 0 || nf1 == nj) { /* one item only: alternate */
        for (int i = 0; i < nj; i++)
            fold[i] = i & 1;
    }
    /* random negatives: the item (and fold) of judged pair i, a keyphrase by a seeded hash */
    uint64_t st = seed;
    for (int i = nj; i < n; i++) {
        int src = (i - nj) % nj;
        t[i] = t[src], l[i] = l[src], fold[i] = fold[src], y[i] = 0;
        keys[i] = (int)(kp_splitmix64(&st) % (uint64_t)d.keys.n);
    }
    if (kp_rec_pair_scores(p.rec, t, l, keys, n, s, NULL)) goto oom;
    kp_calib_input cin = ce ? KP_CALIB_INPUT_CE : KP_CALIB_INPUT_BE;
    if (cross_fit(M_ISO, s, y, fold, n, cin, oi) || cross_fit(M_PLATT, s, y, fold, n, cin, op))
        goto oom;
    fit_score fi = {kp_calib_logloss(oi, y, n), kp_calib_brier(oi, y, n)};
    fit_score fp = {kp_calib_logloss(op, y, n), kp_calib_brier(op, y, n)};
    int chosen = method != M_AUTO ? method : (fi.logloss <= fp.logloss ? M_ISO : M_PLATT);
    fprintf(stderr,
            WHO ": %d judged pairs (%d relevant >= %g, %d irrelevant < %g) + %d random "
                "negatives, score: %s\n"
                "  2-fold out-of-fold   log-loss   brier\n"
                "  isotonic (PAV)       %8.4f  %7.4f%s\n"
                "  platt                %8.4f  %7.4f%s\n",
            nj, npos, relevant, nneg, irrelevant, n - nj,
            ce ? "cross-encoder" : "bi-encoder cosine", fi.logloss, fi.brier,
            chosen == M_ISO ? "   <- chosen" : "", fp.logloss, fp.brier,
            chosen == M_PLATT ? "   <- chosen" : "");
    fit = chosen == M_ISO ? kp_calib_fit_isotonic(s, y, n, cin) : kp_calib_fit_platt(s, y, n, cin);
    if (!fit) goto oom;
    /* the threshold: largest t (out-of-fold p of the chosen method) keeping >= keep of the
     * relevant pairs; scanned over the distinct out-of-fold values */
    const float *oof = chosen == M_ISO ? oi : op;
    float best = 0;
    double best_kept = 1, best_drop = 0;
    for (int step = 0; step <= 1000; step++) {
        float th = (float)step / 1000;
        int kp = 0, dr = 0;
        for (int i = 0; i < nj; i++) {
            if (j->rel[i] >= relevant) kp += oof[i] >= th;
            if (j->rel[i] < irrelevant) dr += oof[i] < th;
        }
        double kk = npos ? (double)kp / npos : 1;
        if (kk >= keep) best = th, best_kept = kk, best_drop = nneg ? (double)dr / nneg : 0;
    }
    char v1[32], v2[32], v3[32], v4[32], v5[32], v6[32], v7[32];
    snprintf(v1, sizeof v1, "%d", n);
    snprintf(v2, sizeof v2, "%.6f", fi.logloss);
    snprintf(v3, sizeof v3, "%.6f", fp.logloss);
    snprintf(v4, sizeof v4, "%g", relevant);
    snprintf(v5, sizeof v5, "%.3f", best);
    snprintf(v6, sizeof v6, "%.6f", fi.brier);
    snprintf(v7, sizeof v7, "%.6f", fp.brier);
    const char *ek[] = {"fit_pairs",      "oof_logloss_isotonic", "oof_logloss_platt",
                        "relevant",       "suggested_threshold",  "oof_brier_isotonic",
                        "oof_brier_platt"};
    const char *ev[] = {v1, v2, v3, v4, v5, v6, v7};
    char err[512];
    if (kp_calib_save(fit, outp, ek, ev, 7, err, sizeof err)) {
        kp_cli_fail(WHO, err);
        goto out;
    }
    fprintf(stderr,
            WHO ": suggested threshold %.3f: keeps %.1f%% of the relevant pairs, drops %.1f%% "
                "of the irrelevant ones (out of fold)\n",
            best, 100 * best_kept, 100 * best_drop);
    if (chosen == M_ISO)
        fprintf(stderr, WHO ": wrote %s (isotonic, %d blocks)\n", outp, kp_calib_n_blocks(fit));
    else {
        double a, b;
        kp_calib_platt_params(fit, &a, &b);
        fprintf(stderr, WHO ": wrote %s (platt: a %.4f, b %.4f)\n", outp, a, b);
    }
    printf("%.3f\n", best);
    rc = 0;
    goto out;
oom:
    kp_cli_fail(WHO, "out of memory or scoring failed");
out:
    kp_calib_free(fit);
    kp_cli_pipeline_free(&p);
    kp_cli_data_free(&d);
    free(s), free(y), free(oi), free(op), free(fold), free(keys), free((void *)t), free(l);
    return rc;
}
