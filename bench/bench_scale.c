/* bench_scale.c - retrieval at inventory scale (1M keyphrases), driven by bench/run-all.
 *
 *   bench_scale embed  --data DIR --out OUT [--keys N] [--queries Q] [--noise S] [--model PATH]
 *                      [--seed S]
 *       The bases: every keyphrase of DIR/keyphrases.tsv and the first half of the titles of
 *       DIR/items.tsv, embedded by the keyphrase tower of PATH (a trained bi-encoder; default: a
 *       seeded one). Key i < bases is base i; key i >= bases is a perturbed copy of a random
 *       base: normalise(base + S / sqrt(D) * N(0, I)) (S = 0.6: cosine ~0.86 to its base), so the
 *       keys keep the real inventory's cluster structure. Queries: Q titles of the second half
 *       (item tower). Writes OUT/keys.f32 [N x D], OUT/queries.f32 [Q x D], OUT/dims.txt
 *       ("Q N D") and OUT/keys.tsv (N keyphrase rows "k<i>\t<base text> v<i>", for `rss`).
 *
 *   bench_scale search --out OUT [--k K] [--batches "64 256"] [--threads "1 2"]
 *                      [--nprobe "4 8 16 32 64"] [--nlist L] [--single N] [--queries Q]
 *                      [--first-pass "fp32 int8 bf16"] [--rescore "2 4"] [--fanout]
 *       One process = one round: exact top-K (kp_index_topk) and the GEMM alone (the sgemm calls
 *       of the exact pass, diagnostic) per (batch, threads); the IVF (kp_index_set_ivf, build
 *       time printed) per (batch, threads, nprobe) with recall@K vs exact; batch of 1 (the first
 *       N queries) exact and IVF per nprobe, for each IVF first pass (fp32: rows of mode "ivf";
 *       int8 / bf16 at each rescore C: mode "ivf-int8-cC", model/quant.h). Prints TSV rows:
 *         meta   <key> <value>
 *         time   <mode> <batch> <threads> <nprobe> <queries> <wall s> <cpu s>
 *         recall <batch> <nprobe> <recall@K vs exact>           (fp32 IVF)
 *         qrecall <mode> <batch> <nprobe> <recall@K vs exact>   (int8 / bf16 IVF)
 *       --fanout: at a thread setting t > 1 the IVF rows run the model's split (each half of a
 *       batch's queries on its own thread over single-threaded BLAS, as the worker's [model]
 *       threads = 2 does); the exact and GEMM rows stay on t BLAS threads, their best setting.
 *
 *   bench_scale score --data DIR --keyphrases FILE [--queries Q] [--batches "256"] [--k K]
 *                     [--threads "1 2"] [--rounds R] [--model PATH] [--fanout]
 *       The scoring a worker does, on the worker's own build (kp_follower_build over FILE: the
 *       real inventory, or OUT/keys.tsv of `embed`): Q titles (the second half of DIR/items.tsv,
 *       the same titles `embed` takes its queries from) in batches of b through kp_rec_suggest
 *       (featurize, item tower, exact retrieval, top-K suggestion lists); and in the same process
 *       the GEMM alone (the sgemm of the same batches' item embeddings against the same key matrix,
 *       key blocks as in the exact pass), the item tower alone (featurize + embed) and the
 *       retrieval alone (kp_index_topk on those embeddings). R rounds, each over every (threads,
 *       batch), the order of score and gemm alternating round by round. Prints meta rows and
 *         time   <mode> <batch> <threads> 0 <titles> <wall s> <cpu s>   (mode
 * score|gemm|tower|topk)
 *       --fanout: at a thread setting t > 1 the scoring, the tower and the retrieval run the
 *       model's own two-way split (a row labelled t > 2 is still two-way) (kp_par_threads,
 * model/blas.h: the batch's embedding chunks, the queries of the top-k) over single-threaded
 * BLAS, and so does the GEMM alone (the same halves of each batch, gemm_pass_split); OpenBLAS's own
 * threads are not used (meta fanout 1). (A GEMM on OpenBLAS's threads beside it would leave them
 * spinning into the next pass.)
 *
 *   bench_scale rss --out OUT [--model PATH] [--nprobe P] [--nlist L] [--first-pass F]
 *                   [--rescore C]
 *       The worker's build of its recommender (kp_follower_build: model copy, inventory load,
 *       embedding, index, IVF when P > 0) over OUT/keys.tsv; prints meta rows with VmRSS and
 *       VmHWM (kB) after the build and the raw sizes (model parameters, index matrix).
 * Exit status: 0 ok, 1 runtime error, 2 usage error.
 */
#include <cblas.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/config.h"
#include "common/util.h"
#include "consumer/follow.h"
#include "model/bienc.h"
#include "model/blas.h"
#include "model/ckpt.h"
#include "model/index.h"
#include "model/quant.h"
#include "model/recommender.h"
#include "model/rng.h"
#include "model/tsv.h"

#define MAX_LIST 8

typedef struct {
    const char *data, *out, *model, *kpfile;
    int keys, queries, k, nlist, single, nprobe1, rounds, fanout;
    double noise;
    uint64_t seed;
    int batches[MAX_LIST], nb, threads[MAX_LIST], nt, nprobe[MAX_LIST], nn;
    int fp[MAX_LIST], nfp, rs[MAX_LIST], nrs; /* IVF first passes (kp_quant_kind), rescore */
} opts;

static double now_s(void)
{
    return 1e-6 * (double)kp_mono_us();
}

/* CPU seconds of the process (all threads): with the machine shared, wall time also counts the
 * time the process waited for a core; both are reported. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double g_cpu0; /* cpu_s() at the start of the last timed pass */

static int write_file(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    size_t w = f ? fwrite(p, 1, bytes, f) : 0;
    if (!f || fclose(f) != 0 || w != bytes) {
        fprintf(stderr, "bench_scale: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

static void *read_file(const char *dir, const char *name, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    void *p = f ? malloc(bytes ? bytes : 1) : NULL;
    if (p && fread(p, 1, bytes, f) != bytes) free(p), p = NULL;
    if (f) fclose(f);
    if (!p) fprintf(stderr, "bench_scale: cannot read %zu bytes of %s\n", bytes, path);
    return p;
}

static kp_bienc *model_open(const char *path, uint64_t seed)
{
    char err[256];
    if (path && path[0]) {
        kp_bienc *m = kp_bienc_load(path, err, sizeof(err));
        if (!m) fprintf(stderr, "bench_scale: %s: %s\n", path, err);
        return m;
    }
    kp_bienc_config c;
    kp_bienc_config_default(&c);
    return kp_bienc_new(&c, seed);
}

/* ---- embed ----------------------------------------------------------------------------------- */

static int cmd_embed(const opts *o)
{
    int rc = 1;
    kp_texts items = {0}, kps = {0};
    kp_bienc *m = NULL;
    float *base = NULL, *keys = NULL, *qv = NULL;
    const char **bt = NULL;
    FILE *tsv = NULL;
    char err[256], path[4096];
    snprintf(path, sizeof(path), "%s/items.tsv", o->data);
    if (kp_texts_load(path, &items, err, sizeof(err))) goto load_err;
    snprintf(path, sizeof(path), "%s/keyphrases.tsv", o->data);
    if (kp_texts_load(path, &kps, err, sizeof(err))) goto load_err;
    int half = items.n / 2, nbase = kps.n + half, Q = o->queries, N = o->keys;
    if (items.n - half < Q || N < nbase) {
        fprintf(stderr, "bench_scale: need --queries <= %d and --keys >= %d\n", items.n - half,
                nbase);
        goto err;
    }
    if (!(m = model_open(o->model, o->seed))) goto err;
    int D = kp_bienc_cfg(m)->out_dim;
    bt = malloc(sizeof(char *) * (size_t)nbase);
    base = malloc(sizeof(float) * (size_t)nbase * D);
    keys = malloc(sizeof(float) * (size_t)N * D);
    qv = malloc(sizeof(float) * (size_t)Q * D);
    if (!bt || !base || !keys || !qv) goto oom;
    for (int i = 0; i < nbase; i++)
        bt[i] = i < kps.n ? kps.text[i] : items.text[i - kps.n];
    for (int i = 0; i < nbase; i += 4096) {
        int c = nbase - i < 4096 ? nbase - i : 4096;
        if (kp_bienc_embed(m, KP_TOWER_KEY, bt + i, NULL, c, base + (size_t)i * D)) goto oom;
    }
    if (kp_bienc_embed(m, KP_TOWER_ITEM, (const char *const *)items.text + half, NULL, Q, qv))
        goto oom;
    snprintf(path, sizeof(path), "%s/keys.tsv", o->out);
    if (!(tsv = fopen(path, "w"))) goto write_err;
    fprintf(tsv, "keyphrase_id\tkeyphrase\n");
    kp_rng r;
    kp_rng_seed(&r, o->seed);
    float sd = (float)(o->noise / sqrt((double)D));
    for (int i = 0; i < N; i++) {
        int b = i < nbase ? i : (int)kp_rng_below(&r, (uint64_t)nbase);
        float *x = keys + (size_t)i * D;
        double s = 0;
        for (int j = 0; j < D; j++) {
            x[j] = base[(size_t)b * D + j] + (i < nbase ? 0.0f : sd * kp_rng_normal(&r));
            s += (double)x[j] * x[j];
        }
        for (int j = 0; j < D; j++)
            x[j] = s > 0 ? (float)(x[j] / sqrt(s)) : 0.0f;
        fprintf(tsv, "k%d\t%s v%d\n", i, bt[b], i);
    }
    if (fclose(tsv) != 0) {
        tsv = NULL;
        goto write_err;
    }
    tsv = NULL;
    char dims[64];
    int dl = snprintf(dims, sizeof(dims), "%d %d %d\n", Q, N, D);
    if (write_file(o->out, "keys.f32", keys, sizeof(float) * (size_t)N * D) ||
        write_file(o->out, "queries.f32", qv, sizeof(float) * (size_t)Q * D) ||
        write_file(o->out, "dims.txt", dims, (size_t)dl))
        goto err;
    printf("embedded %d bases (%d keyphrases + %d titles) -> %d keys (noise %.2f), %d queries, "
           "D=%d, model %s\n",
           nbase, kps.n, half, N, o->noise, Q, D, o->model ? o->model : "(seeded)");
    rc = 0;
    goto err;
load_err:
    fprintf(stderr, "bench_scale: %s: %s\n", path, err);
    goto err;
write_err:
    fprintf(stderr, "bench_scale: cannot write %s\n", path);
    goto err;
oom:
    fprintf(stderr, "bench_scale: out of memory / embedding failed\n");
err:
    if (tsv) fclose(tsv);
    KP_FREE_ALL(bt, base, keys, qv);
    kp_bienc_free(m);
    kp_texts_free(&items);
    kp_texts_free(&kps);
    return rc;
}

/* ---- search ---------------------------------------------------------------------------------- */

/* Seconds for the first nq queries in batches of b, or -1 on error. */
static double pass(const kp_index *ix, const float *q, int nq, int D, int b, int k, int *ids,
                   float *sc, int *cnt)
{
    g_cpu0 = cpu_s();
    double t0 = now_s();
    for (int q0 = 0; q0 < nq; q0 += b) {
        int nb = nq - q0 < b ? nq - q0 : b;
        size_t o = (size_t)q0 * k;
        if (kp_index_topk(ix, q + (size_t)q0 * D, nb, k, -INFINITY, 0, ids + o, sc + o, cnt + q0))
            return -1.0;
    }
    return now_s() - t0;
}

/* The sgemm calls of the exact pass alone (same tiles: query tile b, key block 1024). */
static double gemm_pass(const float *q, int nq, const float *keys, int n, int D, int b, float *S)
{
    g_cpu0 = cpu_s();
    double t0 = now_s();
    for (int q0 = 0; q0 < nq; q0 += b) {
        int nb = nq - q0 < b ? nq - q0 : b;
        for (int j0 = 0; j0 < n; j0 += KP_INDEX_DEFAULT_KEY_BLOCK) {
            int nk = n - j0 < KP_INDEX_DEFAULT_KEY_BLOCK ? n - j0 : KP_INDEX_DEFAULT_KEY_BLOCK;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, nk, D, 1.0f,
                        q + (size_t)q0 * D, D, keys + (size_t)j0 * D, D, 0.0f, S, nk);
        }
    }
    return now_s() - t0;
}

typedef struct {
    const float *q, *keys;
    int n, D;
    float *S;
} gemm_job;

/* Queries [lo, hi) of one batch against every key block (a kp_parallel_for range); range t writes
 * S rows from t * half on. */
static int gemm_range(void *ctx, int t, int lo, int hi)
{
    const gemm_job *j = ctx;
    float *S = j->S + (size_t)lo * KP_INDEX_DEFAULT_KEY_BLOCK;
    (void)t;
    for (int j0 = 0; j0 < j->n; j0 += KP_INDEX_DEFAULT_KEY_BLOCK) {
        int nk = j->n - j0 < KP_INDEX_DEFAULT_KEY_BLOCK ? j->n - j0 : KP_INDEX_DEFAULT_KEY_BLOCK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, hi - lo, nk, j->D, 1.0f,
                    j->q + (size_t)lo * j->D, j->D, j->keys + (size_t)j0 * j->D, j->D, 0.0f, S, nk);
    }
    return 0;
}

/* gemm_pass as the model's split runs it (kp_par_threads: each batch's queries in two halves on
 * two threads, single-threaded BLAS); S holds [b x key block] floats. */
static double gemm_pass_split(const float *q, int nq, const float *keys, int n, int D, int b,
                              float *S)
{
    g_cpu0 = cpu_s();
    double t0 = now_s();
    for (int q0 = 0; q0 < nq; q0 += b) {
        int nb = nq - q0 < b ? nq - q0 : b;
        gemm_job j = {q + (size_t)q0 * D, keys, n, D, S};
        kp_parallel_for(2, nb, gemm_range, &j);
    }
    return now_s() - t0;
}

static double recall(const int *got, const int *exact, int nq, int k)
{
    double sum = 0;
    for (int i = 0; i < nq; i++) {
        int hit = 0, ne = 0;
        for (int a = 0; a < k; a++) {
            int e = exact[(size_t)i * k + a];
            if (e < 0) continue;
            ne++;
            for (int b = 0; b < k; b++)
                hit += got[(size_t)i * k + b] == e;
        }
        sum += ne ? (double)hit / ne : 1.0;
    }
    return nq ? sum / nq : 1.0;
}

static void row(const char *mode, int b, int t, int np, int nq, double s)
{
    printf("time\t%s\t%d\t%d\t%d\t%d\t%.6f\t%.6f\n", mode, b, t, np, nq, s, cpu_s() - g_cpu0);
    fflush(stdout);
}

/* The IVF rows of one first pass (mode) at every nprobe: per (threads, batch) the time and, at
 * the first thread setting, recall@k vs exact ("recall" rows for fp32, "qrecall <mode>" else). */
static int ivf_curve(const opts *o, kp_index *ix, const char *mode, const float *q, int nq, int D,
                     int k, int single, const int *exact, int *ids, float *sc, int *cnt)
{
    int fp32 = !strcmp(mode, "ivf");
    for (int ni = 0; ni < o->nn; ni++) {
        int np = o->nprobe[ni];
        kp_index_set_nprobe(ix, np);
        for (int ti = 0; ti < o->nt; ti++) {
            /* --fanout: above one thread the IVF runs as the worker's [model] threads = t does,
             * each half of a batch's queries on its own thread (kp_index_topk's split); without
             * it, on t BLAS threads (which the int8 pass does not use) */
            int t = o->threads[ti], fan = o->fanout && t > 1;
            kp_blas_set_threads(fan ? 1 : t);
            kp_par_set_threads(fan ? t : 1);
            for (int bi = 0; bi <= o->nb; bi++) {
                int b = bi == o->nb ? 1 : o->batches[bi] < 256 ? o->batches[bi] : 256;
                int n = b == 1 ? single : nq;
                if (b > 1 && pass(ix, q, b < nq ? b : nq, D, b, k, ids, sc, cnt) < 0) return -1;
                double s = pass(ix, q, n, D, b, k, ids, sc, cnt);
                if (s < 0) return -1;
                row(mode, b, o->threads[ti], np, n, s);
                if (ti > 0) continue;
                if (fp32)
                    printf("recall\t%d\t%d\t%.4f\n", b, np, recall(ids, exact, n, k));
                else
                    printf("qrecall\t%s\t%d\t%d\t%.4f\n", mode, b, np, recall(ids, exact, n, k));
            }
        }
    }
    kp_par_set_threads(1);
    return 0;
}

static int cmd_search(const opts *o)
{
    int rc = 1, nq = 0, nk = 0, D = 0;
    float *q = NULL, *keys = NULL, *sc = NULL, *S = NULL;
    int *ids = NULL, *cnt = NULL, *exact = NULL;
    kp_index *ix = NULL;
    char path[4096];
    snprintf(path, sizeof(path), "%s/dims.txt", o->out);
    FILE *f = fopen(path, "r");
    int got = f ? fscanf(f, "%d %d %d", &nq, &nk, &D) : 0;
    if (f) fclose(f);
    if (got != 3 || nq <= 0 || nk <= 0 || D <= 0) {
        fprintf(stderr, "bench_scale: cannot read %s (run embed first)\n", path);
        return 1;
    }
    if (o->queries > 0 && o->queries < nq) nq = o->queries;
    int k = o->k, single = o->single < nq ? o->single : nq;
    q = read_file(o->out, "queries.f32", sizeof(float) * (size_t)nq * D);
    keys = read_file(o->out, "keys.f32", sizeof(float) * (size_t)nk * D);
    ids = malloc(sizeof(int) * (size_t)nq * k);
    exact = malloc(sizeof(int) * (size_t)nq * k);
    cnt = malloc(sizeof(int) * (size_t)nq);
    sc = malloc(sizeof(float) * (size_t)nq * k);
    S = malloc(sizeof(float) * 256 * KP_INDEX_DEFAULT_KEY_BLOCK);
    if (!q || !keys || !ids || !exact || !cnt || !sc || !S) goto err;
    ix = kp_index_new(keys, nk, D, NULL);
    free(keys); /* the index holds its copy */
    keys = NULL;
    if (!ix) goto err;
    const float *K = kp_index_row(ix, 0);
    printf("meta\topenblas_corename\t%s\nmeta\topenblas_config\t%s\n", openblas_get_corename(),
           openblas_get_config());
    printf("meta\tqueries\t%d\nmeta\tkeys\t%d\nmeta\tdim\t%d\nmeta\tk\t%d\nmeta\tsingle\t%d\n", nq,
           nk, D, k, single);
    /* exact and GEMM-only; the exact ids of the first setting are the recall reference */
    int have = 0;
    for (int ti = 0; ti < o->nt; ti++) {
        kp_blas_set_threads(o->threads[ti]);
        for (int bi = 0; bi < o->nb; bi++) {
            int b = o->batches[bi] < 256 ? o->batches[bi] : 256;
            if (pass(ix, q, b < nq ? b : nq, D, b, k, ids, sc, cnt) < 0) goto err; /* warm-up */
            double s = pass(ix, q, nq, D, b, k, ids, sc, cnt);
            if (s < 0) goto err;
            row("exact", b, o->threads[ti], 0, nq, s);
            if (!have) memcpy(exact, ids, sizeof(int) * (size_t)nq * k), have = 1;
            row("gemm", b, o->threads[ti], 0, nq, gemm_pass(q, nq, K, nk, D, b, S));
        }
        double s = pass(ix, q, single, D, 1, k, ids, sc, cnt);
        if (s < 0) goto err;
        row("exact", 1, o->threads[ti], 0, single, s);
    }
    /* IVF: build once, then every nprobe */
    kp_blas_set_threads(o->threads[o->nt - 1]);
    double t0 = now_s();
    if (kp_index_set_ivf(ix, o->nlist, 1, o->seed) != 0) goto err;
    const kp_ivf *v = kp_index_ivf(ix);
    int L = kp_ivf_nlist(v), maxl = 0;
    for (int l = 0; l < L; l++)
        maxl = kp_ivf_list_size(v, l) > maxl ? kp_ivf_list_size(v, l) : maxl;
    printf("meta\tivf_build_s\t%.3f\nmeta\tivf_nlist\t%d\nmeta\tivf_max_list\t%d\n", now_s() - t0,
           L, maxl);
    /* every first pass (fp32: mode "ivf"; int8 / bf16 at each rescore: "ivf-int8-c4", ...) */
    for (int fi = 0; fi < o->nfp; fi++)
        for (int ci = 0; ci < (o->fp[fi] == KP_QUANT_FP32 ? 1 : o->nrs); ci++) {
            char mode[32] = "ivf";
            if (o->fp[fi] != KP_QUANT_FP32)
                snprintf(mode, sizeof(mode), "ivf-%s-c%d", kp_quant_name(o->fp[fi]), o->rs[ci]);
            t0 = now_s();
            if (kp_index_set_first_pass(ix, o->fp[fi], o->fp[fi] ? o->rs[ci] : 1) != 0) goto err;
            const kp_quant *z = kp_index_quant(ix);
            if (z)
                printf("meta\tquant_build_s\t%s\t%.3f\nmeta\tquant_bytes\t%s\t%zu\n"
                       "meta\tquant_kernel\t%s\t%s\n",
                       mode, now_s() - t0, mode, kp_quant_bytes(z), mode, kp_quant_kernel(z));
            if (ivf_curve(o, ix, mode, q, nq, D, k, single, exact, ids, sc, cnt)) goto err;
        }
    rc = 0;
err:
    if (rc) fprintf(stderr, "bench_scale: search failed (load, allocation or kp_index_topk)\n");
    KP_FREE_ALL(q, keys, ids, exact, cnt, sc, S);
    kp_index_free(ix);
    return rc;
}

/* ---- score ----------------------------------------------------------------------------------- */

/* kp_rec_suggest over nq titles in batches of b (the worker's scoring), seconds or -1. */
static double score_pass(kp_recommender *r, const char *const *t, const size_t *lens, int nq, int b,
                         int k, kp_rec_suggestion *out, int *cnt)
{
    g_cpu0 = cpu_s();
    double t0 = now_s();
    for (int q0 = 0; q0 < nq; q0 += b) {
        int nb = nq - q0 < b ? nq - q0 : b;
        if (kp_rec_suggest(r, t + q0, lens + q0, nb, k, -1.0f, out + (size_t)q0 * k, cnt + q0))
            return -1.0;
    }
    return now_s() - t0;
}

/* The item tower alone (featurize + embed) over nq titles in batches of b, seconds or -1. */
static double tower_pass(const kp_bienc *m, const char *const *t, const size_t *lens, int nq, int b,
                         int D, float *q)
{
    g_cpu0 = cpu_s();
    double t0 = now_s();
    for (int q0 = 0; q0 < nq; q0 += b) {
        int nb = nq - q0 < b ? nq - q0 : b;
        if (kp_bienc_embed(m, KP_TOWER_ITEM, t + q0, lens + q0, nb, q + (size_t)q0 * D)) return -1;
    }
    return now_s() - t0;
}

static int cmd_score(const opts *o)
{
    int rc = 1;
    kp_config c;
    kp_texts items = {0};
    kp_bienc *m = NULL;
    kp_recommender *r = NULL;
    size_t *lens = NULL;
    kp_rec_suggestion *out = NULL;
    float *q = NULL, *S = NULL, *sc = NULL;
    int *cnt = NULL, *ids = NULL;
    char err[512], path[4096];
    kp_config_defaults(&c);
    snprintf(path, sizeof(path), "%s/items.tsv", o->data);
    if (kp_texts_load(path, &items, err, sizeof(err))) {
        fprintf(stderr, "bench_scale: %s: %s\n", path, err);
        goto err;
    }
    int half = items.n / 2, nq = o->queries, k = o->k;
    if (items.n - half < nq) {
        fprintf(stderr, "bench_scale: need --queries <= %d\n", items.n - half);
        goto err;
    }
    const char *const *titles = (const char *const *)items.text + half;
    snprintf(c.model_keyphrases, sizeof(c.model_keyphrases), "%s", o->kpfile);
    if (!(m = model_open(o->model, o->seed))) goto err;
    kp_blas_set_threads(o->threads[o->nt - 1]);
    double t0 = now_s();
    if (!(r = kp_follower_build(&c, m, err, sizeof(err)))) {
        fprintf(stderr, "bench_scale: score: %s\n", err);
        goto err;
    }
    double build = now_s() - t0;
    const kp_index *ix = kp_rec_index(r);
    int n = kp_rec_size(r), D = kp_bienc_cfg(m)->out_dim;
    lens = malloc(sizeof(size_t) * (size_t)nq);
    out = malloc(sizeof(*out) * (size_t)nq * k);
    cnt = malloc(sizeof(int) * (size_t)nq);
    ids = malloc(sizeof(int) * (size_t)nq * k);
    sc = malloc(sizeof(float) * (size_t)nq * k);
    q = malloc(sizeof(float) * (size_t)nq * D);
    S = malloc(sizeof(float) * 256 * KP_INDEX_DEFAULT_KEY_BLOCK);
    if (!lens || !out || !cnt || !ids || !sc || !q || !S) goto oom;
    size_t chars = 0;
    for (int i = 0; i < nq; i++)
        chars += lens[i] = strlen(titles[i]);
    printf("meta\topenblas_corename\t%s\nmeta\topenblas_config\t%s\n", openblas_get_corename(),
           openblas_get_config());
    printf(
        "meta\tkeyphrases\t%d\nmeta\tkeyphrase_file\t%s\nmeta\ttitles\t%d\nmeta\ttitle_chars\t%."
        "1f\nmeta\tdim\t%d\nmeta\tk\t%d\nmeta\tbuild_s\t%.3f\nmeta\tmodel\t%s\nmeta\tfanout\t%d\n",
        n, o->kpfile, nq, (double)chars / nq, D, k, build, o->model ? o->model : "(seeded)",
        o->fanout);
    for (int rd = 0; rd < o->rounds; rd++)
        for (int ti = 0; ti < o->nt; ti++) {
            int t = o->threads[ti], fan = o->fanout && t > 1;
            /* --fanout: the model's own split (kp_par_threads, model/blas.h) over single-threaded
             * BLAS */
            kp_blas_set_threads(fan ? 1 : t);
            kp_par_set_threads(fan ? t : 1);
            for (int bi = 0; bi < o->nb; bi++) {
                int b = o->batches[bi] < 256 ? o->batches[bi] : 256;
                if (rd == 0 && score_pass(r, titles, lens, b < nq ? b : nq, b, k, out, cnt) < 0)
                    goto oom; /* warm-up */
                /* the embeddings the GEMM and the retrieval alone are timed on */
                double tw = tower_pass(kp_rec_model(r), titles, lens, nq, b, D, q);
                if (tw < 0) goto oom;
                row("tower", b, t, 0, nq, tw);
                for (int side = 0; side < 2; side++) {
                    if ((side == 0) == (rd % 2 == 0)) {
                        double s = score_pass(r, titles, lens, nq, b, k, out, cnt);
                        if (s < 0) goto oom;
                        row("score", b, t, 0, nq, s);
                    } else {
                        const float *K = kp_index_row(ix, 0);
                        row("gemm", b, t, 0, nq,
                            fan ? gemm_pass_split(q, nq, K, n, D, b, S)
                                : gemm_pass(q, nq, K, n, D, b, S));
                    }
                }
                double s = pass(ix, q, nq, D, b, k, ids, sc, cnt);
                if (s < 0) goto oom;
                row("topk", b, t, 0, nq, s);
            }
        }
    rc = 0;
    goto err;
oom:
    fprintf(stderr, "bench_scale: score: out of memory or the pipeline failed\n");
err:
    KP_FREE_ALL(lens, out, cnt, ids, sc, q, S);
    kp_rec_free(r);
    kp_bienc_free(m);
    kp_texts_free(&items);
    kp_config_free(&c);
    return rc;
}

/* ---- rss ------------------------------------------------------------------------------------- */

/* The kB value of "<field>:" in /proc/self/status, or -1. */
static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t fl = strlen(field);
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, field, fl) && line[fl] == ':') v = strtol(line + fl + 1, NULL, 10);
    if (f) fclose(f);
    return v;
}

static int cmd_rss(const opts *o)
{
    kp_config c;
    char err[512], num[32];
    kp_config_defaults(&c);
    snprintf(c.model_keyphrases, sizeof(c.model_keyphrases), "%s/keys.tsv", o->out);
    snprintf(num, sizeof(num), "%d", o->nprobe1);
    int rc = kp_config_set(&c, "model", "ivf_nprobe", num, err, sizeof(err));
    snprintf(num, sizeof(num), "%d", o->nlist);
    rc = rc ? rc : kp_config_set(&c, "model", "ivf_nlist", num, err, sizeof(err));
    rc = rc ? rc
            : kp_config_set(&c, "model", "ivf_first_pass", kp_quant_name(o->fp[0]), err,
                            sizeof(err));
    snprintf(num, sizeof(num), "%d", o->rs[0]);
    rc = rc ? rc : kp_config_set(&c, "model", "ivf_rescore", num, err, sizeof(err));
    kp_bienc *m = rc ? NULL : model_open(o->model, o->seed);
    long base_kb = status_kb("VmRSS");
    double t0 = now_s();
    kp_recommender *r = m ? kp_follower_build(&c, m, err, sizeof(err)) : NULL;
    if (!r) {
        fprintf(stderr, "bench_scale: rss: %s\n", rc ? err : m ? err : "model");
        kp_bienc_free(m);
        kp_config_free(&c);
        return 1;
    }
    size_t params = 0;
    for (int t = 0; t < kp_bienc_n_towers(m); t++)
        for (int p = 0; p < KP_BIENC_NPARAM; p++) {
            size_t rows = 0, cols = 0;
            kp_bienc_param_c(m, (kp_tower)t, (kp_bienc_param_id)p, &rows, &cols);
            params += rows * cols;
        }
    size_t n = (size_t)kp_rec_size(r), D = (size_t)kp_bienc_cfg(m)->out_dim;
    printf("meta\tbuild_s\t%.3f\nmeta\tkeyphrases\t%zu\nmeta\tnprobe\t%d\n", now_s() - t0, n,
           o->nprobe1);
    size_t qbytes = kp_rec_quant_bytes(r);
    printf("meta\tmodel_bytes\t%zu\nmeta\tindex_bytes\t%zu\n", params * sizeof(float),
           n * D * sizeof(float) + qbytes);
    printf("meta\tfirst_pass\t%s\nmeta\tquant_bytes\t%zu\n", kp_quant_name(o->fp[0]), qbytes);
    printf("meta\trss_before_kb\t%ld\nmeta\trss_kb\t%ld\nmeta\thwm_kb\t%ld\n", base_kb,
           status_kb("VmRSS"), status_kb("VmHWM"));
    kp_rec_free(r);
    kp_bienc_free(m);
    kp_config_free(&c);
    return 0;
}

/* ---- main ------------------------------------------------------------------------------------ */

static int parse_list(const char *s, int *out)
{
    int n = 0;
    char *end;
    while (*s && n < MAX_LIST) {
        while (*s == ' ' || *s == ',')
            s++;
        if (!*s) break;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0 || v > 1 << 24) return -1;
        out[n++] = (int)v;
        s = end;
    }
    return n;
}

/* "fp32 int8 bf16" -> kinds; -1 on an unknown word. */
static int parse_kinds(const char *s, int *out)
{
    int n = 0;
    char w[16];
    while (*s && n < MAX_LIST) {
        while (*s == ' ' || *s == ',')
            s++;
        size_t m = strcspn(s, " ,");
        if (!m) break;
        if (m >= sizeof(w)) return -1;
        memcpy(w, s, m), w[m] = 0;
        if ((out[n++] = kp_quant_parse(w)) < 0) return -1;
        s += m;
    }
    return n;
}

static int int_opt(const char *s, int lo)
{
    int v;
    return kp_parse_int(s, lo, INT_MAX, &v) == 0 ? v : -1;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: bench_scale embed --data DIR --out OUT [--keys N] [--queries Q] [--noise S]\n"
        "                         [--model PATH] [--seed S]\n"
        "       bench_scale search --out OUT [--k K] [--batches \"64 256\"] [--threads "
        "\"1 2\"]\n"
        "                          [--nprobe \"4 8 16 32 64\"] [--nlist L] [--single N] "
        "[--queries Q]\n"
        "                          [--first-pass \"fp32 int8 bf16\"] [--rescore \"2 4\"] "
        "[--fanout]\n"
        "       bench_scale score --data DIR --keyphrases FILE [--queries Q] [--batches \"256\"]\n"
        "                         [--k K] [--threads \"1 2\"] [--rounds R] [--model PATH]\n"
        "       bench_scale rss --out OUT [--model PATH] [--nprobe P] [--nlist L]\n"
        "                       [--first-pass F] [--rescore C]\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    opts o = {.keys = 1000000,
              .queries = 0,
              .k = 50,
              .nlist = 0,
              .single = 100,
              .noise = 0.6,
              .rounds = 5,
              .seed = 42};
    const char *batches = "64 256", *threads = "1 2", *nprobe = "4 8 16 32 64";
    const char *first = "fp32", *rescore = "4";
    static const struct option lo[] = {{"data", required_argument, 0, 'd'},
                                       {"out", required_argument, 0, 'o'},
                                       {"keys", required_argument, 0, 'n'},
                                       {"queries", required_argument, 0, 'q'},
                                       {"noise", required_argument, 0, 'z'},
                                       {"model", required_argument, 0, 'm'},
                                       {"seed", required_argument, 0, 's'},
                                       {"k", required_argument, 0, 'k'},
                                       {"batches", required_argument, 0, 'b'},
                                       {"threads", required_argument, 0, 't'},
                                       {"nprobe", required_argument, 0, 'p'},
                                       {"nlist", required_argument, 0, 'l'},
                                       {"single", required_argument, 0, '1'},
                                       {"keyphrases", required_argument, 0, 'K'},
                                       {"rounds", required_argument, 0, 'r'},
                                       {"first-pass", required_argument, 0, 'f'},
                                       {"rescore", required_argument, 0, 'c'},
                                       {"fanout", no_argument, 0, 'F'},
                                       {0, 0, 0, 0}};
    int c, bad = 0;
    optind = 2;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'd':
            o.data = optarg;
            break;
        case 'o':
            o.out = optarg;
            break;
        case 'n':
            bad |= (o.keys = int_opt(optarg, 1)) < 0;
            break;
        case 'q':
            bad |= (o.queries = int_opt(optarg, 1)) < 0;
            break;
        case 'z':
            bad |= kp_parse_double(optarg, 0, 100, &o.noise) != 0;
            break;
        case 'm':
            o.model = optarg;
            break;
        case 's':
            o.seed = strtoull(optarg, NULL, 10);
            break;
        case 'k':
            bad |= (o.k = int_opt(optarg, 1)) < 0;
            break;
        case 'b':
            batches = optarg;
            break;
        case 't':
            threads = optarg;
            break;
        case 'p':
            nprobe = optarg;
            break;
        case 'l':
            bad |= (o.nlist = int_opt(optarg, 0)) < 0;
            break;
        case '1':
            bad |= (o.single = int_opt(optarg, 1)) < 0;
            break;
        case 'K':
            o.kpfile = optarg;
            break;
        case 'r':
            bad |= (o.rounds = int_opt(optarg, 1)) < 0;
            break;
        case 'f':
            first = optarg;
            break;
        case 'c':
            rescore = optarg;
            break;
        case 'F':
            o.fanout = 1;
            break;
        default:
            bad = 1;
        }
    }
    o.nb = parse_list(batches, o.batches);
    o.nt = parse_list(threads, o.threads);
    o.nn = parse_list(nprobe, o.nprobe);
    o.nprobe1 = o.nn > 0 ? o.nprobe[0] : 0;
    o.nfp = parse_kinds(first, o.fp);
    o.nrs = parse_list(rescore, o.rs);
    if (!strcmp(argv[1], "rss") && !strcmp(nprobe, "0")) o.nprobe1 = 0, o.nn = 1;
    if (!strcmp(argv[1], "score")) {
        if (bad || !o.data || !o.kpfile || o.nb <= 0 || o.nt <= 0) {
            fprintf(stderr, "bench_scale: score needs --data DIR --keyphrases FILE (or a bad "
                            "number/list)\n");
            return 2;
        }
        if (!o.queries) o.queries = 4096;
        return cmd_score(&o);
    }
    if (bad || !o.out || o.nb <= 0 || o.nt <= 0 || o.nn <= 0 || o.nfp <= 0 || o.nrs <= 0) {
        fprintf(stderr, "bench_scale: missing --out or a bad number/list\n");
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "embed")) {
        if (!o.data) {
            fprintf(stderr, "bench_scale: embed needs --data DIR\n");
            return 2;
        }
        if (!o.queries) o.queries = 1024;
        return cmd_embed(&o);
    }
    if (!strcmp(argv[1], "search")) return cmd_search(&o);
    if (!strcmp(argv[1], "rss")) return cmd_rss(&o);
    fprintf(stderr, "bench_scale: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
