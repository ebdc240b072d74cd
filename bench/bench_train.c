/* bench_train.c - training and embedding speed of the bi-encoder, side by side with a PyTorch
 * implementation of the SAME model (bench/train_peer.py, driven by bench/train.sh).
 *
 *   bench_train prep  --data DIR --out OUT [--steps N] [--batch B] [--seed S]
 *       Builds N training batches of B items from DIR (items.tsv, keyphrases.tsv, judgments.tsv)
 *       and writes what the peer needs to run exactly the same steps:
 *         OUT/batches.bin   the batches as feature ids (kp_featurize, the model's buckets) and
 *                           pair lists (format below)
 *         OUT/init.f32      the initial weights of kp_bienc_new(default config, seed S): emb
 *                           [n_buckets x E], w1 [H x E], b1 [H], w2 [D x H], b2 [D]
 *         OUT/titles.bin    the feature ids of the first 4096 titles (the embedding benchmark)
 *         OUT/meta.txt      n_buckets E H D prefixes... tau steps batch (one "key value" a line)
 *       Batch b: B items drawn (seeded) among the judged items; its keyphrases are the items'
 *       judged keyphrases plus 4 random inventory keyphrases per item. Loss pairs: in-batch
 *       softmax row = (item, its first judged keyphrase with relevance >= 2.5); SR = every judged
 *       pair, label (rel-1)/2; distillation = every judged pair (known, teacher 0.1 + 0.8 label)
 *       and the random ones (teacher 0.05 + 0.1 u). The loss is kp_trainer_step's with the
 *       default kp_train_config (softmax 1, SR 1, Pearson distillation 1 + known 1, tau 0.05,
 *       Matryoshka 32/64/128, AdamW lr 2e-3 + lazy AdamW 2e-2 on embedding rows, clip 5, cosine
 *       schedule with 5% warmup over N steps).
 *
 *   bench_train train --data DIR --out OUT [--steps N] [--batch B] [--seed S] [--threads T]
 *                     [--fanout]
 *       Runs those N steps with kp_trainer_step (from the TEXTS: featurizing is inside kprec's
 *       time, the peer gets ids), prints "time train SECONDS CPU-SECONDS STEPS PAIRS" (steps
 *       after the first 5, the warm-up), and writes OUT/loss_kprec.tsv. --fanout: each step on
 *       the model's two-way split over single-threaded BLAS (the same parameters as 1 thread).
 *
 *   bench_train embed --data DIR --out OUT [--threads T] [--reps R] [--fanout]
 *       Item tower (kp_bienc_embed from texts) over the first 4096 titles: batch 1 over the first
 *       1024, and batches of 256 over all; prints "time embed1 SECONDS CPU-SECONDS N" and
 *       "time embed256 SECONDS CPU-SECONDS N" (the best of R by wall time), the same batches
 *       of 256 from feature ids computed beforehand ("time embed256ids ...", the peer's work
 *       exactly; checked equal to the embeddings from the texts), and writes OUT/emb_kprec.f32
 *       [4096 x D] (checked by the peer). --fanout: T threads of the model's own split
 *       (kp_par_threads, model/blas.h: each batch's embedding chunks on two threads) over
 * single-threaded BLAS instead of T BLAS threads.
 *
 * batches.bin (little-endian): "KPTB" u32 version 1, u32 n_batches, then per batch: i32 nI nK
 * nSoft nSR nDis; i32 item_off[nI+1], u32 item_ids[item_off[nI]]; the same for keys; i32
 * soft_item[nSoft] soft_key[nSoft]; i32 sr_item[nSR] sr_key[nSR], f32 sr_label[nSR]; i32
 * dis_item[nDis] dis_key[nDis], f32 dis_teacher[nDis], u8 dis_known[nDis].
 * titles.bin: i32 n, i32 off[n+1], u32 ids[off[n]].
 * Exit status: 0 ok, 1 runtime error, 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "model/bienc.h"
#include "model/blas.h"
#include "model/featurize.h"
#include "model/rng.h"
#include "model/train_step.h"
#include "model/tsv.h"

#define N_RANDOM   4
#define N_TITLES   4096
#define N_EMBED1   1024
#define WARM_STEPS 5

typedef struct {
    int item;   /* row in items */
    int n;      /* judged pairs */
    int *key;   /* [n] rows in keyphrases */
    float *rel; /* [n] relevance */
} judged_item;

typedef struct {
    kp_texts items, keys;
    judged_item *ji;
    int n_ji;
} dataset;

typedef struct { /* one batch, as indexes into the dataset and into the batch */
    int nI, nK, nSoft, nSR, nDis;
    int *item_row, *key_row; /* dataset rows of the batch's items / keys */
    int *soft_item, *soft_key, *sr_item, *sr_key, *dis_item, *dis_key;
    float *sr_label, *dis_teacher;
    unsigned char *dis_known;
} batch;

static double now_s(void)
{
    return 1e-6 * (double)kp_mono_us();
}

/* CPU seconds of this process (all threads): the figure to compare on a loaded machine. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_train: %s\n", what);
    exit(1);
}

static void *xcalloc(size_t n, size_t s)
{
    void *p = calloc(n ? n : 1, s);
    if (!p) die("out of memory");
    return p;
}

static void dataset_free(dataset *d)
{
    for (int i = 0; i < d->n_ji; i++)
        free(d->ji[i].key), free(d->ji[i].rel);
    free(d->ji);
    kp_texts_free(&d->items);
    kp_texts_free(&d->keys);
}

/* Loads DIR's tables and groups the judgments by item (items in file order of first judgment). */
static int dataset_load(const char *dir, dataset *d)
{
    char path[4096], err[512];
    memset(d, 0, sizeof *d);
    snprintf(path, sizeof path, "%s/items.tsv", dir);
    if (kp_texts_load(path, &d->items, err, sizeof err) != 0) goto fail;
    snprintf(path, sizeof path, "%s/keyphrases.tsv", dir);
    if (kp_texts_load(path, &d->keys, err, sizeof err) != 0) goto fail;
    snprintf(path, sizeof path, "%s/judgments.tsv", dir);
    char *buf;
    size_t len;
    if (kp_tsv_read_all(path, &buf, &len, err, sizeof err) != 0) goto fail;
    int *slot = xcalloc((size_t)d->items.n, sizeof(int)); /* item row -> ji index + 1 */
    d->ji = xcalloc((size_t)d->items.n, sizeof(judged_item));
    kp_tsv_lines it = {buf, buf + len, 0};
    if (kp_tsv_skip_header(&it, path, NULL, err, sizeof err) != 0) {
        free(buf), free(slot);
        goto fail;
    }
    char *line, *f[5];
    while ((line = kp_tsv_next_line(&it))) {
        if (kp_tsv_split(line, f, 5) < 4) continue;
        int k = kp_texts_find(&d->keys, f[1]), i = kp_texts_find(&d->items, f[2]);
        double rel;
        if (k < 0 || i < 0 || kp_parse_double(f[3], -1e9, 1e9, &rel) != 0) continue;
        if (!slot[i]) {
            d->ji[d->n_ji].item = i;
            slot[i] = ++d->n_ji;
        }
        judged_item *j = &d->ji[slot[i] - 1];
        j->key = realloc(j->key, (size_t)(j->n + 1) * sizeof(int));
        j->rel = realloc(j->rel, (size_t)(j->n + 1) * sizeof(float));
        if (!j->key || !j->rel) die("out of memory");
        j->key[j->n] = k;
        j->rel[j->n++] = (float)rel;
    }
    free(buf);
    free(slot);
    if (d->n_ji == 0) die("no usable judgments");
    return 0;
fail:
    fprintf(stderr, "bench_train: %s\n", err);
    dataset_free(d);
    return -1;
}

/* Batch key index of dataset keyphrase row k (added when new); map is [keys.n], -1 = absent. */
static int batch_key(batch *b, int *map, int k)
{
    if (map[k] < 0) {
        map[k] = b->nK;
        b->key_row[b->nK++] = k;
    }
    return map[k];
}

static void batch_free(batch *b)
{
    KP_FREE_ALL(b->item_row, b->key_row, b->soft_item, b->soft_key, b->sr_item, b->sr_key,
                b->dis_item, b->dis_key, b->sr_label, b->dis_teacher, b->dis_known);
}

/* Batch number `no` of B items (deterministic in seed and no). */
static void batch_make(const dataset *d, int B, uint64_t seed, int no, batch *b, int *map)
{
    kp_rng r;
    kp_rng_seed(&r, seed * 1000003u + (uint64_t)no);
    memset(b, 0, sizeof *b);
    int cap = 0, *pick = xcalloc((size_t)B, sizeof(int));
    for (int i = 0; i < B; i++) {
        pick[i] = (int)kp_rng_below(&r, (uint64_t)d->n_ji);
        cap += d->ji[pick[i]].n + N_RANDOM;
    }
    b->item_row = xcalloc((size_t)B, sizeof(int));
    b->key_row = xcalloc((size_t)cap, sizeof(int));
    b->soft_item = xcalloc((size_t)B, sizeof(int)), b->soft_key = xcalloc((size_t)B, sizeof(int));
    b->sr_item = xcalloc((size_t)cap, sizeof(int)), b->sr_key = xcalloc((size_t)cap, sizeof(int));
    b->sr_label = xcalloc((size_t)cap, sizeof(float));
    b->dis_item = xcalloc((size_t)cap, sizeof(int)), b->dis_key = xcalloc((size_t)cap, sizeof(int));
    b->dis_teacher = xcalloc((size_t)cap, sizeof(float));
    b->dis_known = xcalloc((size_t)cap, 1);
    for (int i = 0; i < B; i++) {
        const judged_item *j = &d->ji[pick[i]];
        int row = b->nI++;
        b->item_row[row] = j->item;
        int soft = 0;
        for (int q = 0; q < j->n; q++) {
            int k = batch_key(b, map, j->key[q]);
            float lab = (j->rel[q] - 1.0f) / 2.0f;
            lab = lab < 0 ? 0 : lab > 1 ? 1 : lab;
            if (!soft && j->rel[q] >= 2.5f) {
                b->soft_item[b->nSoft] = row, b->soft_key[b->nSoft++] = k;
                soft = 1;
            }
            b->sr_item[b->nSR] = row, b->sr_key[b->nSR] = k, b->sr_label[b->nSR++] = lab;
            b->dis_item[b->nDis] = row, b->dis_key[b->nDis] = k;
            b->dis_teacher[b->nDis] = 0.1f + 0.8f * lab, b->dis_known[b->nDis++] = 1;
        }
        for (int q = 0; q < N_RANDOM; q++) {
            int k = batch_key(b, map, (int)kp_rng_below(&r, (uint64_t)d->keys.n));
            b->dis_item[b->nDis] = row, b->dis_key[b->nDis] = k;
            b->dis_teacher[b->nDis] = 0.05f + 0.1f * kp_rng_uniform(&r),
            b->dis_known[b->nDis++] = 0;
        }
    }
    for (int k = 0; k < b->nK; k++)
        map[b->key_row[k]] = -1;
    free(pick);
}

static void wr(FILE *f, const void *p, size_t size, size_t n)
{
    if (n && fwrite(p, size, n, f) != n) die("write failed");
}

/* texts[rows[0..n)] as feature ids: off [n+1], ids (returned, caller frees). */
static uint32_t *featurize_rows(const kp_texts *t, const int *rows, int n, uint32_t nb, int *off)
{
    uint32_t *ids = xcalloc((size_t)n * KP_FEAT_MAX_IDS, sizeof(uint32_t));
    off[0] = 0;
    for (int i = 0; i < n; i++) {
        const char *s = t->text[rows[i]];
        off[i + 1] = off[i] + kp_featurize(s, strlen(s), nb, ids + off[i], KP_FEAT_MAX_IDS);
    }
    return ids;
}

static void write_ids(FILE *f, const kp_texts *t, const int *rows, int n, uint32_t nb)
{
    int *off = xcalloc((size_t)n + 1, sizeof(int));
    uint32_t *ids = featurize_rows(t, rows, n, nb, off);
    wr(f, off, sizeof(int), (size_t)n + 1);
    wr(f, ids, sizeof(uint32_t), (size_t)off[n]);
    free(ids);
    free(off);
}

static FILE *out_open(const char *out, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "bench_train: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return f;
}

static void closef(FILE *f)
{
    if (fclose(f) != 0) die("write failed");
}

static int cmd_prep(const dataset *d, const char *out, int steps, int B, uint64_t seed)
{
    kp_bienc_config cfg;
    kp_bienc_config_default(&cfg);
    kp_bienc *m = kp_bienc_new(&cfg, seed);
    if (!m) die("out of memory");
    FILE *f = out_open(out, "init.f32");
    for (int p = 0; p < KP_BIENC_NPARAM; p++) {
        size_t r, c;
        const float *w = kp_bienc_param_c(m, KP_TOWER_ITEM, (kp_bienc_param_id)p, &r, &c);
        wr(f, w, sizeof(float), r * c);
    }
    closef(f);
    f = out_open(out, "batches.bin");
    uint32_t hdr[3] = {0x4254504bu /* "KPTB" */, 1, (uint32_t)steps};
    wr(f, hdr, sizeof(uint32_t), 3);
    int *map = xcalloc((size_t)d->keys.n, sizeof(int));
    for (int k = 0; k < d->keys.n; k++)
        map[k] = -1;
    long pairs = 0;
    for (int s = 0; s < steps; s++) {
        batch b;
        batch_make(d, B, seed, s, &b, map);
        int n5[5] = {b.nI, b.nK, b.nSoft, b.nSR, b.nDis};
        wr(f, n5, sizeof(int), 5);
        write_ids(f, &d->items, b.item_row, b.nI, cfg.n_buckets);
        write_ids(f, &d->keys, b.key_row, b.nK, cfg.n_buckets);
        wr(f, b.soft_item, sizeof(int), (size_t)b.nSoft);
        wr(f, b.soft_key, sizeof(int), (size_t)b.nSoft);
        wr(f, b.sr_item, sizeof(int), (size_t)b.nSR);
        wr(f, b.sr_key, sizeof(int), (size_t)b.nSR);
        wr(f, b.sr_label, sizeof(float), (size_t)b.nSR);
        wr(f, b.dis_item, sizeof(int), (size_t)b.nDis);
        wr(f, b.dis_key, sizeof(int), (size_t)b.nDis);
        wr(f, b.dis_teacher, sizeof(float), (size_t)b.nDis);
        wr(f, b.dis_known, 1, (size_t)b.nDis);
        pairs += b.nSoft + b.nSR + b.nDis;
        batch_free(&b);
    }
    closef(f);
    free(map);
    int nt = d->items.n < N_TITLES ? d->items.n : N_TITLES;
    int *rows = xcalloc((size_t)nt, sizeof(int));
    for (int i = 0; i < nt; i++)
        rows[i] = i;
    f = out_open(out, "titles.bin");
    wr(f, &nt, sizeof(int), 1);
    write_ids(f, &d->items, rows, nt, cfg.n_buckets);
    closef(f);
    free(rows);
    f = out_open(out, "meta.txt");
    fprintf(f, "n_buckets %u\nemb_dim %d\nhidden_dim %d\nout_dim %d\nshared %d\nprefixes",
            cfg.n_buckets, cfg.emb_dim, cfg.hidden_dim, cfg.out_dim, cfg.shared_towers);
    for (int i = 0; i < cfg.n_prefix; i++)
        fprintf(f, " %d", cfg.prefix[i]);
    kp_train_config tc;
    kp_train_config_default(&tc);
    fprintf(f,
            "\ntau %g\nlr %g\nlr_emb %g\nwarmup %g\nmin_lr_frac %g\nclip %g\nsteps %d\nbatch %d\n",
            tc.tau, tc.lr, tc.lr_emb, tc.warmup, tc.min_lr_frac, tc.clip, steps, B);
    closef(f);
    printf("meta pairs_per_step %.1f\n", (double)pairs / steps);
    kp_bienc_free(m);
    return 0;
}

static const char **texts_of(const kp_texts *t, const int *rows, int n)
{
    const char **v = xcalloc((size_t)n, sizeof(char *));
    for (int i = 0; i < n; i++)
        v[i] = t->text[rows[i]];
    return v;
}

static int cmd_train(const dataset *d, const char *out, int steps, int B, uint64_t seed)
{
    kp_bienc_config cfg;
    kp_bienc_config_default(&cfg);
    kp_bienc *m = kp_bienc_new(&cfg, seed);
    if (!m) die("out of memory");
    kp_train_config tc;
    kp_train_config_default(&tc);
    tc.seed = seed;
    int *map = xcalloc((size_t)d->keys.n, sizeof(int));
    for (int k = 0; k < d->keys.n; k++)
        map[k] = -1;
    batch *bs = xcalloc((size_t)steps, sizeof(batch));
    int max_k = 1, max_p = 1;
    for (int s = 0; s < steps; s++) {
        batch_make(d, B, seed, s, &bs[s], map);
        if (bs[s].nK > max_k) max_k = bs[s].nK;
        if (bs[s].nDis > max_p) max_p = bs[s].nDis;
    }
    char err[512];
    kp_trainer *t = kp_trainer_new(m, &tc, B, max_k, max_p, steps, err, sizeof err);
    if (!t) die(err);
    FILE *lf = out_open(out, "loss_kprec.tsv");
    fprintf(lf, "step\ttotal\tsoftmax\tsr\tdistill\tdistill_known\n");
    double t0 = 0, c0 = 0;
    long pairs = 0;
    for (int s = 0; s < steps; s++) {
        if (s == WARM_STEPS) t0 = now_s(), c0 = cpu_s();
        batch *b = &bs[s];
        const char **it = texts_of(&d->items, b->item_row, b->nI);
        const char **kt = texts_of(&d->keys, b->key_row, b->nK);
        kp_train_batch tb = {0};
        tb.n_items = b->nI, tb.items = it, tb.n_keys = b->nK, tb.keys = kt;
        tb.n_soft = b->nSoft, tb.soft_item = b->soft_item, tb.soft_key = b->soft_key;
        tb.n_sr = b->nSR, tb.sr_item = b->sr_item, tb.sr_key = b->sr_key, tb.sr_label = b->sr_label;
        tb.n_dis = b->nDis, tb.dis_item = b->dis_item, tb.dis_key = b->dis_key;
        tb.dis_teacher = b->dis_teacher, tb.dis_known = b->dis_known;
        kp_train_losses L;
        if (kp_trainer_step(t, &tb, &L, err, sizeof err) != 0) die(err);
        if (s >= WARM_STEPS) pairs += b->nSoft + b->nSR + b->nDis;
        fprintf(lf, "%d\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\n", s + 1, L.total, L.softmax, L.sr,
                L.distill, L.distill_known);
        free(it);
        free(kt);
    }
    double secs = now_s() - t0, cpu = cpu_s() - c0;
    closef(lf);
    printf("time train %.6f %.6f %d %ld\n", secs, cpu, steps - WARM_STEPS, pairs);
    kp_trainer_free(t);
    for (int s = 0; s < steps; s++)
        batch_free(&bs[s]);
    free(bs);
    free(map);
    kp_bienc_free(m);
    return 0;
}

static int cmd_embed(const dataset *d, const char *out, uint64_t seed, int reps)
{
    kp_bienc_config cfg;
    kp_bienc_config_default(&cfg);
    kp_bienc *m = kp_bienc_new(&cfg, seed);
    if (!m) die("out of memory");
    int nt = d->items.n < N_TITLES ? d->items.n : N_TITLES, D = cfg.out_dim;
    int n1 = nt < N_EMBED1 ? nt : N_EMBED1;
    const char **txt = (const char **)d->items.text;
    float *e = xcalloc((size_t)nt * D, sizeof(float));
    double best1 = 1e30, best256 = 1e30, cpu1 = 0, cpu256 = 0;
    for (int r = 0; r < reps; r++) {
        double c0 = cpu_s(), t0 = now_s();
        for (int i = 0; i < n1; i++)
            if (kp_bienc_embed(m, KP_TOWER_ITEM, txt + i, NULL, 1, e + (size_t)i * D) != 0)
                die("embed failed");
        double t1 = now_s(), c1 = cpu_s();
        for (int i = 0; i < nt; i += 256) {
            int n = nt - i < 256 ? nt - i : 256;
            if (kp_bienc_embed(m, KP_TOWER_ITEM, txt + i, NULL, n, e + (size_t)i * D) != 0)
                die("embed failed");
        }
        double t2 = now_s(), c2 = cpu_s();
        if (t1 - t0 < best1) best1 = t1 - t0, cpu1 = c1 - c0;
        if (t2 - t1 < best256) best256 = t2 - t1, cpu256 = c2 - c1;
    }
    /* the same batches of 256 from feature ids computed beforehand: the peer's work exactly */
    int *rows = xcalloc((size_t)nt, sizeof(int)), *off = xcalloc((size_t)nt + 1, sizeof(int));
    for (int i = 0; i < nt; i++)
        rows[i] = i;
    uint32_t *ids = featurize_rows(&d->items, rows, nt, cfg.n_buckets, off);
    double bestid = 1e30, cpuid = 0;
    float *e2 = xcalloc((size_t)nt * D, sizeof(float));
    int *o2 = xcalloc(257, sizeof(int));
    for (int r = 0; r < reps; r++) {
        double c0 = cpu_s(), t0 = now_s();
        for (int i = 0; i < nt; i += 256) {
            int n = nt - i < 256 ? nt - i : 256;
            for (int j = 0; j <= n; j++)
                o2[j] = off[i + j] - off[i];
            if (kp_bienc_embed_ids(m, KP_TOWER_ITEM, ids + off[i], o2, n, e2 + (size_t)i * D))
                die("embed failed");
        }
        double t1 = now_s(), c1 = cpu_s();
        if (t1 - t0 < bestid) bestid = t1 - t0, cpuid = c1 - c0;
    }
    if (memcmp(e, e2, sizeof(float) * (size_t)nt * D)) die("embeddings from ids differ from texts");
    printf("time embed256ids %.6f %.6f %d\n", bestid, cpuid, nt);
    KP_FREE_ALL(rows, off, ids, e2, o2);
    FILE *f = out_open(out, "emb_kprec.f32");
    wr(f, e, sizeof(float), (size_t)nt * D);
    closef(f);
    printf("time embed1 %.6f %.6f %d\ntime embed256 %.6f %.6f %d\n", best1, cpu1, n1, best256,
           cpu256, nt);
    free(e);
    kp_bienc_free(m);
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_train prep|train|embed --data DIR --out OUT [--steps N] [--batch B]\n"
            "                   [--seed S] [--threads T] [--reps R] [--fanout]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2) usage();
    const char *cmd = argv[1], *data = NULL, *out = NULL;
    int steps = 60, B = 256, threads = 1, reps = 3, fanout = 0;
    long seed = 1;
    static const struct option lo[] = {{"data", required_argument, 0, 'd'},
                                       {"out", required_argument, 0, 'o'},
                                       {"steps", required_argument, 0, 's'},
                                       {"batch", required_argument, 0, 'b'},
                                       {"seed", required_argument, 0, 'S'},
                                       {"threads", required_argument, 0, 't'},
                                       {"reps", required_argument, 0, 'r'},
                                       {"fanout", no_argument, 0, 'F'},
                                       {0, 0, 0, 0}};
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'd':
            data = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 's':
            bad = kp_parse_int(optarg, WARM_STEPS + 1, 100000, &steps);
            break;
        case 'b':
            bad = kp_parse_int(optarg, 2, 8192, &B);
            break;
        case 'S':
            bad = kp_parse_long(optarg, 0, LONG_MAX, &seed);
            break;
        case 't':
            bad = kp_parse_int(optarg, 1, 64, &threads);
            break;
        case 'r':
            bad = kp_parse_int(optarg, 1, 1000, &reps);
            break;
        case 'F':
            fanout = 1;
            break;
        default:
            usage();
        }
        if (bad) usage();
    }
    if (!data || !out) usage();
    /* --fanout: T threads of the model's own split (kp_par_threads, model/blas.h) over
     * single-threaded BLAS */
    kp_blas_set_threads(fanout ? 1 : threads);
    kp_par_set_threads(fanout ? threads : 1);
    dataset d;
    if (dataset_load(data, &d) != 0) return 1;
    int rc;
    if (!strcmp(cmd, "prep"))
        rc = cmd_prep(&d, out, steps, B, (uint64_t)seed);
    else if (!strcmp(cmd, "train"))
        rc = cmd_train(&d, out, steps, B, (uint64_t)seed);
    else if (!strcmp(cmd, "embed"))
        rc = cmd_embed(&d, out, (uint64_t)seed, reps);
    else
        usage(), rc = 2;
    dataset_free(&d);
    return rc;
}
