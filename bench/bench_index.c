/* bench_index.c - retrieval speed of kp_index_topk (driven by bench/retrieval.sh).
 *
 *   bench_index embed  --data DIR --out OUT [--items N] [--seed S]
 *       Embeds the first N titles of DIR/items.tsv and every keyphrase of DIR/keyphrases.tsv with
 *       a seeded (untrained) bi-encoder (default config, D=128) and writes raw row-major float32
 *       OUT/items.f32 [N x D], OUT/keys.f32 [n_keys x D], OUT/keys.dedup.u64 [n_keys]
 *       (kp_feat_tokenset_key, the worker's de-dup keys) and OUT/dims.txt ("N n_keys D").
 *
 *   bench_index search --out OUT [--k K] [--reps R] [--threads "1 2"] [--batches "256 8192"]
 *                      [--only exact|prefix|dedup|gemm]
 *       Loads those files and times one pass of kp_index_topk over all queries for every
 *       (batch, threads) pair: exact; at the smallest batch also the Matryoshka prefix pass
 *       (32, 64; rescored at full size) and exact with de-dup keys (the worker's setting), plus
 *       a GEMM-only diagnostic (the sgemm calls alone). Each pass follows a warm-up on one batch
 *       and is repeated R times (retrieval.sh runs R=1 per process and alternates kprec and
 *       the peer round by round, so that background load hits both alike). --only runs one
 *       kind (for perf record); the ids are then written only if exact ran.
 *       Prints TSV rows to stdout:
 *         meta   <key> <value>
 *         time   <side> <mode> <batch> <threads> <seconds for all queries>
 *         recall <mode> <recall@k vs exact>
 *       and writes OUT/ids_kprec.i32, OUT/scores_kprec.f32 [n_items x K] (exact, batch 256,
 *       first thread count) for the comparison with the peer.
 * Exit status: 0 ok, 1 runtime error, 2 usage error.
 */
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/util.h"
#include "model/bienc.h"
#include "model/blas.h"
#include "model/featurize.h"
#include "model/index.h"
#include "model/tsv.h"

#define MAX_LIST 8

static double now_s(void)
{
    return 1e-6 * (double)kp_mono_us();
}

/* A positive int option, or -1 (refused below with the usage) when it is not one. */
static int opt_int(const char *s)
{
    int v;
    return kp_parse_int(s, 1, INT_MAX, &v) == 0 ? v : -1;
}

static long maxrss_kb(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

static int write_raw(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "bench_index: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t w = fwrite(p, 1, bytes, f);
    if (fclose(f) != 0 || w != bytes) {
        fprintf(stderr, "bench_index: short write to %s\n", path);
        return -1;
    }
    return 0;
}

/* Reads exactly bytes from dir/name into a new buffer (caller frees); NULL on error. */
static void *read_raw(const char *dir, const char *name, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_index: cannot read %s: %s\n", path, strerror(errno));
        return NULL;
    }
    void *p = malloc(bytes ? bytes : 1);
    if (p && fread(p, 1, bytes, f) != bytes) {
        fprintf(stderr, "bench_index: %s is shorter than %zu bytes\n", path, bytes);
        free(p);
        p = NULL;
    }
    fclose(f);
    return p;
}

/* ---- embed ----------------------------------------------------------------------------------- */

static int cmd_embed(const char *data, const char *out, int n_items, uint64_t seed)
{
    int rc = 1;
    kp_texts items = {0}, keys = {0};
    kp_bienc *m = NULL;
    float *ei = NULL, *ek = NULL;
    uint64_t *dk = NULL;
    char err[256], path[4096];

    snprintf(path, sizeof(path), "%s/items.tsv", data);
    if (kp_texts_load(path, &items, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_index: %s: %s\n", path, err);
        goto err;
    }
    snprintf(path, sizeof(path), "%s/keyphrases.tsv", data);
    if (kp_texts_load(path, &keys, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_index: %s: %s\n", path, err);
        goto err;
    }
    if (items.n < n_items) {
        fprintf(stderr, "bench_index: %s has %d items, fewer than --items %d\n", data, items.n,
                n_items);
        goto err;
    }
    kp_bienc_config c;
    kp_bienc_config_default(&c);
    m = kp_bienc_new(&c, seed);
    int D = c.out_dim, nk = keys.n;
    ei = malloc((size_t)n_items * D * sizeof(float));
    ek = malloc((size_t)nk * D * sizeof(float));
    dk = malloc((size_t)nk * sizeof(uint64_t));
    if (!m || !ei || !ek || !dk) {
        fprintf(stderr, "bench_index: out of memory\n");
        goto err;
    }
    if (kp_bienc_embed(m, KP_TOWER_ITEM, (const char *const *)items.text, NULL, n_items, ei) ||
        kp_bienc_embed(m, KP_TOWER_KEY, (const char *const *)keys.text, NULL, nk, ek)) {
        fprintf(stderr, "bench_index: kp_bienc_embed failed\n");
        goto err;
    }
    for (int i = 0; i < nk; i++)
        dk[i] = kp_feat_tokenset_key(keys.text[i], strlen(keys.text[i]));
    if (write_raw(out, "items.f32", ei, (size_t)n_items * D * sizeof(float)) ||
        write_raw(out, "keys.f32", ek, (size_t)nk * D * sizeof(float)) ||
        write_raw(out, "keys.dedup.u64", dk, (size_t)nk * sizeof(uint64_t)))
        goto err;
    char dims[64];
    int dl = snprintf(dims, sizeof(dims), "%d %d %d\n", n_items, nk, D);
    if (write_raw(out, "dims.txt", dims, (size_t)dl)) goto err;
    printf("embedded %d items, %d keyphrases, D=%d (seed %llu)\n", n_items, nk, D,
           (unsigned long long)seed);
    rc = 0;
err:
    free(ei), free(ek), free(dk);
    kp_bienc_free(m);
    kp_texts_free(&items);
    kp_texts_free(&keys);
    return rc;
}

/* ---- search ---------------------------------------------------------------------------------- */

typedef struct {
    const kp_index *ix;
    const float *q;
    int nq, dim, k, batch, prefix;
    int *ids;
    float *scores;
    int *counts;
} run_args;

/* One pass over the first nq queries in batches; wall seconds, or -1 on error. */
static double run_once(const run_args *a, int nq)
{
    double t0 = now_s();
    for (int q0 = 0; q0 < nq; q0 += a->batch) {
        int nb = nq - q0 < a->batch ? nq - q0 : a->batch;
        size_t o = (size_t)q0 * a->k;
        if (kp_index_topk(a->ix, a->q + (size_t)q0 * a->dim, nb, a->k, -INFINITY, a->prefix,
                          a->ids + o, a->scores + o, a->counts + q0) != 0)
            return -1.0;
    }
    return now_s() - t0;
}

/* Warm-up on one batch (at most 256 queries), then reps timed passes over all queries. */
static int time_topk(const run_args *a, const char *mode, int threads, int reps)
{
    run_args w = *a;
    int nw = a->nq < 256 ? a->nq : 256;
    if (w.batch > nw) w.batch = nw;
    if (run_once(&w, nw) < 0) return -1;
    for (int r = 0; r < reps; r++) {
        double s = run_once(a, a->nq);
        if (s < 0) return -1;
        printf("time\tkprec\t%s\t%d\t%d\t%.6f\n", mode, a->batch, threads, s);
        fflush(stdout);
    }
    return 0;
}

/* GEMM-only diagnostic: the sgemm calls of one pass, chunk query rows at a time, into S. */
static double gemm_once(const float *q, int nq, const float *keys, int n, int dim, int chunk,
                        float *S)
{
    double t0 = now_s();
    for (int q0 = 0; q0 < nq; q0 += chunk) {
        int nb = nq - q0 < chunk ? nq - q0 : chunk;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, n, dim, 1.0f, q + (size_t)q0 * dim,
                    dim, keys, dim, 0.0f, S, n);
    }
    return now_s() - t0;
}

/* Mean over queries of |found ∩ exact| / |exact|. */
static double recall_vs(const int *got, const int *exact, int nq, int k)
{
    double sum = 0.0;
    for (int q = 0; q < nq; q++) {
        const int *g = got + (size_t)q * k, *e = exact + (size_t)q * k;
        int ne = 0, hit = 0;
        for (int i = 0; i < k; i++) {
            if (e[i] < 0) continue;
            ne++;
            for (int j = 0; j < k; j++)
                if (g[j] == e[i]) {
                    hit++;
                    break;
                }
        }
        sum += ne ? (double)hit / ne : 1.0;
    }
    return nq ? sum / nq : 1.0;
}

static int parse_list(const char *s, int *out)
{
    int n = 0;
    char *end;
    while (*s && n < MAX_LIST) {
        while (*s == ' ' || *s == ',')
            s++;
        if (!*s) break;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0 || v > 1 << 20) return -1;
        out[n++] = (int)v;
        s = end;
    }
    return n;
}

static int cmd_search(const char *dir, int k, int reps, const int *threads, int n_threads,
                      const int *batches, int n_batches, const char *only)
{
#define RUN(kind) (!only || !strcmp(only, kind))
    int rc = 1, nq = 0, nk = 0, D = 0;
    float *q = NULL, *keys = NULL, *scores = NULL, *S = NULL, *tmp_s = NULL;
    uint64_t *dk = NULL;
    int *ids = NULL, *counts = NULL, *exact = NULL, *tmp_ids = NULL;
    kp_index *ix = NULL, *ixd = NULL;
    char path[4096];

    snprintf(path, sizeof(path), "%s/dims.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f || fscanf(f, "%d %d %d", &nq, &nk, &D) != 3 || nq <= 0 || nk <= 0 || D <= 0) {
        fprintf(stderr, "bench_index: cannot read dims from %s (run embed first)\n", path);
        if (f) fclose(f);
        return 1;
    }
    fclose(f);
    q = read_raw(dir, "items.f32", (size_t)nq * D * sizeof(float));
    keys = read_raw(dir, "keys.f32", (size_t)nk * D * sizeof(float));
    dk = read_raw(dir, "keys.dedup.u64", (size_t)nk * sizeof(uint64_t));
    size_t nr = (size_t)nq * k;
    ids = malloc(nr * sizeof(int));
    exact = malloc(nr * sizeof(int));
    tmp_ids = malloc(nr * sizeof(int));
    scores = malloc(nr * sizeof(float));
    tmp_s = malloc(nr * sizeof(float));
    counts = malloc((size_t)nq * sizeof(int));
    int bmin = batches[0]; /* the GEMM diagnostic runs at the smallest batch only */
    for (int bi = 1; bi < n_batches; bi++)
        bmin = batches[bi] < bmin ? batches[bi] : bmin;
    S = malloc((size_t)(bmin > 32 ? bmin : 32) * nk * sizeof(float));
    ix = q && keys ? kp_index_new(keys, nk, D, NULL) : NULL;
    ixd = q && keys && dk ? kp_index_new(keys, nk, D, dk) : NULL;
    if (!q || !keys || !dk || !ids || !exact || !tmp_ids || !scores || !tmp_s || !counts || !S ||
        !ix || !ixd) {
        fprintf(stderr, "bench_index: load / allocation failed\n");
        goto err;
    }
    const char *ct = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
    printf("meta\topenblas_corename\t%s\n", openblas_get_corename());
    printf("meta\topenblas_config\t%s\n", openblas_get_config());
    printf("meta\tOPENBLAS_CORETYPE\t%s\n", ct ? ct : "(unset)");
    printf("meta\tOPENBLAS_L2_SIZE\t%s\n", l2 ? l2 : "(unset)");
    printf("meta\tqueries\t%d\nmeta\tkeys\t%d\nmeta\tdim\t%d\nmeta\tk\t%d\nmeta\treps\t%d\n", nq,
           nk, D, k, reps);
    printf("meta\trss_after_load_kb\t%ld\n", maxrss_kb());

    int have_exact = 0, consistent = 1;
    for (int ti = 0; ti < n_threads; ti++) {
        kp_blas_set_threads(threads[ti]);
        for (int bi = 0; bi < n_batches; bi++) {
            int b = batches[bi];
            /* exact; the first (threads, batch) pair is the reference for all the others */
            run_args a = {ix, q, nq, D, k, b, 0, tmp_ids, tmp_s, counts};
            if (RUN("exact")) {
                if (time_topk(&a, "exact", threads[ti], reps) != 0) goto err_topk;
            } else if (RUN("prefix") && !have_exact) {
                if (run_once(&a, nq) < 0) goto err_topk; /* reference for the recall */
            }
            if (!RUN("exact") && !RUN("prefix")) {
            } else if (!have_exact) {
                memcpy(exact, tmp_ids, nr * sizeof(int));
                memcpy(ids, tmp_ids, nr * sizeof(int));
                memcpy(scores, tmp_s, nr * sizeof(float));
                have_exact = 1;
            } else if (memcmp(exact, tmp_ids, nr * sizeof(int)) != 0) {
                consistent = 0;
            }
            if (b != bmin) continue;
            /* Matryoshka prefix pass + full-size rescoring */
            for (int p = 32; p <= 64 && RUN("prefix"); p *= 2) {
                run_args ap = {ix, q, nq, D, k, b, p, tmp_ids, tmp_s, counts};
                char mode[32];
                snprintf(mode, sizeof(mode), "prefix%d", p);
                if (time_topk(&ap, mode, threads[ti], reps) != 0) goto err_topk;
                if (ti == 0) printf("recall\t%s\t%.4f\n", mode, recall_vs(tmp_ids, exact, nq, k));
            }
            /* the worker's configuration: exact with de-dup keys */
            run_args ad = {ixd, q, nq, D, k, b, 0, tmp_ids, tmp_s, counts};
            if (RUN("dedup") && time_topk(&ad, "exact+dedup", threads[ti], reps) != 0)
                goto err_topk;
            /* diagnostic: the GEMMs alone over all keys at once, 32 query rows per call (the
             * layout kp_index_topk had before tiling) and the whole batch */
            int chunks[2] = {32, b};
            for (int ci = 0; ci < 2 && RUN("gemm"); ci++) {
                gemm_once(q, chunks[ci], keys, nk, D, chunks[ci], S); /* warm-up */
                for (int r = 0; r < reps; r++)
                    printf("time\tkprec\tgemm-only/%d\t%d\t%d\t%.6f\n", chunks[ci], b, threads[ti],
                           gemm_once(q, nq, keys, nk, D, chunks[ci], S));
            }
        }
    }
    printf("meta\tkprec_ids_identical_across_configs\t%s\n", consistent ? "yes" : "no");
    if (RUN("exact") && (write_raw(dir, "ids_kprec.i32", ids, nr * sizeof(int)) ||
                         write_raw(dir, "scores_kprec.f32", scores, nr * sizeof(float))))
        goto err;
    printf("meta\tkprec_peak_rss_kb\t%ld\n", maxrss_kb());
    rc = 0;
    goto err;
err_topk:
    fprintf(stderr, "bench_index: kp_index_topk failed\n");
err:
    free(q), free(keys), free(dk), free(ids), free(exact), free(tmp_ids);
    free(scores), free(tmp_s), free(counts), free(S);
    kp_index_free(ix);
    kp_index_free(ixd);
    return rc;
#undef RUN
}

static void usage(FILE *f)
{
    fprintf(
        f, "usage: bench_index embed --data DIR --out OUT [--items N] [--seed S]\n"
           "       bench_index search --out OUT [--k K] [--reps R] [--threads \"1 2\"]\n"
           "                          [--batches \"256 8192\"] [--only exact|prefix|dedup|gemm]\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1], *data = NULL, *out = NULL;
    const char *threads_s = "1 2", *batches_s = "256 8192", *only = NULL;
    int n_items = 8192, k = 50, reps = 1;
    uint64_t seed = 42;
    static const struct option opts[] = {{"data", required_argument, 0, 'd'},
                                         {"out", required_argument, 0, 'o'},
                                         {"items", required_argument, 0, 'n'},
                                         {"seed", required_argument, 0, 's'},
                                         {"k", required_argument, 0, 'k'},
                                         {"reps", required_argument, 0, 'r'},
                                         {"threads", required_argument, 0, 't'},
                                         {"batches", required_argument, 0, 'b'},
                                         {"only", required_argument, 0, 'O'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            data = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'n':
            n_items = opt_int(optarg);
            break;
        case 's':
            seed = strtoull(optarg, NULL, 10);
            break;
        case 'k':
            k = opt_int(optarg);
            break;
        case 'r':
            reps = opt_int(optarg);
            break;
        case 't':
            threads_s = optarg;
            break;
        case 'b':
            batches_s = optarg;
            break;
        case 'O':
            only = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    int threads[MAX_LIST], batches[MAX_LIST];
    int nt = parse_list(threads_s, threads), nb = parse_list(batches_s, batches);
    if (!out || n_items <= 0 || k <= 0 || reps <= 0 || nt <= 0 || nb <= 0) {
        fprintf(stderr, "bench_index: missing --out or a bad number/list\n");
        usage(stderr);
        return 2;
    }
    if (!strcmp(cmd, "embed")) {
        if (!data) {
            fprintf(stderr, "bench_index: embed needs --data DIR\n");
            return 2;
        }
        return cmd_embed(data, out, n_items, seed);
    }
    if (only && strcmp(only, "exact") && strcmp(only, "prefix") && strcmp(only, "dedup") &&
        strcmp(only, "gemm")) {
        fprintf(stderr, "bench_index: --only takes exact, prefix, dedup or gemm\n");
        return 2;
    }
    if (!strcmp(cmd, "search")) return cmd_search(out, k, reps, threads, nt, batches, nb, only);
    fprintf(stderr, "bench_index: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
